"""The client's Python types: enums with the seed's strings and frozen dataclasses.

These mirror the wire messages (workerstate.v1) in plain Python, with timezone-aware UTC
datetimes, so worker code never handles protobuf timestamps or enum numbers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from google.protobuf.timestamp_pb2 import Timestamp
from workerstate.v1 import workerstate_pb2 as pb


class WorkerState(enum.StrEnum):
    """A worker's position in the state machine."""

    ASSIGNED = "ASSIGNED"
    WORKING = "WORKING"
    IN_REVIEW = "IN_REVIEW"
    APPROVED = "APPROVED"
    COMPLETED = "COMPLETED"
    CONFLICTED = "CONFLICTED"
    FAILED = "FAILED"

    def to_pb(self) -> pb.WorkerState:
        return cast(pb.WorkerState, pb.WorkerState.Value(f"WORKER_STATE_{self.name}"))

    @classmethod
    def from_pb(cls, value: int) -> WorkerState | None:
        name = pb.WorkerState.Name(value).removeprefix("WORKER_STATE_")
        return None if name == "UNSPECIFIED" else cls[name]


class StaleLevel(enum.StrEnum):
    """How long a live worker has been silent (the seed's strings)."""

    OK = "ok"
    WARN = "WARN"
    STALE = "STALE"
    DEAD = "DEAD"

    def to_pb(self) -> pb.StaleLevel:
        return cast(pb.StaleLevel, pb.StaleLevel.Value(f"STALE_LEVEL_{self.name}"))

    @classmethod
    def from_pb(cls, value: int) -> StaleLevel | None:
        name = pb.StaleLevel.Name(value).removeprefix("STALE_LEVEL_")
        return None if name == "UNSPECIFIED" else cls[name]


class EventType(enum.StrEnum):
    """What an event records; LIVENESS_CHANGED and SNAPSHOT come only from watch()."""

    ASSIGNED = "ASSIGNED"
    STATE_CHANGED = "STATE_CHANGED"
    FAILED = "FAILED"
    LIVENESS_CHANGED = "LIVENESS_CHANGED"
    SNAPSHOT = "SNAPSHOT"
    LABELS_CHANGED = "LABELS_CHANGED"
    DELETED = "DELETED"


def _time(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Worker:
    """One worker as the daemon reported it."""

    task_id: str
    state: WorkerState
    branch: str
    worktree: str
    description: str | None
    created_at: datetime
    state_changed_at: datetime
    last_heartbeat_at: datetime | None
    stale_level: StaleLevel | None  # None inside stored events, which are history
    revision: int
    last_activity: str | None  # the last heartbeat's; None inside stored events, too
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, message: pb.Worker) -> Worker:
        state = WorkerState.from_pb(message.state)
        assert state is not None, "the daemon never reports an UNSPECIFIED state"
        return cls(
            task_id=message.task_id,
            state=state,
            branch=message.branch,
            worktree=message.worktree,
            description=message.description if message.HasField("description") else None,
            created_at=_time(message.created_at),
            state_changed_at=_time(message.state_changed_at),
            last_heartbeat_at=(
                _time(message.last_heartbeat_at) if message.HasField("last_heartbeat_at") else None
            ),
            stale_level=StaleLevel.from_pb(message.stale_level),
            revision=message.revision,
            last_activity=message.last_activity if message.HasField("last_activity") else None,
            labels=dict(message.labels),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the event log, or a computed event from watch()."""

    revision: int
    type: EventType
    worker: Worker
    from_state: WorkerState | None
    reason: str
    time: datetime
    from_stale_level: StaleLevel | None
    from_labels: Mapping[str, str] = field(default_factory=dict)  # LABELS_CHANGED only
    actor: str = ""  # a token's name, "daemon" for the daemon's own policies, or ""

    @classmethod
    def from_pb(cls, message: pb.WorkerEvent) -> Event:
        return cls(
            revision=message.revision,
            type=EventType[pb.EventType.Name(message.type).removeprefix("EVENT_TYPE_")],
            worker=Worker.from_pb(message.worker),
            from_state=WorkerState.from_pb(message.from_state),
            reason=message.reason,
            time=_time(message.time),
            from_stale_level=StaleLevel.from_pb(message.from_stale_level),
            from_labels=dict(message.from_labels),
            actor=message.actor,
        )
