"""`workerstate get TASK`: one worker described for a person, like `kubectl describe`.

Every field on its own labelled line (the table of `ls` has no room for a worktree, a
description or why the worker is where it is), then its recent events with their reasons,
which say how it got there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from .types import Event, EventType, Worker

# Events shown under a description: enough to see a worker bounce between review and work.
RECENT_EVENTS = 10


def age(moment: datetime | None, now: datetime) -> str:
    """`45s`, `3m`, `2h`, `4d`: the largest whole unit, as kubectl prints ages."""
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def timestamp(moment: datetime) -> str:
    """UTC to the millisecond, as RFC 3339: `2024-05-01T12:00:00.123Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _when(moment: datetime | None, now: datetime) -> str:
    return "never" if moment is None else f"{timestamp(moment)} ({age(moment, now)} ago)"


def describe(worker: Worker, events: Sequence[Event], now: datetime) -> list[str]:
    """The lines that describe `worker`, given its events oldest first."""
    level = worker.stale_level.value if worker.stale_level else "-"
    fields = [
        ("Task", worker.task_id),
        ("State", worker.state.value),
        ("State since", _when(worker.state_changed_at, now)),
        ("Stale level", level),
        ("Branch", worker.branch),
        ("Worktree", worker.worktree),
        ("Description", worker.description or "-"),
        ("Labels", ", ".join(f"{k}={v}" for k, v in sorted(worker.labels.items())) or "-"),
        ("Created", _when(worker.created_at, now)),
        ("Last heartbeat", _when(worker.last_heartbeat_at, now)),
        ("Activity", worker.last_activity or "-"),
        ("Revision", str(worker.revision)),
    ]
    width = max(len(label) for label, _ in fields) + 2
    lines = []
    for label, value in fields:
        head = f"{label}:".ljust(width)
        # A description may hold newlines: continue under the value, not at the margin.
        lines.append(head + value.replace("\n", "\n" + " " * width))
    recent = events[-RECENT_EVENTS:]
    shown = f"last {len(recent)} of {len(events)}" if len(events) > len(recent) else "all"
    lines += ["", f"Events ({shown}, oldest first):"]
    for event in recent:
        moved = f"{event.from_state.value} -> " if event.from_state else ""
        reason = event.reason.replace("\n", " ") if event.reason else "-"
        what = f"{moved}{event.worker.state.value}"
        if event.type in (EventType.LABELS_CHANGED, EventType.DELETED):
            what = event.type.value
        by = f"  (by {event.actor})" if event.actor else ""
        lines.append(f"  {event.revision:>8}  {timestamp(event.time)}  {what}  {reason}{by}")
    return lines
