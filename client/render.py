"""What people and agents read of the daemon's answers: workers, events and errors as text.

The CLI's `-o json` and the MCP server's tool results share these shapes, so a field added
to the API shows up in both at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .durations import format_duration
from .errors import InvalidArgument, Unavailable, WorkerStateError
from .types import Event, Worker


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def worker_json(worker: Worker) -> dict[str, Any]:
    return {
        "task_id": worker.task_id,
        "state": worker.state.value,
        "stale_level": None if worker.stale_level is None else worker.stale_level.value,
        "branch": worker.branch,
        "worktree": worker.worktree,
        "description": worker.description,
        "created_at": iso(worker.created_at),
        "state_changed_at": iso(worker.state_changed_at),
        "last_heartbeat_at": iso(worker.last_heartbeat_at),
        "revision": worker.revision,
        "last_activity": worker.last_activity,
        "labels": dict(worker.labels),
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "revision": event.revision,
        "type": event.type.value,
        "task_id": event.worker.task_id,
        "from_state": None if event.from_state is None else event.from_state.value,
        "state": event.worker.state.value,
        "from_stale_level": None
        if event.from_stale_level is None
        else event.from_stale_level.value,
        "reason": event.reason,
        "actor": event.actor,
        "from_labels": dict(event.from_labels),
        "time": iso(event.time),
        "worker": worker_json(event.worker),
    }


def explain(error: WorkerStateError, server: str, timeout_s: float | None = None) -> str:
    """One line that says what to do; gRPC's own wording (addresses tried, socket errors)
    stays out of it."""
    if isinstance(error, InvalidArgument):
        return "; ".join(f"{field}: {problem}" for field, problem in error.violations.items())
    if type(error) is Unavailable:
        which = "any workerstate daemon" if "," in server else "the workerstate daemon"
        within = "" if timeout_s is None else f" within {format_duration(round(timeout_s * 1000))}"
        if error.code == "DEADLINE_EXCEEDED":
            return (
                f"{which} at {server} did not answer{within}; is it stopped or "
                "overloaded? Try a longer --timeout, or pick another with --server"
            )
        return (
            f"cannot reach {which} at {server}{within}; is it running? Start one "
            "with `workerstate serve`, or pick another with --server"
        )
    return error.message
