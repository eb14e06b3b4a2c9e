"""Backups of the hub: the database and the file store, verified, scheduled, restorable."""
