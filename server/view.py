"""The committed workers, held in memory so that reads never wait for the writer or a disk.

The writer hands each committed group of events to `apply` on the event loop; readers see a
worker only after its change is durable, and `head` is the revision the view reflects.

Finished workers (COMPLETED, FAILED) are kept apart from the others, each part in order of
last change. A fleet that runs for months holds far more finished workers than active ones,
and the live view (ListWorkers for ASSIGNED and WORKING, the board's busy columns) must not
walk past them: a query for active states reads only the active part. Each worker is in one
part, so the split costs no memory; a query for all states merges the two by revision.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from .domain import FINISHED_STATES, Event, EventType, Worker, WorkerState


def _revision(worker: Worker) -> int:
    return worker.revision


class WorkerView:
    """Workers by task id, kept in order of their last change (the seed's list order)."""

    def __init__(self, workers: Iterable[Worker], head: int) -> None:
        # Oldest change first: a change moves its worker to the end. Revisions order changes
        # exactly, where state_changed_at could tie or step back with the wall clock.
        self._active: OrderedDict[str, Worker] = OrderedDict()
        self._finished: OrderedDict[str, Worker] = OrderedDict()
        for worker in sorted(workers, key=_revision):
            self._part(worker.state)[worker.task_id] = worker
        self.head = head

    def _part(self, state: WorkerState) -> OrderedDict[str, Worker]:
        return self._finished if state in FINISHED_STATES else self._active

    def __len__(self) -> int:
        return len(self._active) + len(self._finished)

    def get(self, task_id: str) -> Worker | None:
        worker = self._active.get(task_id)
        return self._finished.get(task_id) if worker is None else worker

    def apply(self, events: Iterable[Event]) -> None:
        for event in events:
            task_id = event.worker.task_id
            # Dropped from its part, then appended to the end of its new one: the newest.
            if self._active.pop(task_id, None) is None:
                self._finished.pop(task_id, None)
            if event.type is not EventType.DELETED:
                self._part(event.worker.state)[task_id] = event.worker
            self.head = event.revision

    def newest_first(
        self, below_revision: int = 0, states: frozenset[WorkerState] = frozenset()
    ) -> Iterator[Worker]:
        """Workers by last change, newest first; only those changed before `below_revision`.

        With `states`, only the part that can hold them is read (callers still filter by
        state: the part holds the other states of its kind too)."""
        parts = [
            part
            for part, kind in ((self._active, False), (self._finished, True))
            if not states or any((s in FINISHED_STATES) is kind for s in states)
        ]
        streams = [_below(reversed(part.values()), below_revision) for part in parts]
        if len(streams) == 1:
            return streams[0]
        return heapq.merge(*streams, key=_revision, reverse=True)


def _below(workers: Iterator[Worker], below_revision: int) -> Iterator[Worker]:
    if below_revision:
        for worker in workers:
            if worker.revision < below_revision:
                yield worker
                break
    yield from workers
