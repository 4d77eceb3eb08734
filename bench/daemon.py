"""Start a workerstate daemon for a benchmark and read its resource use from /proc."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

READY = re.compile(r"serving workerstate\.v1\.WorkerService on (\S+)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchDaemon:
    """The daemon with its default settings on a file in a temporary folder."""

    def __init__(self, *args: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="workerstate-bench-")
        self.db = Path(self._tmp.name) / "workerstate.db"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workerstate.server",
                "--db",
                str(self.db),
                "--listen",
                "127.0.0.1:0",
                *args,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        self.address = ""
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                match = READY.search(line)
                if match:
                    self.address = match.group(1)
                    ready.set()
                elif "ERROR" in line or "Traceback" in line:
                    sys.stderr.write(line)
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(20) or not self.address:
            self.stop()
            raise RuntimeError("the daemon did not start")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+)", status)
        return int(match.group(1)) / 1024 if match else 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self._tmp.cleanup()
