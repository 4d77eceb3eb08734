"""Last heartbeat per worker: kept in memory, written to the file in batches.

A beat must not cost an fsync, so beats land here and a flusher hands the changed ones to the
writer every flush interval (and at shutdown). A crash loses at most one interval of beat
times, which only makes a worker look a little staler after restart; never a transition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .domain import WorkerStateError
from .storage.base import SaveHeartbeats

# How beats reach the database: the writer's upkeep, in the daemon.
Save = Callable[[SaveHeartbeats], Awaitable[int]]

log = logging.getLogger(__name__)


class Heartbeats:
    """Beat times by task id, and the ones not yet written."""

    def __init__(self, stored: dict[str, int]) -> None:
        self._last_ms = dict(stored)
        self._unsaved: dict[str, tuple[int, str]] = {}

    def beat(self, task_id: str, now_ms: int, activity: str) -> None:
        self._last_ms[task_id] = now_ms
        self._unsaved[task_id] = (now_ms, activity)

    def absorb(self, task_id: str, ms: int) -> bool:
        """A beat another daemon received and stored; True if it is newer than any here."""
        if ms <= self._last_ms.get(task_id, -1):
            return False
        self._last_ms[task_id] = ms
        return True

    def last_ms(self, task_id: str) -> int | None:
        return self._last_ms.get(task_id)

    def oldest_unsaved_ms(self) -> int | None:
        """When the oldest beat not yet written arrived (for the flush-lag metric)."""
        return min((ms for ms, _ in self._unsaved.values()), default=None)

    async def flush(self, save: Save) -> None:
        """Write the beats received since the last flush; on failure keep them for the next."""
        if not self._unsaved:
            return
        batch, self._unsaved = self._unsaved, {}
        try:
            rows = tuple((task_id, ms, activity) for task_id, (ms, activity) in batch.items())
            await save(SaveHeartbeats(rows))
        except WorkerStateError as e:
            log.warning("could not save %d heartbeats, will retry: %s", len(batch), e)
            # Newer beats that arrived meanwhile win over the ones being put back.
            self._unsaved = batch | self._unsaved

    async def flush_every(self, save: Save, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.flush(save)
