"""Apply (all-or-nothing batches), DeleteWorker and the actor of each event, through the real
daemon on both backends (issues 19 and 20)."""

from __future__ import annotations

import grpc
import pytest
from harness import Watcher, create, details, unique, wait_until
from workerstate.v1 import workerstate_pb2 as pb

S = pb.WorkerState
ASSIGNED, WORKING, FAILED = S.WORKER_STATE_ASSIGNED, S.WORKER_STATE_WORKING, S.WORKER_STATE_FAILED


def op(**kind) -> pb.Operation:
    return pb.Operation(**kind)


def make(task_id: str, **kw) -> pb.Operation:
    return op(create=pb.CreateWorkerRequest(task_id=task_id, branch="b", worktree="/w", **kw))


def move(task_id: str, from_state, to_state, **kw) -> pb.Operation:
    return op(
        transition=pb.TransitionRequest(
            task_id=task_id, from_state=from_state, to_state=to_state, **kw
        )
    )


def refused(call, request):
    with pytest.raises(grpc.RpcError) as error:
        call(request)
    return details(error.value)


def head(stub) -> int:
    return stub.ListWorkers(pb.ListWorkersRequest(page_size=1)).revision


def test_a_batch_runs_in_order_at_consecutive_revisions(stub):
    a, b = unique(), unique()
    answer = stub.Apply(
        pb.ApplyRequest(
            operations=[
                make(a, labels={"epic": "e1"}),
                move(a, ASSIGNED, WORKING),
                make(b),
                op(set_labels=pb.SetLabelsRequest(task_id=b, labels={"epic": "e1"})),
                op(fail=pb.FailWorkerRequest(task_id=b, reason="not needed")),
            ]
        )
    )
    revisions = [r.revision for r in answer.results]
    assert revisions == list(range(revisions[0], revisions[0] + 5))
    assert answer.revision == revisions[-1]
    assert [r.worker.task_id for r in answer.results] == [a, a, b, b, b]
    assert answer.results[1].worker.state == WORKING
    assert answer.results[4].worker.state == FAILED
    assert dict(answer.results[4].worker.labels) == {"epic": "e1"}
    events = stub.ListEvents(pb.ListEventsRequest(after_revision=revisions[0] - 1, limit=5)).events
    assert [e.revision for e in events] == revisions


