"""Retention of finished workers (--retain-finished): the daemon deletes each COMPLETED or
FAILED worker once it has been in that state that long.

Finished workers wait in a heap keyed by when they finished, fed by every committed event
(this daemon's and other daemons'), so a round looks only at the ones due, never at the
whole fleet. An entry is checked against the view when it comes due: a worker that was
retried, finished again or deleted since has a newer entry or none, and is skipped.

Each deletion is a compare-and-set on the revision seen. With several daemons on one
database each tries the same deletions; the first commits, and the others' are refused under
the write lock (the worker is gone), so each worker is deleted exactly once.
"""

from __future__ import annotations

import asyncio
import heapq
import logging

from workerstate.client.durations import format_duration

from .clock import Clock
from .domain import FINISHED_STATES, Change, DeleteWorker, Event, EventType, Worker
from .policy import ACTOR, Execute, enforce
from .view import WorkerView

log = logging.getLogger(__name__)

# Longest a round sleeps: a worker is deleted within about this long of becoming due.
MAX_SLEEP_S = 1.0
# Events that finish a worker (or finish it again, as FailWorker on a FAILED worker does).
_FINISHING = frozenset({EventType.STATE_CHANGED, EventType.FAILED})


class FinishedRetention:
    """Finished workers by when they finished; deletes those older than `after_ms`."""

    def __init__(self, after_ms: int, view: WorkerView, clock: Clock) -> None:
        self._after_ms = after_ms
        self._view = view
        self._clock = clock
        self._reason = f"retention: finished for {format_duration(after_ms)}"
        self._due = [
            (w.state_changed_at_ms, w.task_id)
            for w in view.newest_first(states=FINISHED_STATES)
            if w.state in FINISHED_STATES
        ]  # (finished at ms, task id), a heap
        heapq.heapify(self._due)

    def on_commit(self, events: list[Event]) -> None:
        for event in events:
            if event.type in _FINISHING and event.worker.state in FINISHED_STATES:
                self._track(event.worker)

    def _track(self, worker: Worker) -> None:
        heapq.heappush(self._due, (worker.state_changed_at_ms, worker.task_id))

    def _take(self, limit: int) -> list[Change]:
        """Deletions for up to `limit` workers that are due and still as their entry says."""
        cutoff = self._clock.now_ms() - self._after_ms
        changes: list[Change] = []
        while self._due and self._due[0][0] <= cutoff and len(changes) < limit:
            finished_at, task_id = heapq.heappop(self._due)
            worker = self._view.get(task_id)
            if (
                worker is None
                or worker.state not in FINISHED_STATES
                or worker.state_changed_at_ms != finished_at
            ):
                continue
            changes.append(DeleteWorker(task_id, worker.revision, self._reason, actor=ACTOR))
        return changes

    def _delay_s(self) -> float:
        if not self._due:
            return MAX_SLEEP_S
        wait_ms = self._due[0][0] + self._after_ms - self._clock.now_ms()
        return min(MAX_SLEEP_S, max(0.0, wait_ms / 1000))

    async def run(self, execute: Execute) -> None:
        while True:
            tally = await enforce(execute, self._take)
            # A refused deletion is looked at again next round: if the worker only changed
            # labels it is still due; if it is gone or active, its entry is dropped then.
            for change in (*tally.refused, *tally.unwritten):
                worker = self._view.get(change.task_id)
                if worker is not None and worker.state in FINISHED_STATES:
                    self._track(worker)
            if tally.done:
                log.info("retention: deleted %d finished workers (%s)", tally.done, self._reason)
            if tally.unwritten:
                log.warning(
                    "retention: could not delete %d workers now, the database did not take"
                    " the change; will retry",
                    len(tally.unwritten),
                )
            # After a refusal or a fault, a pause: a retry never spins.
            await asyncio.sleep(
                MAX_SLEEP_S if tally.refused or tally.unwritten else self._delay_s()
            )
