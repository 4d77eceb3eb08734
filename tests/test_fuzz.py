"""Every RPC with random field values: each answer is a success or a documented error with
details, never UNKNOWN or INTERNAL, and the daemon and its file come through intact."""

from __future__ import annotations

import contextlib
import sqlite3

import grpc
import pytest
from harness import DaemonProcess, details
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workerstate.v1 import workerstate_pb2 as pb

DOCUMENTED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=100, max_size=5000),
    st.sampled_from(["", "t-1", "fuzz", "a" * 128, "a" * 129, "ok\x00", "é/ü", "\n", "-x"]),
)
enum = st.one_of(st.integers(0, 8), st.integers(-(2**31), 2**31 - 1))
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.one_of(st.integers(-5, 50), st.integers(-(2**63), 2**63 - 1))
token = st.one_of(text, st.just("dzE6NQ=="), st.binary(max_size=30).map(lambda b: b.hex()))

REQUESTS = st.one_of(
    st.builds(
        pb.CreateWorkerRequest,
        task_id=text,
        branch=text,
        worktree=text,
        description=st.one_of(st.none(), text),
        request_id=text,
    ),
    st.builds(
        pb.TransitionRequest,
        task_id=text,
        from_state=enum,
        to_state=enum,
        request_id=text,
        expected_revision=int64,
        reason=text,
    ),
    st.builds(pb.FailWorkerRequest, task_id=text, reason=text, request_id=text),
    st.builds(pb.GetWorkerRequest, task_id=text),
    st.builds(
        pb.ListWorkersRequest,
        states=st.lists(enum, max_size=4),
        stale_levels=st.lists(enum, max_size=4),
        page_size=int32,
        page_token=token,
    ),
    st.builds(pb.HeartbeatRequest, task_id=text, activity=text),
    st.builds(pb.ListEventsRequest, after_revision=int64, task_id=text, limit=int32),
    st.builds(
        pb.WatchStateRequest,
        start_revision=int64,
        task_ids=st.lists(text, max_size=3),
        states=st.lists(enum, max_size=3),
        send_initial_state=st.booleans(),
        liveness=st.booleans(),
        progress_notify=st.booleans(),
    ),
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    daemon = DaemonProcess(tmp_path_factory.mktemp("fuzz") / "w.db").start()
    yield daemon
    assert daemon.proc.poll() is None, "the daemon died under fuzzing"
    assert daemon.stop() == 0
    with sqlite3.connect(daemon.db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def call(stub, request) -> grpc.RpcError | None:
    """Send one request; the error it got, if any."""
    method = type(request).__name__.removesuffix("Request")
    try:
        if method == "WatchState":
            with contextlib.suppress(StopIteration):
                next(stub.WatchState(request, timeout=0.3))
        else:
            getattr(stub, method)(request, timeout=10)
    except grpc.RpcError as error:
        return error
    return None


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=REQUESTS)
def test_random_requests_get_documented_answers(daemon, request):
    error = call(daemon.stub, request)
    if error is None:
        return
    if isinstance(request, pb.WatchStateRequest) and error.code() == DEADLINE_EXCEEDED:
        return  # our own short deadline on a valid watch with nothing to send yet
    assert error.code() in DOCUMENTED, (request, error.code(), error.details())
    _, info, bad = details(error)
    assert info is not None or bad is not None, (request, error.details())
