"""Last heartbeat per worker: kept in memory, written to the file in batches.

A beat must not cost an fsync, so beats land here and a flusher hands the changed ones to the
writer every flush interval (and at shutdown). A crash loses at most one and a half intervals
of beat times (a flush may take half of one), which only makes a worker look a little staler
after restart; never a transition.

The last beat's activity travels with its time: written behind in the same flush, loaded
at start, and taken in from other daemons' beats. Changes to it are numbered, so a dashboard
can ask for the ones it has not seen without looking at every worker.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from .domain import WorkerStateError
from .storage.base import SaveHeartbeats

# How beats reach the database: the writer's upkeep, in the daemon.
Save = Callable[[SaveHeartbeats], Awaitable[int]]
# Most beats one commit writes. The writer runs on the event loop, so a flush holds up every
# call while it writes: 5,000 SQLite upserts take about 7 ms, 250 about 0.5 ms. A fleet's
# flush becomes several short commits, and only the last waits for the disk (see
# SaveHeartbeats.synced).
FLUSH_CHUNK = 250
# How long a flush lets the loop run between its commits, at most. Short commits alone are
# not enough: a call needs several turns of the loop to go from the socket to the writer, and
# a flush that queues its next commit as soon as the last one is answered takes every other
# turn, so a transition arriving mid-flush waited for most of it (W8's probe, p99 2.2x idle).
# With the pause it waits for one commit at most (1.0x to 1.3x idle in `python bench/fleet.py`).
# Pauses are shortened so a flush ends within half the flush interval however large the fleet.
FLUSH_PAUSE_S = 0.005

log = logging.getLogger(__name__)


class Heartbeats:
    """Beat times by task id, and the ones not yet written."""

    def __init__(self, stored: dict[str, tuple[int, str]]) -> None:
        """`stored`: each worker's last stored beat, as (ms, activity)."""
        self._last_ms = {task_id: ms for task_id, (ms, _) in stored.items()}
        self._unsaved: dict[str, tuple[int, str]] = {}
        self._activity = {task_id: a for task_id, (_, a) in stored.items() if a}
        # Task ids by the number of their last activity change, oldest first.
        self._activity_changes: OrderedDict[str, int] = OrderedDict()
        self.activity_seq = 0  # number of the latest activity change
        self.received = 0  # beats recorded since start, for the metrics

    def beat(self, task_id: str, now_ms: int, activity: str) -> None:
        self.received += 1
        self._last_ms[task_id] = now_ms
        self._unsaved[task_id] = (now_ms, activity)
        self._set_activity(task_id, activity)

    def _set_activity(self, task_id: str, activity: str) -> None:
        # Most beats repeat the activity: only a change costs more than this lookup.
        if self._activity.get(task_id, "") != activity:
            if activity:
                self._activity[task_id] = activity
            else:
                del self._activity[task_id]
            self.activity_seq += 1
            self._activity_changes[task_id] = self.activity_seq
            self._activity_changes.move_to_end(task_id)

    def absorb(self, task_id: str, ms: int, activity: str) -> bool:
        """A beat another daemon received and stored; True if it is newer than any here."""
        if ms <= self._last_ms.get(task_id, -1):
            return False
        self._last_ms[task_id] = ms
        self._set_activity(task_id, activity)
        return True

    def forget(self, task_id: str) -> None:
        """The worker was deleted: a new worker with its task id starts with no beats."""
        self._last_ms.pop(task_id, None)
        self._unsaved.pop(task_id, None)
        self._set_activity(task_id, "")

    def last_ms(self, task_id: str) -> int | None:
        return self._last_ms.get(task_id)

    def activity(self, task_id: str) -> str | None:
        """The activity of the worker's last beat; None if it never beat or sent none."""
        return self._activity.get(task_id)

    def activity_changed_since(self, seq: int) -> list[str]:
        """Task ids whose activity changed after change number `seq`, newest first."""
        changed = []
        for task_id, number in reversed(self._activity_changes.items()):
            if number <= seq:
                break
            changed.append(task_id)
        return changed

    def oldest_unsaved_ms(self) -> int | None:
        """When the oldest beat not yet written arrived (for the flush-lag metric)."""
        return min((ms for ms, _ in self._unsaved.values()), default=None)

    async def flush(self, save: Save, spread_s: float = 0.0) -> None:
        """Write the beats received since the last flush, FLUSH_CHUNK to a commit, the commits
        spread over at most `spread_s` (see FLUSH_PAUSE_S); on failure keep the unwritten ones
        for the next."""
        if not self._unsaved:
            return
        batch, self._unsaved = self._unsaved, {}
        rows = [(task_id, ms, activity) for task_id, (ms, activity) in batch.items()]
        pause_s = min(FLUSH_PAUSE_S, spread_s / math.ceil(len(rows) / FLUSH_CHUNK))
        for start in range(0, len(rows), FLUSH_CHUNK):
            if start and pause_s:
                await asyncio.sleep(pause_s)
            # A worker deleted while the flush paused must not get its beat row back.
            chunk = tuple(r for r in rows[start : start + FLUSH_CHUNK] if r[0] in self._last_ms)
            try:
                await save(SaveHeartbeats(chunk, synced=start + FLUSH_CHUNK >= len(rows)))
            except WorkerStateError as e:
                log.warning("could not save %d heartbeats, will retry: %s", len(rows) - start, e)
                # Newer beats that arrived meanwhile win over the ones being put back.
                self._unsaved = {t: (ms, a) for t, ms, a in rows[start:]} | self._unsaved
                return

    async def flush_every(self, save: Save, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.flush(save, spread_s=interval_s / 2)
