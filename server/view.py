"""The committed workers, held in memory so that reads never wait for the writer or a disk.

The writer hands each committed group of events to `apply` on the event loop; readers see a
worker only after its change is durable, and `head` is the revision the view reflects.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator

from .domain import Event, EventType, Worker


class WorkerView:
    """Workers by task id, kept in order of their last change (the seed's list order)."""

    def __init__(self, workers: Iterable[Worker], head: int) -> None:
        # Oldest change first: a change moves its worker to the end. Revisions order changes
        # exactly, where state_changed_at could tie or step back with the wall clock.
        self._workers: OrderedDict[str, Worker] = OrderedDict(
            (w.task_id, w) for w in sorted(workers, key=lambda w: w.revision)
        )
        self.head = head

    def __len__(self) -> int:
        return len(self._workers)

    def get(self, task_id: str) -> Worker | None:
        return self._workers.get(task_id)

    def apply(self, events: Iterable[Event]) -> None:
        workers = self._workers
        for event in events:
            task_id = event.worker.task_id
            if event.type is EventType.DELETED:
                workers.pop(task_id, None)
            else:
                workers[task_id] = event.worker
                workers.move_to_end(task_id)
            self.head = event.revision

    def newest_first(self, below_revision: int = 0) -> Iterator[Worker]:
        """Workers by last change, newest first; only those changed before `below_revision`."""
        workers: Iterator[Worker] = reversed(self._workers.values())
        if below_revision:
            for worker in workers:
                if worker.revision < below_revision:
                    yield worker
                    break
        yield from workers
