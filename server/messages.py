"""Domain records to protobuf messages, and the enum mappings both ways."""

from __future__ import annotations

from typing import cast

from google.protobuf.timestamp_pb2 import Timestamp
from workerstate.v1 import workerstate_pb2 as pb

from .domain import Event, EventType, StaleLevel, Worker, WorkerState

# protoc's stubs type enum fields as their wrapper class, its Value() as a plain int.
STATE_TO_PB: dict[WorkerState, pb.WorkerState] = {
    s: cast(pb.WorkerState, pb.WorkerState.Value(f"WORKER_STATE_{s.name}")) for s in WorkerState
}
STATE_FROM_PB: dict[int, WorkerState] = {v: k for k, v in STATE_TO_PB.items()}
LEVEL_TO_PB: dict[StaleLevel, pb.StaleLevel] = {
    s: cast(pb.StaleLevel, pb.StaleLevel.Value(f"STALE_LEVEL_{s.name}")) for s in StaleLevel
}
LEVEL_FROM_PB: dict[int, StaleLevel] = {v: k for k, v in LEVEL_TO_PB.items()}
EVENT_TYPE_TO_PB: dict[EventType, pb.EventType] = {
    t: cast(pb.EventType, pb.EventType.Value(f"EVENT_TYPE_{t.name}")) for t in EventType
}
EVENT_TYPE_FROM_PB: dict[int, EventType] = {v: k for k, v in EVENT_TYPE_TO_PB.items()}


def set_time(field: Timestamp, ms: int) -> None:
    """Set a message's Timestamp field in place: half the cost of building a Timestamp and
    having protobuf copy it in, and every response and event carries two or three."""
    seconds, millis = divmod(ms, 1000)
    field.seconds = seconds
    field.nanos = millis * 1_000_000


def timestamp(ms: int) -> Timestamp:
    message = Timestamp()
    set_time(message, ms)
    return message


def worker_message(
    worker: Worker,
    last_heartbeat_ms: int | None = None,
    level: StaleLevel | None = None,
    last_activity: str | None = None,
) -> pb.Worker:
    """A Worker message; heartbeat, level and activity are left unset for historic snapshots."""
    message = pb.Worker()
    _fill_worker(message, worker)
    if last_heartbeat_ms is not None:
        set_time(message.last_heartbeat_at, last_heartbeat_ms)
    if level is not None:
        message.stale_level = LEVEL_TO_PB[level]
    if last_activity is not None:
        message.last_activity = last_activity
    return message


def _fill_worker(message: pb.Worker, worker: Worker) -> None:
    message.task_id = worker.task_id
    message.state = STATE_TO_PB[worker.state]
    message.branch = worker.branch
    message.worktree = worker.worktree
    if worker.description is not None:
        message.description = worker.description
    message.revision = worker.revision
    set_time(message.created_at, worker.created_at_ms)
    set_time(message.state_changed_at, worker.state_changed_at_ms)
    if worker.labels:
        message.labels.update(worker.labels)


def event_message(event: Event) -> pb.WorkerEvent:
    message = pb.WorkerEvent(
        revision=event.revision,
        type=EVENT_TYPE_TO_PB[event.type],
        from_state=None if event.from_state is None else STATE_TO_PB[event.from_state],
        reason=event.reason,
        actor=event.actor,
    )
    if event.from_labels:
        message.from_labels.update(event.from_labels)
    _fill_worker(message.worker, event.worker)
    set_time(message.time, event.time_ms)
    return message
