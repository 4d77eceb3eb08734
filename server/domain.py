"""The worker state machine: states, the transition table, compare-and-set rules, stale levels.

Pure: no I/O and no clock reads. Callers pass `now_ms` and the stored worker in; the functions
say what the change is or raise the domain error that explains why it is refused.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass


class _Enum(enum.Enum):
    """Members are singletons compared by identity, so they hash by identity too: Enum's own
    __hash__ is Python code, and every dict or set lookup keyed by a state or level pays it
    (per request, and 100,000 times over when the daemon loads a big fleet)."""

    __hash__ = object.__hash__


class WorkerState(_Enum):
    """A worker's position in the state machine; values are the seed's names."""

    ASSIGNED = "ASSIGNED"
    WORKING = "WORKING"
    IN_REVIEW = "IN_REVIEW"
    APPROVED = "APPROVED"
    COMPLETED = "COMPLETED"
    CONFLICTED = "CONFLICTED"
    FAILED = "FAILED"


class StaleLevel(_Enum):
    """How long a worker has been silent; values are the seed's strings."""

    OK = "ok"
    WARN = "WARN"
    STALE = "STALE"
    DEAD = "DEAD"


class EventType(_Enum):
    """What a stored event records (the seed's task_assign, state_change, task_failed, and
    the changes the seed had no word for)."""

    ASSIGNED = "ASSIGNED"
    STATE_CHANGED = "STATE_CHANGED"
    FAILED = "FAILED"
    LABELS_CHANGED = "LABELS_CHANGED"
    DELETED = "DELETED"


