"""`make bench`: workerstate side by side with the gRPC floor, the original design and etcd.

    python bench/run.py            # every workload (under 15 minutes)
    python bench/run.py --quick    # W1 at N=1 and N=64, W3 and W4, every system (~2 minutes)
    python bench/run.py --only W7,W8          # some workloads (to results/only-W7-W8.*)
    python bench/run.py --quick --only W8     # a workload's smoke-sized run
    python bench/run.py --commit-delay-ms 10   # the daemon on a disk whose commits take 10 ms

Each system is started here, driven by asyncio clients (two client processes where one
would be the bottleneck), measured (throughput, latency percentiles, errors, the server's
CPU per operation and peak RSS), and stopped. The table is printed and written to
bench/results/latest.json and latest.md. Every acknowledged write is durable: the daemon
runs with its default settings.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import multiprocessing as mp
import os
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import etcd_bindings
from report import Target, machine_note, percentile, write
from servers import BenchDaemon, Etcd, Floor, Server
from workerstate.server.storage.sqlite import COMMIT_DELAY_ENV
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

S = pb.WorkerState
FLIP = {
    S.WORKER_STATE_WORKING: S.WORKER_STATE_IN_REVIEW,
    S.WORKER_STATE_IN_REVIEW: S.WORKER_STATE_WORKING,
}
# Client processes are spawned, not forked: this process has used gRPC (setup) by then, and a
# child forked from it can hang inside gRPC's inherited state.
MP = mp.get_context("spawn")
Op = Callable[[], Awaitable[bool]]  # True: success, False: a conflict; raises on error


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)  # wall clock (s), one per latency
    ok: int = 0
    conflicts: int = 0
    errors: int = 0


# -- operations, one factory per (workload, system); each runs in a client process ----------


async def floor_unary(address: str, index: int) -> Op:
    call = grpc.aio.insecure_channel(address).unary_unary("/floor.Floor/Unary")

    async def op() -> bool:
        await call(b"")
        return True

    return op


async def floor_bidi(address: str, index: int) -> Op:
    stream = grpc.aio.insecure_channel(address).stream_stream("/floor.Floor/Bidi")()

    async def op() -> bool:
        await stream.write(b"")
        await stream.read()
        return True

    return op


async def ws_transition(address: str, index: int) -> Op:
    stub = pb_grpc.WorkerServiceStub(grpc.aio.insecure_channel(address))
    task_id = f"w1-{index}"
    state = (await stub.GetWorker(pb.GetWorkerRequest(task_id=task_id))).worker.state

    async def op() -> bool:
        nonlocal state
        to = FLIP[state]
        await stub.Transition(pb.TransitionRequest(task_id=task_id, from_state=state, to_state=to))
        state = to
        return True

    return op


async def ws_contended(address: str, index: int) -> Op:
    stub = pb_grpc.WorkerServiceStub(grpc.aio.insecure_channel(address))
    task_id = f"w1-{index % 4}"

    async def op() -> bool:
        state = (await stub.GetWorker(pb.GetWorkerRequest(task_id=task_id))).worker.state
        try:
            await stub.Transition(
                pb.TransitionRequest(task_id=task_id, from_state=state, to_state=FLIP[state])
            )
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.ABORTED:
                return False
            raise
        return True

    return op


async def ws_heartbeat(address: str, index: int) -> Op:
    stub = pb_grpc.WorkerServiceStub(grpc.aio.insecure_channel(address))
    request = pb.HeartbeatRequest(task_id=f"w1-{index}")

    async def op() -> bool:
        await stub.Heartbeat(request)
        return True

    return op


async def ws_stream_heartbeat(address: str, index: int) -> Op:
    stub = pb_grpc.WorkerServiceStub(grpc.aio.insecure_channel(address))
    stream = stub.StreamHeartbeats()
    request = pb.HeartbeatRequest(task_id=f"w1-{index}")

    async def op() -> bool:
        await stream.write(request)
        await stream.read()
        return True

    return op


async def ws_get(address: str, index: int) -> Op:
    stub = pb_grpc.WorkerServiceStub(grpc.aio.insecure_channel(address))
    request = pb.GetWorkerRequest(task_id=f"w1-{index % 10_000}")

    async def op() -> bool:
        await stub.GetWorker(request)
        return True

    return op


async def ws_list(address: str, index: int) -> Op:
    stub = pb_grpc.WorkerServiceStub(grpc.aio.insecure_channel(address))
    request = pb.ListWorkersRequest(page_size=100)

    async def op() -> bool:
        await stub.ListWorkers(request)
        return True

    return op


def _etcd(address: str) -> tuple[Any, Any]:
    rpc, stubs = etcd_bindings.load()
    return rpc, stubs


async def etcd_txn(address: str, index: int, contended: bool = False) -> Op:
    """Compare mod_revision, then put: one Txn per op, like one Transition. Uncontended, the
    client knows the key's revision from its last Txn; contended, it reads it first, as the
    workerstate client reads the state first."""
    rpc, stubs = _etcd(address)
    kv = stubs.KVStub(grpc.aio.insecure_channel(address))
    key = f"w1-{index % 4 if contended else index}".encode()
    flip = {b"WORKING": b"IN_REVIEW", b"IN_REVIEW": b"WORKING"}
    got = (await kv.Range(rpc.RangeRequest(key=key))).kvs[0]
    revision, value = got.mod_revision, got.value

    async def op() -> bool:
        nonlocal revision, value
        if contended:
            got = (await kv.Range(rpc.RangeRequest(key=key))).kvs[0]
            revision, value = got.mod_revision, got.value
        compare = rpc.Compare(
            key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision
        )
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=flip[value]))
        response = await kv.Txn(rpc.TxnRequest(compare=[compare], success=[put]))
        if response.succeeded:
            revision, value = response.header.revision, flip[value]
        return bool(response.succeeded)

    return op


async def etcd_txn_contended(address: str, index: int) -> Op:
    return await etcd_txn(address, index, contended=True)


async def etcd_keepalive(address: str, index: int) -> Op:
    rpc, stubs = _etcd(address)
    channel = grpc.aio.insecure_channel(address)
    lease = await stubs.LeaseStub(channel).LeaseGrant(rpc.LeaseGrantRequest(TTL=60))
    stream = stubs.LeaseStub(channel).LeaseKeepAlive()
    request = rpc.LeaseKeepAliveRequest(ID=lease.ID)

    async def op() -> bool:
        await stream.write(request)
        await stream.read()
        return True

    return op


FACTORIES: dict[str, Callable[[str, int], Awaitable[Op]]] = {
    f.__name__: f
    for f in (
        floor_unary,
        floor_bidi,
        ws_transition,
        ws_contended,
        ws_heartbeat,
        ws_stream_heartbeat,
        ws_get,
        ws_list,
        etcd_txn,
        etcd_txn_contended,
        etcd_keepalive,
    )
}


def factory_named(name: str) -> Callable[[str, int], Awaitable[Op]]:
    """A factory here by name, or `module:function` for one in another bench module: a spawned
    client process imports only this module (or the main script), not the one that asked."""
    if ":" not in name:
        return FACTORIES[name]
    module, function = name.split(":")
    found: Callable[[str, int], Awaitable[Op]] = getattr(importlib.import_module(module), function)
    return found


def client_process(
    factory: str, address: str, indices: list[int], warmup: float, seconds: float, out: Any
) -> None:
    async def main() -> list[Tally]:
        make = factory_named(factory)
        ops = [await make(address, i) for i in indices]
        tallies = [Tally() for _ in ops]
        start = time.perf_counter() + warmup
        end = start + seconds

        async def loop(op: Op, tally: Tally) -> None:
            while (began := time.perf_counter()) < end:
                try:
                    ok = await op()
                except grpc.aio.AioRpcError:
                    tally.errors += began >= start
                    continue
                if began >= start:
                    tally.latencies.append((time.perf_counter() - began) * 1000)
                    tally.started.append(time.time() - (time.perf_counter() - began))
                    tally.ok += ok
                    tally.conflicts += not ok

        await asyncio.gather(*(loop(op, t) for op, t in zip(ops, tallies, strict=True)))
        return tallies

    out.put(asyncio.run(main()))


def drive(
    factory: str, address: str, clients: int, seconds: float, processes: int = 2
) -> list[Tally]:
    processes = min(processes, clients)
    out: Any = MP.Queue()
    shares = [list(range(p, clients, processes)) for p in range(processes)]
    procs = [
        MP.Process(target=client_process, args=(factory, address, s, 1.0, seconds, out))
        for s in shares
    ]
    for proc in procs:
        proc.start()
    tallies = [t for _ in procs for t in out.get(timeout=seconds + 120)]
    for proc in procs:
        proc.join(30)
    return tallies


def row(
    workload: str,
    system: str,
    params: dict[str, Any],
    tallies: list[Tally],
    seconds: float,
    server: Server | None,
    cpu: float,
    **extra: Any,
) -> dict[str, Any]:
    latencies = [x for t in tallies for x in t.latencies]
    ops = sum(t.ok for t in tallies)
    return {
        "workload": workload,
        "system": system,
        "params": params,
        "ops_per_s": round(ops / seconds),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "p999_ms": round(percentile(latencies, 0.999), 2),
        "errors": sum(t.errors for t in tallies),
        "server_cpu_ms_per_op": round(cpu * 1000 / ops, 3) if ops and server else None,
        "rss_mb": round(server.peak_rss_mb(), 1) if server else None,
        **extra,
    }


def measured(
    workload: str,
    system: str,
    server: Server,
    factory: str,
    clients: int,
    seconds: float,
    **params: Any,
) -> dict[str, Any]:
    cpu = server.cpu_seconds()
    tallies = drive(factory, server.address, clients, seconds)
    cpu = server.cpu_seconds() - cpu  # includes the 1 s warm-up: a slight overcount
    extra: dict[str, Any] = {}
    if any(t.conflicts for t in tallies):
        per_client = [t.ok for t in tallies]
        extra = {
            "conflicts_per_s": round(sum(t.conflicts for t in tallies) / seconds),
            "max_ms": round(max(x for t in tallies for x in t.latencies), 1),
            "slowest_vs_fastest": round(min(per_client) / max(max(per_client), 1), 2),
        }
    return row(
        workload,
        system,
        {"N": clients, **params},
        tallies,
        seconds,
        server,
        cpu * seconds / (seconds + 1.0),
        **extra,
    )


# -- setup ----------------------------------------------------------------------------------


async def ws_setup(address: str, workers: int) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)

        async def one(i: int) -> None:
            await stub.CreateWorker(
                pb.CreateWorkerRequest(task_id=f"w1-{i}", branch="b", worktree="w")
            )
            await stub.Transition(
                pb.TransitionRequest(
                    task_id=f"w1-{i}",
                    from_state=S.WORKER_STATE_ASSIGNED,
                    to_state=S.WORKER_STATE_WORKING,
                )
            )

        for start in range(0, workers, 64):
            await asyncio.gather(*(one(i) for i in range(start, min(workers, start + 64))))


async def etcd_setup(address: str, keys: int) -> None:
    rpc, stubs = etcd_bindings.load()
    async with grpc.aio.insecure_channel(address) as channel:
        kv = stubs.KVStub(channel)
        for i in range(keys):
            await kv.Put(rpc.PutRequest(key=f"w1-{i}".encode(), value=b"WORKING"))


def skipped(workload: str, system: str, why: str) -> dict[str, Any]:
    return {"workload": workload, "system": system, "params": {}, "skipped": why}


# -- the original design: N processes sharing one SQLite file --------------------------------


def direct_client(
    path: str, index: int, contended: bool, warmup: float, seconds: float, out: Any
) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA synchronous = FULL")
    task_id = f"w1-{index % 4 if contended else index}"
    tally = Tally()
    start = time.perf_counter() + warmup
    end = start + seconds
    while (began := time.perf_counter()) < end:
        try:
            believed = conn.execute(
                "SELECT state FROM workers WHERE task_id = ?", (task_id,)
            ).fetchone()[0]
            conn.execute("BEGIN IMMEDIATE")
            state = conn.execute(
                "SELECT state FROM workers WHERE task_id = ?", (task_id,)
            ).fetchone()[0]
            ok = state == believed
            if ok:
                to = "IN_REVIEW" if state == "WORKING" else "WORKING"
                conn.execute(
                    "UPDATE workers SET state = ?, state_changed_at_ms = ? WHERE task_id = ?",
                    (to, int(time.time() * 1000), task_id),
                )
                conn.execute(
                    "INSERT INTO events (type, task_id, state, from_state, reason, "
                    "time_ms, branch, worktree, created_at_ms) VALUES "
                    "('STATE_CHANGED', ?, ?, ?, '', ?, 'b', 'w', 0)",
                    (task_id, to, state, int(time.time() * 1000)),
                )
            conn.execute("COMMIT")
        except sqlite3.OperationalError:  # SQLITE_BUSY after the 5 s timeout
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            tally.errors += began >= start
            continue
        if began >= start:
            tally.latencies.append((time.perf_counter() - began) * 1000)
            tally.ok += ok
            tally.conflicts += not ok
    out.put(tally)


def direct(workload: str, clients: int, seconds: float, contended: bool) -> dict[str, Any]:
    # The file is made by the daemon (same schema), then served by nobody: every worker
    # process opens it, as the seed did.
    daemon = BenchDaemon()
    asyncio.run(ws_setup(daemon.address, 4 if contended else clients))
    db, folder = daemon.db, daemon.tmp
    daemon.proc.terminate()
    daemon.proc.wait(30)
    out: Any = MP.Queue()
    procs = [
        MP.Process(target=direct_client, args=(str(db), i, contended, 1.0, seconds, out))
        for i in range(clients)
    ]
    for proc in procs:
        proc.start()
    tallies = [out.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join(30)
    daemon.tmp = folder
    daemon.stop()
    extra: dict[str, Any] = {}
    if contended:
        per_client = [t.ok for t in tallies]
        extra = {
            "conflicts_per_s": round(sum(t.conflicts for t in tallies) / seconds),
            "max_ms": round(max(x for t in tallies for x in t.latencies), 1),
            "slowest_vs_fastest": round(min(per_client) / max(max(per_client), 1), 2),
        }
    return row(workload, "direct SQLite", {"N": clients}, tallies, seconds, None, 0.0, **extra)


# -- workloads --------------------------------------------------------------------------------


def w1(sizes: list[int], seconds: float, peers: bool) -> list[dict[str, Any]]:
    rows = []
    floor = Floor()
    rows += [measured("W1 transitions", "floor", floor, "floor_unary", n, seconds) for n in sizes]
    floor.stop()
    daemon = BenchDaemon()
    asyncio.run(ws_setup(daemon.address, max(sizes)))
    rows += [
        measured("W1 transitions", "workerstate", daemon, "ws_transition", n, seconds)
        for n in sizes
    ]
    daemon.stop()
    rows += [direct("W1 transitions", n, seconds, contended=False) for n in sizes]
    rows += etcd_rows("W1 transitions", "etcd_txn", sizes, seconds, peers)
    return rows


def etcd_rows(
    workload: str, factory: str, sizes: list[int], seconds: float, peers: bool
) -> list[dict[str, Any]]:
    if not (peers and Etcd.available()):
        return [skipped(workload, "etcd", f"etcd not installed: {etcd_bindings.INSTALL}")]
    etcd = Etcd()
    try:
        asyncio.run(etcd_setup(etcd.address, max(sizes)))
        return [measured(workload, "etcd", etcd, factory, n, seconds) for n in sizes]
    finally:
        etcd.stop()


def w2(seconds: float, peers: bool) -> list[dict[str, Any]]:
    daemon = BenchDaemon()
    asyncio.run(ws_setup(daemon.address, 4))
    rows = [measured("W2 contended", "workerstate", daemon, "ws_contended", 16, seconds)]
    daemon.stop()
    rows.append(direct("W2 contended", 16, seconds, contended=True))
    rows += etcd_rows("W2 contended", "etcd_txn_contended", [16], seconds, peers)
    return rows


def w3(seconds: float, peers: bool) -> list[dict[str, Any]]:
    floor = Floor()
    rows = [
        measured("W3 heartbeats unary", "floor", floor, "floor_unary", 64, seconds),
        measured("W3 heartbeats stream", "floor", floor, "floor_bidi", 64, seconds),
    ]
    floor.stop()
    daemon = BenchDaemon()
    asyncio.run(ws_setup(daemon.address, 64))
    rows += [
        measured("W3 heartbeats unary", "workerstate", daemon, "ws_heartbeat", 64, seconds),
        measured("W3 heartbeats stream", "workerstate", daemon, "ws_stream_heartbeat", 64, seconds),
    ]
    daemon.stop()
    rows += etcd_rows("W3 heartbeats stream", "etcd_keepalive", [64], seconds, peers)
    return rows


def w4(seconds: float) -> list[dict[str, Any]]:
    daemon = BenchDaemon()
    asyncio.run(ws_setup(daemon.address, 10_000))
    idle = measured("W4 reads idle", "workerstate", daemon, "ws_get", 4, seconds)
    load = MP.Process(target=drive, args=("ws_transition", daemon.address, 16, seconds + 3, 1))
    load.start()
    time.sleep(1.5)
    busy = measured("W4 reads under W1 N=16", "workerstate", daemon, "ws_get", 4, seconds)
    listing = measured("W4 ListWorkers page 100", "workerstate", daemon, "ws_list", 4, seconds)
    load.join(seconds + 60)
    daemon.stop()
    busy["p99_vs_idle"] = round(busy["p99_ms"] / idle["p99_ms"], 2)
    return [idle, busy, listing]


def w6(seconds: float) -> list[dict[str, Any]]:
    """100,000 workers and 1,000,000 events, written straight into a daemon-made file."""
    daemon = BenchDaemon()
    db, folder = daemon.db, daemon.tmp
    daemon.proc.terminate()
    daemon.proc.wait(30)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    now = int(time.time() * 1000)
    conn.executemany(
        "INSERT INTO events (revision, type, task_id, state, from_state, reason, time_ms, "
        "branch, worktree, description, created_at_ms) VALUES (?, 'STATE_CHANGED', ?, "
        "'WORKING', 'ASSIGNED', '', ?, 'b', 'w', NULL, ?)",
        ((r, f"big-{r % 100_000}", now, now) for r in range(1, 1_000_001)),
    )
    conn.executemany(
        "INSERT INTO workers (task_id, state, branch, worktree, description, created_at_ms,"
        " state_changed_at_ms, revision) VALUES (?, 'WORKING', 'b', 'w', NULL, ?, ?, ?)",
        ((f"big-{i}", now, now, 900_001 + i) for i in range(100_000)),
    )
    conn.execute("COMMIT")
    conn.close()
    size_mb = db.stat().st_size / 2**20
    began = time.perf_counter()
    big = BenchDaemon(db=db)
    startup = time.perf_counter() - began
    asyncio.run(ws_setup(big.address, 16))
    result = measured(
        "W6 100k workers, 1M events", "workerstate", big, "ws_transition", 16, seconds
    )
    big.stop()
    daemon.tmp = folder
    daemon.stop()
    result.update(startup_s=round(startup, 2), file_mb=round(size_mb))
    return [result]


def w5_row(r: dict[str, Any]) -> dict[str, Any]:
    """watch_fanout.run's result as a row of the table (deliveries count as operations)."""
    return {
        "workload": r["workload"],
        "system": r["system"],
        "params": {k: v for k, v in r["params"].items() if k != "seconds"},
        "ops_per_s": r["deliveries_per_s"],
        "p50_ms": r["p50_ms"],
        "p99_ms": r["p99_ms"],
        "p999_ms": None,
        "errors": 0,
        "server_cpu_ms_per_op": r["server_cpu_ms_per_delivery"],
        "rss_mb": r["rss_mb"],
        "every_event_delivered": r["every_event_delivered"],
    }


