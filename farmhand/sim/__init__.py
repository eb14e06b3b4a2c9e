"""Simulators for development, the demo and tests: ``printer`` serves a virtual Marlin on a pty;
``prusalink`` serves simulated PrusaLink printers over HTTP, many in one process."""
