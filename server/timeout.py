"""The heartbeat timeout (--fail-after): the daemon fails ASSIGNED and WORKING workers that
stay silent that long.

Liveness already keeps every live worker in a heap keyed by its next crossing; past DEAD,
the next crossing is this timeout, and liveness hands the worker here when it comes due.
The age is liveness' own, so it never counts from before the daemon began serving, and a
restart never fails a fleet.

Each failure is a compare-and-set on what this daemon saw: the worker's revision and its
newest beat. The writer checks the beat against the stored one under the write lock, so a
worker that beats through another daemon sharing the database is not failed here, provided
its beats reach the database (every --heartbeat-flush) well within the timeout.
"""

from __future__ import annotations

import asyncio
import logging

from workerstate.client.durations import format_duration

from .domain import Change, FailSilent, Worker
from .heartbeats import Heartbeats
from .policy import ACTOR, Execute, enforce
from .view import WorkerView

log = logging.getLogger(__name__)


class HeartbeatTimeout:
    """Workers liveness found silent for `after_ms`, failed in bounded batches."""

    def __init__(self, after_ms: int, view: WorkerView, heartbeats: Heartbeats) -> None:
        self.after_ms = after_ms
        self._view = view
        self._heartbeats = heartbeats
        self._reason = f"no heartbeat for {format_duration(after_ms)}"
        self._due: dict[str, tuple[int, int | None]] = {}  # task id: (revision, beat) seen
        self._wake = asyncio.Event()

    def expire(self, worker: Worker, last_heartbeat_ms: int | None) -> None:
        """Liveness found `worker` silent for the timeout (again, if a try was refused)."""
        self._due[worker.task_id] = (worker.revision, last_heartbeat_ms)
        self._wake.set()

    def _take(self, limit: int) -> list[Change]:
        """Due workers still as they were seen: one that beat or moved since is left alone."""
        changes: list[Change] = []
        while self._due and len(changes) < limit:
            task_id, (revision, beat) = self._due.popitem()
            worker = self._view.get(task_id)
            if worker is None or worker.revision != revision:
                continue
            if self._heartbeats.last_ms(task_id) != beat:
                continue
            changes.append(FailSilent(task_id, revision, beat, self._reason, actor=ACTOR))
        return changes

    async def run(self, execute: Execute) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            tally = await enforce(execute, self._take)
            # What was refused or not written stays silent in liveness, which hands it back.
            if tally.done or tally.refused:
                log.info(
                    "heartbeat timeout: failed %d workers with %s; %d left alone (they beat"
                    " or moved meanwhile)",
                    tally.done,
                    self._reason,
                    len(tally.refused),
                )
            if tally.unwritten:
                log.warning(
                    "heartbeat timeout: could not fail %d workers now, the database did not"
                    " take the change; will retry",
                    len(tally.unwritten),
                )
