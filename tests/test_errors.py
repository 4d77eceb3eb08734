"""Every documented error: its code, ErrorInfo reason and metadata, or BadRequest fields."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from harness import create, details, unique
from workerstate.client import errors as client_errors
from workerstate.server import errors as server_errors
from workerstate.v1 import workerstate_pb2 as pb

PROTO = "protos/workerstate/v1/workerstate.proto"

S = pb.WorkerState


def fails(call, request):
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    return details(caught.value)


def test_unknown_task_is_worker_not_found_for_every_rpc(stub):
    missing = unique("missing")
    calls = [
        (stub.GetWorker, pb.GetWorkerRequest(task_id=missing)),
        (stub.Heartbeat, pb.HeartbeatRequest(task_id=missing)),
        (stub.FailWorker, pb.FailWorkerRequest(task_id=missing)),
        (
            stub.Transition,
            pb.TransitionRequest(
                task_id=missing,
                from_state=S.WORKER_STATE_ASSIGNED,
                to_state=S.WORKER_STATE_WORKING,
            ),
        ),
    ]
    for call, request in calls:
        code, info, _ = fails(call, request)
        assert code == grpc.StatusCode.NOT_FOUND
        assert info.reason == "WORKER_NOT_FOUND"
        assert info.metadata["task_id"] == missing


def test_existing_task_is_worker_exists(stub):
    worker = create(stub)
    code, info, _ = fails(
        stub.CreateWorker,
        pb.CreateWorkerRequest(task_id=worker.task_id, branch="other", worktree="/w"),
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert info.reason == "WORKER_EXISTS"
    assert stub.GetWorker(pb.GetWorkerRequest(task_id=worker.task_id)).worker.branch != "other"


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (pb.CreateWorkerRequest(), {"task_id", "branch", "worktree"}),
        (pb.CreateWorkerRequest(task_id="x" * 129, branch="b", worktree="w"), {"task_id"}),
        (pb.CreateWorkerRequest(task_id="has space", branch="b", worktree="w"), {"task_id"}),
        (pb.CreateWorkerRequest(task_id="-lead", branch="b", worktree="w"), {"task_id"}),
        (pb.CreateWorkerRequest(task_id="t", branch="b\x00", worktree="w"), {"branch"}),
        (pb.CreateWorkerRequest(task_id="t", branch="b" * 257, worktree="w"), {"branch"}),
        (pb.CreateWorkerRequest(task_id="t", branch="b", worktree="w" * 1025), {"worktree"}),
        (
            pb.CreateWorkerRequest(task_id="t", branch="b", worktree="w", description="d" * 4097),
            {"description"},
        ),
        (
            pb.CreateWorkerRequest(task_id="t", branch="b", worktree="w", request_id="a b"),
            {"request_id"},
        ),
        (pb.TransitionRequest(task_id="t"), {"from_state", "to_state"}),
        (pb.TransitionRequest(task_id="t", from_state=99, to_state=2), {"from_state"}),
        (
            pb.TransitionRequest(task_id="t", from_state=1, to_state=2, expected_revision=-1),
            {"expected_revision"},
        ),
        (pb.FailWorkerRequest(task_id="t", reason="r\x1b[31m"), {"reason"}),
        (pb.GetWorkerRequest(), {"task_id"}),
        (pb.HeartbeatRequest(task_id="t", activity="a\nb"), {"activity"}),
        (pb.ListWorkersRequest(states=[0]), {"states"}),
        (pb.ListWorkersRequest(stale_levels=[42]), {"stale_levels"}),
        (pb.ListWorkersRequest(page_size=-1), {"page_size"}),
        (pb.ListWorkersRequest(page_token="garbage!"), {"page_token"}),
        (pb.ListEventsRequest(after_revision=-5, limit=-1), {"after_revision", "limit"}),
        (pb.ListEventsRequest(task_id="bad id"), {"task_id"}),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, set) else ",".join(sorted(v)),
)
def test_bad_fields_are_bad_request_naming_the_field(stub, request_, fields):
    call = getattr(stub, type(request_).__name__.removesuffix("Request"))
    code, info, bad = fails(call, request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert info is None
    assert {v.field for v in bad.field_violations} == fields
    assert all(v.description for v in bad.field_violations)


def test_description_and_reason_may_hold_newlines_and_tabs(stub):
    worker = create(stub, description="line one\n\tline two")
    assert worker.description == "line one\n\tline two"
    failed = stub.FailWorker(pb.FailWorkerRequest(task_id=worker.task_id, reason="a\nb"))
    assert failed.worker.state == S.WORKER_STATE_FAILED


def test_invalid_transition_is_reported_before_the_worker_is_looked_up(stub):
    with pytest.raises(grpc.RpcError) as caught:
        stub.Transition(
            pb.TransitionRequest(
                task_id=unique("missing"),
                from_state=S.WORKER_STATE_COMPLETED,
                to_state=S.WORKER_STATE_WORKING,
            )
        )
    code, info, _ = details(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.reason == "INVALID_TRANSITION"
    assert caught.value.details() == "invalid transition: COMPLETED -> WORKING; COMPLETED is final"
    assert info.metadata["allowed_to_states"] == ""


def test_invalid_transition_names_the_allowed_targets_from_the_requested_state(stub):
    worker = create(stub)  # ASSIGNED; the pair is judged by from_state, not the stored state
    with pytest.raises(grpc.RpcError) as caught:
        stub.Transition(
            pb.TransitionRequest(
                task_id=worker.task_id,
                from_state=S.WORKER_STATE_IN_REVIEW,
                to_state=S.WORKER_STATE_COMPLETED,
            )
        )
    code, info, _ = details(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.metadata["allowed_to_states"] == "WORKING,APPROVED,FAILED"  # the enum's order
    assert caught.value.details() == (
        "invalid transition: IN_REVIEW -> COMPLETED; "
        "allowed from IN_REVIEW: WORKING, APPROVED, FAILED"
    )


def test_stale_state_message_reads_like_a_sentence(stub):
    worker = create(stub)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Transition(
            pb.TransitionRequest(
                task_id=worker.task_id,
                from_state=S.WORKER_STATE_WORKING,
                to_state=S.WORKER_STATE_IN_REVIEW,
            )
        )
    assert caught.value.details() == (
        f"worker {worker.task_id} is ASSIGNED, not WORKING (revision {worker.revision})"
    )


BRANCHES = [
    "feat/x",
    "feat/has space",
    "a..b",
    ".hidden",
    "a/.b",
    "x.lock",
    "a.lock/b",
    "trailing/",
    "/leading",
    "a//b",
    "ends.",
    "a@{b",
    "a@b",
    "back\\slash",
    "-dash",
    "a/-dash",
    "HEAD",
    "tilde~1",
    "caret^",
    "co:lon",
    "what?",
    "star*",
    "br[acket",
    "tab\there",
    "é/ü",
    "<script>x</script>",
    "@",
]


def git_accepts(name: str) -> bool:
    # "@" alone is shorthand for HEAD to this command, so git itself names the rule for it.
    if name == "@":
        return False
    result = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, cwd="/"
    )
    return result.returncode == 0


def test_branch_names_follow_gits_rules(stub):
    for name in BRANCHES:
        request = pb.CreateWorkerRequest(task_id=unique("br"), branch=name, worktree="/w")
        if git_accepts(name):
            assert stub.CreateWorker(request).worker.branch == name
            continue
        code, info, bad = fails(stub.CreateWorker, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, name
        assert info is None
        (violation,) = bad.field_violations
        assert violation.field == "branch"
        assert "git check-ref-format --branch" in violation.description
    _, _, bad = fails(
        stub.CreateWorker, pb.CreateWorkerRequest(task_id="t", branch="a b", worktree="/w")
    )
    assert "spaces" in bad.field_violations[0].description


def test_every_reason_the_daemon_reports_has_a_client_exception_and_a_proto_line():
    # One vocabulary: a reason added to the daemon's table must reach the client library as
    # its own exception class and be documented in the proto's error table.
    proto = (Path(__file__).resolve().parents[1] / PROTO).read_text()
    for code, reason, _ in server_errors.ERRORS.values():
        assert reason in client_errors._BY_REASON, f"client/errors.py lacks {reason}"
        assert f"{code.name} " in proto and f" {reason} " in proto, f"proto lacks {reason}"
