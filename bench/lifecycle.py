"""Lifecycle at scale: the live view with a million finished workers stored, and a mass expiry
of finished workers under W1.

    python bench/lifecycle.py                      # 1,000,000 finished; 100,000 expire
    python bench/lifecycle.py --finished 200000    # fewer finished workers, where 1M is too slow
    python bench/lifecycle.py --quick              # 20,000 finished, 10,000 expire (a smoke run)

Both rows run on SQLite with the daemon's default (durable) settings, and load workers through
Apply in batches of 1,000 (a create and a FailWorker per finished worker).

The live view. Two daemons side by side, each holding the same 1,000 live workers (500
ASSIGNED, 500 WORKING); one also holds N FAILED workers, created after the live ones, so a
listing that walks the workers newest first meets every finished one before the live ones.
ListWorkers for ASSIGNED and WORKING (the first page of 100, and all 1,000 in one page of
1,000) is timed one call at a time on each daemon, alternating, in rounds. Goal: with the
finished workers, p50 within 1.5x of without.

The mass expiry. A daemon without retention is loaded with the W1 workers and E finished
workers, and stopped. The same file is then served twice:
- without retention, under W1 at 16 in flight: the baseline p99;
- with `--retain-finished` set so that the first finished worker comes due a few seconds after
  W1 has started (they come due over the span in which they were finished). W1 at 16 runs
  through it, while a poller notes when the first and last of them are gone and the daemon's
  RSS. W1's p99 over the calls made during the expiry is set against the baseline's (goal:
  within 2x), and the RSS after the expiry against just before it (goal: within 10%).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bulk import apply_all, create, fail, transition
from report import Row, Target, machine_note, percentile, write
from run import MP, Op, S, drive, measured, row, ws_setup
from servers import BenchDaemon, status_mb
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

LIVE_VIEW = "Live view with finished workers"
EXPIRY = "Mass expiry under W1 N=16"
LIVE = 1000
TARGET_LIVE = 1.5
TARGET_P99 = 2.0
TARGET_RSS = 1.10
LEAD_S = 4.0  # W1's clients start and warm up (1 s) before the first finished worker is due
TAIL_S = 4.0  # W1 runs on this long after the last one is expected gone
LIVE_STATES = [S.WORKER_STATE_ASSIGNED, S.WORKER_STATE_WORKING]
LISTINGS = {
    "first page of 100": pb.ListWorkersRequest(states=LIVE_STATES, page_size=100),
    "all live, page of 1,000": pb.ListWorkersRequest(states=LIVE_STATES, page_size=1000),
}


def load_live(address: str) -> None:
    asyncio.run(apply_all(address, (create(f"live-{i}") for i in range(LIVE))))
    asyncio.run(
        apply_all(
            address,
            (
                transition(f"live-{i}", S.WORKER_STATE_ASSIGNED, S.WORKER_STATE_WORKING)
                for i in range(0, LIVE, 2)
            ),
        )
    )


def load_finished(address: str, count: int, prefix: str = "done") -> None:
    """`count` FAILED workers: each one's create and fail in the same batch."""

    def operations() -> Iterator[pb.Operation]:
        for i in range(count):
            yield create(f"{prefix}-{i}")
            yield fail(f"{prefix}-{i}")

    asyncio.run(apply_all(address, operations()))


# run.drive's client processes find a factory by `module:function` (see run.factory_named).
async def live_page(address: str, index: int) -> Op:
    return await _lister(address, LISTINGS["first page of 100"])


async def live_all(address: str, index: int) -> Op:
    return await _lister(address, LISTINGS["all live, page of 1,000"])


async def _lister(address: str, request: pb.ListWorkersRequest) -> Op:
    stub = pb_grpc.WorkerServiceStub(grpc.aio.insecure_channel(address))

    async def op() -> bool:
        await stub.ListWorkers(request)
        return True

    return op


