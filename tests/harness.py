"""Helpers for tests: real daemons in subprocesses, over real sockets, on real files."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

S = pb.WorkerState
# Each state's moves forward and back (FailWorker aside), for tests that make random histories.
NEXT = {
    S.WORKER_STATE_ASSIGNED: [S.WORKER_STATE_WORKING],
    S.WORKER_STATE_WORKING: [S.WORKER_STATE_IN_REVIEW, S.WORKER_STATE_CONFLICTED],
    S.WORKER_STATE_CONFLICTED: [S.WORKER_STATE_IN_REVIEW, S.WORKER_STATE_WORKING],
    S.WORKER_STATE_IN_REVIEW: [S.WORKER_STATE_APPROVED, S.WORKER_STATE_WORKING],
    S.WORKER_STATE_APPROVED: [S.WORKER_STATE_COMPLETED, S.WORKER_STATE_WORKING],
    S.WORKER_STATE_COMPLETED: [],
    S.WORKER_STATE_FAILED: [S.WORKER_STATE_ASSIGNED],
}
READY = re.compile(r"serving workerstate\.v1\.WorkerService on (\S+)")
_ids = itertools.count()


def serve_once(
    db: object, *args: str, listen: str = "127.0.0.1:0"
) -> subprocess.CompletedProcess[str]:
    """Run the daemon expecting it to refuse to start; returns its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "workerstate.server", "--db", str(db), "--listen", listen, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def unique(prefix: str = "t") -> str:
    """A task id no other test uses, so tests can share one daemon."""
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


class DaemonProcess:
    """`workerstate serve` in a subprocess; stopped by pid, never by name.

    `command` is what starts it: the dev tree's module by default, an installed console
    script's `[".../bin/workerstate", "serve"]` in the packaging tests.
    """

    def __init__(
        self,
        db: Path | str,
        *args: str,
        listen: str = "127.0.0.1:0",
        command: tuple[str, ...] = (sys.executable, "-m", "workerstate.server"),
    ) -> None:
        self.db = db
        self.command = command
        self.args = ["--db", str(db), "--listen", listen, *args]
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.log: list[str] = []
        self._channel: grpc.Channel | None = None

    def start(self, timeout: float = 15.0) -> DaemonProcess:
        self._close_channel()  # a restarted daemon may listen on another port
        self.log = []
        self.proc = subprocess.Popen(
            [*self.command, *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()

        def pump(stream: object) -> None:
            for line in stream:  # type: ignore[attr-defined]
                self.log.append(line)
                match = READY.search(line)
                if match:
                    self.address = match.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=pump, args=(self.proc.stderr,), daemon=True).start()
        if not ready.wait(timeout) or not self.address:
            self.kill()
            raise RuntimeError("daemon did not start:\n" + "".join(self.log))
        return self

    @property
    def stub(self) -> pb_grpc.WorkerServiceStub:
        return pb_grpc.WorkerServiceStub(self.channel)

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        return self._channel

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the daemon and wait for it; returns its exit code."""
        self._close_channel()
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        return code

    def kill(self) -> None:
        self._close_channel()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> DaemonProcess:
        assert self.stop() == 0, "".join(self.log)
        return self.start()


def create(stub: pb_grpc.WorkerServiceStub, task_id: str | None = None, **kw: str) -> pb.Worker:
    task_id = task_id or unique()
    request = pb.CreateWorkerRequest(
        task_id=task_id, branch=kw.pop("branch", f"work/{task_id}"), worktree="/tmp/wt", **kw
    )
    return stub.CreateWorker(request).worker


def details(
    error: grpc.RpcError,
) -> tuple[
    grpc.StatusCode, error_details_pb2.ErrorInfo | None, error_details_pb2.BadRequest | None
]:
    """The code and the decoded ErrorInfo or BadRequest of a failed call."""
    status = rpc_status.from_call(error)
    info = bad = None
    assert status is not None, f"no status details on {error}"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
    return error.code(), info, bad


def wait_until(predicate: object, timeout: float = 5.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


class InProcessDaemon:
    """A Daemon on its own event-loop thread, with a clock the test moves by hand.

    Still a real gRPC server on a real socket and a real file: only time is fake.
    """

    def __init__(self, config: object, clock: object) -> None:
        import asyncio

        from workerstate.server.daemon import Daemon

        self.clock = clock
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.daemon = asyncio.run_coroutine_threadsafe(
            Daemon.start(config, clock),
            self._loop,  # type: ignore[arg-type]
        ).result(15)
        self.channel = grpc.insecure_channel(self.daemon.address)
        self.stub = pb_grpc.WorkerServiceStub(self.channel)

    def stop(self) -> None:
        import asyncio

        self.channel.close()
        asyncio.run_coroutine_threadsafe(self.daemon.stop(1.0), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class Watcher:
    """Reads a WatchState stream on a thread, keeping every message for the test to inspect."""

    def __init__(self, stub: pb_grpc.WorkerServiceStub, **request: object) -> None:
        self.stream = stub.WatchState(pb.WatchStateRequest(**request))  # type: ignore[arg-type]
        self.messages: list[pb.WatchStateResponse] = []
        self.error: grpc.RpcError | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in self.stream:
                self.messages.append(message)
        except grpc.RpcError as e:
            self.error = e

    @property
    def events(self) -> list[pb.WorkerEvent]:
        return [e for m in list(self.messages) for e in m.events]

    def stored(self) -> list[pb.WorkerEvent]:
        """Events from the log (not SNAPSHOT or LIVENESS_CHANGED)."""
        computed = (pb.EVENT_TYPE_SNAPSHOT, pb.EVENT_TYPE_LIVENESS_CHANGED)
        return [e for e in self.events if e.type not in computed]

    def wait_for_revision(self, revision: int, timeout: float = 10.0) -> None:
        wait_until(
            lambda: self.error is not None or any(e.revision >= revision for e in self.stored()),
            timeout,
        )
        if self.error is not None:
            raise self.error

    def ended(self, timeout: float = 10.0) -> grpc.RpcError:
        self._thread.join(timeout)
        assert self.error is not None, "stream did not end with an error"
        return self.error

    def close(self) -> None:
        self.stream.cancel()
        self._thread.join(5)


def scrape(daemon: DaemonProcess) -> dict[str, float]:
    """The daemon's Prometheus samples (it must serve --metrics-listen), by series."""
    address = next(
        m.group(1)
        for line in daemon.log
        if (m := re.search(r"serving metrics on http://(\S+)/metrics", line))
    )
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples
