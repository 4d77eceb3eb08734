"""Security: TLS, mutual TLS, bearer tokens (read-only too), and the listen policy."""

from __future__ import annotations

import http.client
import re
import ssl
import subprocess
import sys
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import details, serve_once
from workerstate.client import (
    PermissionDenied,
    RetryPolicy,
    Security,
    Unauthenticated,
    Unavailable,
    WorkerClient,
)
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

NO_RETRY = RetryPolicy(attempts=1)


@pytest.fixture
def tokens(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# who may call\nci:s3cret-writer\n\ndashboard:s3cret-reader:ro  # reads\n")
    return path


def test_tokens_are_required_checked_and_never_logged(make_daemon, tokens):
    daemon = make_daemon("--token-file", str(tokens))
    with WorkerClient(daemon.address, retry=NO_RETRY) as anonymous, pytest.raises(Unauthenticated):
        anonymous.list()
    wrong = Security(token="guess")
    with (
        WorkerClient(daemon.address, retry=NO_RETRY, security=wrong) as c,
        pytest.raises(Unauthenticated),
    ):
        c.create("t", branch="b", worktree="w")
    writer = Security(token="s3cret-writer")
    with WorkerClient(daemon.address, security=writer) as c:
        c.create("t", branch="b", worktree="w")
    reader = Security(token="s3cret-reader")
    with WorkerClient(daemon.address, security=reader) as c:
        assert [w.task_id for w in c.list()] == ["t"]
        assert c.get("t").task_id == "t"
        assert len(c.events()) == 1
        with pytest.raises(PermissionDenied) as denied:
            c.transition("t", "ASSIGNED", "WORKING")
        assert denied.value.metadata == {"token": "dashboard"}
        with pytest.raises(PermissionDenied):
            c.heartbeat("t")
    # Health checks stay open, so probes need no secret.
    health = health_pb2_grpc.HealthStub(daemon.channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == 1
    # Streams are guarded too.
    with pytest.raises(grpc.RpcError) as caught:
        next(daemon.stub.WatchState(pb.WatchStateRequest()))
    code, info, _ = details(caught.value)
    assert (code, info.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert daemon.stop() == 0
    log = "".join(daemon.log)
    assert "s3cret" not in log
    assert "2 tokens, 1 read-only" in log


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("ci\n", "line 1: expected NAME:TOKEN"),
        ("a:x:rw\n", "line 1"),
        ("# only\n", "no tokens"),
        ("a:x\na:y\n", "repeated"),
    ],
)
def test_bad_token_files_are_refused_without_showing_secrets(tmp_path, content, problem):
    path = tmp_path / "tokens"
    path.write_text(content)
    result = serve_once(tmp_path / "w.db", "--token-file", str(path))
    assert result.returncode == 1
    assert problem in result.stderr
    assert "Traceback" not in result.stderr
    assert ":x" not in result.stderr and ":y" not in result.stderr


def test_tls(make_daemon, pki):
    daemon = make_daemon(
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")
    )
    with WorkerClient(daemon.address, retry=NO_RETRY) as plaintext, pytest.raises(Unavailable):
        plaintext.list()
    with WorkerClient(daemon.address, security=Security(tls_ca=pki / "ca.pem")) as c:
        assert c.create("tls", branch="b", worktree="w").task_id == "tls"


def test_mutual_tls_requires_a_client_certificate(make_daemon, pki):
    daemon = make_daemon(
        "--tls-cert",
        str(pki / "server.pem"),
        "--tls-key",
        str(pki / "server.key"),
        "--client-ca",
        str(pki / "ca.pem"),
    )
    no_cert = Security(tls_ca=pki / "ca.pem")
    with (
        WorkerClient(daemon.address, retry=NO_RETRY, security=no_cert) as c,
        pytest.raises(Unavailable),
    ):
        c.list()
    with_cert = Security(
        tls_ca=pki / "ca.pem", tls_cert=pki / "client.pem", tls_key=pki / "client.key"
    )
    with WorkerClient(daemon.address, security=with_cert) as c:
        assert c.list() == []


def test_cli_takes_token_and_tls_options(make_daemon, pki, tokens):
    daemon = make_daemon(
        "--tls-cert",
        str(pki / "server.pem"),
        "--tls-key",
        str(pki / "server.key"),
        "--token-file",
        str(tokens),
    )
    workerstate = [
        str(__import__("pathlib").Path(sys.executable).with_name("workerstate")),
        "--server",
        daemon.address,
        "--tls-ca",
        str(pki / "ca.pem"),
    ]
    ok = subprocess.run(
        [
            *workerstate,
            "--token",
            "s3cret-writer",
            "create",
            "c",
            "--branch",
            "b",
            "--worktree",
            "w",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0, ok.stderr
    denied = subprocess.run(
        [*workerstate, "fail", "c", "--token", "s3cret-reader"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert denied.returncode == 6
    assert "read-only" in denied.stderr


def test_non_loopback_without_tls_or_tokens_is_refused(tmp_path):
    # Refused before anything is bound, so no port opens beyond loopback.
    result = serve_once(tmp_path / "w.db", listen="0.0.0.0:50999")
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0:50999" in result.stderr
    assert "--insecure" in result.stderr


def test_socket_mode_is_configurable(make_daemon, tmp_path):
    socket = tmp_path / "ws.sock"
    daemon = make_daemon("--socket-mode", "0660", listen=f"unix:{socket}")
    assert socket.stat().st_mode & 0o777 == 0o660
    assert pb_grpc.WorkerServiceStub(daemon.channel).ListWorkers(pb.ListWorkersRequest())


def test_a_refused_heartbeater_says_why_and_ends(make_daemon, tokens):
    daemon = make_daemon("--token-file", str(tokens))
    with WorkerClient(daemon.address, security=Security(token="s3cret-writer")) as writer:
        writer.create("hb", branch="b", worktree="w")
    with WorkerClient(daemon.address, security=Security(token="s3cret-reader")) as reader:
        with reader.heartbeater("hb", interval=0.1) as beats:
            assert beats.ended.wait(5)
        assert isinstance(beats.error, PermissionDenied)


def test_cli_reports_an_unreadable_tls_file(tmp_path):
    workerstate = __import__("pathlib").Path(sys.executable).with_name("workerstate")
    result = subprocess.run(
        [str(workerstate), "ls", "--tls-ca", str(tmp_path / "nope.pem")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert (
        result.stderr == f"error: cannot read {tmp_path / 'nope.pem'}: No such file or directory\n"
    )


def test_the_board_serves_https_with_the_daemons_certificate(make_daemon, pki):
    daemon = make_daemon(
        "--tls-cert",
        str(pki / "server.pem"),
        "--tls-key",
        str(pki / "server.key"),
        "--board-listen",
        "127.0.0.1:0",
    )
    url = next(m.group(1) for line in daemon.log if (m := re.search(r"board on (\S+)", line)))
    assert url.startswith("https://127.0.0.1:")
    trusted = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with urllib.request.urlopen(url, context=trusted, timeout=5) as page:
        assert b'href="/static/board.css"' in page.read()
    with pytest.raises(http.client.RemoteDisconnected):  # no plain HTTP from a TLS listener
        urllib.request.urlopen(url.replace("https:", "http:"), timeout=5)
