"""Why each FAILED or CONFLICTED worker is where it is, for the cards that say so.

The reason lives in the event that moved the worker there, not in the worker, so the board
learns it from the events it streams, and asks the log for a worker it has not seen move (a
page opened after the fact). Only workers in those states are remembered. A change of labels
keeps the worker where it is, so it keeps its reason; a deleted worker is forgotten.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..domain import Event, EventType, WorkerState
from ..validate import MAX_EVENTS_LIMIT

# The states whose cards show why: the two a reviewer has to act on.
EXPLAINED = frozenset({WorkerState.FAILED, WorkerState.CONFLICTED})

# Events that move a worker, so their reason says why it is where it is.
MOVES = frozenset({EventType.ASSIGNED, EventType.STATE_CHANGED, EventType.FAILED})

EventsFn = Callable[[int, int, str, int], Awaitable[list[Event]]]  # Backend.events


class Reasons:
    """The reason of the event at each explained worker's current revision."""

    def __init__(self, events: EventsFn) -> None:
        self._events = events
        self._known: dict[str, tuple[int, str]] = {}  # task id -> (revision, reason)

    def learn(self, task_id: str, state: WorkerState, revision: int, reason: str) -> None:
        """A move: remember its reason if it left the worker explained."""
        if state in EXPLAINED:
            self._known[task_id] = (revision, reason)
        else:
            self._known.pop(task_id, None)

    def follow(
        self, event_type: EventType, state: WorkerState, task_id: str, revision: int, reason: str
    ) -> None:
        """A stored event of any type: a move teaches its reason, a change of labels carries
        the known reason to the new revision, a deletion forgets the worker."""
        if event_type in MOVES:
            self.learn(task_id, state, revision, reason)
        elif event_type is EventType.DELETED:
            self._known.pop(task_id, None)
        elif task_id in self._known:
            self._known[task_id] = (revision, self._known[task_id][1])

    def known(self, task_id: str, state: WorkerState, revision: int) -> str | None:
        """The reason for a card, if the card needs one and it is known."""
        if state not in EXPLAINED:
            return None
        found = self._known.get(task_id)
        return found[1] if found is not None and found[0] == revision else None

    async def fill(self, cards: Iterable[dict[str, Any]], head: int) -> None:
        """Give explained cards without a reason theirs, from the log (`head` as read)."""
        for card in cards:
            state = WorkerState(card["state"])
            if state not in EXPLAINED or card["reason"] is not None:
                continue
            task_id, revision = card["task_id"], card["revision"]
            found = await self._events(revision - 1, 1, task_id, head)
            if found and found[0].revision == revision and found[0].type in MOVES:
                reason = found[0].reason
            else:  # its labels changed since (rare): look back for the move
                reason = await self._last_move(task_id, revision, head)
            self.learn(task_id, state, revision, reason)
            card["reason"] = reason

    async def _last_move(self, task_id: str, revision: int, head: int) -> str:
        """The reason of the worker's last move up to `revision`; "" when it was compacted
        away (the worker is still explained, without words)."""
        reason, after = "", 0
        while True:
            page = await self._events(after, MAX_EVENTS_LIMIT, task_id, head)
            for event in page:
                if event.revision > revision:
                    return reason
                if event.type in MOVES:
                    reason = event.reason
            if len(page) < MAX_EVENTS_LIMIT:
                return reason
            after = page[-1].revision
