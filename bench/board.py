"""The board under load: 1,000 workers, 200 changes/s, 10 open pages in headless Chromium.

Measures, in the browser, how long a change takes from its commit to the DOM (p50, p99 over
every delivery to every page), checks that every page saw every change, and the daemon's CPU
with the pages open against the same load with none. The commit time is the worker's
state_changed_at, which the writer stamps as it applies the change, just before the group's
fsync; the DOM time is taken by a MutationObserver on the card's data-revision, on the same
machine's clock.

    .venv/bin/python bench/board.py [--workers 1000] [--rate 200] [--pages 10] [--seconds 10]

Never run it beside the test suite: both want the machine's two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from playwright.async_api import Browser, Page, async_playwright
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

RESULTS = Path(__file__).resolve().parent / "results" / "board.json"
S = pb.WorkerState
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Records (revision, epoch ms) whenever a card's data-revision changes.
OBSERVE = """() => {
  window.deliveries = [];
  new MutationObserver((records) => {
    const now = performance.timeOrigin + performance.now();
    for (const r of records) window.deliveries.push([Number(r.target.dataset.revision), now]);
  }).observe(document.getElementById("board"),
             {subtree: true, attributes: true, attributeFilter: ["data-revision"]});
}"""


def start_daemon(db: Path) -> tuple[subprocess.Popen[str], str, str]:
    """The daemon with its board; returns it, its gRPC address and the board's URL."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "workerstate.server", "--db", str(db)),
            *("--listen", "127.0.0.1:0", "--board-listen", "127.0.0.1:0"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    address = board = ""
    assert proc.stderr is not None
    for line in proc.stderr:
        if match := re.search(r"board on (\S+)", line):
            board = match.group(1)
        if match := re.search(r"WorkerService on (\S+)", line):
            address = match.group(1)
            break
    # Keep reading (and dropping) its log, a line per change, or a full pipe would stall it.
    stderr = proc.stderr
    threading.Thread(target=lambda: [None for _ in stderr], daemon=True).start()
    return proc, address, board


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def drive(
    stub: pb_grpc.WorkerServiceStub, workers: list[pb.Worker], rate: float, seconds: float
) -> dict[int, int]:
    """`rate` transitions a second, round-robin (WORKING <-> IN_REVIEW); revision -> commit ms."""
    committed: dict[int, int] = {}
    current = {w.task_id: w for w in workers}
    order = [w.task_id for w in workers]
    in_flight: set[asyncio.Task[None]] = set()

    async def one(task_id: str) -> None:
        worker = current[task_id]
        to = (
            S.WORKER_STATE_IN_REVIEW
            if worker.state == S.WORKER_STATE_WORKING
            else S.WORKER_STATE_WORKING
        )
        answer = await stub.Transition(
            pb.TransitionRequest(task_id=task_id, from_state=worker.state, to_state=to)
        )
        current[task_id] = answer.worker
        committed[answer.worker.revision] = answer.worker.state_changed_at.ToMilliseconds()

    start = time.monotonic()
    count = int(rate * seconds)
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        # One change in flight per worker: 1,000 workers at 200/s come round every 5 s.
        task = asyncio.create_task(one(order[i % len(order)]))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    return committed


async def open_pages(browser: Browser, url: str, n: int, workers: int) -> list[Page]:
    pages = []
    for _ in range(n):
        page = await (await browser.new_context(viewport={"width": 1500, "height": 900})).new_page()
        await page.goto(url)
        await page.wait_for_function(
            f"() => document.querySelectorAll('[data-task-id]').length === {workers}",
            timeout=60_000,
        )
        await page.evaluate(OBSERVE)
        pages.append(page)
    return pages


def percentile(values: list[float], q: int) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, address, url = start_daemon(Path(tmp) / "bench.db")
        try:
            channel = grpc.aio.insecure_channel(address)
            stub = pb_grpc.WorkerServiceStub(channel)
            created = await asyncio.gather(
                *(
                    stub.CreateWorker(
                        pb.CreateWorkerRequest(
                            task_id=f"w-{i:04d}",
                            branch=f"feat/w-{i:04d}",
                            worktree="/w",
                            description=f"bench worker {i}",
                        )
                    )
                    for i in range(args.workers)
                )
            )
            workers = list(
                await asyncio.gather(
                    *(
                        stub.Transition(
                            pb.TransitionRequest(
                                task_id=c.worker.task_id,
                                from_state=S.WORKER_STATE_ASSIGNED,
                                to_state=S.WORKER_STATE_WORKING,
                            )
                        )
                        for c in created
                    )
                )
            )
            fleet = [w.worker for w in workers]

            before = cpu_s(proc.pid)
            began = time.monotonic()
            committed = await drive(stub, fleet, args.rate, args.seconds)
            idle_cpu = (cpu_s(proc.pid) - before) / (time.monotonic() - began)
            fleet = [
                (await stub.GetWorker(pb.GetWorkerRequest(task_id=w.task_id))).worker for w in fleet
            ]

            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    args=[
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-background-networking",
                    ],
                )
                pages = await open_pages(browser, url, args.pages, args.workers)
                await asyncio.sleep(1.0)  # let the pages settle
                before = cpu_s(proc.pid)
                began = time.monotonic()
                committed = await drive(stub, fleet, args.rate, args.seconds)
                board_cpu = (cpu_s(proc.pid) - before) / (time.monotonic() - began)
                await asyncio.sleep(2.0)  # the last deliveries
                latencies: list[float] = []
                complete = True
                for page in pages:
                    seen = {int(r): t for r, t in await page.evaluate("window.deliveries")}
                    complete &= all(r in seen for r in committed)
                    latencies.extend(seen[r] - ms for r, ms in committed.items() if r in seen)
                await browser.close()
            await channel.close()
        finally:
            proc.terminate()
            proc.wait(30)
    result = {
        "workers": args.workers,
        "rate_per_s": args.rate,
        "pages": args.pages,
        "seconds": args.seconds,
        "changes": len(committed),
        "deliveries": len(latencies),
        "every_change_on_every_page": complete,
        "latency_p50_ms": round(percentile(latencies, 50), 1),
        "latency_p99_ms": round(percentile(latencies, 99), 1),
        "latency_max_ms": round(max(latencies), 1),
        "daemon_cpu_no_pages": round(idle_cpu, 3),
        "daemon_cpu_with_pages": round(board_cpu, 3),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
