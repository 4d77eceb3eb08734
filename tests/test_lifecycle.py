"""Lifecycle policies through real daemons: retention deletes finished workers
(--retain-finished), the heartbeat timeout fails silent ones (--fail-after), both as `daemon`;
on a file and on PostgreSQL, and exactly once with two daemons on one database."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter

import grpc
import pytest
from harness import DaemonProcess, create, details, serve_once, wait_until
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

S = pb.WorkerState
# Short thresholds, so that a worker is DEAD a second after its last beat.
LIVENESS = ("--warn-after", "300ms", "--stale-after", "600ms", "--dead-after", "1s")
TO_COMPLETED = [
    (S.WORKER_STATE_ASSIGNED, S.WORKER_STATE_WORKING),
    (S.WORKER_STATE_WORKING, S.WORKER_STATE_IN_REVIEW),
    (S.WORKER_STATE_IN_REVIEW, S.WORKER_STATE_APPROVED),
    (S.WORKER_STATE_APPROVED, S.WORKER_STATE_COMPLETED),
]


@pytest.fixture
def make_daemon(every_backend):
    """The daemons these tests start keep their state in a file, then in PostgreSQL."""
    return every_backend


def move(stub: pb_grpc.WorkerServiceStub, task_id: str, steps: list[tuple[int, int]]) -> None:
    for from_state, to_state in steps:
        stub.Transition(
            pb.TransitionRequest(task_id=task_id, from_state=from_state, to_state=to_state)
        )


def working(stub: pb_grpc.WorkerServiceStub, task_id: str | None = None) -> str:
    task_id = create(stub, task_id).task_id
    move(stub, task_id, TO_COMPLETED[:1])
    return task_id


def exists(stub: pb_grpc.WorkerServiceStub, task_id: str) -> bool:
    try:
        stub.GetWorker(pb.GetWorkerRequest(task_id=task_id))
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return False
    return True


def state(stub: pb_grpc.WorkerServiceStub, task_id: str) -> int:
    return stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker.state


def log_of(stub: pb_grpc.WorkerServiceStub, task_id: str = "") -> list[pb.WorkerEvent]:
    events: list[pb.WorkerEvent] = []
    while True:
        after = events[-1].revision if events else 0
        page = stub.ListEvents(
            pb.ListEventsRequest(after_revision=after, task_id=task_id, limit=1000)
        ).events
        events.extend(page)
        if len(page) < 1000:
            return events


def beat_until(stub: pb_grpc.WorkerServiceStub, task_id: str, stop: threading.Event) -> None:
    while not stop.is_set():
        stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id))
        stop.wait(0.2)


def test_retention_deletes_finished_workers_as_the_daemon_and_keeps_active_ones(make_daemon):
    daemon = make_daemon("--retain-finished", "2s")
    stub = daemon.stub
    completed, failed, active = create(stub).task_id, create(stub).task_id, working(stub)
    move(stub, completed, TO_COMPLETED)
    stub.FailWorker(pb.FailWorkerRequest(task_id=failed, reason="gave up"))
    wait_until(lambda: not exists(stub, completed) and not exists(stub, failed), timeout=15)
    for task_id, was in ((completed, S.WORKER_STATE_COMPLETED), (failed, S.WORKER_STATE_FAILED)):
        last = log_of(stub, task_id)[-1]
        assert last.type == pb.EVENT_TYPE_DELETED
        assert last.from_state == was and last.worker.state == was
        assert last.reason.startswith("retention"), last.reason
        assert last.actor == "daemon"
        assert task_id not in {w.task_id for w in stub.ListWorkers(pb.ListWorkersRequest()).workers}
    # Well past the retention period, the worker that still works is kept.
    time.sleep(3)
    assert state(stub, active) == S.WORKER_STATE_WORKING
    assert any("retention: deleted" in line for line in daemon.log), "".join(daemon.log)


def test_fail_after_fails_a_silent_worker_and_its_next_heartbeat_says_so(make_daemon):
    daemon = make_daemon(*LIVENESS, "--fail-after", "2s")
    stub = daemon.stub
    task_id = working(stub)
    stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id))
    wait_until(lambda: state(stub, task_id) == S.WORKER_STATE_FAILED, timeout=15)
    last = log_of(stub, task_id)[-1]
    assert last.type == pb.EVENT_TYPE_FAILED
    assert last.from_state == S.WORKER_STATE_WORKING
    assert last.reason.startswith("no heartbeat for"), last.reason
    assert last.actor == "daemon"
    beat = stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id))
    assert beat.state == S.WORKER_STATE_FAILED
    assert any("heartbeat timeout: failed 1 workers" in line for line in daemon.log)
    # It can be retried as before.
    move(stub, task_id, [(S.WORKER_STATE_FAILED, S.WORKER_STATE_ASSIGNED)])


def test_fail_after_leaves_a_beating_worker_alone(make_daemon):
    stub = make_daemon(*LIVENESS, "--fail-after", "1s").stub
    beating, silent = working(stub), working(stub)
    stop = threading.Event()
    beater = threading.Thread(target=beat_until, args=(stub, beating, stop))
    beater.start()
    try:
        wait_until(lambda: state(stub, silent) == S.WORKER_STATE_FAILED, timeout=15)
        time.sleep(2)  # two more timeouts' worth
        assert state(stub, beating) == S.WORKER_STATE_WORKING
    finally:
        stop.set()
        beater.join()
    assert [e.type for e in log_of(stub, beating)] == [
        pb.EVENT_TYPE_ASSIGNED,
        pb.EVENT_TYPE_STATE_CHANGED,
    ]


def test_fail_after_below_dead_after_is_refused_naming_both_flags(tmp_path):
    refused = serve_once(tmp_path / "w.db", "--dead-after", "10s", "--fail-after", "5s")
    assert refused.returncode != 0
    assert "--fail-after" in refused.stderr and "--dead-after" in refused.stderr, refused.stderr
    from_env = subprocess.run(
        [sys.executable, "-m", "workerstate.server", "--db", str(tmp_path / "w.db")],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "WORKERSTATE_FAIL_AFTER": "1m", "WORKERSTATE_DEAD_AFTER": "2m"},
    )
    assert from_env.returncode != 0
    assert "--fail-after" in from_env.stderr and "--dead-after" in from_env.stderr
    assert not (tmp_path / "w.db").exists()


def test_both_flags_are_documented_in_help(tmp_path):
    text = " ".join(serve_once(tmp_path / "h.db", "--help").stdout.split())
    for flag in ("--retain-finished", "--fail-after"):
        env = "WORKERSTATE_" + flag.lstrip("-").upper().replace("-", "_")
        assert flag in text and env in text


def test_delete_of_an_active_worker_is_refused(make_daemon):
    stub = make_daemon().stub
    task_id = working(stub)
    with pytest.raises(grpc.RpcError) as refused:
        stub.DeleteWorker(pb.DeleteWorkerRequest(task_id=task_id))
    code, info, _ = details(refused.value)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and info is not None
    assert info.reason == "WORKER_ACTIVE"


@pytest.fixture
def two_daemons(pg_db):
    """Start daemons on one fresh PostgreSQL database; all are killed afterwards."""
    started: list[DaemonProcess] = []

    def factory(*args: str) -> DaemonProcess:
        daemon = DaemonProcess(pg_db.url, *args)
        started.append(daemon)
        return daemon.start()

    yield factory
    for daemon in started:
        daemon.kill()


def test_a_worker_beating_to_a_is_never_failed_by_b(two_daemons):
    a = two_daemons()  # the default --heartbeat-flush: 1s
    b = two_daemons(
        *("--warn-after", "1s", "--stale-after", "2s", "--dead-after", "3s"), "--fail-after", "5s"
    )
    task_id = working(a.stub)
    wait_until(lambda: exists(b.stub, task_id), timeout=10)
    stop = threading.Event()

    def every_second() -> None:
        while not stop.wait(1.0):
            a.stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id))

    beater = threading.Thread(target=every_second)
    beater.start()
    try:
        time.sleep(12)
        assert state(a.stub, task_id) == state(b.stub, task_id) == S.WORKER_STATE_WORKING
    finally:
        stop.set()
        beater.join()
    # Silent now: B fails it, once.
    wait_until(lambda: state(a.stub, task_id) == S.WORKER_STATE_FAILED, timeout=20)
    failed = [e for e in log_of(a.stub, task_id) if e.type == pb.EVENT_TYPE_FAILED]
    assert len(failed) == 1 and failed[0].actor == "daemon"


def test_two_daemons_delete_and_fail_each_worker_exactly_once(two_daemons):
    flags = (*LIVENESS, "--fail-after", "1s", "--retain-finished", "1s")
    a, b = two_daemons(*flags), two_daemons(*flags)
    finished = [create(a.stub).task_id for _ in range(30)]
    silent = [working(b.stub) for _ in range(10)]
    for task_id in finished:
        a.stub.FailWorker(pb.FailWorkerRequest(task_id=task_id))
    gone = set(finished)

    def all_gone() -> bool:
        request = pb.ListWorkersRequest(page_size=1000)
        listed = {w.task_id for d in (a, b) for w in d.stub.ListWorkers(request).workers}
        return not listed & gone

    wait_until(all_gone, timeout=20)
    # The silent ones were failed once, then deleted once by retention too.
    wait_until(lambda: not any(exists(a.stub, t) for t in silent), timeout=20)
    log = log_of(a.stub)
    deleted = Counter(e.worker.task_id for e in log if e.type == pb.EVENT_TYPE_DELETED)
    failed = Counter(e.worker.task_id for e in log if e.type == pb.EVENT_TYPE_FAILED)
    assert deleted == Counter(finished + silent)
    assert failed == Counter(finished + silent)
    by_daemon = [e for e in log if e.actor == "daemon"]
    assert {e.type for e in by_daemon} == {pb.EVENT_TYPE_DELETED, pb.EVENT_TYPE_FAILED}
    assert len(by_daemon) == len(finished) + 2 * len(silent)
    wait_until(lambda: log_of(b.stub) == log, timeout=10)
