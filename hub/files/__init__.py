"""Uploaded files: storage by sha256, analysis of G-code and meshes, and screening of uploads."""

from .analyses import FileAnalyses, kind_of
from .component import Files
from .schemas import FileInfo
from .storage import GCODE_SUFFIXES, FileStore, StoredFile, UploadError, is_gcode

__all__ = ["GCODE_SUFFIXES", "FileAnalyses", "FileInfo", "FileStore", "Files", "StoredFile", "UploadError",
           "is_gcode", "kind_of"]
