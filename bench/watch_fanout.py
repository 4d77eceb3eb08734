"""Watch fan-out: N watchers while a writer commits R transitions/s; every watcher must get
every event. Reports delivery latency (commit to receipt) and the daemon's RSS and CPU.

    python bench/watch_fanout.py --watchers 100 --rate 200 --seconds 10
    python bench/watch_fanout.py --watchers 1000 --rate 5 --seconds 10

Watchers run in separate processes (one Python process cannot read 1,000 streams fast enough
to measure the daemon rather than itself). Latency is the receipt time minus the event's
commit time, both from this machine's clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import BenchDaemon
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

STREAMS_PER_CHANNEL = 50
S = pb.WorkerState


def watcher_process(address: str, count: int, start: int, last: mp.Value, out: mp.Queue) -> None:
    """Run `count` watchers from `start`; report each one's revisions count and latencies."""

    async def main() -> None:
        channels = [
            grpc.aio.insecure_channel(address)
            for _ in range((count + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)
        ]
        latencies: list[float] = []
        results: list[tuple[int, bool]] = []

        async def watch(i: int) -> None:
            stub = pb_grpc.WorkerServiceStub(channels[i // STREAMS_PER_CHANNEL])
            expected = start
            in_order = True
            stream = stub.WatchState(pb.WatchStateRequest(start_revision=start))
            async for message in stream:
                now_ms = time.time() * 1000
                for event in message.events:
                    if last.value and event.revision > last.value:
                        break  # the sentinel: everything measured has arrived
                    in_order &= event.revision == expected
                    expected = event.revision + 1
                    latencies.append(now_ms - event.time.ToMilliseconds())
                else:
                    continue
                break
            stream.cancel()
            results.append((expected - start, in_order))

        await asyncio.gather(*(watch(i) for i in range(count)))
        for channel in channels:
            await channel.close()
        out.put((results, latencies))

    asyncio.run(main())


async def write(address: str, workers: list[str], rate: float, seconds: float) -> int:
    """Open-loop transitions at `rate` per second; returns the last revision written."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        states = dict.fromkeys(workers, S.WORKER_STATE_WORKING)
        last = 0
        pending: set[asyncio.Task[None]] = set()

        async def move(task_id: str) -> None:
            nonlocal last
            to = (
                S.WORKER_STATE_IN_REVIEW
                if states[task_id] == S.WORKER_STATE_WORKING
                else S.WORKER_STATE_WORKING
            )
            from_state, states[task_id] = states[task_id], to
            response = await stub.Transition(
                pb.TransitionRequest(task_id=task_id, from_state=from_state, to_state=to)
            )
            last = max(last, response.revision)

        begin = time.monotonic()
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, begin + n / rate - time.monotonic()))
            # Each worker moves at most once in flight, so its compare-and-set always holds.
            task = asyncio.create_task(move(workers[n % len(workers)]))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        return last


async def sentinel(address: str) -> None:
    """One more event, after the measured ones, that tells watchers to stop."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        await stub.CreateWorker(pb.CreateWorkerRequest(task_id="end", branch="b", worktree="/w"))


async def setup(address: str, n: int) -> tuple[list[str], int]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.WorkerServiceStub(channel)
        workers = [f"fan-{i}" for i in range(n)]
        for task_id in workers:
            await stub.CreateWorker(
                pb.CreateWorkerRequest(task_id=task_id, branch="b", worktree="/w")
            )
            response = await stub.Transition(
                pb.TransitionRequest(
                    task_id=task_id,
                    from_state=S.WORKER_STATE_ASSIGNED,
                    to_state=S.WORKER_STATE_WORKING,
                )
            )
        return workers, response.revision


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def run(watchers: int, rate: float, seconds: float, processes: int) -> dict[str, object]:
    daemon = BenchDaemon()
    try:
        # Enough workers that no worker has two transitions in flight at this rate.
        workers, head = asyncio.run(setup(daemon.address, max(8, int(rate))))
        last = mp.Value("q", 0)
        out: mp.Queue = mp.Queue()
        shares = [watchers // processes + (i < watchers % processes) for i in range(processes)]
        procs = [
            mp.Process(target=watcher_process, args=(daemon.address, share, head + 1, last, out))
            for share in shares
            if share
        ]
        for proc in procs:
            proc.start()
        time.sleep(1.0 + watchers / 500)  # let every stream open
        cpu_before = daemon.cpu_seconds()
        last_revision = asyncio.run(write(daemon.address, workers, rate, seconds))
        cpu = daemon.cpu_seconds() - cpu_before
        last.value = last_revision
        asyncio.run(sentinel(daemon.address))
        results, latencies = [], []
        for _ in procs:
            got, lat = out.get(timeout=120)
            results.extend(got)
            latencies.extend(lat)
        for proc in procs:
            proc.join(10)
        expected = last_revision - head
        complete = all(count == expected and ordered for count, ordered in results)
        return {
            "workload": "W5 watch fan-out",
            "system": "workerstate",
            "params": {"watchers": watchers, "rate": rate, "seconds": seconds},
            "events_per_watcher": expected,
            "every_event_delivered": complete and len(results) == watchers,
            "deliveries_per_s": round(len(latencies) / seconds),
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1) if latencies else None,
            "server_cpu_s": round(cpu, 2),
            "rss_mb": round(daemon.peak_rss_mb(), 1),
        }
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=100, help="concurrent watchers")
    parser.add_argument("--rate", type=float, default=200, help="transitions per second")
    parser.add_argument("--seconds", type=float, default=10, help="how long the writer runs")
    parser.add_argument("--processes", type=int, default=2, help="watcher client processes")
    args = parser.parse_args()
    row = run(args.watchers, args.rate, args.seconds, args.processes)
    print(json.dumps(row, indent=2))
    if not row["every_event_delivered"]:
        sys.exit("FAILED: some watcher missed events")


if __name__ == "__main__":
    main()
