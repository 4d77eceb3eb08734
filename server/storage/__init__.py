"""Backends the daemon can serve from, behind one seam (`base`); `open_backend` picks one."""

from __future__ import annotations

from pathlib import Path

from .base import Backend, StorageError
from .sqlite import SQLiteBackend

__all__ = ["Backend", "StorageError", "open_backend"]


async def open_backend(location: str) -> Backend:
    """The backend for `--db`: a path is a SQLite file, the embedded default."""
    return SQLiteBackend.open(Path(location))