S = WorkerState
TRANSITIONS: Mapping[WorkerState, frozenset[WorkerState]] = {
    S.ASSIGNED: frozenset({S.WORKING, S.FAILED}),
    S.WORKING: frozenset({S.IN_REVIEW, S.CONFLICTED, S.FAILED}),
    S.CONFLICTED: frozenset({S.IN_REVIEW, S.WORKING, S.FAILED}),
    S.IN_REVIEW: frozenset({S.APPROVED, S.WORKING, S.FAILED}),
    S.APPROVED: frozenset({S.COMPLETED, S.WORKING, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset({S.ASSIGNED}),
}

# Only these states are expected to heartbeat; the rest wait on people, not on the worker.
LIVE_STATES = frozenset({S.ASSIGNED, S.WORKING})
# Workers that stopped for good (FAILED until someone reassigns it): a late beat from its
# process must not make one look alive again, and only these may be deleted (deleting a
# worker that still works would lose it silently).
FINISHED_STATES = frozenset({S.COMPLETED, S.FAILED})

# A worker's labels, sorted by key: hashable, with one repr per set (request fingerprints
# compare reprs), and cheap to compare when a selector or a watcher filter reads them.
Labels = tuple[tuple[str, str], ...]


class WorkerStateError(Exception):
    """Base of every error the daemon reports to a caller as a status."""


class InvalidTransition(WorkerStateError):
    """The (from, to) pair is not in the transition table."""

    def __init__(self, from_state: WorkerState, to_state: WorkerState) -> None:
        # The targets come in the proto's enum order (this enum's), so a caller can show
        # them or compare them without sorting.
        self.allowed = tuple(s for s in WorkerState if s in TRANSITIONS[from_state])
        names = ", ".join(s.value for s in self.allowed)
        could = (
            f"allowed from {from_state.value}: {names}" if names else f"{from_state.value} is final"
        )
        super().__init__(f"invalid transition: {from_state.value} -> {to_state.value}; {could}")
        self.from_state = from_state
        self.to_state = to_state


class StaleState(WorkerStateError):
    """The stored state or revision is not what the caller's compare-and-set expected."""

    def __init__(
        self, task_id: str, expected: WorkerState, actual: WorkerState, revision: int, message: str
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.expected = expected
        self.actual = actual
        self.revision = revision


class WorkerNotFound(WorkerStateError):
    """No worker has this task id."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"worker {task_id} not found")
        self.task_id = task_id


class WorkerExists(WorkerStateError):
    """CreateWorker for a task id that already has a worker."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"worker {task_id} already exists")
        self.task_id = task_id


class WorkerCompleted(WorkerStateError):
    """FailWorker on a COMPLETED worker, which is terminal."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"worker {task_id} is COMPLETED and cannot be failed")
        self.task_id = task_id


class WorkerActive(WorkerStateError):
    """DeleteWorker on a worker that is not finished (COMPLETED or FAILED)."""

    def __init__(self, task_id: str, actual: WorkerState) -> None:
        super().__init__(
            f"worker {task_id} is {actual.value}: only COMPLETED or FAILED workers can be "
            "deleted; fail it first"
        )
        self.task_id = task_id
        self.actual = actual


class RequestIdReused(WorkerStateError):
    """A request id already applied to a different request."""

    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"request_id {request_id!r} was already used for a different request; "
            "use a fresh request_id for each intended change"
        )
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad request field, named as in the proto."""

    field: str
    description: str


class InvalidArgument(WorkerStateError):
    """Request fields that break the documented limits."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = violations


class RevisionCompacted(WorkerStateError):
    """The asked-for revision was compacted away; list again, then watch from the new head."""

    def __init__(self, revision: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {revision} has been compacted; the oldest stored revision is "
            f"{compact_revision}: list the current state again and watch from its revision + 1"
        )
        self.compact_revision = compact_revision


class TooManyWatchers(WorkerStateError):
    """The daemon already serves its maximum number of watchers (--max-watchers)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the daemon already serves {limit} watchers (--max-watchers)")
        self.limit = limit


class Unauthenticated(WorkerStateError):
    """The call carried no valid bearer token (the daemon runs with --token-file)."""

    def __init__(self) -> None:
        super().__init__("missing or invalid token: send `authorization: Bearer <token>` metadata")


class PermissionDenied(WorkerStateError):
    """A read-only token tried to change something."""

    def __init__(self, name: str) -> None:
        super().__init__(f"token {name!r} is read-only: it may only get, list and watch")
        self.name = name


class StorageUnavailable(WorkerStateError):
    """The database refused a commit (disk full, file gone); nothing was written."""


class ShuttingDown(WorkerStateError):
    """The daemon is stopping and takes no more work."""

    def __init__(self) -> None:
        super().__init__("the daemon is shutting down; retry against the next one")


@dataclass(frozen=True, slots=True)
class Worker:
    """A worker as stored: everything but heartbeat times, which live apart."""

    task_id: str
    state: WorkerState
    branch: str
    worktree: str
    description: str | None
    created_at_ms: int
    state_changed_at_ms: int
    revision: int
    labels: Labels = ()


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the log: the worker right after the change (for DELETED, as it was),
    and what changed."""

    revision: int
    type: EventType
    worker: Worker
    from_state: WorkerState | None
    reason: str
    time_ms: int
    from_labels: Labels = ()  # LABELS_CHANGED only
    actor: str = ""  # a token's name, "daemon" for policy, "" for anonymous calls
    # The revision of the last event of the Apply batch this event belongs to (0 for none):
    # a watcher keeps a batch in one message. Held in memory only.
    batch_end: int = 0


@dataclass(frozen=True, slots=True)
class LivenessChange:
    """A live worker's stale level crossed a threshold (or came back to OK on a beat)."""

    revision: int  # head of the log when it was observed
    worker: Worker
    last_heartbeat_ms: int | None
    from_level: StaleLevel
    level: StaleLevel
    time_ms: int


@dataclass(frozen=True, slots=True)
class CreateWorker:
    """Make a worker in ASSIGNED."""

    task_id: str
    branch: str
    worktree: str
    description: str | None
    request_id: str = ""
    labels: Labels = ()
    actor: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """Compare-and-set move between two states."""

    task_id: str
    from_state: WorkerState
    to_state: WorkerState
    expected_revision: int = 0
    reason: str = ""
    request_id: str = ""
    actor: str = ""


@dataclass(frozen=True, slots=True)
class FailWorker:
    """Move any worker but a COMPLETED one to FAILED."""

    task_id: str
    reason: str = ""
    request_id: str = ""
    actor: str = ""


@dataclass(frozen=True, slots=True)
class SetLabels:
    """Replace a worker's labels, in any state."""

    task_id: str
    labels: Labels
    expected_revision: int = 0
    request_id: str = ""
    actor: str = ""


@dataclass(frozen=True, slots=True)
class DeleteWorker:
    """Remove a finished worker; its task id is free again."""

    task_id: str
    expected_revision: int = 0
    reason: str = ""
    request_id: str = ""
    actor: str = ""


@dataclass(frozen=True, slots=True)
class FailSilent:
    """The heartbeat timeout (--fail-after) failing a live worker the daemon saw silent.

    A compare-and-set on both what the daemon saw: the worker's revision, and its newest
    beat. The beat is checked in the commit's transaction against the stored one, because
    a worker may beat through another daemon that this one has not heard from yet.
    """

    task_id: str
    expected_revision: int
    last_heartbeat_ms: int | None  # the newest beat the daemon knew of; None: it never beat
    reason: str
    request_id: str = ""
    actor: str = ""


Change = CreateWorker | Transition | FailWorker | SetLabels | DeleteWorker | FailSilent


@dataclass(frozen=True, slots=True)
class Batch:
    """Changes applied all or nothing, in order, at consecutive revisions (Apply)."""

    changes: tuple[Change, ...]
    request_id: str = ""


Command = Change | Batch


class OperationFailed(WorkerStateError):
    """One change of a batch was refused, so none was stored; `error` says why."""

    def __init__(self, index: int, error: WorkerStateError) -> None:
        super().__init__(f"operations[{index}]: {error}")
        self.index = index
        self.error = error


def check_transition(from_state: WorkerState, to_state: WorkerState) -> None:
    """Refuse a pair outside the table before any I/O (the seed checks it first, too)."""
    if to_state not in TRANSITIONS[from_state]:
        raise InvalidTransition(from_state, to_state)


# Fields a fingerprint leaves out while they hold their default: added after request ids were
# first stored, so a retry of a request an older release applied still matches its fingerprint.
_LATER_FIELDS = frozenset({"labels"})


def fingerprint(command: Command) -> str:
    """Identify what a request asks for, to tell a retry from a reuse: its request id aside,
    and who asks (a retry under another token asks for the same change)."""
    return hashlib.sha256(_canonical(command).encode()).hexdigest()


def _canonical(command: Command) -> str:
    """The dataclass repr (what fingerprints were first taken of), less the fields above."""
    parts = []
    for field in dataclasses.fields(command):
        value = "" if field.name == "request_id" else getattr(command, field.name)
        if field.name == "actor" or (field.name in _LATER_FIELDS and value == field.default):
            continue
        if isinstance(command, Batch) and field.name == "changes":
            nested = "".join(f"{_canonical(change)}, " for change in command.changes)
            parts.append(f"changes=({nested})")
        else:
            parts.append(f"{field.name}={value!r}")
    return f"{type(command).__qualname__}({', '.join(parts)})"


def _check_revision(current: Worker, expected_revision: int, expected_state: WorkerState) -> None:
    if expected_revision and current.revision != expected_revision:
        raise StaleState(
            current.task_id,
            expected_state,
            current.state,
            current.revision,
            f"worker {current.task_id} is at revision {current.revision}, not {expected_revision}",
        )


def _check_silent(command: FailSilent, current: Worker, stored_heartbeat_ms: int | None) -> None:
    """Refuse if the worker moved, or beat after the newest beat the daemon knew of."""
    _check_revision(current, command.expected_revision, current.state)
    seen = -1 if command.last_heartbeat_ms is None else command.last_heartbeat_ms
    if stored_heartbeat_ms is not None and stored_heartbeat_ms > seen:
        raise StaleState(
            current.task_id,
            current.state,
            current.state,
            current.revision,
            f"worker {current.task_id} beat at {stored_heartbeat_ms} ms, after the beat the "
            "timeout saw",
        )


def apply(
    command: Change,
    current: Worker | None,
    revision: int,
    now_ms: int,
    stored_heartbeat_ms: int | None = None,
    batch_end: int = 0,
) -> Event:
    """The event `command` makes at `revision`, given the stored worker (and, for FailSilent,
    its stored last beat); or the refusal. `batch_end` tags an event of an Apply batch with
    the batch's last revision.

    Workers are built field by field rather than with dataclasses.replace, which costs
    several times more: this runs once per change, a thousand times per batch."""
    from_labels: Labels = ()
    if isinstance(command, CreateWorker):
        if current is not None:
            raise WorkerExists(command.task_id)
        worker = Worker(
            command.task_id,
            S.ASSIGNED,
            command.branch,
            command.worktree,
            command.description or None,
            now_ms,
            now_ms,
            revision,
            command.labels,
        )
        return Event(
            revision, EventType.ASSIGNED, worker, None, "", now_ms, (), command.actor, batch_end
        )
    if current is None:
        raise WorkerNotFound(command.task_id)
    c = current
    reason = ""
    if isinstance(command, SetLabels):
        _check_revision(c, command.expected_revision, c.state)
        event_type, to_state, changed_ms = EventType.LABELS_CHANGED, c.state, c.state_changed_at_ms
        labels, from_labels = command.labels, c.labels
    elif isinstance(command, DeleteWorker):
        _check_revision(c, command.expected_revision, c.state)
        if c.state not in FINISHED_STATES:
            raise WorkerActive(c.task_id, c.state)
        event_type, to_state, changed_ms, labels = (
            EventType.DELETED,
            c.state,
            c.state_changed_at_ms,
            c.labels,
        )
        reason = command.reason
    else:
        if isinstance(command, Transition):
            check_transition(command.from_state, command.to_state)
            if c.state is not command.from_state:
                raise StaleState(
                    c.task_id,
                    command.from_state,
                    c.state,
                    c.revision,
                    f"worker {c.task_id} is {c.state.value}, "
                    f"not {command.from_state.value} (revision {c.revision})",
                )
            _check_revision(c, command.expected_revision, command.from_state)
            event_type, to_state = EventType.STATE_CHANGED, command.to_state
        elif isinstance(command, FailSilent):
            _check_silent(command, c, stored_heartbeat_ms)
            event_type, to_state = EventType.FAILED, S.FAILED
        else:
            if c.state is S.COMPLETED:
                raise WorkerCompleted(c.task_id)
            event_type, to_state = EventType.FAILED, S.FAILED
        changed_ms, labels, reason = now_ms, c.labels, command.reason
    worker = Worker(
        c.task_id,
        to_state,
        c.branch,
        c.worktree,
        c.description,
        c.created_at_ms,
        changed_ms,
        revision,
        labels,
    )
    return Event(
        revision, event_type, worker, c.state, reason, now_ms, from_labels, command.actor, batch_end
    )


@dataclass(frozen=True, slots=True)
class StaleThresholds:
    """Heartbeat ages, in ms, at which a live worker becomes WARN, STALE and DEAD."""

    warn_ms: int
    stale_ms: int
    dead_ms: int

    def __post_init__(self) -> None:
        if not 0 < self.warn_ms <= self.stale_ms <= self.dead_ms:
            raise ValueError(
                "stale thresholds must satisfy 0 < warn-after <= stale-after <= dead-after"
            )


def aged_from_ms(worker: Worker, last_heartbeat_ms: int | None, serving_since_ms: int) -> int:
    """When the worker's silence started counting.

    A worker that never beat is aged from entering its state (the seed called it DEAD at
    once), and no age counts from before the daemon began serving, so a restart does not make
    the whole fleet look dead.
    """
    since = worker.state_changed_at_ms if last_heartbeat_ms is None else last_heartbeat_ms
    return max(since, serving_since_ms)


def stale_level(
    worker: Worker,
    last_heartbeat_ms: int | None,
    now_ms: int,
    serving_since_ms: int,
    thresholds: StaleThresholds,
) -> StaleLevel:
    """The worker's stale level at `now_ms`; a level applies once the age reaches it."""
    if worker.state not in LIVE_STATES:
        return StaleLevel.OK
    age = now_ms - aged_from_ms(worker, last_heartbeat_ms, serving_since_ms)
    if age >= thresholds.dead_ms:
        return StaleLevel.DEAD
    if age >= thresholds.stale_ms:
        return StaleLevel.STALE
    if age >= thresholds.warn_ms:
        return StaleLevel.WARN
    return StaleLevel.OK


def next_crossing_ms(
    worker: Worker,
    last_heartbeat_ms: int | None,
    serving_since_ms: int,
    thresholds: StaleThresholds,
    level: StaleLevel,
    fail_after_ms: int = 0,
) -> int | None:
    """When a worker at `level` reaches the next level if it stays silent, or, once DEAD,
    the heartbeat timeout (`fail_after_ms`, 0 for none); None if never."""
    if worker.state not in LIVE_STATES:
        return None
    start = aged_from_ms(worker, last_heartbeat_ms, serving_since_ms)
    if level is StaleLevel.OK:
        return start + thresholds.warn_ms
    if level is StaleLevel.WARN:
        return start + thresholds.stale_ms
    if level is StaleLevel.STALE:
        return start + thresholds.dead_ms
    return start + fail_after_ms if fail_after_ms else None