def live_view_rows(finished: int, seconds: float, rounds: int) -> list[Row]:
    empty, full = BenchDaemon(), BenchDaemon()
    try:
        load_live(empty.address)
        load_live(full.address)
        began = time.perf_counter()
        load_finished(full.address, finished)
        loaded_s = time.perf_counter() - began
        rows = []
        for number in range(1, rounds + 1):
            for daemon, stored in ((empty, 0), (full, finished)):
                for factory, listing in (
                    ("live_page", "first page of 100"),
                    ("live_all", "all live, page of 1,000"),
                ):
                    rows.append(
                        measured(
                            LIVE_VIEW,
                            "workerstate",
                            daemon,
                            f"lifecycle:{factory}",
                            1,
                            seconds,
                            finished=stored,
                            listing=listing,
                            round=number,
                        )
                    )
        for r in rows:
            if r["params"]["finished"]:
                r["load_s"] = round(loaded_s, 1)
        return rows
    finally:
        empty.stop()
        full.stop()


# -- the mass expiry ----------------------------------------------------------------------------


@dataclass
class Watch:
    """What the poller saw: when the first and the last finished worker were gone, and RSS."""

    started: float | None = None  # wall clock
    ended: float | None = None
    rss: list[tuple[float, float]] = field(default_factory=list)  # (wall clock, MB)


def poll(address: str, pid: int, first: str, last: str, stop: Any, out: Any) -> None:
    """Every 50 ms: is the first (then the last) finished worker gone? And the daemon's RSS.

    Two GetWorker calls a round: negligible beside W1, and unlike the metrics' worker gauges
    they do not count the whole fleet on the daemon's loop. A process of its own, spawned, as
    run.py's clients are: this process has used gRPC already.
    """
    watch = Watch()

    async def gone(stub: Any, task_id: str) -> bool:
        try:
            await stub.GetWorker(pb.GetWorkerRequest(task_id=task_id))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return True
            raise
        return False

    async def main() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.WorkerServiceStub(channel)
            while not stop.is_set():
                now = time.time()
                watch.rss.append((now, status_mb(pid)))
                if watch.started is None and await gone(stub, first):
                    watch.started = now
                if watch.started and watch.ended is None and await gone(stub, last):
                    watch.ended = now
                await asyncio.sleep(0.05)

    asyncio.run(main())
    out.put(watch)


def expiry_rows(expired: int, seconds: float) -> list[Row]:
    loader = BenchDaemon()
    db = loader.db
    try:
        asyncio.run(ws_setup(loader.address, 16))
        began = time.time()
        load_finished(loader.address, expired)
        spread = time.time() - began  # the span over which they finished, and will come due
        loader.stop(keep_files=True)
        # Deleting them takes longer than they took to come due (11-14 s for 100,000 that came
        # due over 6 s): W1 runs on past that, so the RSS after the expiry is measured too.
        window = LEAD_S + spread * 2.5 + TAIL_S
        # The baseline: the same file, no retention, W1 for as long as the expiry run's.
        started = time.perf_counter()
        plain = BenchDaemon(db=db)
        startup = time.perf_counter() - started
        try:
            base = measured(EXPIRY, "workerstate", plain, "ws_transition", 16, window, expiry=False)
        finally:
            plain.stop(keep_files=True)
        base["params"]["stored_finished"] = expired
        # Retention such that the first finished worker comes due LEAD_S after W1 has started.
        due_at = time.time() + 2 * startup + 1.0 + LEAD_S
        retain_ms = int((due_at - began) * 1000)
        daemon = BenchDaemon("--retain-finished", f"{retain_ms}ms", db=db)
        try:
            stop, out = MP.Event(), MP.Queue()
            args = (daemon.address, daemon.proc.pid, "done-0", f"done-{expired - 1}", stop, out)
            poller = MP.Process(target=poll, args=args)
            poller.start()
            cpu = daemon.cpu_seconds()
            tallies = drive("ws_transition", daemon.address, 16, window)
            cpu = daemon.cpu_seconds() - cpu
            stop.set()
            watch: Watch = out.get(timeout=30)
            poller.join(10)
            return [base, _expiry_row(daemon, tallies, watch, window, cpu, base, expired, spread)]
        finally:
            daemon.stop()
    finally:
        loader.stop()  # the folder that holds the file


