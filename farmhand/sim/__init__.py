"""Simulators for development, the demo and tests: ``printer`` serves a virtual Marlin on a pty;
``prusalink`` serves simulated PrusaLink printers over HTTP, many in one process; ``bambu`` runs
Bambu Lab printers in LAN mode (MQTT over TLS on a real Mosquitto, the SD card over implicit FTPS),
as many as wanted in one process; ``klippy`` is a Klipper host on Klippy's API socket, many in one
process, for the real Moonraker to stand in front of (``moonraker_host.SimulatedKlipper`` runs the pair);
``octoprint`` serves simulated OctoPrints (REST and the push socket), many in one process, where the
tests use the real OctoPrint."""