def w5(peers: bool) -> list[dict[str, Any]]:
    from watch_fanout import run as fanout

    systems = ["workerstate"]
    if peers and Etcd.available():
        systems.append("etcd")
    rows = [
        w5_row(fanout(watchers, rate, 10, 2, system))
        for watchers, rate in ((100, 200.0), (1000, 5.0))
        for system in systems
    ]
    if len(systems) == 1:
        rows.append(
            skipped("W5 watch fan-out", "etcd", f"etcd not installed: {etcd_bindings.INSTALL}")
        )
    return rows


# -- the table ----------------------------------------------------------------------------------


def _find(rows: list[dict[str, Any]], workload: str, system: str, n: int | None = None) -> Any:
    for r in rows:
        if (
            r["workload"] == workload
            and r["system"] == system
            and r.get("ops_per_s")
            and (n is None or r["params"].get("N") == n)
        ):
            return r
    return None


def targets(rows: list[dict[str, Any]]) -> list[Target]:
    """Each target of the write-path issue that these rows measure: (what, ratio, met)."""
    found: list[Target] = []
    floor64 = _find(rows, "W1 transitions", "floor", 64)
    ws64 = _find(rows, "W1 transitions", "workerstate", 64)
    if floor64 and ws64:
        ratio = ws64["ops_per_s"] / floor64["ops_per_s"]
        found.append(("W1 N=64 calls/s >= 0.8x floor", f"{ratio:.2f}x", ratio >= 0.8))
        cpu = ws64["server_cpu_ms_per_op"] / floor64["server_cpu_ms_per_op"]
        found.append(("W1 N=64 server CPU/op <= 1.5x floor", f"{cpu:.2f}x", cpu <= 1.5))
        etcd64 = _find(rows, "W1 transitions", "etcd", 64)
        if etcd64:
            vs = ws64["ops_per_s"] / etcd64["ops_per_s"]
            found.append(("(reach) W1 N=64 calls/s >= etcd", f"{vs:.2f}x", vs >= 1.0))
    floor1 = _find(rows, "W1 transitions", "floor", 1)
    ws1 = _find(rows, "W1 transitions", "workerstate", 1)
    if floor1 and ws1:
        extra = ws1["p50_ms"] - floor1["p50_ms"]
        found.append(("W1 N=1 p50 <= floor p50 + 0.35 ms", f"+{extra:.2f} ms", extra <= 0.35))
    busy = _find(rows, "W4 reads under W1 N=16", "workerstate")
    if busy:
        ratio = busy["p99_vs_idle"]
        found.append(("W4 GetWorker p99 under W1 <= 3x idle", f"{ratio:.2f}x", ratio <= 3.0))
    for kind, goal in (
        ("stream", "streamed beats >= 0.9x floor bidi"),
        ("unary", "unary beats >= 0.9x floor unary"),
    ):
        floor_w3 = _find(rows, f"W3 heartbeats {kind}", "floor")
        ws_w3 = _find(rows, f"W3 heartbeats {kind}", "workerstate")
        if floor_w3 and ws_w3:
            ratio = ws_w3["ops_per_s"] / floor_w3["ops_per_s"]
            found.append((f"W3 {goal}", f"{ratio:.2f}x", ratio >= 0.9))
    return [*found, *_contention_targets(rows), *_fan_out_targets(rows)]


