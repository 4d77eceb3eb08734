"""Clients given several daemon addresses move to another when one is unreachable.

Each daemon here owns its own SQLite file, so two daemons do not share state. The tests
that stop one mid-session therefore give both the same history first (the same changes in
the same order, so the same revisions): what one daemon answered, the other can go on from.
What they show is where the connection goes, and that calls, the heartbeater and watch
carry on from where they were.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import DaemonProcess, wait_until
from workerstate.client import (
    Event,
    EventType,
    RetryPolicy,
    Security,
    Unavailable,
    WorkerClient,
    WorkerState,
)
from workerstate.client.targets import channel_target, split_addresses
from workerstate.v1 import workerstate_pb2 as pb

W = WorkerState
S = pb.WorkerState
WORKERSTATE = str(Path(sys.executable).with_name("workerstate"))
ONE_ATTEMPT = RetryPolicy(attempts=1)


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port that refuses connections: bound but never listened on, so no one else takes
    it while the test runs."""
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        yield reserved.getsockname()[1]


def port(daemon: DaemonProcess) -> str:
    return daemon.address.rsplit(":", 1)[1]


def same_history(*daemons: DaemonProcess) -> None:
    """x WORKING at revision 2 and y ASSIGNED at revision 3, on every daemon."""
    for daemon in daemons:
        for task_id in ("x", "y"):
            daemon.stub.CreateWorker(
                pb.CreateWorkerRequest(task_id=task_id, branch="b", worktree="w")
            )
            if task_id == "x":
                daemon.stub.Transition(
                    pb.TransitionRequest(
                        task_id="x",
                        from_state=S.WORKER_STATE_ASSIGNED,
                        to_state=S.WORKER_STATE_WORKING,
                    )
                )


@pytest.mark.parametrize("form", ["ip", "hostname", "grpc", "unix"])
def test_a_dead_first_address_is_passed_over_by_every_call(make_daemon, dead_port, tmp_path, form):
    live_socket = tmp_path / "live.sock"
    daemon = make_daemon(listen=f"unix:{live_socket}" if form == "unix" else "127.0.0.1:0")
    target = {
        "ip": f"127.0.0.1:{dead_port},{daemon.address}",
        "hostname": f"localhost:{dead_port},localhost:{port(daemon)}",
        "grpc": f"ipv4:127.0.0.1:{dead_port},127.0.0.1:{port(daemon)}",
        "unix": f"unix:{tmp_path}/nobody.sock,unix:{live_socket}",
    }[form]
    # One attempt per call: gRPC itself moves past the dead address, not our retries.
    with WorkerClient(target, retry=ONE_ATTEMPT) as c:
        created = c.create("t", branch="b", worktree="w")
        c.transition("t", W.ASSIGNED, W.WORKING)
        assert c.heartbeat("t", "busy") is W.WORKING
        assert [w.task_id for w in c.list(states=[W.WORKING])] == ["t"]
        with c.heartbeater("t", interval=0.1) as beats:
            wait_until(lambda: beats.state is W.WORKING)
        with c.watch(start_revision=created.revision) as watch:
            assert next(watch).type is EventType.ASSIGNED
        assert c.fail("t").state is W.FAILED
        assert [e.type for e in c.events()] == [
            EventType.ASSIGNED,
            EventType.STATE_CHANGED,
            EventType.FAILED,
        ]
        assert c.get("t").state is W.FAILED


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill-9"])
def test_calls_heartbeater_and_watch_move_to_the_other_daemon(make_daemon, tmp_path, sig):
    first, second = make_daemon(db=tmp_path / "a.db"), make_daemon(db=tmp_path / "b.db")
    same_history(first, second)
    received: list[Event] = []
    with WorkerClient(f"{first.address},{second.address}") as c:
        watch = c.watch(start_revision=1)

        def read() -> None:
            for event in watch:
                received.append(event)

        reader = threading.Thread(target=read)
        reader.start()
        with c.heartbeater("x", interval=0.1) as beats:
            wait_until(lambda: beats.state is W.WORKING and len(received) == 3)
            # pick_first: the whole session is on the first daemon, none of it on the second.
            assert first.stub.GetWorker(pb.GetWorkerRequest(task_id="x")).worker.HasField(
                "last_heartbeat_at"
            )
            assert not _beaten(second)
            first.stop(sig)
            moved = c.transition("x", W.WORKING, W.IN_REVIEW, reason="after failover")
            assert moved.revision == 4
            wait_until(lambda: _beaten(second), timeout=10)
            assert not beats.ended.is_set() and beats.error is None
            wait_until(lambda: len(received) >= 4, timeout=10)
        assert c.get("x").state is W.IN_REVIEW
        watch.close()
        reader.join(10)
    # Resumed on the second daemon from the last revision seen plus one: no gap, no repeat.
    assert [e.revision for e in received] == [1, 2, 3, 4]
    assert received[-1].reason == "after failover"


def _beaten(daemon: DaemonProcess) -> bool:
    worker = daemon.stub.GetWorker(pb.GetWorkerRequest(task_id="x")).worker
    return worker.HasField("last_heartbeat_at")


