"""Retries with a request_id apply once; reuse for another request is refused."""

from __future__ import annotations

import grpc
import pytest
from harness import create, details, unique
from workerstate.v1 import workerstate_pb2 as pb


@pytest.fixture
def make_daemon(every_backend):
    """The daemons these tests start keep their state in a file, then in PostgreSQL."""
    return every_backend


S = pb.WorkerState


def test_retried_create_returns_the_original_response_and_writes_one_event(stub):
    task_id = unique()
    request = pb.CreateWorkerRequest(
        task_id=task_id, branch="b", worktree="/w", request_id=unique("req")
    )
    first = stub.CreateWorker(request)
    again = stub.CreateWorker(request)
    assert again.revision == first.revision
    assert again.worker.created_at == first.worker.created_at
    assert len(stub.ListEvents(pb.ListEventsRequest(task_id=task_id)).events) == 1


def test_retried_transition_and_fail_apply_once(stub):
    worker = create(stub)
    move = pb.TransitionRequest(
        task_id=worker.task_id,
        from_state=S.WORKER_STATE_ASSIGNED,
        to_state=S.WORKER_STATE_WORKING,
        request_id=unique("req"),
    )
    first = stub.Transition(move)
    # The worker has moved on: without the request id this retry would be STALE_STATE.
    again = stub.Transition(move)
    assert again.revision == first.revision
    assert again.worker.state == S.WORKER_STATE_WORKING
    fail = pb.FailWorkerRequest(task_id=worker.task_id, reason="x", request_id=unique("req"))
    assert stub.FailWorker(fail).revision == stub.FailWorker(fail).revision
    events = stub.ListEvents(pb.ListEventsRequest(task_id=worker.task_id)).events
    assert [e.type for e in events] == [
        pb.EVENT_TYPE_ASSIGNED,
        pb.EVENT_TYPE_STATE_CHANGED,
        pb.EVENT_TYPE_FAILED,
    ]


def test_request_id_reused_for_another_request_is_refused(stub):
    request_id = unique("req")
    worker = create(stub, request_id=request_id)
    other = [
        pb.CreateWorkerRequest(task_id=unique(), branch="b", worktree="/w", request_id=request_id),
        pb.FailWorkerRequest(task_id=worker.task_id, request_id=request_id),
    ]
    for request in other:
        call = stub.CreateWorker if isinstance(request, pb.CreateWorkerRequest) else stub.FailWorker
        with pytest.raises(grpc.RpcError) as caught:
            call(request)
        code, info, _ = details(caught.value)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.reason == "REQUEST_ID_REUSED"
        assert info.metadata["request_id"] == request_id
    assert len(stub.ListEvents(pb.ListEventsRequest(task_id=worker.task_id)).events) == 1


def test_a_refused_request_is_not_recorded(stub):
    worker = create(stub)
    request = pb.TransitionRequest(
        task_id=worker.task_id,
        from_state=S.WORKER_STATE_WORKING,
        to_state=S.WORKER_STATE_IN_REVIEW,
        request_id=unique("req"),
    )
    with pytest.raises(grpc.RpcError):
        stub.Transition(request)
    stub.Transition(
        pb.TransitionRequest(
            task_id=worker.task_id,
            from_state=S.WORKER_STATE_ASSIGNED,
            to_state=S.WORKER_STATE_WORKING,
        )
    )
    # The same request id now applies: only applied requests are remembered.
    assert stub.Transition(request).worker.state == S.WORKER_STATE_IN_REVIEW


def test_request_ids_survive_a_restart(make_daemon):
    daemon = make_daemon()
    request = pb.CreateWorkerRequest(task_id="t", branch="b", worktree="/w", request_id="r-1")
    first = daemon.stub.CreateWorker(request)
    daemon.restart()
    assert daemon.stub.CreateWorker(request).revision == first.revision
    assert len(daemon.stub.ListEvents(pb.ListEventsRequest()).events) == 1