def _contention_targets(rows: list[dict[str, Any]]) -> list[Target]:
    """W2: every client gets its share (slowest/fastest), and nobody waits longer than etcd's
    slowest."""
    ours, etcd = _find(rows, "W2 contended", "workerstate"), _find(rows, "W2 contended", "etcd")
    if not ours:
        return []
    fair = ours["slowest_vs_fastest"]
    found = [("W2 slowest/fastest client's ok/s >= 0.8", f"{fair:.2f}", fair >= 0.8)]
    if etcd:
        worst, theirs = ours["max_ms"], etcd["max_ms"]
        found.append(("W2 max latency <= etcd's", f"{worst} ms vs {theirs} ms", worst <= theirs))
    return found


def _fan_out_targets(rows: list[dict[str, Any]]) -> list[Target]:
    """W5 at 1,000 watchers: p50 and p99 at or below etcd's, every event delivered."""
    fan = {
        r["system"]: r
        for r in rows
        if r["workload"] == "W5 watch fan-out"
        and r["params"].get("watchers") == 1000
        and r.get("ops_per_s")
    }
    ours, etcd = fan.get("workerstate"), fan.get("etcd")
    if not (ours and etcd):
        return []
    met = (
        ours["p50_ms"] <= etcd["p50_ms"]
        and ours["p99_ms"] <= etcd["p99_ms"]
        and ours["every_event_delivered"]
    )
    return [
        (
            "W5 1,000 watchers p50 and p99 <= etcd's, every event delivered",
            f"p50 {ours['p50_ms']} vs {etcd['p50_ms']} ms, p99 {ours['p99_ms']} vs "
            f"{etcd['p99_ms']} ms, delivered={ours['every_event_delivered']}",
            met,
        )
    ]


