"""Fixtures: daemons started per test (or once per session) and always stopped by pid."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import DaemonProcess
from postgres import PostgresDatabase, PostgresServer, PostgresUnavailable, find_bindir
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

MakeDaemon = Callable[..., DaemonProcess]


# The backends every store-independent test runs on: `shared_daemon` serves each in turn, and a
# module whose tests start their own daemons opts in by overriding `make_daemon` with
# `every_backend` (see test_watch.py).
BACKENDS = ("sqlite", "postgres")


@contextlib.contextmanager
def _daemons(location: Path | str) -> Iterator[MakeDaemon]:
    started: list[DaemonProcess] = []

    def factory(
        *args: str, db: Path | str | None = None, listen: str = "127.0.0.1:0"
    ) -> DaemonProcess:
        daemon = DaemonProcess(db or location, *args, listen=listen)
        started.append(daemon)
        return daemon.start()

    try:
        yield factory
    finally:
        for daemon in started:
            daemon.kill()


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[MakeDaemon]:
    """Start daemons on a file in this test's tmp dir; all are stopped after the test."""
    with _daemons(tmp_path / "workerstate.db") as factory:
        yield factory


@pytest.fixture(params=BACKENDS)
def every_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeDaemon]:
    """`make_daemon` on each backend in turn: a file, then a fresh PostgreSQL database."""
    location: Path | str = tmp_path / "workerstate.db"
    if request.param == "postgres":
        database: PostgresDatabase = request.getfixturevalue("pg_db")
        location = database.url
    with _daemons(location) as factory:
        yield factory


@pytest.fixture(scope="session", params=BACKENDS)
def shared_daemon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaemonProcess]:
    """One daemon (per backend) for tests that only add their own uniquely named workers."""
    location: Path | str = tmp_path_factory.mktemp("shared") / "workerstate.db"
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("pg_server")
        location = server.create_database().url
    daemon = DaemonProcess(location).start()
    yield daemon
    assert daemon.stop() == 0, "".join(daemon.log)


@pytest.fixture
def stub(shared_daemon: DaemonProcess) -> pb_grpc.WorkerServiceStub:
    return shared_daemon.stub


WORKERSTATE = str(Path(sys.executable).with_name("workerstate"))


@pytest.fixture
def cli(shared_daemon: DaemonProcess) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The installed `workerstate` command against the shared daemon."""

    def run(*args: str, server_after: bool = False, **kw: Any) -> subprocess.CompletedProcess[str]:
        server = ["--server", shared_daemon.address]
        argv = [*args, *server] if server_after else [*server, *args]
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        return subprocess.run(
            [WORKERSTATE, *argv], capture_output=True, text=True, timeout=30, env=env, **kw
        )

    return run


def openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=workerstate test CA",
        cwd=d,
    )
    for name, extra in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=d,
        )
        (d / f"{name}.ext").write_text(extra + "\n")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            cwd=d,
        )
    return d


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session; stopped by its data dir at the end, pass or fail.

    Without the server binaries the tests that need it are skipped, except under CI=true: there
    a missing PostgreSQL must not pass unnoticed as a run that tested nothing.
    """
    try:
        server = PostgresServer(find_bindir())
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}", pytrace=False)
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture
def pg_db(pg_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh, empty database for this test: `pg_db.url`, and `pg_db.server` for faults.

    A fault test that fails with the server stopped would break every test after it, so the
    server is started again here before the database is dropped.
    """
    database = pg_server.create_database()
    yield database
    if not pg_server.running:
        pg_server.start()
    pg_server.drop_database(database.name)
