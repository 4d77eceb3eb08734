"""Keeps a daemon current with what other daemons commit to a database they share.

The backend announces where the database stands (a `Notice`) after every commit by any
daemon. New revisions go to the writer, which reads them in order and hands them to the read
side like its own; a newer compact revision is taken at once, so no read here can skip what
another daemon compacted; newer beats are read and applied to liveness, so a worker that beat
through another daemon is OK here too. On a file one daemon owns, nothing is ever announced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .domain import WorkerStateError
from .heartbeats import Heartbeats
from .liveness import Liveness
from .storage.base import Notice
from .view import WorkerView
from .writer import Writer

log = logging.getLogger(__name__)


class Follower:
    """Applies notices; beats are read by one task at a time, coalescing notices."""

    def __init__(
        self,
        writer: Writer,
        view: WorkerView,
        heartbeats: Heartbeats,
        liveness: Liveness,
        beats_since: Callable[[int], Awaitable[list[tuple[str, int, str]]]],
        compacted: Callable[[int], None],
        position: Notice,
    ) -> None:
        self._writer = writer
        self._view = view
        self._heartbeats = heartbeats
        self._liveness = liveness
        self._beats_since = beats_since
        self._compacted = compacted
        self._beats_read = position.beats  # flushes whose beats are applied here
        self._beats_wanted = position.beats
        self._reading: asyncio.Task[None] | None = None

    def notice(self, notice: Notice) -> None:
        self._compacted(notice.compact_revision)
        self._writer.catch_up(notice.head)
        if notice.beats > self._beats_wanted:
            self._beats_wanted = notice.beats
            if self._reading is None or self._reading.done():
                self._reading = asyncio.create_task(self._read_beats())

    async def _read_beats(self) -> None:
        while self._beats_read < self._beats_wanted:
            wanted = self._beats_wanted
            try:
                beats = await self._beats_since(self._beats_read)
            except WorkerStateError as e:
                log.warning("could not read other daemons' heartbeats: %s", e)
                self._beats_wanted = self._beats_read  # the next notice tries again
                return
            self._beats_read = wanted
            for task_id, ms, activity in beats:
                if self._heartbeats.absorb(task_id, ms, activity):
                    worker = self._view.get(task_id)
                    if worker is not None:
                        self._liveness.on_beat(worker, ms)

    async def stop(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
