"""Slicing meshes with PrusaSlicer: slice jobs, the farm's slicing profiles and the slicer command line."""

from .component import Slicing
from .jobs import SliceJobs, SliceRequest, SliceState
from .slicer import PROFILES_DIR

__all__ = ["PROFILES_DIR", "SliceJobs", "SliceRequest", "SliceState", "Slicing"]
