"""Slicing meshes with PrusaSlicer: slice jobs, slicing profiles and the slicer command line."""
