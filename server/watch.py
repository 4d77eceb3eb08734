"""One WatchState stream: snapshot, replay and live events, liveness and progress, in order.

A watcher is only a cursor: the next revision it wants (and, with liveness, the next liveness
change). It reads the hub's shared window, or the backend's log when it has fallen
behind the window, and sends everything it has pending in one message. Sending awaits gRPC
flow control, so a watcher that stops reading stops advancing and holds no events of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from workerstate.v1 import workerstate_pb2 as pb

from .clock import Clock
from .domain import (
    Event,
    EventType,
    Labels,
    LivenessChange,
    RevisionCompacted,
    ShuttingDown,
    StaleLevel,
    Worker,
)
from .hub import Hub
from .messages import LEVEL_TO_PB, event_message, timestamp, worker_message
from .validate import WatchQuery
from .view import WorkerView

log = logging.getLogger(__name__)

# Most events in one message. Each gRPC message costs far more than its bytes, so a watcher
# gets everything it has pending at once, up to this many (about 200 KB).
WATCH_BATCH = 500


@dataclass(frozen=True, slots=True)
class Sources:
    """The part of the daemon a watch reads, and nothing that writes: fan-out cannot reach
    storage but through `events`, a read of the log."""

    hub: Hub
    view: WorkerView
    level: Callable[[Worker, int], tuple[int | None, StaleLevel]]  # last beat, level at ms
    activity: Callable[[str], str | None]  # of a task's last beat
    events: Callable[[int, int, str, int], Awaitable[list[Event]]]  # Backend.events
    clock: Clock
    progress_interval_ms: int


class Watch:
    """The state of one stream and the loop that feeds it."""

    def __init__(self, query: WatchQuery, sources: Sources) -> None:
        self._query = query
        self._sources = sources
        self._progress_s = sources.progress_interval_ms / 1000
        self._last_sent = time.monotonic()
        self._unfiltered = not query.task_ids and not query.states and not query.selector

    def _matches(self, worker: Worker, labels: Labels | None = None) -> bool:
        """Whether the worker passes every filter, with `labels` in place of its own."""
        q = self._query
        if q.task_ids and worker.task_id not in q.task_ids:
            return False
        if q.states and worker.state not in q.states:
            return False
        return q.selector.matches(worker.labels if labels is None else labels)

    def _sends(self, event: Event) -> bool:
        """A watcher also sees a worker leave its selection: a LABELS_CHANGED event whose
        worker matched before the change."""
        return self._matches(event.worker) or (
            event.type is EventType.LABELS_CHANGED
            and self._matches(event.worker, event.from_labels)
        )

    async def responses(self) -> AsyncIterator[pb.WatchStateResponse]:
        hub = self._sources.hub
        # Before the snapshot: a crossing announced while it is sent must not be skipped.
        liveness_seq = hub.liveness_next if self._query.liveness else None
        if self._query.send_initial_state:
            # Taken without awaiting, so the workers are exactly those as of `revision`.
            revision = self._sources.view.head
            workers = [w for w in self._sources.view.newest_first() if self._matches(w)]
            async for response in self._snapshot(revision, workers):
                yield response
            next_revision = revision + 1
        else:
            next_revision = self._query.start_revision or hub.head + 1
        while True:
            events = await self._events_from(next_revision)
            upto = events[-1][0].revision if events else next_revision - 1
            changes: list[LivenessChange] = []
            if liveness_seq is not None:
                changes, liveness_seq = self._liveness_upto(liveness_seq, upto)
            if events or changes:
                next_revision = upto + 1
                shared = None
                if self._unfiltered and not changes:
                    shared = hub.shared_response(events)
                if shared is not None:
                    self._last_sent = time.monotonic()
                    yield shared
                    continue
                messages = self._merge(events, changes)
                if messages:
                    self._last_sent = time.monotonic()
                    yield pb.WatchStateResponse(events=messages)
                    continue
            progress = self._progress_due()
            if progress is not None and progress <= 0:
                self._last_sent = time.monotonic()
                # Never a revision that does not exist yet (a watch may start in the future).
                reached = min(next_revision - 1, hub.head)
                yield pb.WatchStateResponse(progress=pb.Progress(revision=reached))
                continue
            if events or changes:
                continue  # filtered out; look for more before waiting
            if progress is None:
                await hub.wait(next_revision - 1, liveness_seq)
                continue
            try:
                async with asyncio.timeout(progress):
                    await hub.wait(next_revision - 1, liveness_seq)
            except TimeoutError:
                pass

    def _progress_due(self) -> float | None:
        """Seconds until a progress message is due (<= 0: now); None without progress_notify."""
        if not self._query.progress_notify:
            return None
        return self._progress_s - (time.monotonic() - self._last_sent)

    async def _snapshot(
        self, revision: int, workers: list[Worker]
    ) -> AsyncIterator[pb.WatchStateResponse]:
        """SNAPSHOT events for the workers as of `revision`, then `synced`."""
        core = self._sources
        for start in range(0, len(workers), WATCH_BATCH):
            now_ms = core.clock.now_ms()
            batch = []
            for worker in workers[start : start + WATCH_BATCH]:
                beat, level = core.level(worker, now_ms)
                batch.append(
                    pb.WorkerEvent(
                        revision=revision,
                        type=pb.EVENT_TYPE_SNAPSHOT,
                        worker=worker_message(worker, beat, level, core.activity(worker.task_id)),
                        time=timestamp(now_ms),
                    )
                )
            yield pb.WatchStateResponse(events=batch)
        yield pb.WatchStateResponse(synced=pb.Synced(revision=revision))

    async def _events_from(self, revision: int) -> list[tuple[Event, pb.WorkerEvent | None]]:
        """Stored events from `revision` on: from the window, else from the file.

        Raises ShuttingDown once the hub is closed: a filtered watch replaying a long log
        that matches nothing neither sends nor waits, so it would not stop anywhere else.
        """
        hub = self._sources.hub
        if hub.closed:
            raise ShuttingDown()
        if revision < hub.compact_revision:
            raise RevisionCompacted(revision, hub.compact_revision)
        window = hub.since(revision, WATCH_BATCH)
        if window is not None:
            return _whole_batches(window)
        events = await self._sources.events(revision - 1, WATCH_BATCH, "", hub.head)
        if events and events[0].revision != revision:  # compacted while we read
            raise RevisionCompacted(revision, hub.compact_revision)
        return [(e, None) for e in events]

    def _liveness_upto(self, seq: int, revision: int) -> tuple[list[LivenessChange], int]:
        """Pending liveness changes observed at or before `revision`, and the next cursor."""
        changes, missed = self._sources.hub.liveness_since(seq)
        if missed:
            log.warning("a slow watcher missed %d liveness changes", missed)
            seq += missed
        taken = 0
        for change in changes:
            if change.revision > revision:
                break
            taken += 1
        return changes[:taken], seq + taken

    def _merge(
        self,
        events: Iterable[tuple[Event, pb.WorkerEvent | None]],
        changes: list[LivenessChange],
    ) -> list[pb.WorkerEvent]:
        """Matching events in revision order; a liveness change follows the stored events up
        to the revision it was observed at."""
        messages: list[pb.WorkerEvent] = []
        pending = iter(changes)
        change = next(pending, None)
        for event, message in events:
            while change is not None and change.revision < event.revision:
                self._add_change(messages, change)
                change = next(pending, None)
            if self._sends(event):
                messages.append(message or event_message(event))
        while change is not None:
            self._add_change(messages, change)
            change = next(pending, None)
        return messages

    def _add_change(self, messages: list[pb.WorkerEvent], change: LivenessChange) -> None:
        if self._matches(change.worker):
            messages.append(
                pb.WorkerEvent(
                    revision=change.revision,
                    type=pb.EVENT_TYPE_LIVENESS_CHANGED,
                    worker=worker_message(change.worker, change.last_heartbeat_ms, change.level),
                    time=timestamp(change.time_ms),
                    from_stale_level=LEVEL_TO_PB[change.from_level],
                )
            )


def _whole_batches(
    events: list[tuple[Event, pb.WorkerEvent]],
) -> list[tuple[Event, pb.WorkerEvent | None]]:
    """`events` without an Apply batch that starts inside it but ends beyond it: the next
    read starts at that batch, so a watcher gets a batch of up to WATCH_BATCH events in one
    message, never split across two."""
    last = events[-1][0] if events else None
    if last is not None and last.batch_end > last.revision:
        start = len(events) - 1
        while start > 0 and events[start - 1][0].batch_end == last.batch_end:
            start -= 1
        if start > 0:
            return list(events[:start])
    return list(events)
