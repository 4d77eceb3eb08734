"""W7 bulk changes: 1,000 transitions as one Apply, against unary calls and etcd, in one run.

    python bench/bulk.py               # SQLite, PostgreSQL and etcd, 8 s a row
    python bench/bulk.py --quick       # 2 s a row (a smoke run)
    python bench/bulk.py --no-peers    # without etcd

Each backend runs with the daemon's default (durable) settings. For each one: a client sends
one Apply of 1,000 transitions (each of 1,000 workers flips WORKING <-> IN_REVIEW), waits for
it, and sends the next; then the same daemon takes unary Transitions at 64 in flight (run.py's
W1 client). etcd's W1 at 64 in flight (one Txn per change) runs in the same invocation: the
goal is Apply's changes/s at 3x or more of it. Where the time goes is in the row: the Apply's
own p50 (its commit included), and the daemon's (and PostgreSQL's) CPU per change.

Also here, for the other bench modules: `apply_all`, which loads workers through Apply in
batches of 1,000, far faster than one call per worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import etcd_bindings
from report import Row, Target, machine_note, percentile, write
from run import S, etcd_rows, measured, skipped, ws_setup
from servers import BenchDaemon, Etcd, Server
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

BATCH = 1000  # the most operations one Apply takes
WORKLOAD = "W7 bulk changes"
TARGET_VS_ETCD = 3.0  # issue: Apply's changes/s at least 3x etcd's W1 at 64 in flight


# -- loading through Apply (shared with listing.py, lifecycle.py and fleet.py) -----------------


def create(task_id: str, labels: dict[str, str] | None = None) -> pb.Operation:
    return pb.Operation(
        create=pb.CreateWorkerRequest(
            task_id=task_id, branch="b", worktree="w", labels=labels or {}
        )
    )


def transition(task_id: str, from_state: int, to_state: int) -> pb.Operation:
    return pb.Operation(
        transition=pb.TransitionRequest(task_id=task_id, from_state=from_state, to_state=to_state)
    )


def fail(task_id: str) -> pb.Operation:
    return pb.Operation(fail=pb.FailWorkerRequest(task_id=task_id, reason="bench"))


def _batches(operations: Iterable[pb.Operation], size: int) -> Iterator[list[pb.Operation]]:
    batch: list[pb.Operation] = []
    for op in operations:
        batch.append(op)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def apply_all(
    address: str, operations: Iterable[pb.Operation], in_flight: int = 2, size: int = BATCH
) -> int:
    """Send `operations` as Applies of `size`, `in_flight` at a time; returns the last revision.

    Batches in flight together must not touch the same worker: keep each worker's operations
    within one batch, or order them so that a later batch does not depend on one in flight.
    Two in flight let the daemon parse the next batch while the previous one commits.
    """
    last = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        pending: set[asyncio.Task[pb.ApplyResponse]] = set()
        for batch in _batches(operations, size):
            if len(pending) >= in_flight:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                last = max([last, *(t.result().revision for t in done)])
            call = stub.Apply(pb.ApplyRequest(operations=batch))
            pending.add(asyncio.ensure_future(call))
        for response in await asyncio.gather(*pending):
            last = max(last, response.revision)
    return last


# -- W7 -----------------------------------------------------------------------------------------


def _flips(task_ids: list[str], from_state: int, to_state: int) -> pb.ApplyRequest:
    return pb.ApplyRequest(operations=[transition(t, from_state, to_state) for t in task_ids])


TASK_IDS = [f"bulk-{i}" for i in range(BATCH)]


async def _bulk_setup(address: str) -> None:
    await apply_all(address, (create(t) for t in TASK_IDS))
    await apply_all(
        address, (transition(t, S.WORKER_STATE_ASSIGNED, S.WORKER_STATE_WORKING) for t in TASK_IDS)
    )


async def _bulk(address: str, seconds: float) -> list[float]:
    """Applies of 1,000 flips, one after another for `seconds`: each one's latency (ms)."""
    # Both requests are built before the clock starts: the client's Python is not measured.
    forth = _flips(TASK_IDS, S.WORKER_STATE_WORKING, S.WORKER_STATE_IN_REVIEW)
    back = _flips(TASK_IDS, S.WORKER_STATE_IN_REVIEW, S.WORKER_STATE_WORKING)
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        await stub.Apply(forth)  # the warm-up
        requests = [back, forth]
        end = time.perf_counter() + seconds
        while (began := time.perf_counter()) < end:
            await stub.Apply(requests[len(latencies) % 2])
            latencies.append((time.perf_counter() - began) * 1000)
    return latencies


