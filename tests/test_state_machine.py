"""The seed's transition table, checked pair by pair through a real daemon."""

from __future__ import annotations

import grpc
import pytest
from harness import create, details
from workerstate.v1 import workerstate_pb2 as pb

S = pb.WorkerState
STATES = [v for v in S.values() if v != S.WORKER_STATE_UNSPECIFIED]
ALLOWED = {
    S.WORKER_STATE_ASSIGNED: {S.WORKER_STATE_WORKING, S.WORKER_STATE_FAILED},
    S.WORKER_STATE_WORKING: {
        S.WORKER_STATE_IN_REVIEW,
        S.WORKER_STATE_CONFLICTED,
        S.WORKER_STATE_FAILED,
    },
    S.WORKER_STATE_CONFLICTED: {
        S.WORKER_STATE_IN_REVIEW,
        S.WORKER_STATE_WORKING,
        S.WORKER_STATE_FAILED,
    },
    S.WORKER_STATE_IN_REVIEW: {
        S.WORKER_STATE_APPROVED,
        S.WORKER_STATE_WORKING,
        S.WORKER_STATE_FAILED,
    },
    S.WORKER_STATE_APPROVED: {
        S.WORKER_STATE_COMPLETED,
        S.WORKER_STATE_WORKING,
        S.WORKER_STATE_FAILED,
    },
    S.WORKER_STATE_COMPLETED: set(),
    S.WORKER_STATE_FAILED: {S.WORKER_STATE_ASSIGNED},
}
# How to reach each state from ASSIGNED.
PATH = {
    S.WORKER_STATE_ASSIGNED: [],
    S.WORKER_STATE_WORKING: [S.WORKER_STATE_WORKING],
    S.WORKER_STATE_IN_REVIEW: [S.WORKER_STATE_WORKING, S.WORKER_STATE_IN_REVIEW],
    S.WORKER_STATE_APPROVED: [
        S.WORKER_STATE_WORKING,
        S.WORKER_STATE_IN_REVIEW,
        S.WORKER_STATE_APPROVED,
    ],
    S.WORKER_STATE_COMPLETED: [
        S.WORKER_STATE_WORKING,
        S.WORKER_STATE_IN_REVIEW,
        S.WORKER_STATE_APPROVED,
        S.WORKER_STATE_COMPLETED,
    ],
    S.WORKER_STATE_CONFLICTED: [S.WORKER_STATE_WORKING, S.WORKER_STATE_CONFLICTED],
    S.WORKER_STATE_FAILED: [S.WORKER_STATE_FAILED],
}


def drive(stub, task_id: str, target: int) -> pb.Worker:
    worker = stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker
    for state in PATH[target]:
        worker = stub.Transition(
            pb.TransitionRequest(task_id=task_id, from_state=worker.state, to_state=state)
        ).worker
    assert worker.state == target
    return worker


@pytest.mark.parametrize("from_state", STATES, ids=S.Name)
def test_every_pair_follows_the_table(stub, from_state):
    for to_state in STATES:
        worker = create(stub)
        before = drive(stub, worker.task_id, from_state)
        request = pb.TransitionRequest(
            task_id=worker.task_id, from_state=from_state, to_state=to_state, reason="why"
        )
        if to_state in ALLOWED[from_state]:
            response = stub.Transition(request)
            assert response.worker.state == to_state
            assert response.revision == response.worker.revision > before.revision
            events = stub.ListEvents(pb.ListEventsRequest(task_id=worker.task_id)).events
            last = events[-1]
            assert last.type == pb.EVENT_TYPE_STATE_CHANGED
            assert (last.from_state, last.worker.state) == (from_state, to_state)
            assert last.revision == response.revision
            assert last.reason == "why"
        else:
            with pytest.raises(grpc.RpcError) as caught:
                stub.Transition(request)
            code, info, _ = details(caught.value)
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert info is not None and info.reason == "INVALID_TRANSITION"
            allowed = [s for s in sorted(S.values()) if s in ALLOWED[from_state]]
            assert info.metadata["allowed_to_states"] == ",".join(
                S.Name(s).removeprefix("WORKER_STATE_") for s in allowed
            )
            assert info.domain == "workerstate.v1"
            after = stub.GetWorker(pb.GetWorkerRequest(task_id=worker.task_id)).worker
            assert after.state == from_state and after.revision == before.revision


def test_create_appends_an_assigned_event_with_the_seed_fields(stub):
    worker = stub.CreateWorker(
        pb.CreateWorkerRequest(
            task_id="seed-fields-1", branch="feat/x", worktree="/w/x", description="do x"
        )
    ).worker
    assert worker.state == S.WORKER_STATE_ASSIGNED
    assert worker.description == "do x"
    assert worker.created_at == worker.state_changed_at
    assert not worker.HasField("last_heartbeat_at")
    (event,) = stub.ListEvents(pb.ListEventsRequest(task_id="seed-fields-1")).events
    assert event.type == pb.EVENT_TYPE_ASSIGNED
    assert event.from_state == S.WORKER_STATE_UNSPECIFIED
    assert (event.worker.branch, event.worker.worktree) == ("feat/x", "/w/x")
    assert event.worker.description == "do x"


def test_empty_description_is_stored_as_absent(stub):
    worker = create(stub, description="")
    assert not worker.HasField("description")
    fetched = stub.GetWorker(pb.GetWorkerRequest(task_id=worker.task_id)).worker
    assert not fetched.HasField("description")


def test_fail_worker_from_every_state_but_completed(stub):
    for state in STATES:
        worker = create(stub)
        drive(stub, worker.task_id, state)
        request = pb.FailWorkerRequest(task_id=worker.task_id, reason="tests broke")
        if state == S.WORKER_STATE_COMPLETED:
            with pytest.raises(grpc.RpcError) as caught:
                stub.FailWorker(request)
            code, info, _ = details(caught.value)
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert info.reason == "WORKER_COMPLETED"
            continue
        failed = stub.FailWorker(request).worker
        assert failed.state == S.WORKER_STATE_FAILED
        event = stub.ListEvents(pb.ListEventsRequest(task_id=worker.task_id)).events[-1]
        assert event.type == pb.EVENT_TYPE_FAILED
        assert (event.from_state, event.reason) == (state, "tests broke")


def test_failed_worker_is_retried_through_assigned(stub):
    worker = create(stub)
    drive(stub, worker.task_id, S.WORKER_STATE_FAILED)
    retried = stub.Transition(
        pb.TransitionRequest(
            task_id=worker.task_id,
            from_state=S.WORKER_STATE_FAILED,
            to_state=S.WORKER_STATE_ASSIGNED,
        )
    ).worker
    assert retried.state == S.WORKER_STATE_ASSIGNED
    assert drive(stub, worker.task_id, S.WORKER_STATE_COMPLETED).state == S.WORKER_STATE_COMPLETED
