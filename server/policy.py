"""What the daemon's own policies (retention, the heartbeat timeout) share: how their changes
reach the writer.

A policy may find thousands of workers due at once (a mass expiry, a fleet that went quiet
together). Its changes go out a bounded number at a time, each on its own: a Batch would be
all or nothing, so one worker that moved meanwhile would sink the rest. Each batch shares a
group commit or two, and callers queued behind it wait about as long as behind one group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .domain import Change, ShuttingDown, StorageUnavailable, Worker, WorkerStateError

# Changes submitted together; the next batch goes out once this one is answered.
BATCH = 100

# Who the log says made a policy's changes.
ACTOR = "daemon"

Execute = Callable[[Change], Awaitable[Worker]]


@dataclass
class Tally:
    """What became of a policy's changes."""

    done: int = 0
    # Refused by a compare-and-set: the worker moved, beat, or another daemon got there first.
    refused: list[Change] = field(default_factory=list)
    # Not written: the database is away or the daemon is stopping; try again later.
    unwritten: list[Change] = field(default_factory=list)


async def enforce(execute: Execute, take: Callable[[int], list[Change]]) -> Tally:
    """Submit what `take(n)` hands out, at most BATCH at a time, until it has nothing left
    or the database stops taking writes (the rest stays with the policy for its next round)."""
    tally = Tally()
    while not tally.unwritten and (batch := take(BATCH)):
        outcomes = await asyncio.gather(*map(execute, batch), return_exceptions=True)
        for change, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, StorageUnavailable | ShuttingDown):
                tally.unwritten.append(change)
            elif isinstance(outcome, WorkerStateError):
                tally.refused.append(change)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                tally.done += 1
    return tally