def bulk_row(system: str, server: Server, seconds: float, pg: Any = None) -> Row:
    """One Apply row: changes/s over the measured span, the Apply's latency, CPU per change."""
    from postgres import postgres_cpu_seconds

    asyncio.run(_bulk_setup(server.address))
    cpu, pg_cpu = server.cpu_seconds(), postgres_cpu_seconds(pg) if pg else 0.0
    began = time.perf_counter()
    latencies = asyncio.run(_bulk(server.address, seconds))
    changes = len(latencies) * BATCH
    # The CPU delta spans the warm-up Apply too: scale it to the measured share.
    share = sum(latencies) / 1000 / (time.perf_counter() - began)
    cpu = (server.cpu_seconds() - cpu) * share
    r: Row = {
        "workload": WORKLOAD,
        "system": system,
        "params": {"mode": f"Apply of {BATCH}"},
        "ops_per_s": round(changes / (sum(latencies) / 1000)),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "p999_ms": None,
        "errors": 0,
        "server_cpu_ms_per_op": round(cpu * 1000 / changes, 3),
        "rss_mb": round(server.peak_rss_mb(), 1),
        "applies": len(latencies),
    }
    if pg is not None:
        r["pg_cpu_ms_per_op"] = round(
            (postgres_cpu_seconds(pg) - pg_cpu) * share * 1000 / changes, 3
        )
    return r


def unary_row(system: str, server: Server, seconds: float) -> Row:
    asyncio.run(ws_setup(server.address, 64))
    return measured(WORKLOAD, system, server, "ws_transition", 64, seconds, mode="unary")


def measure(seconds: float, peers: bool) -> list[Row]:
    """etcd's W1 first, then each backend's Apply and unary rows, every server stopped by pid."""
    from postgres import PgDaemon, fixture, started

    rows = etcd_rows(WORKLOAD, "etcd_txn", [64], seconds, peers)
    for r in rows:
        r["params"]["mode"] = "W1 Txn"
    with contextlib.ExitStack() as stack:
        with started(stack, BenchDaemon) as sqlite:
            rows += [bulk_row("SQLite", sqlite, seconds), unary_row("SQLite", sqlite, seconds)]
        try:
            pg = stack.enter_context(fixture.PostgresServer(fixture.find_bindir()))
        except fixture.PostgresUnavailable as e:
            return [*rows, skipped(WORKLOAD, "PostgreSQL", str(e))]
        with started(stack, PgDaemon, pg.create_database().url) as daemon:
            rows += [
                bulk_row("PostgreSQL", daemon, seconds, pg),
                unary_row("PostgreSQL", daemon, seconds),
            ]
    return rows


def _row(rows: list[Row], system: str, mode: str) -> Row | None:
    for r in rows:
        if (
            r["workload"] == WORKLOAD
            and r["system"] == system
            and r.get("ops_per_s")
            and r["params"].get("mode") == mode
        ):
            return r
    return None


def targets(rows: list[Row]) -> list[Target]:
    """Apply's changes/s against etcd's W1 at 64 (the goal) and against unary calls (context)."""
    found: list[Target] = []
    etcd = _row(rows, "etcd", "W1 Txn")
    goal = f"{TARGET_VS_ETCD:g}x etcd W1 N=64"
    for system in ("SQLite", "PostgreSQL"):
        bulk, unary = _row(rows, system, f"Apply of {BATCH}"), _row(rows, system, "unary")
        if not bulk:
            continue
        if not etcd:
            found.append(
                (
                    f"W7 {system} Apply changes/s >= {goal}",
                    f"{bulk['ops_per_s']}/s; etcd not measured ({etcd_bindings.INSTALL})",
                    None,
                )
            )
        else:
            ratio = bulk["ops_per_s"] / etcd["ops_per_s"]
            found.append(
                (
                    f"W7 {system} Apply changes/s >= {goal}",
                    f"{bulk['ops_per_s']}/s = {ratio:.2f}x etcd's {etcd['ops_per_s']}/s",
                    ratio >= TARGET_VS_ETCD,
                )
            )
        if unary:
            ratio = bulk["ops_per_s"] / unary["ops_per_s"]
            found.append(
                (
                    f"(context) W7 {system} Apply / unary N=64",
                    f"{ratio:.2f}x; CPU/change {bulk['server_cpu_ms_per_op']} ms vs "
                    f"{unary['server_cpu_ms_per_op']} ms",
                    True,
                )
            )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s a row: a smoke run")
    parser.add_argument("--seconds", type=float, default=None, help="measured time per row")
    parser.add_argument("--no-peers", action="store_true", help="skip etcd")
    args = parser.parse_args()
    header = machine_note()
    print(header, flush=True)
    peers = not args.no_peers
    if peers and not Etcd.available():
        print(f"etcd not installed, its row is skipped: {etcd_bindings.INSTALL}", flush=True)
    rows = measure(args.seconds or (2.0 if args.quick else 8.0), peers)
    print(write("bulk" + ("-quick" if args.quick else ""), rows, targets(rows), header))


if __name__ == "__main__":
    main()
