"""The systems under test as processes: started here, measured from /proc, stopped by pid."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import etcd_bindings

READY = re.compile(r"serving workerstate\.v1\.WorkerService on (\S+)")
BENCH = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def status_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of /proc/PID/status (VmRSS: resident now, VmHWM: its peak), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"{field}:\s+(\d+)", status)
    return int(match.group(1)) / 1024 if match else 0.0


class Server:
    """A server process; `address` is read from the first stderr/stdout line matching `ready`."""

    def __init__(self, args: list[str], ready: re.Pattern[str], *, address: str = "") -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="workerstate-bench-"))
        self.proc = subprocess.Popen(
            [a.replace("{tmp}", str(self.tmp)) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.address = address
        found = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                match = ready.search(line)
                if match and not found.is_set():
                    self.address = self.address or match.group(1)
                    found.set()
                elif "Traceback" in line or " ERROR " in line:
                    sys.stderr.write(line)
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(60) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"{args[0]} did not start")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def peak_rss_mb(self) -> float:
        return self._status_mb("VmHWM")

    def rss_mb(self) -> float:
        """Resident memory now (peak_rss_mb is the highest it has been)."""
        return self._status_mb("VmRSS")

    def _status_mb(self, field: str) -> float:
        return status_mb(self.proc.pid, field)

    def stop(self, keep_files: bool = False) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 30 s); delete its folder unless
        `keep_files`, for a database the next server opens."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not keep_files:
            shutil.rmtree(self.tmp, ignore_errors=True)


class BenchDaemon(Server):
    """The daemon with its default (durable) settings on a file in a temporary folder."""

    def __init__(self, *args: str, db: Path | None = None) -> None:
        super().__init__(
            [
                sys.executable,
                "-m",
                "workerstate.server",
                "--db",
                str(db or "{tmp}/ws.db"),
                "--listen",
                "127.0.0.1:0",
                "--log-level",
                "info",
                *args,
            ],
            READY,
        )
        self.db = Path(str(db)) if db else self.tmp / "ws.db"


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Floor(Server):
    """An empty grpc.aio service (bench/floor.py)."""

    def __init__(self) -> None:
        super().__init__(
            [sys.executable, str(BENCH / "floor.py")], re.compile(r"serving floor on (\S+)")
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Etcd(Server):
    """Debian's etcd on loopback with a temporary data dir (install: make bench-peers)."""

    BINARY = shutil.which("etcd") or "/usr/bin/etcd"

    def __init__(self) -> None:
        client, peer = free_port(), free_port()
        super().__init__(
            [
                self.BINARY,
                "--data-dir",
                "{tmp}/etcd",
                "--name",
                "bench",
                "--listen-client-urls",
                f"http://127.0.0.1:{client}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{client}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"bench=http://127.0.0.1:{peer}",
                "--log-level",
                "warn",
            ],
            re.compile(r"elected leader|ready to serve client requests"),
            address=f"127.0.0.1:{client}",
        )
        time.sleep(0.5)

    @classmethod
    def available(cls) -> bool:
        """The server and the protos the harness compiles its client from (make bench-peers)."""
        return Path(cls.BINARY).exists() and etcd_bindings.available()
