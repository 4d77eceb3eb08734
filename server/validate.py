"""Requests checked against the documented limits and turned into domain values.

Every problem in a request is reported at once, as BadRequest field violations naming the
proto field, so a caller fixes them in one round.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from workerstate.v1 import workerstate_pb2 as pb

from .branches import branch_problem
from .domain import (
    Batch,
    Change,
    CreateWorker,
    DeleteWorker,
    FailWorker,
    FieldViolation,
    InvalidArgument,
    Labels,
    SetLabels,
    StaleLevel,
    Transition,
    WorkerState,
)
from .labels import Selector, SelectorError, as_labels, label_problems, parse_selector
from .messages import LEVEL_FROM_PB, STATE_FROM_PB

TASK_ID_MAX = 128
ACTIVITY_MAX = 1024
BRANCH_MAX = 256
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]*")
REQUEST_ID = re.compile(r"[!-~]*")  # printable ASCII, no spaces
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_BUT_LAYOUT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # newlines and tabs allowed

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_EVENTS_LIMIT = 100
MAX_EVENTS_LIMIT = 1000
MAX_OPERATIONS = 1000
MAX_BEATS = 1000  # in one heartbeat message, its own and `more`'s
SELECTOR_MAX = 4096
_TOKEN_PREFIX = "w1:"


class _Checker:
    """Collects violations while fields are read; `done()` raises them all together."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def bad(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def done(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)

    def task_id(self, value: str, field: str = "task_id") -> str:
        if not value:
            self.bad(field, "required")
        elif len(value) > TASK_ID_MAX:
            self.bad(field, f"longer than {TASK_ID_MAX} characters")
        elif not TASK_ID.fullmatch(value):
            self.bad(
                field,
                "must start with a letter or digit and use only letters, digits and ._:@/+-",
            )
        return value

    def text(
        self, field: str, value: str, limit: int, *, required: bool = False, layout: bool = False
    ) -> str:
        if required and not value:
            self.bad(field, "required")
        elif len(value) > limit:
            self.bad(field, f"longer than {limit} characters")
        elif (CONTROL_BUT_LAYOUT if layout else CONTROL).search(value):
            self.bad(field, "contains control characters")
        return value

    def branch(self, value: str) -> str:
        if not value:
            self.bad("branch", "required")
        elif len(value) > BRANCH_MAX:
            self.bad("branch", f"longer than {BRANCH_MAX} characters")
        elif problem := branch_problem(value):
            self.bad("branch", problem)
        return value

    def request_id(self, value: str) -> str:
        if len(value) > 128:
            self.bad("request_id", "longer than 128 characters")
        elif not REQUEST_ID.fullmatch(value):
            self.bad("request_id", "must be printable ASCII without spaces")
        return value

    def state(self, field: str, value: int) -> WorkerState:
        state = STATE_FROM_PB.get(value)
        if state is None:
            self.bad(field, f"must be a WorkerState other than UNSPECIFIED, got {value}")
            return WorkerState.ASSIGNED  # never used: done() raises first
        return state

    def states(self, field: str, values: Iterable[int]) -> frozenset[WorkerState]:
        return frozenset(self.state(field, v) for v in values)

    def levels(self, field: str, values: Iterable[int]) -> frozenset[StaleLevel]:
        levels = set()
        for value in values:
            level = LEVEL_FROM_PB.get(value)
            if level is None:
                self.bad(field, f"must be a StaleLevel other than UNSPECIFIED, got {value}")
            else:
                levels.add(level)
        return frozenset(levels)

    def not_negative(self, field: str, value: int) -> int:
        if value < 0:
            self.bad(field, "must not be negative")
        return value

    def labels(self, field: str, value: Mapping[str, str]) -> Labels:
        for problem in label_problems(value):
            self.bad(field, problem)
        return as_labels(value)

    def selector(self, value: str) -> Selector:
        if len(value) > SELECTOR_MAX:
            self.bad("label_selector", f"longer than {SELECTOR_MAX} characters")
            return Selector()
        try:
            return parse_selector(value)
        except SelectorError as e:
            self.bad("label_selector", f"invalid selector {value!r}: {e}")
            return Selector()


