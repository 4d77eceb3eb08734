"""Fixtures: daemons started per test (or once per session) and always stopped by pid."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import DaemonProcess
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

MakeDaemon = Callable[..., DaemonProcess]


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[MakeDaemon]:
    """Start daemons on files in this test's tmp dir; all are stopped after the test."""
    started: list[DaemonProcess] = []

    def factory(*args: str, db: Path | None = None, listen: str = "127.0.0.1:0") -> DaemonProcess:
        daemon = DaemonProcess(db or tmp_path / "workerstate.db", *args, listen=listen)
        started.append(daemon)
        return daemon.start()

    yield factory
    for daemon in started:
        daemon.kill()


@pytest.fixture(scope="session")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for tests that only add their own uniquely named workers."""
    daemon = DaemonProcess(tmp_path_factory.mktemp("shared") / "workerstate.db").start()
    yield daemon
    assert daemon.stop() == 0, "".join(daemon.log)


@pytest.fixture
def stub(shared_daemon: DaemonProcess) -> pb_grpc.WorkerServiceStub:
    return shared_daemon.stub
