"""What operators see: Prometheus metrics, JSON logs, systemd readiness."""

from __future__ import annotations

import json
import signal
import socket

import grpc
import pytest
from harness import DaemonProcess, Watcher, create, scrape, wait_until
from workerstate.v1 import workerstate_pb2 as pb

S = pb.WorkerState


def test_metrics_are_scraped(make_daemon):
    daemon = make_daemon("--metrics-listen", "127.0.0.1:0")
    create(daemon.stub, "m1")
    create(daemon.stub, "m2")
    daemon.stub.Transition(
        pb.TransitionRequest(
            task_id="m1", from_state=S.WORKER_STATE_ASSIGNED, to_state=S.WORKER_STATE_WORKING
        )
    )
    with pytest.raises(grpc.RpcError):
        daemon.stub.GetWorker(pb.GetWorkerRequest(task_id="nobody"))
    watcher = Watcher(daemon.stub)
    wait_until(lambda: scrape(daemon)["workerstate_watchers"] == 1)
    samples = scrape(daemon)
    watcher.close()
    assert samples['workerstate_rpcs_total{code="OK",method="CreateWorker"}'] == 2
    assert samples['workerstate_rpcs_total{code="NOT_FOUND",method="GetWorker"}'] == 1
    assert samples['workerstate_rpc_duration_seconds_count{method="Transition"}'] == 1
    assert samples['workerstate_workers{state="ASSIGNED"}'] == 1
    assert samples['workerstate_workers{state="WORKING"}'] == 1
    assert samples['workerstate_workers_by_stale_level{stale_level="ok"}'] == 2
    assert samples["workerstate_head_revision"] == 3
    assert samples["workerstate_compact_revision"] == 1
    assert samples["workerstate_commit_batch_size_count"] >= 3
    assert samples["workerstate_commit_duration_seconds_count"] >= 3
    # Every committed group held the write lock for part of its commit, never longer.
    assert samples["workerstate_commit_lock_seconds_count"] >= 3
    assert samples["workerstate_commit_lock_seconds_sum"] > 0
    assert (
        samples["workerstate_commit_lock_seconds_sum"]
        <= samples["workerstate_commit_duration_seconds_sum"]
    )
    assert samples["workerstate_heartbeat_streams"] == 0
    assert "workerstate_heartbeat_flush_lag_seconds" in samples


def test_metrics_are_off_by_default(make_daemon):
    daemon = make_daemon()
    assert not any("serving metrics" in line for line in daemon.log)


def test_json_logs_have_one_line_per_state_change(make_daemon):
    daemon = make_daemon("--log-format", "json")
    create(daemon.stub, "j1")
    daemon.stub.Transition(
        pb.TransitionRequest(
            task_id="j1", from_state=S.WORKER_STATE_ASSIGNED, to_state=S.WORKER_STATE_WORKING
        )
    )
    assert daemon.stop() == 0
    entries = [json.loads(line) for line in daemon.log]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    changes = [e for e in entries if e["logger"] == "workerstate.changes"]
    assert [(e["task_id"], e["from"], e["to"], e["revision"]) for e in changes] == [
        ("j1", "new", "ASSIGNED", 1),
        ("j1", "ASSIGNED", "WORKING", 2),
    ]
    assert all(e["level"] == "INFO" for e in changes)


def test_text_logs_read_as_sentences(make_daemon):
    daemon = make_daemon()
    create(daemon.stub, "t1")
    assert daemon.stop() == 0
    assert any("worker t1 new -> ASSIGNED (revision 1)" in line for line in daemon.log)


def test_systemd_readiness_and_stopping(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(15)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        daemon = DaemonProcess(tmp_path / "w.db").start()
        try:
            assert sock.recv(100) == b"READY=1"
            daemon.proc.send_signal(signal.SIGTERM)
            assert sock.recv(100) == b"STOPPING=1"
            assert daemon.proc.wait(20) == 0
        finally:
            daemon.kill()