# Each workload by name: what `--only` takes. The quick run is the first three.
QUICK = ("W1", "W3", "W4")
WORKLOADS = (*QUICK, "W2", "W5", "W6", "W7", "selectors", "lifecycle", "W8")


def steps(
    names: list[str], seconds: float, peers: bool, quick: bool
) -> list[Callable[[], list[dict[str, Any]]]]:
    """The named workloads, in WORKLOADS order. The newer ones live in modules of their own
    (each also runnable alone) and are imported only when asked for."""

    def w7() -> list[dict[str, Any]]:
        import bulk

        return bulk.measure(seconds, peers)

    def selectors() -> list[dict[str, Any]]:
        import listing

        return listing.measure(seconds, quick)

    def lifecycle() -> list[dict[str, Any]]:
        import lifecycle

        return lifecycle.measure(seconds, quick)

    def w8() -> list[dict[str, Any]]:
        import fleet

        # The probe's p99 at 50 transitions/s wants about 1,000 samples a phase: 20 s.
        return fleet.measure(seconds * 2.5, quick)

    by_name: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "W1": lambda: w1([1, 64] if quick else [1, 16, 64], seconds, peers),
        "W3": lambda: w3(seconds, peers),
        "W4": lambda: w4(seconds),
        "W2": lambda: w2(seconds, peers),
        "W5": lambda: w5(peers),
        "W6": lambda: w6(seconds),
        "W7": w7,
        "selectors": selectors,
        "lifecycle": lifecycle,
        "W8": w8,
    }
    return [by_name[n] for n in WORKLOADS if n in names]


