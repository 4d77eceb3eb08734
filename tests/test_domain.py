"""The pure state machine, without a daemon: table, compare-and-set, stale arithmetic."""

from __future__ import annotations

import pytest
from workerstate.server import domain
from workerstate.server.domain import (
    CreateWorker,
    FailWorker,
    StaleLevel,
    StaleThresholds,
    Transition,
    WorkerState,
)

T = StaleThresholds(warn_ms=100, stale_ms=200, dead_ms=300)


def make(state: WorkerState = WorkerState.WORKING, changed: int = 0) -> domain.Worker:
    return domain.Worker("t", state, "b", "w", None, 0, changed, 1)


def test_the_table_is_the_seeds():
    assert {s: set(t) for s, t in domain.TRANSITIONS.items()} == {
        WorkerState.ASSIGNED: {WorkerState.WORKING, WorkerState.FAILED},
        WorkerState.WORKING: {WorkerState.IN_REVIEW, WorkerState.CONFLICTED, WorkerState.FAILED},
        WorkerState.CONFLICTED: {WorkerState.IN_REVIEW, WorkerState.WORKING, WorkerState.FAILED},
        WorkerState.IN_REVIEW: {WorkerState.APPROVED, WorkerState.WORKING, WorkerState.FAILED},
        WorkerState.APPROVED: {WorkerState.COMPLETED, WorkerState.WORKING, WorkerState.FAILED},
        WorkerState.COMPLETED: set(),
        WorkerState.FAILED: {WorkerState.ASSIGNED},
    }


def test_apply_moves_the_worker_and_describes_the_event():
    event = domain.apply(
        Transition("t", WorkerState.WORKING, WorkerState.IN_REVIEW, reason="ready"),
        make(),
        revision=7,
        now_ms=500,
    )
    assert event.worker.state is WorkerState.IN_REVIEW
    assert (event.revision, event.worker.revision, event.worker.state_changed_at_ms) == (7, 7, 500)
    assert (event.type, event.from_state, event.reason) == (
        domain.EventType.STATE_CHANGED,
        WorkerState.WORKING,
        "ready",
    )


def test_compare_and_set_refusals():
    with pytest.raises(domain.StaleState) as caught:
        domain.apply(Transition("t", WorkerState.ASSIGNED, WorkerState.WORKING), make(), 2, 0)
    assert (caught.value.expected, caught.value.actual) == (
        WorkerState.ASSIGNED,
        WorkerState.WORKING,
    )
    with pytest.raises(domain.StaleState):
        domain.apply(
            Transition("t", WorkerState.WORKING, WorkerState.IN_REVIEW, expected_revision=9),
            make(),
            2,
            0,
        )
    with pytest.raises(domain.WorkerNotFound):
        domain.apply(FailWorker("t"), None, 2, 0)
    with pytest.raises(domain.WorkerExists):
        domain.apply(CreateWorker("t", "b", "w", None), make(), 2, 0)
    with pytest.raises(domain.WorkerCompleted):
        domain.apply(FailWorker("t"), make(WorkerState.COMPLETED), 2, 0)
    failed = domain.apply(FailWorker("t", "r"), make(WorkerState.FAILED), 2, 0)
    assert failed.from_state is WorkerState.FAILED and failed.worker.state is WorkerState.FAILED


def test_fingerprint_ignores_only_the_request_id():
    a = Transition("t", WorkerState.WORKING, WorkerState.IN_REVIEW, request_id="1")
    b = Transition("t", WorkerState.WORKING, WorkerState.IN_REVIEW, request_id="2")
    c = Transition("t", WorkerState.WORKING, WorkerState.CONFLICTED, request_id="1")
    assert domain.fingerprint(a) == domain.fingerprint(b) != domain.fingerprint(c)
    assert domain.fingerprint(FailWorker("t")) != domain.fingerprint(
        CreateWorker("t", "", "", None)
    )


@pytest.mark.parametrize(
    ("age", "level"),
    [
        (0, StaleLevel.OK),
        (99, StaleLevel.OK),
        (100, StaleLevel.WARN),
        (199, StaleLevel.WARN),
        (200, StaleLevel.STALE),
        (300, StaleLevel.DEAD),
        (10**9, StaleLevel.DEAD),
    ],
)
def test_stale_level_applies_at_the_threshold(age, level):
    assert (
        domain.stale_level(
            make(), last_heartbeat_ms=1000, now_ms=1000 + age, serving_since_ms=0, thresholds=T
        )
        is level
    )


def test_stale_level_reference_points():
    worker = make(changed=1000)
    # Never beat: aged from entering the state.
    assert domain.stale_level(worker, None, 1099, 0, T) is StaleLevel.OK
    # Never aged from before the daemon started serving.
    assert domain.stale_level(worker, 5, 2050, serving_since_ms=2000, thresholds=T) is StaleLevel.OK
    assert domain.stale_level(make(WorkerState.APPROVED), None, 10**9, 0, T) is StaleLevel.OK


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError, match="warn-after <= stale-after"):
        StaleThresholds(300, 200, 100)


def test_fail_silent_is_a_compare_and_set_on_the_revision_and_the_beat_seen():
    silent = domain.FailSilent("t", 1, last_heartbeat_ms=50, reason="quiet", actor="daemon")
    event = domain.apply(silent, make(), 2, 900, stored_heartbeat_ms=50)
    assert (event.type, event.from_state, event.worker.state, event.actor) == (
        domain.EventType.FAILED,
        WorkerState.WORKING,
        WorkerState.FAILED,
        "daemon",
    )
    # A beat stored by another daemon after the one seen, or a move since, refuses it.
    for stored, revision in ((51, 1), (50, 2)):
        changed = domain.Worker("t", WorkerState.WORKING, "b", "w", None, 0, 0, revision)
        with pytest.raises(domain.StaleState):
            domain.apply(silent, changed, 3, 900, stored_heartbeat_ms=stored)
    never = domain.FailSilent("t", 1, None, "quiet")
    assert domain.apply(never, make(), 2, 900).worker.state is WorkerState.FAILED
    with pytest.raises(domain.StaleState):
        domain.apply(never, make(), 2, 900, stored_heartbeat_ms=10)


def test_past_dead_the_next_crossing_is_the_heartbeat_timeout():
    dead = StaleLevel.DEAD
    assert domain.next_crossing_ms(make(), 1_000, 0, T, dead) is None
    assert domain.next_crossing_ms(make(), 1_000, 0, T, dead, fail_after_ms=500) == 1_500
    finished = make(WorkerState.FAILED)
    assert domain.next_crossing_ms(finished, 1_000, 0, T, dead, fail_after_ms=500) is None
