"""Backends the daemon can serve from, behind one seam (`base`); `open_backend` picks one."""

from __future__ import annotations

from pathlib import Path

from .base import Backend, StorageError
from .sqlite import SQLiteBackend

__all__ = ["Backend", "StorageError", "open_backend"]


async def open_backend(location: str) -> Backend:
    """The backend for `--db`: a postgresql:// (or postgres://) URL is a database several
    daemons may share; anything else is the path of a SQLite file, the embedded default."""
    if location.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresBackend  # the driver loads only when a database needs it

        return await PostgresBackend.open(location)
    return SQLiteBackend.open(Path(location))