def _expiry_row(
    daemon: BenchDaemon,
    tallies: list[Any],
    watch: Watch,
    window: float,
    cpu: float,
    base: Row,
    expired: int,
    spread: float,
) -> Row:
    r = row(EXPIRY, "workerstate", {"N": 16, "expiry": True}, tallies, window, daemon, cpu)
    r["params"]["stored_finished"] = expired
    r["due_spread_s"] = round(spread, 1)
    if watch.started is None:
        r["expiry"] = "did not start during W1"
        return r
    end = watch.ended or max(t for t, _ in watch.rss)
    during = [
        lat
        for t in tallies
        for lat, at in zip(t.latencies, t.started, strict=True)
        if watch.started <= at <= end
    ]
    before = [mb for at, mb in watch.rss if at < watch.started]
    after = [mb for at, mb in watch.rss if at >= end + 1.0]
    r.update(
        expiry_s=round(end - watch.started, 1),
        expiry_finished_during_w1=watch.ended is not None,
        calls_during=len(during),
        p99_during_ms=round(percentile(during, 0.99), 2) if during else None,
        p99_vs_without=round(percentile(during, 0.99) / base["p99_ms"], 2)
        if during and base["p99_ms"]
        else None,
        rss_before_mb=round(before[-1], 1) if before else None,
        rss_after_mb=round(statistics.median(after), 1) if after else None,
    )
    return r


def measure(
    seconds: float, quick: bool, finished: int | None = None, expired: int | None = None
) -> list[Row]:
    if quick:
        return [
            *live_view_rows(finished or 20_000, min(seconds, 1.0), 1),
            *expiry_rows(expired or 10_000, 1.0),
        ]
    return [
        *live_view_rows(finished or 1_000_000, seconds, 2),
        *expiry_rows(expired or 100_000, seconds),
    ]


def targets(rows: list[Row]) -> list[Target]:
    found: list[Target] = []
    for listing in LISTINGS:
        p50 = {
            stored: statistics.median(values)
            for stored in {r["params"]["finished"] for r in rows if r["workload"] == LIVE_VIEW}
            if (
                values := [
                    r["p50_ms"]
                    for r in rows
                    if r["workload"] == LIVE_VIEW
                    and r["params"]["listing"] == listing
                    and r["params"]["finished"] == stored
                    and r.get("p50_ms")
                ]
            )
        }
        if 0 in p50 and len(p50) == 2:
            stored = max(p50)
            ratio = p50[stored] / p50[0]
            found.append(
                (
                    f"ListWorkers ASSIGNED+WORKING ({listing}) p50 with {stored:,} finished <= "
                    f"{TARGET_LIVE}x with none",
                    f"{p50[stored]:.2f} ms vs {p50[0]:.2f} ms = {ratio:.2f}x",
                    ratio <= TARGET_LIVE,
                )
            )
    for r in rows:
        if r["workload"] != EXPIRY or not r["params"].get("expiry"):
            continue
        stored = r["params"]["stored_finished"]
        if r.get("p99_vs_without") is None:
            found.append(
                (f"mass expiry of {stored:,}", str(r.get("expiry", "no calls during it")), False)
            )
            continue
        found.append(
            (
                f"W1 N=16 p99 during the expiry of {stored:,} finished <= {TARGET_P99:g}x without "
                f"(expiry {r['expiry_s']} s"
                + ("" if r["expiry_finished_during_w1"] else ", outlasted W1")
                + ")",
                f"{r['p99_during_ms']} ms = {r['p99_vs_without']}x",
                r["p99_vs_without"] <= TARGET_P99 and r["expiry_finished_during_w1"],
            )
        )
        if r.get("rss_before_mb") and r.get("rss_after_mb"):
            ratio = r["rss_after_mb"] / r["rss_before_mb"]
            found.append(
                (
                    f"daemon RSS after the expiry within {TARGET_RSS - 1:.0%} of before",
                    f"{r['rss_after_mb']} MB vs {r['rss_before_mb']} MB = {ratio:.2f}x",
                    ratio <= TARGET_RSS,
                )
            )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 finished, 10,000 expire")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per list row")
    parser.add_argument(
        "--finished", type=int, default=None, help="finished workers stored (1,000,000)"
    )
    parser.add_argument(
        "--expired", type=int, default=None, help="finished workers that expire (100,000)"
    )
    args = parser.parse_args()
    header = machine_note()
    print(header, flush=True)
    rows = measure(args.seconds, args.quick, args.finished, args.expired)
    print(write("lifecycle" + ("-quick" if args.quick else ""), rows, targets(rows), header))


if __name__ == "__main__":
    main()
