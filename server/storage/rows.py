"""A worker and an event as a row of values, the same for every backend's tables.

Both schemas hold the same columns in the same order, so the conversions are written once;
the worker an applied request answered with is stored as JSON of its row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..domain import Event, EventType, Worker, WorkerState

EVENT_COLUMNS = (
    "revision, type, task_id, state, from_state, reason, time_ms,"
    " branch, worktree, description, created_at_ms"
)
WORKER_COLUMNS = (
    "task_id, state, branch, worktree, description, created_at_ms, state_changed_at_ms, revision"
)


# Stored names to members by plain dict lookup: `WorkerState(name)` goes through Enum's
# Python-level constructor, a visible share of loading 100,000 workers at start.
_STATES = {s.value: s for s in WorkerState}


def worker_from_row(row: Sequence[Any]) -> Worker:
    task_id, state, branch, worktree, description, created, changed, revision = row
    return Worker(
        task_id, _STATES[state], branch, worktree, description, created, changed, revision
    )


def event_from_row(row: Sequence[Any]) -> Event:
    revision, type_, task_id, state, from_state, reason, time_ms = row[:7]
    branch, worktree, description, created = row[7:]
    worker = worker_from_row(
        (task_id, state, branch, worktree, description, created, time_ms, revision)
    )
    return Event(
        worker.revision,
        EventType(type_),
        worker,
        None if from_state is None else _STATES[from_state],
        reason,
        worker.state_changed_at_ms,
    )


def worker_row(w: Worker) -> tuple[Any, ...]:
    return (
        w.task_id,
        w.state.value,
        w.branch,
        w.worktree,
        w.description,
        w.created_at_ms,
        w.state_changed_at_ms,
        w.revision,
    )


def event_row(event: Event) -> tuple[Any, ...]:
    w = event.worker
    return (
        event.revision,
        event.type.value,
        w.task_id,
        w.state.value,
        None if event.from_state is None else event.from_state.value,
        event.reason,
        event.time_ms,
        w.branch,
        w.worktree,
        w.description,
        w.created_at_ms,
    )


def worker_to_json(worker: Worker) -> str:
    return json.dumps(worker_row(worker))


def worker_from_json(text: str) -> Worker:
    return worker_from_row(tuple(json.loads(text)))