def test_a_mutation_retried_on_the_other_daemon_keeps_its_request_id(make_daemon, tmp_path):
    first, second = make_daemon(db=tmp_path / "a.db"), make_daemon(db=tmp_path / "b.db")
    same_history(first, second)
    # The second daemon already holds this change, as a shared database would once the
    # first daemon had committed it and died before it answered.
    request = pb.TransitionRequest(
        task_id="x",
        from_state=S.WORKER_STATE_WORKING,
        to_state=S.WORKER_STATE_IN_REVIEW,
        request_id="move-x-1",
    )
    original = second.stub.Transition(request).worker
    with WorkerClient(f"{first.address},{second.address}") as c:
        assert c.get("x").state is W.WORKING  # served by the first daemon
        first.stop(signal.SIGKILL)
        again = c.transition("x", W.WORKING, W.IN_REVIEW, request_id="move-x-1")
        # The original answer, not STALE_STATE, and nothing written twice.
        assert (again.state, again.revision) == (W.IN_REVIEW, original.revision)
        assert [e.revision for e in c.events()] == [1, 2, 3, 4]


@pytest.mark.parametrize("first", ["localhost", "127.0.0.1"])
def test_tls_checks_every_daemon_against_the_first_name(make_daemon, pki, dead_port, first):
    daemon = make_daemon(
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")
    )
    security = Security(tls_ca=pki / "ca.pem")
    servers = f"{first}:{dead_port},127.0.0.1:{port(daemon)}"
    with WorkerClient(servers, retry=ONE_ATTEMPT, security=security) as c:
        assert c.list() == []


def test_with_every_daemon_down_calls_are_unavailable(dead_port):
    policy = RetryPolicy(attempts=2, first_backoff_s=0.05)
    servers = f"127.0.0.1:{dead_port},localhost:{dead_port}"
    with WorkerClient(servers, retry=policy) as c, pytest.raises(Unavailable):
        c.get("t")


def test_lists_become_one_grpc_target():
    assert channel_target("127.0.0.1:5001") == ("127.0.0.1:5001", None)
    assert channel_target("unix:/run/ws.sock") == ("unix:/run/ws.sock", None)
    assert channel_target("localhost:5001,127.0.0.1:5002") == (
        "ipv4:127.0.0.1:5001,127.0.0.1:5002",
        "localhost:5001",
    )
    assert channel_target("[::1]:5001,127.0.0.1:5002") == (
        "ipv6:[::1]:5001,[::ffff:127.0.0.1]:5002",
        "[::1]:5001",
    )
    assert channel_target("unix:/a.sock,unix:///b.sock") == ("unix:/a.sock,/b.sock", None)
    # A name that does not resolve is left out; if none does, gRPC gets the first as given.
    assert channel_target("nobody.invalid:5001,127.0.0.1:5002") == (
        "ipv4:127.0.0.1:5002",
        "nobody.invalid:5001",
    )
    assert channel_target("nobody.invalid:5001,nobody.invalid:5002") == (
        "nobody.invalid:5001",
        None,
    )


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("127.0.0.1:5001,", "'' is not HOST:PORT"),
        ("127.0.0.1:5001,localhost", "'localhost' is not HOST:PORT"),
        ("127.0.0.1:5001,h:0", "'h:0' is not HOST:PORT"),
        ("unix:,unix:/a", "names no socket path"),
        ("127.0.0.1:5001,unix:/a", "either all unix:PATH or all HOST:PORT"),
    ],
)
def test_a_malformed_list_names_its_problem(target, problem):
    with pytest.raises(ValueError, match=problem):
        split_addresses(target)
    with pytest.raises(ValueError, match=problem):
        WorkerClient(target)
    result = subprocess.run(
        [WORKERSTATE, "--server", target, "ls"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert problem in result.stderr and "Traceback" not in result.stderr


def test_cli_uses_the_next_server_when_the_first_is_down(make_daemon, dead_port):
    daemon = make_daemon()
    servers = f"127.0.0.1:{dead_port},{daemon.address}"
    created = subprocess.run(
        [WORKERSTATE, "--server", servers, "create", "c", "--branch", "b", "--worktree", "w"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert created.returncode == 0, created.stderr
    env = {**os.environ, "WORKERSTATE_SERVER": servers}
    listed = subprocess.run(
        [WORKERSTATE, "ls", "-o", "json"], capture_output=True, text=True, env=env, timeout=30
    )
    assert listed.returncode == 0, listed.stderr
    assert [w["task_id"] for w in json.loads(listed.stdout)] == ["c"]


def test_cli_with_every_server_down_says_so_in_one_line(dead_port):
    servers = f"127.0.0.1:{dead_port},localhost:{dead_port}"
    result = subprocess.run(
        [WORKERSTATE, "--server", servers, "ls"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 5
    assert f"cannot reach any workerstate daemon at {servers}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_help_documents_the_comma_separated_form():
    for args in (["--help"], ["ls", "--help"]):
        shown = subprocess.run([WORKERSTATE, *args], capture_output=True, text=True).stdout
        words = " ".join(shown.split())  # argparse wraps lines
        assert "several, separated by commas" in words and "tried in order" in words