def test_if_any_operation_fails_nothing_is_stored(stub):
    existing = create(stub).task_id
    fresh = unique()
    before = head(stub)
    code, info, _ = refused(
        stub.Apply,
        pb.ApplyRequest(
            operations=[
                make(fresh),
                move(existing, ASSIGNED, WORKING),
                move(existing, ASSIGNED, WORKING),  # the first move left it WORKING
            ]
        ),
    )
    assert (code, info.reason) == (grpc.StatusCode.ABORTED, "STALE_STATE")
    assert info.metadata["operation_index"] == "2"
    assert info.metadata["actual_state"] == "WORKING"
    assert head(stub) == before
    code, info, _ = refused(stub.GetWorker, pb.GetWorkerRequest(task_id=fresh))
    assert info.reason == "WORKER_NOT_FOUND"
    assert stub.GetWorker(pb.GetWorkerRequest(task_id=existing)).worker.state == ASSIGNED
    # Each failure keeps its own code and reason.
    code, info, _ = refused(
        stub.Apply, pb.ApplyRequest(operations=[make(unique()), make(existing)])
    )
    assert (code, info.reason, info.metadata["operation_index"]) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "WORKER_EXISTS",
        "1",
    )
    code, info, _ = refused(
        stub.Apply, pb.ApplyRequest(operations=[move(existing, ASSIGNED, S.WORKER_STATE_COMPLETED)])
    )
    assert (code, info.reason, info.metadata["operation_index"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_TRANSITION",
        "0",
    )


@pytest.mark.parametrize(
    ("operations", "field"),
    [
        ([], "operations"),
        ([make("ok"), make("x", request_id="r-1")], "operations[1].create.request_id"),
        (
            [make("ok"), make("ok2"), make("ok3"), move("", ASSIGNED, WORKING)],
            "operations[3].transition.task_id",
        ),
        ([op(fail=pb.FailWorkerRequest(task_id="bad id"))], "operations[0].fail.task_id"),
        ([pb.Operation()], "operations[0]"),
    ],
)
def test_a_malformed_batch_is_a_bad_request_naming_the_operation(stub, operations, field):
    code, info, bad = refused(stub.Apply, pb.ApplyRequest(operations=operations))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert info is None
    assert field in [v.field for v in bad.field_violations]


def test_at_most_1000_operations(stub):
    base = unique()
    code, _, bad = refused(
        stub.Apply, pb.ApplyRequest(operations=[make(f"{base}-{i}") for i in range(1001)])
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad.field_violations] == ["operations"]
    answer = stub.Apply(pb.ApplyRequest(operations=[make(f"{base}-{i}") for i in range(1000)]))
    assert len(answer.results) == 1000


def test_a_batch_is_idempotent_under_its_request_id(stub):
    task = unique()
    request = pb.ApplyRequest(
        operations=[make(task), move(task, ASSIGNED, WORKING)], request_id=unique("batch")
    )
    first = stub.Apply(request)
    again = stub.Apply(request)
    assert again == first
    assert len(stub.ListEvents(pb.ListEventsRequest(task_id=task)).events) == 2
    other = pb.ApplyRequest(operations=[make(unique())], request_id=request.request_id)
    assert refused(stub.Apply, other)[1].reason == "REQUEST_ID_REUSED"


def test_a_watcher_gets_a_batch_in_one_message_never_split(make_daemon_any):
    daemon = make_daemon_any()
    stub = daemon.stub
    singles = [create(stub, f"s-{i}") for i in range(200)]
    stub.Apply(pb.ApplyRequest(operations=[make(f"b-{i}") for i in range(400)]))
    live = Watcher(stub, start_revision=head(stub) + 1)
    batch = stub.Apply(pb.ApplyRequest(operations=[make(f"c-{i}") for i in range(300)]))
    live.wait_for_revision(batch.revision)
    assert [len(m.events) for m in live.messages] == [300]
    live.close()
    # Replaying from the start, a message ends before a batch rather than splitting it.
    replay = Watcher(stub, start_revision=1)
    replay.wait_for_revision(batch.revision)
    sizes = [len(m.events) for m in replay.messages]
    assert sizes == [200, 400, 300], sizes
    assert singles[-1].revision == 200
    replay.close()


@pytest.fixture
def make_daemon_any(every_backend):
    return every_backend


# -- DeleteWorker ---------------------------------------------------------------------------


def finished(stub) -> pb.Worker:
    worker = create(stub)
    return stub.FailWorker(pb.FailWorkerRequest(task_id=worker.task_id, reason="gave up")).worker


def test_only_finished_workers_can_be_deleted(stub):
    active = create(stub)
    code, info, _ = refused(stub.DeleteWorker, pb.DeleteWorkerRequest(task_id=active.task_id))
    assert (code, info.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "WORKER_ACTIVE")
    assert dict(info.metadata) == {"task_id": active.task_id, "actual_state": "ASSIGNED"}
    code, info, _ = refused(stub.DeleteWorker, pb.DeleteWorkerRequest(task_id=unique()))
    assert (code, info.reason) == (grpc.StatusCode.NOT_FOUND, "WORKER_NOT_FOUND")
    done = finished(stub)
    code, info, _ = refused(
        stub.DeleteWorker,
        pb.DeleteWorkerRequest(task_id=done.task_id, expected_revision=done.revision - 1),
    )
    assert (code, info.reason) == (grpc.StatusCode.ABORTED, "STALE_STATE")
    assert info.metadata["revision"] == str(done.revision)


def test_a_deleted_worker_is_gone_but_its_events_stay(stub):
    done = finished(stub)
    task = done.task_id
    watcher = Watcher(stub, states=[FAILED], task_ids=[task], start_revision=done.revision + 1)
    request = pb.DeleteWorkerRequest(
        task_id=task, expected_revision=done.revision, reason="cleanup", request_id=unique("d")
    )
    answer = stub.DeleteWorker(request)
    assert answer.worker.task_id == task and answer.worker.state == FAILED
    assert stub.DeleteWorker(request).revision == answer.revision  # a retry, not a second delete
    for call, req in (
        (stub.GetWorker, pb.GetWorkerRequest(task_id=task)),
        (stub.Heartbeat, pb.HeartbeatRequest(task_id=task)),
        (stub.Transition, pb.TransitionRequest(task_id=task, from_state=FAILED, to_state=ASSIGNED)),
        (stub.FailWorker, pb.FailWorkerRequest(task_id=task)),
        (stub.SetLabels, pb.SetLabelsRequest(task_id=task)),
    ):
        assert refused(call, req)[1].reason == "WORKER_NOT_FOUND"
    assert task not in {
        w.task_id for w in stub.ListWorkers(pb.ListWorkersRequest(page_size=1000)).workers
    }
    events = stub.ListEvents(pb.ListEventsRequest(task_id=task)).events
    assert [e.type for e in events] == [
        pb.EVENT_TYPE_ASSIGNED,
        pb.EVENT_TYPE_FAILED,
        pb.EVENT_TYPE_DELETED,
    ]
    deleted = events[-1]
    assert (deleted.from_state, deleted.reason, deleted.worker.state) == (FAILED, "cleanup", FAILED)
    # The watcher's states filter matches the worker as it was.
    watcher.wait_for_revision(answer.revision)
    assert watcher.stored()[-1].type == pb.EVENT_TYPE_DELETED
    watcher.close()
    # The task id is free: a new worker, with nothing of the old one.
    again = stub.CreateWorker(pb.CreateWorkerRequest(task_id=task, branch="new", worktree="/n"))
    assert again.worker.state == ASSIGNED and again.worker.branch == "new"
    assert not again.worker.HasField("last_heartbeat_at")


def test_a_delete_survives_a_restart_and_rides_in_a_batch(make_daemon_any):
    daemon = make_daemon_any()
    stub = daemon.stub
    task = unique()
    stub.Apply(
        pb.ApplyRequest(
            operations=[
                make(task),
                op(fail=pb.FailWorkerRequest(task_id=task)),
                op(delete=pb.DeleteWorkerRequest(task_id=task, reason="batch")),
                make(task, labels={"round": "2"}),
            ]
        )
    )
    stub.Heartbeat(pb.HeartbeatRequest(task_id=task, activity="second round"))
    daemon.restart()
    worker = daemon.stub.GetWorker(pb.GetWorkerRequest(task_id=task)).worker
    assert (worker.state, dict(worker.labels)) == (ASSIGNED, {"round": "2"})
    assert worker.last_activity == "second round"
    types = [e.type for e in daemon.stub.ListEvents(pb.ListEventsRequest(task_id=task)).events]
    assert types == [
        pb.EVENT_TYPE_ASSIGNED,
        pb.EVENT_TYPE_FAILED,
        pb.EVENT_TYPE_DELETED,
        pb.EVENT_TYPE_ASSIGNED,
    ]


# -- who did it -----------------------------------------------------------------------------


def test_events_carry_the_tokens_name_never_its_value(make_daemon, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("orchestrator:s3cret-orch\nreader:s3cret-read:ro\n")
    daemon = make_daemon("--token-file", str(tokens))
    as_orch = (("authorization", "Bearer s3cret-orch"),)
    task = unique()
    daemon.stub.CreateWorker(
        pb.CreateWorkerRequest(task_id=task, branch="b", worktree="/w"), metadata=as_orch
    )
    daemon.stub.Apply(pb.ApplyRequest(operations=[move(task, ASSIGNED, WORKING)]), metadata=as_orch)
    events = daemon.stub.ListEvents(pb.ListEventsRequest(task_id=task), metadata=as_orch).events
    assert [e.actor for e in events] == ["orchestrator", "orchestrator"]
    assert "s3cret" not in str(events)
    as_reader = (("authorization", "Bearer s3cret-read"),)
    for call, request in (
        (daemon.stub.SetLabels, pb.SetLabelsRequest(task_id=task)),
        (daemon.stub.DeleteWorker, pb.DeleteWorkerRequest(task_id=task)),
        (daemon.stub.Apply, pb.ApplyRequest(operations=[make(unique())])),
    ):
        with pytest.raises(grpc.RpcError) as error:
            call(request, metadata=as_reader)
        assert details(error.value)[1].reason == "READ_ONLY_TOKEN"
    daemon.restart()
    events = daemon.stub.ListEvents(pb.ListEventsRequest(task_id=task), metadata=as_orch).events
    assert [e.actor for e in events] == ["orchestrator", "orchestrator"]


def test_calls_without_a_token_have_no_actor(stub):
    task = create(stub).task_id
    (event,) = stub.ListEvents(pb.ListEventsRequest(task_id=task)).events
    assert event.actor == ""


def test_a_batch_logs_one_line_and_its_changes_at_debug(make_daemon):
    daemon = make_daemon()
    tasks = [unique() for _ in range(3)]
    answer = daemon.stub.Apply(pb.ApplyRequest(operations=[make(t) for t in tasks]))
    first = answer.results[0].revision
    line = f"batch of 3 changes (revisions {first}-{answer.revision})"
    wait_until(lambda: any(line in entry for entry in daemon.log))
    assert not any(f"worker {tasks[1]} new -> ASSIGNED" in entry for entry in daemon.log)
    verbose = make_daemon("--log-level", "debug", db=daemon.db.with_name("debug.db"))
    verbose.stub.Apply(pb.ApplyRequest(operations=[make(t) for t in tasks]))
    wait_until(lambda: any(f"worker {tasks[1]} new -> ASSIGNED" in e for e in verbose.log))
