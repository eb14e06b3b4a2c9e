"""Uploaded files: storage by sha256, analysis of G-code and meshes, and screening uploads."""