def create_worker(request: pb.CreateWorkerRequest) -> CreateWorker:
    c = _Checker()
    command = CreateWorker(
        task_id=c.task_id(request.task_id),
        branch=c.branch(request.branch),
        worktree=c.text("worktree", request.worktree, 1024, required=True),
        description=c.text("description", request.description, 4096, layout=True) or None,
        request_id=c.request_id(request.request_id),
        labels=c.labels("labels", request.labels),
    )
    c.done()
    return command


def transition(request: pb.TransitionRequest) -> Transition:
    c = _Checker()
    command = Transition(
        task_id=c.task_id(request.task_id),
        from_state=c.state("from_state", request.from_state),
        to_state=c.state("to_state", request.to_state),
        expected_revision=c.not_negative("expected_revision", request.expected_revision),
        reason=c.text("reason", request.reason, 4096, layout=True),
        request_id=c.request_id(request.request_id),
    )
    c.done()
    return command


def fail_worker(request: pb.FailWorkerRequest) -> FailWorker:
    c = _Checker()
    command = FailWorker(
        task_id=c.task_id(request.task_id),
        reason=c.text("reason", request.reason, 4096, layout=True),
        request_id=c.request_id(request.request_id),
    )
    c.done()
    return command


def set_labels(request: pb.SetLabelsRequest) -> SetLabels:
    c = _Checker()
    command = SetLabels(
        task_id=c.task_id(request.task_id),
        labels=c.labels("labels", request.labels),
        expected_revision=c.not_negative("expected_revision", request.expected_revision),
        request_id=c.request_id(request.request_id),
    )
    c.done()
    return command


def delete_worker(request: pb.DeleteWorkerRequest) -> DeleteWorker:
    c = _Checker()
    command = DeleteWorker(
        task_id=c.task_id(request.task_id),
        expected_revision=c.not_negative("expected_revision", request.expected_revision),
        reason=c.text("reason", request.reason, 4096, layout=True),
        request_id=c.request_id(request.request_id),
    )
    c.done()
    return command


def _operation(operation: pb.Operation) -> tuple[str, Change]:
    """The operation's kind (its oneof field's name) and its change, checked."""
    kind = operation.WhichOneof("operation")
    if kind == "create":
        return kind, create_worker(operation.create)
    if kind == "transition":
        return kind, transition(operation.transition)
    if kind == "fail":
        return kind, fail_worker(operation.fail)
    if kind == "set_labels":
        return kind, set_labels(operation.set_labels)
    if kind == "delete":
        return kind, delete_worker(operation.delete)
    raise InvalidArgument(
        [FieldViolation("", "must set one of create, transition, fail, set_labels or delete")]
    )


def apply(request: pb.ApplyRequest) -> Batch:
    """A batch, each operation checked as its own RPC would be; violations are named
    `operations[<i>].<kind>.<field>`."""
    c = _Checker()
    count = len(request.operations)
    if not 1 <= count <= MAX_OPERATIONS:
        c.bad("operations", f"must hold 1 to {MAX_OPERATIONS} operations, got {count}")
    changes: list[Change] = []
    for index, operation in enumerate(request.operations[:MAX_OPERATIONS]):
        where = f"operations[{index}]"
        try:
            kind, change = _operation(operation)
        except InvalidArgument as e:
            kind = operation.WhichOneof("operation") or ""
            for v in e.violations:
                c.bad(".".join(filter(None, (where, kind, v.field))), v.description)
            continue
        if change.request_id:
            c.bad(
                f"{where}.{kind}.request_id",
                "must be empty: ApplyRequest.request_id makes the whole batch idempotent",
            )
        changes.append(change)
    batch = Batch(tuple(changes), request_id=c.request_id(request.request_id))
    c.done()
    return batch


def task_id(value: str) -> str:
    c = _Checker()
    c.task_id(value)
    c.done()
    return value


def _well_formed_beat(task_id: str, activity: str) -> bool:
    """Beats are most of a fleet's traffic: a well-formed one (nearly all) is checked without
    building a checker; anything else goes through the full check for its explanation."""
    return (
        len(task_id) <= TASK_ID_MAX
        and TASK_ID.fullmatch(task_id) is not None
        and len(activity) <= ACTIVITY_MAX
        and not CONTROL.search(activity)
    )


