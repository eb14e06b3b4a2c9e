"""Simulators for development, the demo and tests: ``printer`` serves a virtual Marlin on a pty."""
