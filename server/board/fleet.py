"""What the board is given of the daemon's core, and the cards it shows.

The board reads through the same view, hub, watch and liveness code as the gRPC API and writes
through the same writer; it is handed exactly those, not the daemon. A card is a worker as the
page needs it, in JSON: the worker's fields plus its stale level, last heartbeat and activity
now, and for a FAILED or CONFLICTED worker the reason it is there. Labels go as [key, value]
pairs sorted by key: a JSON object would not keep that order in the page (JavaScript puts keys
that look like numbers first).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from workerstate.v1 import workerstate_pb2 as pb

from ..clock import Clock
from ..domain import TRANSITIONS, Change, Event, StaleLevel, Worker, WorkerNotFound, WorkerState
from ..heartbeats import Heartbeats
from ..hub import Hub
from ..labels import as_labels
from ..messages import LEVEL_FROM_PB, STATE_FROM_PB
from ..validate import MAX_EVENTS_LIMIT, WatchQuery
from ..view import WorkerView
from .reasons import EventsFn, Reasons

# The board's columns, left to right: the way work flows, with the detours beside the step
# they leave from, and the two ends last.
COLUMNS = (
    WorkerState.ASSIGNED,
    WorkerState.WORKING,
    WorkerState.CONFLICTED,
    WorkerState.IN_REVIEW,
    WorkerState.APPROVED,
    WorkerState.COMPLETED,
    WorkerState.FAILED,
)
# Most events a card's history shows, newest first; a worker bounced back and forth for
# weeks still opens at once.
HISTORY_LIMIT = 500

Card = dict[str, Any]


def _card(
    worker: Worker,
    *,
    level: StaleLevel,
    activity: str | None,
    beat_ms: int | None,
    aged_ms: int,
    reason: str | None,
) -> Card:
    """A card: the worker's fields, and what the page shows and sorts by beside them."""
    return {
        "task_id": worker.task_id,
        "state": worker.state.value,
        "branch": worker.branch,
        "worktree": worker.worktree,
        "description": worker.description,
        "labels": [list(pair) for pair in worker.labels],
        "revision": worker.revision,
        "created_ms": worker.created_at_ms,
        "state_since_ms": worker.state_changed_at_ms,
        "beat_ms": beat_ms,
        "aged_ms": aged_ms,  # heartbeat age counts from here, as for the stale level
        "level": level.value,
        "activity": activity,
        "reason": reason,  # FAILED and CONFLICTED: why; None where not (yet) known
    }


@dataclass(frozen=True)
class Fleet:
    """The parts of the core the board uses, built once by the daemon."""

    view: WorkerView
    hub: Hub
    heartbeats: Heartbeats
    level: Callable[[Worker, int], tuple[int | None, StaleLevel]]
    watch: Callable[[WatchQuery], AsyncIterator[pb.WatchStateResponse]]
    execute: Callable[[Change], Awaitable[Worker]]
    events: EventsFn
    clock: Clock
    aged_from: Callable[[Worker], int]  # when its silence started counting (Liveness)
    reasons: Reasons

    def card(self, message: pb.Worker) -> Card:
        """The card for a worker message. A message for the worker's current revision gets
        its level, heartbeat and activity as of now; an older one (a replayed event,
        superseded later in the same stream) keeps what the message says."""
        current = self.view.get(message.task_id)
        if current is not None and current.revision == message.revision:
            return self.worker_card(current)
        worker = Worker(
            task_id=message.task_id,
            state=STATE_FROM_PB[message.state],
            branch=message.branch,
            worktree=message.worktree,
            description=message.description if message.HasField("description") else None,
            created_at_ms=message.created_at.ToMilliseconds(),
            state_changed_at_ms=message.state_changed_at.ToMilliseconds(),
            revision=message.revision,
            labels=as_labels(message.labels),
        )
        beat = (
            message.last_heartbeat_at.ToMilliseconds()
            if message.HasField("last_heartbeat_at")
            else None
        )
        return _card(
            worker,
            level=LEVEL_FROM_PB.get(message.stale_level, StaleLevel.OK),
            activity=message.last_activity if message.HasField("last_activity") else None,
            beat_ms=beat,
            aged_ms=worker.state_changed_at_ms if beat is None else beat,
            reason=None,  # superseded before the page shows it
        )

    def worker_card(self, worker: Worker) -> Card:
        """The card for a worker as it is now (from the view, or just returned by the
        writer)."""
        beat, level = self.level(worker, self.clock.now_ms())
        return _card(
            worker,
            level=level,
            activity=self.heartbeats.activity(worker.task_id),
            beat_ms=beat,
            aged_ms=self.aged_from(worker),
            reason=self.reasons.known(worker.task_id, worker.state, worker.revision),
        )

    def layout(self, user: str | None, can_write: bool) -> dict[str, Any]:
        """What the page needs before any card: columns, the transition table, who it is
        for and whether they may write, and the daemon's clock (ages count by it)."""
        return {
            "columns": [s.value for s in COLUMNS],
            "transitions": {
                s.value: [t.value for t in COLUMNS if t in TRANSITIONS[s]] for s in COLUMNS
            },
            "user": user,
            "can_write": can_write,
            "now_ms": self.clock.now_ms(),
        }

    async def history(self, task_id: str) -> list[Event]:
        """The worker's stored events, newest first (at most HISTORY_LIMIT)."""
        if self.view.get(task_id) is None:
            raise WorkerNotFound(task_id)
        head = self.hub.head
        newest: deque[Event] = deque(maxlen=HISTORY_LIMIT)
        after = max(0, self.hub.compact_revision - 1)  # older ones are gone
        while True:
            page = await self.events(after, MAX_EVENTS_LIMIT, task_id, head)
            newest.extend(page)
            if len(page) < MAX_EVENTS_LIMIT:
                return list(reversed(newest))
            after = page[-1].revision