def heartbeat(request: pb.HeartbeatRequest) -> tuple[str, str]:
    """A message of one beat (no `more`): its task id and activity."""
    task_id, activity = request.task_id, request.activity
    if _well_formed_beat(task_id, activity):
        return task_id, activity
    c = _Checker()
    beat = c.task_id(task_id), c.text("activity", activity, ACTIVITY_MAX)
    c.done()
    return beat


def heartbeats(request: pb.HeartbeatRequest) -> list[tuple[str, str]]:
    """A message of many beats: the first, then `more`'s. Every one is checked before any is
    recorded, so a bad entry refuses the message and names itself by index."""
    c = _Checker()
    if len(request.more) >= MAX_BEATS:
        c.bad("more", f"at most {MAX_BEATS - 1} entries; send the rest in another message")
        c.done()
    beats: list[tuple[str, str]] = []
    for prefix, beat in itertools.chain(
        (("", request),), ((f"more[{i}].", b) for i, b in enumerate(request.more))
    ):
        task_id, activity = beat.task_id, beat.activity
        if prefix and beat.more:
            c.bad(f"{prefix}more", "must be empty: only the message's own beat carries more")
        if not _well_formed_beat(task_id, activity):
            c.task_id(task_id, f"{prefix}task_id")
            c.text(f"{prefix}activity", activity, ACTIVITY_MAX)
        beats.append((task_id, activity))
    c.done()
    return beats


@dataclass(frozen=True, slots=True)
class WorkerQuery:
    """A ListWorkers request, checked."""

    states: frozenset[WorkerState]
    levels: frozenset[StaleLevel]
    page_size: int
    below_revision: int  # 0: from the newest
    selector: Selector


def page_token(below_revision: int) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{below_revision}".encode()).decode()


def _parse_page_token(c: _Checker, token: str) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
        if text.startswith(_TOKEN_PREFIX) and (below := int(text[len(_TOKEN_PREFIX) :])) > 0:
            return below
    except (ValueError, binascii.Error, UnicodeError):
        pass
    c.bad("page_token", "not a token this daemon issued; pass next_page_token back unchanged")
    return 0


def list_workers(request: pb.ListWorkersRequest) -> WorkerQuery:
    c = _Checker()
    query = WorkerQuery(
        states=c.states("states", request.states),
        levels=c.levels("stale_levels", request.stale_levels),
        page_size=min(c.not_negative("page_size", request.page_size), MAX_PAGE_SIZE)
        or DEFAULT_PAGE_SIZE,
        below_revision=_parse_page_token(c, request.page_token),
        selector=c.selector(request.label_selector),
    )
    c.done()
    return query


@dataclass(frozen=True, slots=True)
class EventQuery:
    """A ListEvents request, checked."""

    after_revision: int
    task_id: str
    limit: int


def list_events(request: pb.ListEventsRequest) -> EventQuery:
    c = _Checker()
    query = EventQuery(
        after_revision=c.not_negative("after_revision", request.after_revision),
        task_id=c.task_id(request.task_id) if request.task_id else "",
        limit=min(c.not_negative("limit", request.limit), MAX_EVENTS_LIMIT) or DEFAULT_EVENTS_LIMIT,
    )
    c.done()
    return query


@dataclass(frozen=True, slots=True)
class WatchQuery:
    """A WatchState request, checked."""

    start_revision: int
    task_ids: frozenset[str]
    states: frozenset[WorkerState]
    send_initial_state: bool
    liveness: bool
    progress_notify: bool
    selector: Selector


def watch(request: pb.WatchStateRequest) -> WatchQuery:
    c = _Checker()
    if request.send_initial_state and request.start_revision:
        c.bad("start_revision", "must be 0 with send_initial_state: the snapshot is taken now")
    query = WatchQuery(
        start_revision=c.not_negative("start_revision", request.start_revision),
        task_ids=frozenset(c.task_id(t, "task_ids") for t in request.task_ids),
        states=c.states("states", request.states),
        send_initial_state=request.send_initial_state,
        liveness=request.liveness,
        progress_notify=request.progress_notify,
        selector=c.selector(request.label_selector),
    )
    c.done()
    return query