def all_targets(rows: list[dict[str, Any]]) -> list[Target]:
    """This module's targets, then each newer module's (each looks only at its own rows)."""
    import bulk
    import fleet
    import lifecycle
    import listing

    return [
        *targets(rows),
        *bulk.targets(rows),
        *listing.targets(rows),
        *lifecycle.targets(rows),
        *fleet.targets(rows),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="W1 at N=1 and 64, W3 and W4 only")
    parser.add_argument("--seconds", type=float, default=None, help="measured time per row")
    parser.add_argument("--no-peers", action="store_true", help="skip etcd")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated workloads, of: {', '.join(WORKLOADS)} (with --quick: each "
        "one's smoke-sized run)",
    )
    parser.add_argument(
        "--commit-delay-ms",
        type=int,
        default=0,
        help="make each of the daemon's commits this much slower, as on a slow disk",
    )
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(QUICK if args.quick else WORKLOADS)
    if unknown := set(names) - set(WORKLOADS):
        parser.error(f"unknown workloads {sorted(unknown)}: choose from {', '.join(WORKLOADS)}")
    if args.commit_delay_ms:
        os.environ[COMMIT_DELAY_ENV] = str(args.commit_delay_ms)
    header = machine_note()
    print(header, flush=True)
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    peers = not args.no_peers
    if peers and not Etcd.available():
        print(f"etcd not installed, its rows are skipped: {etcd_bindings.INSTALL}", flush=True)
    rows: list[dict[str, Any]] = []
    for step in steps(names, seconds, peers, args.quick):
        new = step()
        for r in new:
            print(json.dumps(r), flush=True)
        rows += new
    # Some workloads never replace the whole table: they go to a file named after them.
    stem = "latest"
    if args.only:
        stem = "only-" + "-".join(names) + ("-quick" if args.quick else "")
    print(write(stem, rows, all_targets(rows), header))
    if any(r.get("every_event_delivered") is False for r in rows):
        sys.exit("FAILED: a watcher missed events (see the W5 rows)")


if __name__ == "__main__":
    main()
