"""The write path's designs side by side: W1 at 1 and 64 in flight and W4, on a fast disk and
on one whose commits take 10 ms, with the gRPC floor measured in the same run.

    python bench/write_path.py                       # the variants in bench/writer_variants.py
    python bench/write_path.py --old-python PY       # also the writer thread of 6c06e13

PY is a Python whose `workerstate.server` is the old writer, e.g. after
`git worktree add /tmp/old 6c06e13 && make -C /tmp/old .venv/.installed`, PY is
/tmp/old/.venv/bin/python. The table goes to bench/results/write_path.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report
import run
from servers import READY, Floor, Server
from workerstate.server.storage.sqlite import COMMIT_DELAY_ENV

VARIANTS = ("adaptive", "inline", "thread", "process")
BENCH = Path(__file__).resolve().parent


class VariantDaemon(Server):
    def __init__(self, variant: str, python: str, delay_ms: int) -> None:
        launcher = [python, "-m", "workerstate.server"]
        if variant != "old":
            launcher = [python, str(BENCH / "writer_variants.py"), variant]
        env_args = ["env", f"{COMMIT_DELAY_ENV}={delay_ms}"]
        if variant == "old" and delay_ms:
            raise ValueError("the old writer has no commit delay")
        super().__init__(
            [*env_args, *launcher, "--db", "{tmp}/ws.db", "--listen", "127.0.0.1:0"], READY
        )


def measure(system: str, daemon: Server, seconds: float) -> list[dict[str, Any]]:
    asyncio.run(run.ws_setup(daemon.address, 10_000))
    rows = [
        run.measured("W1 transitions", system, daemon, "ws_transition", n, seconds) for n in (1, 64)
    ]
    idle = run.measured("W4 reads idle", system, daemon, "ws_get", 4, seconds)
    load = run.MP.Process(
        target=run.drive, args=("ws_transition", daemon.address, 16, seconds + 3, 1)
    )
    load.start()
    time.sleep(1.5)
    busy = run.measured("W4 reads under W1 N=16", system, daemon, "ws_get", 4, seconds)
    load.join(seconds + 60)
    busy["p99_vs_idle"] = round(busy["p99_ms"] / idle["p99_ms"], 2)
    return [*rows, idle, busy]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per row")
    parser.add_argument("--old-python", default="", help="a Python with the old writer")
    parser.add_argument("--delays", default="0,10", help="commit delays to run, in ms")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    floor = Floor()
    rows += [
        run.measured("W1 transitions", "floor", floor, "floor_unary", n, args.seconds)
        for n in (1, 64)
    ]
    floor.stop()
    systems = [(v, sys.executable) for v in VARIANTS]
    if args.old_python:
        systems.insert(0, ("old", args.old_python))
    for delay in (int(d) for d in args.delays.split(",")):
        for variant, python in systems:
            if variant == "old" and delay:
                continue
            name = f"{variant} (commit +{delay} ms)" if delay else variant
            daemon = VariantDaemon(variant, python, delay)
            try:
                new = measure(name, daemon, args.seconds)
            finally:
                daemon.stop()
            for r in new:
                print(run.json.dumps(r), flush=True)
            rows += new
    table = report.markdown(rows)
    (run.RESULTS / "write_path.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
