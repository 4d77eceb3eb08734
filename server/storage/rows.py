"""A worker and an event as a row of values, the same for every backend's tables.

Both schemas hold the same columns in the same order, so the conversions are written once;
the answer an applied request gave is stored as JSON of its row (or rows, for a batch).
Labels are stored as a JSON object, or "" for none (most workers, and every row written
before labels existed).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from ..domain import Event, EventType, Labels, Worker, WorkerState
from .base import Answer, Row

EVENT_COLUMNS = (
    "revision, type, task_id, state, from_state, reason, time_ms,"
    " branch, worktree, description, created_at_ms,"
    " labels, from_labels, actor, state_changed_at_ms"
)
WORKER_COLUMNS = (
    "task_id, state, branch, worktree, description, created_at_ms, state_changed_at_ms,"
    " revision, labels"
)
REQUEST_COLUMNS = "request_id, fingerprint, worker, created_at_ms"


# Stored names to members by plain dict lookup: `WorkerState(name)` goes through Enum's
# Python-level constructor, a visible share of loading 100,000 workers at start.
_STATES = {s.value: s for s in WorkerState}
_TYPES = {t.value: t for t in EventType}


@functools.lru_cache(maxsize=4096)
def labels_text(labels: Labels) -> str:
    """Cached: a fleet has few distinct label sets, and every stored row writes one twice."""
    return json.dumps(dict(labels), separators=(",", ":")) if labels else ""


@functools.lru_cache(maxsize=4096)
def labels_from_text(text: str | None) -> Labels:
    return tuple(sorted(json.loads(text).items())) if text else ()


def worker_from_row(row: Sequence[Any]) -> Worker:
    """A worker from its columns; a row stored before labels has none (8 columns)."""
    task_id, state, branch, worktree, description, created, changed, revision = row[:8]
    labels = labels_from_text(row[8]) if len(row) > 8 else ()
    return Worker(
        task_id, _STATES[state], branch, worktree, description, created, changed, revision, labels
    )


def event_from_row(row: Sequence[Any]) -> Event:
    revision, type_, task_id, state, from_state, reason, time_ms = row[:7]
    branch, worktree, description, created, labels, from_labels, actor, changed = row[7:]
    worker = Worker(
        task_id,
        _STATES[state],
        branch,
        worktree,
        description,
        created,
        time_ms if changed is None else changed,  # rows from before labels: the event's time
        revision,
        labels_from_text(labels),
    )
    return Event(
        revision,
        _TYPES[type_],
        worker,
        None if from_state is None else _STATES[from_state],
        reason,
        time_ms,
        labels_from_text(from_labels),
        actor,
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
        labels_text(w.labels),
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
        labels_text(w.labels),
        labels_text(event.from_labels) if event.type is EventType.LABELS_CHANGED else None,
        event.actor,
        w.state_changed_at_ms,
    )


def stored_workers(rows: Sequence[Row]) -> tuple[list[str], list[Worker]]:
    """What a group does to the workers table: the task ids whose rows (and heartbeats) go,
    for a worker deleted in it, then the workers to upsert, each as its last event left it
    (a task id deleted and created again in one group is in both)."""
    last: dict[str, Event] = {}
    for row in rows:
        last[row.event.worker.task_id] = row.event
    gone = list({r.event.worker.task_id: None for r in rows if r.event.type is EventType.DELETED})
    kept = [e.worker for e in last.values() if e.type is not EventType.DELETED]
    return gone, kept


def request_rows(rows: Sequence[Row]) -> list[tuple[Any, ...]]:
    """The group's applied request ids, as REQUEST_COLUMNS."""
    return [
        (r.request_id, r.fingerprint, answer_to_json(r.answer), r.event.time_ms)
        for r in rows
        if r.request_id
    ]


def answer_to_json(answer: Answer) -> str:
    if isinstance(answer, Worker):
        return json.dumps(worker_row(answer))
    return json.dumps({"batch": [worker_row(w) for w in answer]})


def answer_from_json(text: str) -> Answer:
    value = json.loads(text)
    if isinstance(value, dict):
        return tuple(worker_from_row(row) for row in value["batch"])
    return worker_from_row(value)
