"""Watch fan-out: N watchers while a writer commits R changes/s; every watcher must get every
event. Reports delivery latency and the server's RSS and CPU, for workerstate or etcd.

    python bench/watch_fanout.py --watchers 100 --rate 200 --seconds 10
    python bench/watch_fanout.py --watchers 1000 --rate 5 --seconds 10 --system etcd
    python bench/watch_fanout.py --filter selector   # each watch with a label selector

`--filter` gives every workerstate watch a filter that every measured event passes: `states`
(the states the writer's workers pass through) or `selector` (a label selector on the labels
every worker is created with). The deliveries are the same, so the CPU per delivery shows what
evaluating the filter costs, one against the other.

Watchers run in separate processes (one Python process cannot read 1,000 streams fast enough
to measure the server rather than itself). Latency is the receipt time minus the time the
writer sent the change, which the change itself carries (a transition's `reason`, an etcd
value): the same clock and the same span for both systems, from request to delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import etcd_bindings
from report import percentile
from servers import BenchDaemon, Etcd, Server
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

STREAMS_PER_CHANNEL = 50
S = pb.WorkerState
SYSTEMS = ("workerstate", "etcd")
ETCD_PREFIX, ETCD_END = b"fan/", b"fan0"  # every key under fan/
# Every worker the writer makes carries these labels, so the selector matches every event;
# the states filter lists every state they pass through (the sentinel is ASSIGNED).
LABELS = {"fan": "yes", "tier": "a"}
FILTERS: dict[str, dict[str, Any]] = {
    "none": {},
    "states": {
        "states": [S.WORKER_STATE_ASSIGNED, S.WORKER_STATE_WORKING, S.WORKER_STATE_IN_REVIEW]
    },
    "selector": {"label_selector": "fan=yes,tier in (a,b)"},
}

# A watch yields (revision, the writer's send time in ms) for each event it receives.
Changes = AsyncIterator[list[tuple[int, str]]]


def now_ms() -> str:
    return f"{time.time() * 1000:.3f}"


# -- one watch stream per system -------------------------------------------------------------


async def workerstate_watch(
    channel: grpc.aio.Channel, start: int, watch_filter: str = "none"
) -> Changes:
    request = pb.WatchStateRequest(start_revision=start, **FILTERS[watch_filter])
    call = pb_grpc.WorkerServiceStub(channel).WatchState(request)
    try:
        async for message in call:
            yield [(e.revision, e.reason) for e in message.events]
    finally:
        call.cancel()


async def etcd_watch(channel: grpc.aio.Channel, start: int, watch_filter: str = "none") -> Changes:
    """A prefix watch; etcd has no filter to compare, so `watch_filter` must be "none"."""
    assert watch_filter == "none", "etcd watches take no filter here"
    rpc, stubs = etcd_bindings.load()
    stream = stubs.WatchStub(channel).Watch()
    create = rpc.WatchCreateRequest(key=ETCD_PREFIX, range_end=ETCD_END, start_revision=start)
    try:
        await stream.write(rpc.WatchRequest(create_request=create))
        async for message in stream:
            yield [(e.kv.mod_revision, e.kv.value.decode()) for e in message.events]
    finally:
        stream.cancel()


WATCHES: dict[str, Callable[[grpc.aio.Channel, int, str], Changes]] = {
    "workerstate": workerstate_watch,
    "etcd": etcd_watch,
}


def watcher_process(
    system: str,
    address: str,
    count: int,
    start: int,
    ready: Any,
    last: Any,
    out: mp.Queue,
    watch_filter: str = "none",
) -> None:
    """Run `count` watchers from `start`; report each one's revisions count and latencies.

    The event at `start` is the warm-up: a watcher that has it is live, and counts in `ready`.
    """

    async def main() -> None:
        channels = [
            grpc.aio.insecure_channel(address)
            for _ in range((count + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)
        ]
        latencies: list[float] = []
        results: list[tuple[int, bool]] = []

        async def watch(i: int) -> None:
            expected = start
            in_order = True
            stream = WATCHES[system](channels[i // STREAMS_PER_CHANNEL], start, watch_filter)
            async for changes in stream:
                received = time.time() * 1000
                for revision, sent in changes:
                    if last.value and revision > last.value:
                        break  # the sentinel: everything measured has arrived
                    in_order &= revision == expected
                    expected = revision + 1
                    if revision == start:
                        with ready.get_lock():
                            ready.value += 1
                    else:
                        latencies.append(received - float(sent))
                else:
                    continue
                break
            await stream.aclose()
            results.append((expected - start, in_order))

        await asyncio.gather(*(watch(i) for i in range(count)))
        for channel in channels:
            await channel.close()
        out.put((results, latencies))

    asyncio.run(main())


# -- the writer, per system: setup, one change, and the sentinel -----------------------------


class Writer(ABC):
    """Open-loop changes at a fixed rate; each change carries its send time."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)

    @abstractmethod
    async def setup(self, keys: int) -> int:
        """Create `keys` things to change; returns the revision watchers start after."""

    @abstractmethod
    async def change(self, n: int) -> int:
        """Make the n-th change; returns its revision."""

    @abstractmethod
    async def sentinel(self) -> None:
        """One more change, after the measured ones, that tells watchers to stop."""

    async def run(self, rate: float, seconds: float) -> int:
        """Changes at `rate` per second; returns the last revision written."""
        last = 0
        pending: set[asyncio.Task[None]] = set()

        async def one(n: int) -> None:
            nonlocal last
            last = max(last, await self.change(n))

        begin = time.monotonic()
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, begin + n / rate - time.monotonic()))
            task = asyncio.create_task(one(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        return last


class WorkerstateWriter(Writer):
    async def setup(self, keys: int) -> int:
        self.stub = pb_grpc.WorkerServiceStub(self.channel)
        self.workers = [f"fan-{i}" for i in range(keys)]
        self.states = dict.fromkeys(self.workers, S.WORKER_STATE_WORKING)
        revision = 0
        for task_id in self.workers:
            await self.stub.CreateWorker(
                pb.CreateWorkerRequest(task_id=task_id, branch="b", worktree="/w", labels=LABELS)
            )
            response = await self.stub.Transition(
                pb.TransitionRequest(
                    task_id=task_id,
                    from_state=S.WORKER_STATE_ASSIGNED,
                    to_state=S.WORKER_STATE_WORKING,
                )
            )
            revision = response.revision
        return revision

    async def change(self, n: int) -> int:
        # Each worker moves at most once in flight, so its compare-and-set always holds.
        task_id = self.workers[n % len(self.workers)]
        before = self.states[task_id]
        to = (
            S.WORKER_STATE_IN_REVIEW if before == S.WORKER_STATE_WORKING else S.WORKER_STATE_WORKING
        )
        self.states[task_id] = to
        request = pb.TransitionRequest(
            task_id=task_id, from_state=before, to_state=to, reason=now_ms()
        )
        return int((await self.stub.Transition(request)).revision)

    async def sentinel(self) -> None:
        await self.stub.CreateWorker(
            pb.CreateWorkerRequest(task_id="end", branch="b", worktree="/w", labels=LABELS)
        )


class EtcdWriter(Writer):
    async def setup(self, keys: int) -> int:
        self.rpc, stubs = etcd_bindings.load()
        self.kv = stubs.KVStub(self.channel)
        self.keys = [ETCD_PREFIX + str(i).encode() for i in range(keys)]
        revision = 0
        for key in self.keys:
            response = await self.kv.Put(self.rpc.PutRequest(key=key, value=now_ms().encode()))
            revision = response.header.revision
        return int(revision)

    async def change(self, n: int) -> int:
        key = self.keys[n % len(self.keys)]
        response = await self.kv.Put(self.rpc.PutRequest(key=key, value=now_ms().encode()))
        return int(response.header.revision)

    async def sentinel(self) -> None:
        await self.kv.Put(self.rpc.PutRequest(key=ETCD_PREFIX + b"end", value=b"0"))


SERVERS: dict[str, tuple[Callable[[], Server], type[Writer]]] = {
    "workerstate": (BenchDaemon, WorkerstateWriter),
    "etcd": (Etcd, EtcdWriter),
}


def collect(
    loop: asyncio.AbstractEventLoop, writer: Any, out: Any, procs: list[Any]
) -> tuple[list[Any], list[float]]:
    """End the watchers (the writer's sentinel), gather what each saw, close the writer."""
    loop.run_until_complete(writer.sentinel())
    results: list[Any] = []
    latencies: list[float] = []
    for _ in procs:
        got, lat = out.get(timeout=120)
        results.extend(got)
        latencies.extend(lat)
    for proc in procs:
        proc.join(10)
    loop.run_until_complete(writer.channel.close())
    return results, latencies


def run(
    watchers: int,
    rate: float,
    seconds: float,
    processes: int,
    system: str = "workerstate",
    watch_filter: str = "none",
) -> dict[str, Any]:
    start_server, writer_class = SERVERS[system]
    server = start_server()
    # One loop for the writer across setup, the run and the sentinel: its channel stays open.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        writer = writer_class(server.address)
        # Enough keys that no key has two changes in flight at this rate.
        head = loop.run_until_complete(writer.setup(max(8, int(rate))))
        # Spawned, not forked: this process already has a gRPC channel open.
        spawn = mp.get_context("spawn")
        ready = spawn.Value("i", 0)
        last = spawn.Value("q", 0)
        out: mp.Queue = spawn.Queue()
        shares = [watchers // processes + (i < watchers % processes) for i in range(processes)]
        procs = [
            spawn.Process(
                target=watcher_process,
                args=(system, server.address, share, head + 1, ready, last, out, watch_filter),
            )
            for share in shares
            if share
        ]
        for proc in procs:
            proc.start()
        # Measure only once every stream is live: each has received the warm-up change.
        loop.run_until_complete(writer.change(0))
        deadline = time.monotonic() + 120
        while ready.value < watchers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {ready.value} of {watchers} watches started")
            time.sleep(0.1)
        cpu_before = server.cpu_seconds()
        last_revision = loop.run_until_complete(writer.run(rate, seconds))
        cpu = server.cpu_seconds() - cpu_before
        last.value = last_revision
        results, latencies = collect(loop, writer, out, procs)
        expected = last_revision - head
        complete = all(count == expected and ordered for count, ordered in results)
        return {
            "workload": "W5 watch fan-out",
            "system": system,
            "params": {
                "watchers": watchers,
                "rate": rate,
                "seconds": seconds,
                **({"filter": watch_filter} if watch_filter != "none" else {}),
            },
            "events_per_watcher": expected,
            "every_event_delivered": complete and len(results) == watchers,
            "deliveries_per_s": round(len(latencies) / seconds),
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1) if latencies else None,
            "server_cpu_s": round(cpu, 2),
            "server_cpu_ms_per_delivery": round(cpu * 1000 / max(len(latencies), 1), 3),
            "rss_mb": round(server.peak_rss_mb(), 1),
        }
    finally:
        loop.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=100, help="concurrent watchers")
    parser.add_argument("--rate", type=float, default=200, help="changes per second")
    parser.add_argument("--seconds", type=float, default=10, help="how long the writer runs")
    parser.add_argument("--processes", type=int, default=2, help="watcher client processes")
    parser.add_argument(
        "--system", choices=SYSTEMS, default="workerstate", help="the server to measure"
    )
    parser.add_argument(
        "--filter",
        choices=tuple(FILTERS),
        default="none",
        help="each workerstate watch's filter (every measured event passes it)",
    )
    args = parser.parse_args()
    if args.system == "etcd" and args.filter != "none":
        parser.error("--filter is for workerstate: etcd's watch here is a plain prefix")
    if args.system == "etcd" and not Etcd.available():
        sys.exit(f"etcd is not installed: {etcd_bindings.INSTALL}")
    row = run(args.watchers, args.rate, args.seconds, args.processes, args.system, args.filter)
    print(json.dumps(row, indent=2))
    if not row["every_event_delivered"]:
        sys.exit("FAILED: some watcher missed events")


if __name__ == "__main__":
    main()
