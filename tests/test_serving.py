"""The daemon as an operator meets it: flags, environment, readiness, health, shutdown."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from harness import create, details, unique, wait_until
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

WORKERSTATE = Path(sys.executable).with_name("workerstate")
FLAGS = [
    "--db",
    "--listen",
    "--warn-after",
    "--stale-after",
    "--dead-after",
    "--heartbeat-flush",
    "--group-wait",
    "--shutdown-grace",
    "--log-level",
    "--retain-finished",
    "--fail-after",
]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WORKERSTATE), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_help_documents_every_flag_with_its_env_and_default():
    result = run("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for flag in FLAGS:
        env = "WORKERSTATE_" + flag.lstrip("-").upper().replace("-", "_")
        assert flag in text and env in text, flag
    assert "default: 127.0.0.1:50051" in text and "default: workerstate.db" in text
    assert "serve" in run("--help").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--warn-after", "5 minutes"], "invalid duration"),
        (["serve", "--warn-after", "2m", "--stale-after", "1m"], "warn-after <= stale-after"),
        (["serve", "--log-level", "loud"], "invalid choice"),
        (["serve", "--heartbeat-flush", "0s"], "greater than zero"),
        (["serve", "--group-wait", "soon"], "invalid duration"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_flags_are_usage_errors_without_tracebacks(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_environment_supplies_defaults(tmp_path):
    result = run("serve", env={"WORKERSTATE_WARN_AFTER": "soon"})
    assert result.returncode == 2 and "invalid duration 'soon'" in result.stderr
    result = run("serve", env={"WORKERSTATE_LOG_LEVEL": "loud"})
    assert result.returncode == 2 and "invalid log level" in result.stderr


def test_environment_picks_the_database(make_daemon, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKERSTATE_DB", str(tmp_path / "from-env.db"))
    daemon = make_daemon()
    daemon.args = ["--listen", "127.0.0.1:0"]  # no --db: the variable decides
    daemon.restart()
    assert (tmp_path / "from-env.db").exists()


def test_a_port_in_use_is_a_clear_error(make_daemon, tmp_path):
    first = make_daemon()
    # No SO_REUSEPORT: a second daemon must not silently share the first one's port.
    result = run("serve", "--db", str(tmp_path / "other.db"), "--listen", first.address)
    assert result.returncode == 1
    assert f"cannot listen on {first.address}" in result.stderr
    assert "Traceback" not in result.stderr


def test_health_and_reflection_are_served(make_daemon):
    daemon = make_daemon()
    health = health_pb2_grpc.HealthStub(daemon.channel)
    for service in ("", "workerstate.v1.WorkerService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(daemon.channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for s in next(responses).list_services_response.service}
    assert "workerstate.v1.WorkerService" in names


def test_unix_socket_is_private(make_daemon, tmp_path):
    socket = tmp_path / "ws.sock"
    daemon = make_daemon(listen=f"unix:{socket}")
    assert daemon.address == f"unix:{socket}"
    assert socket.stat().st_mode & 0o777 == 0o600
    assert create(daemon.stub).state == pb.WORKER_STATE_ASSIGNED


def test_sigterm_ends_streams_with_unavailable_and_exits_zero(make_daemon):
    daemon = make_daemon()
    task_id = create(daemon.stub).task_id
    watch = daemon.stub.WatchState(pb.WatchStateRequest())
    held = threading.Event()

    def requests():
        yield pb.HeartbeatRequest(task_id=task_id)
        held.wait(30)

    beats = daemon.stub.StreamHeartbeats(requests())
    assert next(beats).task_id == task_id
    daemon.proc.send_signal(signal.SIGTERM)
    for stream in (watch, beats):
        with pytest.raises(grpc.RpcError) as caught:
            next(stream)
        code, info, _ = details(caught.value)
        assert code == grpc.StatusCode.UNAVAILABLE
        assert info.reason == "SHUTTING_DOWN"
    held.set()
    assert daemon.proc.wait(20) == 0
    log = "".join(daemon.log)
    assert "shutting down" in log and "stopped at revision 1" in log


def test_sigterm_ends_a_watch_blocked_in_a_large_send_with_unavailable(make_daemon):
    # A snapshot far larger than the flow-control window keeps the daemon inside grpc's
    # write when SIGTERM arrives; the watch must still end with SHUTTING_DOWN once the
    # client reads on, not hang until the grace period cuts it off without a status.
    daemon = make_daemon()
    fields = {"branch": "b", "worktree": "/w", "description": "d" * 4096}
    for _ in range(10):  # in rounds: the daemon takes at most 1000 concurrent streams
        creates = [
            daemon.stub.CreateWorker.future(pb.CreateWorkerRequest(task_id=unique(), **fields))
            for _ in range(200)
        ]
        for future in creates:
            future.result()
    # Without BDP probing the flow-control window cannot grow to take the whole snapshot.
    channel = grpc.insecure_channel(daemon.address, options=[("grpc.http2.bdp_probe", 0)])
    stub = pb_grpc.WorkerServiceStub(channel)
    watch = stub.WatchState(pb.WatchStateRequest(send_initial_state=True))
    assert len(next(watch).events) > 0
    daemon.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "shutting down" in "".join(daemon.log))
    with pytest.raises(grpc.RpcError) as caught:
        for _ in watch:
            pass
    code, info, _ = details(caught.value)
    assert (code, info.reason) == (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
    channel.close()
    assert daemon.proc.wait(20) == 0


def test_sigterm_ends_a_filtered_watch_replaying_a_long_log(make_daemon):
    # A filtered watch replaying a long log that matches nothing neither sends nor waits;
    # it must still stop at SIGTERM, well within a grace period shorter than the replay.
    daemon = make_daemon("--shutdown-grace", "1s")
    assert daemon.stop() == 0
    with sqlite3.connect(daemon.db, isolation_level=None) as conn:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (revision, type, task_id, state, from_state, reason, time_ms,"
            " branch, worktree, description, created_at_ms) VALUES (?, 'STATE_CHANGED', 'w',"
            " 'WORKING', 'ASSIGNED', '', 0, 'b', 'w', NULL, 0)",
            ((revision,) for revision in range(1, 1_000_001)),
        )
        conn.execute(
            "INSERT INTO workers VALUES ('w', 'WORKING', 'b', 'w', NULL, 0, 0, ?, '')", (1_000_000,)
        )
        conn.execute("COMMIT")
    daemon.start()
    watch = daemon.stub.WatchState(pb.WatchStateRequest(task_ids=["nobody"], start_revision=1))
    daemon.stub.ListWorkers(pb.ListWorkersRequest())  # same connection: the watch is in
    daemon.proc.send_signal(signal.SIGTERM)
    with pytest.raises(grpc.RpcError) as caught:
        next(watch)
    code, info, _ = details(caught.value)
    assert (code, info.reason) == (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
    assert daemon.proc.wait(20) == 0


def test_in_flight_calls_finish_during_shutdown(make_daemon):
    daemon = make_daemon()
    stub = daemon.stub
    results: list[object] = []

    def client() -> None:
        for _ in range(200):
            try:
                results.append(create(stub).task_id)
            except grpc.RpcError as e:
                results.append(e.code())
                return

    thread = threading.Thread(target=client)
    thread.start()
    wait_until(lambda: len(results) >= 20)
    daemon.proc.send_signal(signal.SIGTERM)
    thread.join(30)
    assert daemon.proc.wait(20) == 0
    acknowledged = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if not isinstance(r, str)]
    # At most the one call that raced the shutdown is refused, and cleanly: grpc reports a
    # call that arrives as the server stops as UNAVAILABLE, or CANCELLED if it was queued.
    assert len(refused) <= 1
    assert set(refused) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, refused
    daemon.start()
    stored = daemon.stub.ListWorkers(pb.ListWorkersRequest(page_size=1000)).workers
    assert {w.task_id for w in stored} >= set(acknowledged)


def test_python_dash_m_runs_the_same_daemon(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "workerstate.server", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--heartbeat-flush" in result.stdout
