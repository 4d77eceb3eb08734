"""The parts of a running daemon that its faces (gRPC, the board) and background tasks use,
built once in the composition root (daemon.py) and handed to each."""

from __future__ import annotations

from dataclasses import dataclass

from .clock import Clock
from .heartbeats import Heartbeats
from .hub import Hub
from .liveness import Liveness
from .storage.base import Backend
from .view import WorkerView
from .writer import Writer


@dataclass
class Core:
    """The parts a request touches, built once by the daemon."""

    writer: Writer
    view: WorkerView
    hub: Hub
    heartbeats: Heartbeats
    liveness: Liveness
    backend: Backend
    clock: Clock
    progress_interval_ms: int
    max_watchers: int
