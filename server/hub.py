"""Committed events fanned out to watchers through one shared window.

Each event is held once, in revision order, however many watchers there are; a watcher is a
cursor (the next revision it wants) that reads a slice and then waits for the head to move.
Publishing never blocks: a watcher that falls behind the window reads the log from the file
instead, so neither a slow watcher nor a thousand of them slows a writer.
"""

from __future__ import annotations

import asyncio

from .domain import Event, ShuttingDown

# Events kept in memory for watchers that are nearly caught up. Larger windows let slower
# watchers skip the file; each event costs a few hundred bytes.
WINDOW_EVENTS = 20_000


class Hub:
    """The newest committed events, and a signal for "the head moved"."""

    def __init__(self, head: int, window: int = WINDOW_EVENTS) -> None:
        self.head = head
        self._window = window
        self._events: list[Event] = []
        self._first = head + 1  # revision of self._events[0]
        self._moved: asyncio.Future[None] | None = None
        self._closed = False

    def publish(self, events: list[Event]) -> None:
        """Add committed events (contiguous, in order) and wake every waiting watcher."""
        self._events.extend(events)
        self.head = events[-1].revision
        # Trim in bulk, amortised: the window holds between `window` and twice that.
        excess = len(self._events) - 2 * self._window
        if excess > 0:
            drop = excess + self._window
            del self._events[:drop]
            self._first += drop
        if self._moved is not None:
            self._moved.set_result(None)
            self._moved = None

    def since(self, revision: int, limit: int) -> list[Event] | None:
        """Up to `limit` events from `revision` on; None when the window no longer holds it."""
        if revision < self._first:
            return None
        start = revision - self._first
        return self._events[start : start + limit]

    async def wait_past(self, revision: int) -> None:
        """Return once the head is beyond `revision`; raise ShuttingDown when the hub closes."""
        while self.head <= revision:
            if self._closed:
                raise ShuttingDown()
            if self._moved is None:
                self._moved = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._moved)
        if self._closed:
            raise ShuttingDown()

    def close(self) -> None:
        """End every watch: waiting watchers get ShuttingDown (UNAVAILABLE on the wire)."""
        self._closed = True
        if self._moved is not None:
            self._moved.set_result(None)
            self._moved = None
