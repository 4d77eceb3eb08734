"""Why each FAILED or CONFLICTED worker is where it is, for the cards that say so.

The reason lives in the event that moved the worker there, not in the worker, so the board
learns it from the events it streams, and asks the log once for a worker it has not seen
move (a page opened after the fact). Only workers in those states are remembered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..domain import Event, WorkerState

# The states whose cards show why: the two a reviewer has to act on.
EXPLAINED = frozenset({WorkerState.FAILED, WorkerState.CONFLICTED})

EventsFn = Callable[[int, int, str, int], Awaitable[list[Event]]]  # Backend.events


class Reasons:
    """The reason of the event at each explained worker's current revision."""

    def __init__(self, events: EventsFn) -> None:
        self._events = events
        self._known: dict[str, tuple[int, str]] = {}  # task id -> (revision, reason)

    def learn(self, task_id: str, state: WorkerState, revision: int, reason: str) -> None:
        """A stored event: remember its reason if it left the worker explained."""
        if state in EXPLAINED:
            self._known[task_id] = (revision, reason)
        else:
            self._known.pop(task_id, None)

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
            # Compacted away: the worker is still explained, without words.
            reason = found[0].reason if found and found[0].revision == revision else ""
            self.learn(task_id, state, revision, reason)
            card["reason"] = reason
