"""Simulators for development, the demo and tests: ``printer`` serves a virtual Marlin on a pty;
``prusalink`` serves simulated PrusaLink printers over HTTP, many in one process; ``bambu`` runs
Bambu Lab printers in LAN mode (MQTT over TLS on a real Mosquitto, the SD card over implicit FTPS),
as many as wanted in one process."""
