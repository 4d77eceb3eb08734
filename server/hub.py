"""Committed events fanned out to watchers through one shared window.

Each event is held once, in revision order, however many watchers there are; a watcher is a
cursor (the next revision it wants) that reads a slice and then waits for the head to move.
Publishing never blocks: a watcher that falls behind the window reads the log from the file
instead, so neither a slow watcher nor a thousand of them slows a writer. Liveness changes,
which are computed rather than stored, have a window of their own with a sequence number.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from workerstate.v1 import workerstate_pb2 as pb

from .domain import Event, LivenessChange, ShuttingDown

T = TypeVar("T")

# Events kept in memory for watchers that are nearly caught up: between this many and twice
# as many. Larger windows let slower watchers skip the file; each event costs about 1 KB with
# its prebuilt message.
WINDOW_EVENTS = 10_000
# Liveness changes kept for watchers that are behind; older ones are skipped (and the watcher
# told through the log), as a SNAPSHOT carries current levels anyway.
WINDOW_LIVENESS = 10_000


class _Window(Generic[T]):
    """A list trimmed in bulk (amortised O(1)), addressed by absolute position."""

    def __init__(self, first: int, size: int) -> None:
        self.items: list[T] = []
        self.first = first  # position of items[0]
        self._size = size

    @property
    def next(self) -> int:
        return self.first + len(self.items)

    def extend(self, items: list[T]) -> None:
        self.items.extend(items)
        excess = len(self.items) - 2 * self._size
        if excess > 0:
            drop = excess + self._size
            del self.items[:drop]
            self.first += drop

    def since(self, position: int, limit: int) -> list[T] | None:
        if position < self.first:
            return None
        start = position - self.first
        return self.items[start : start + limit]


class Hub:
    """The newest committed events and liveness changes, and a signal when either grows."""

    def __init__(self, head: int, compact_revision: int) -> None:
        """Made on the loop it serves: each wait makes a future on it, and asking for the
        running loop costs a getpid() system call each time (once per watcher per wake)."""
        self._loop = asyncio.get_running_loop()
        self.head = head
        # Oldest revision still stored; announced before compaction deletes anything older.
        self.compact_revision = compact_revision
        self._events: _Window[tuple[Event, pb.WorkerEvent]] = _Window(head + 1, WINDOW_EVENTS)
        self._liveness: _Window[LivenessChange] = _Window(0, WINDOW_LIVENESS)
        # One future per waiting watcher, in the order they began to wait (a dict as an
        # ordered set): waking one costs a single callback, where a shared future behind
        # asyncio.shield cost each watcher a future and two more callbacks per wake.
        self._waiters: dict[asyncio.Future[None], None] = {}
        # The last response built for an unfiltered watcher, by the revisions it spans:
        # watchers in lockstep (the usual case) share it instead of building one each.
        self._shared: tuple[int, int, pb.WatchStateResponse] | None = None
        self.closed = False

    def publish(self, events: list[Event], messages: list[pb.WorkerEvent]) -> None:
        """Add committed events (contiguous, in order) with their messages, built once."""
        self._events.extend(list(zip(events, messages, strict=True)))
        self.head = events[-1].revision
        self._wake()

    def compacted_to(self, revision: int) -> None:
        """Another daemon compacted the shared log up to `revision`."""
        self.compact_revision = max(self.compact_revision, revision)

    def publish_liveness(self, change: LivenessChange) -> None:
        self._liveness.extend([change])
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters:
            # Done already: cancelled (a timeout, a stream's end) but not yet removed.
            if not waiter.done():
                waiter.set_result(None)

    def shared_response(
        self, events: list[tuple[Event, pb.WorkerEvent | None]]
    ) -> pb.WatchStateResponse | None:
        """The response carrying exactly `events` (a slice of this window), built once and
        shared by every unfiltered watcher that sends the same span; None for events read
        from the file, which have no prebuilt messages."""
        first, last = events[0][0].revision, events[-1][0].revision
        shared = self._shared
        if shared is not None and shared[0] == first and shared[1] == last:
            return shared[2]
        messages = [m for _, m in events if m is not None]
        if len(messages) != len(events):
            return None
        response = pb.WatchStateResponse(events=messages)
        self._shared = (first, last, response)
        return response

    def since(self, revision: int, limit: int) -> list[tuple[Event, pb.WorkerEvent]] | None:
        """Up to `limit` events from `revision` on; None when the window no longer holds it."""
        return self._events.since(revision, limit)

    @property
    def liveness_next(self) -> int:
        """Sequence number the next liveness change will get."""
        return self._liveness.next

    def liveness_since(self, seq: int) -> tuple[list[LivenessChange], int]:
        """Liveness changes from `seq` on, and how many older ones fell out of the window."""
        changes = self._liveness.since(seq, WINDOW_LIVENESS)
        if changes is None:
            return self._liveness.items[:], self._liveness.first - seq
        return changes, 0

    async def wait(self, revision: int, liveness_seq: int | None = None) -> None:
        """Return once the head passes `revision` (or, if given, a liveness change at
        `liveness_seq` exists); raise ShuttingDown when the hub closes."""
        while self.head <= revision and (
            liveness_seq is None or liveness_seq >= self._liveness.next
        ):
            if self.closed:
                raise ShuttingDown()
            waiter = self._loop.create_future()
            self._waiters[waiter] = None
            try:
                await waiter
            except asyncio.CancelledError:
                # Left without a wake: forget it, or an idle hub would collect them.
                self._waiters.pop(waiter, None)
                raise
        if self.closed:
            raise ShuttingDown()

    def close(self) -> None:
        """End every watch: waiting watchers get ShuttingDown (UNAVAILABLE on the wire)."""
        self.closed = True
        self._wake()
