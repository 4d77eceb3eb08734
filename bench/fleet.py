"""W8, a fleet's heartbeats: 10,000 workers beating every 2 s, many to a stream, on SQLite.

    python bench/fleet.py                    # 10,000 workers every 2 s (5,000 beats/s), 10 s
    python bench/fleet.py --quick            # 1,000 workers (500 beats/s), 2 s (a smoke run)
    python bench/fleet.py --workers 4000 --period 1

A fleet's client library multiplexes its workers' beats onto a few StreamHeartbeats streams,
so here each stream carries --per-stream workers (100), each beating once a --period, spread
evenly over it, from two client processes. One daemon, default (durable) settings, with a
metrics listener. Three phases, each --seconds long, in this order:

1. an idle fleet (the workers exist, nobody beats) while a probe makes paced transitions;
2. the fleet beating, with the same probe;
3. idle again, with the probe (its latencies pool with phase 1's as the idle baseline).

Reported for phase 2: beats/s received back; the daemon's CPU per beat and as a share of one
core, net of the probe's (its rate in the idle phases); peak RSS; the database commits per
second that heartbeats add (`workerstate_commit_batch_size_count`, fleet phase minus idle); the
heartbeat rows those commits write, derived (each flush upserts every worker that beat since the
last: the beats in one --heartbeat-flush interval, at most the fleet); and the probe's p99.
Goals: 5,000 beats/s held at no more than 35% of one core; the probe's p99 within 1.5x idle.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bulk import apply_all, create
from report import Row, Target, machine_note, percentile, write
from run import MP
from watch_fanout import WorkerstateWriter
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

BEATS = "W8 fleet heartbeats"
PROBE = "W8 transitions"
STREAMS_PER_CHANNEL = 50
FLUSH_S = 1.0  # the daemon's default --heartbeat-flush
TARGET_CORE = 35.0  # % of one core
TARGET_RATE = 5000  # beats/s the core budget is for
TARGET_P99 = 1.5


# -- the fleet: client processes, each with streams of many workers ----------------------------


def fleet_process(
    address: str, task_ids: list[str], per_stream: int, period: float, stop: Any, counts: Any
) -> None:
    """Beat every worker of `task_ids` once a `period` until `stop`; counts[0] is the beats
    answered so far, counts[1] the streams that failed."""

    async def main() -> None:
        answered = failed = 0
        groups = [task_ids[i : i + per_stream] for i in range(0, len(task_ids), per_stream)]
        channels = [
            grpc.aio.insecure_channel(address)
            for _ in range((len(groups) + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)
        ]

        async def stream(index: int, ids: list[str]) -> None:
            nonlocal answered, failed
            stub = pb_grpc.WorkerServiceStub(channels[index // STREAMS_PER_CHANNEL])
            call = stub.StreamHeartbeats()
            requests = [pb.HeartbeatRequest(task_id=t, activity="working") for t in ids]
            slot = period / len(ids)

            async def read() -> None:
                nonlocal answered
                async for _ in call:
                    answered += 1

            reader = asyncio.ensure_future(read())
            begin = time.monotonic() + random.uniform(0, slot * len(ids))
            sent = 0
            try:
                while not stop.is_set():
                    await asyncio.sleep(max(0.0, begin + sent * slot - time.monotonic()))
                    # Catch up on every beat now due: a late wake-up does not lower the rate.
                    while begin + sent * slot <= time.monotonic():
                        await call.write(requests[sent % len(requests)])
                        sent += 1
                await call.done_writing()
                await reader
            except grpc.aio.AioRpcError:
                failed += 1
                reader.cancel()

        async def report() -> None:
            while not stop.is_set():
                counts[0], counts[1] = answered, failed
                await asyncio.sleep(0.1)

        reporter = asyncio.ensure_future(report())
        await asyncio.gather(*(stream(i, ids) for i, ids in enumerate(groups)))
        reporter.cancel()
        counts[0], counts[1] = answered, failed
        for channel in channels:
            await channel.close()

    asyncio.run(main())


class Fleet:
    """The client processes, started and stopped together."""

    def __init__(
        self, address: str, workers: int, per_stream: int, period: float, processes: int
    ) -> None:
        self.stop = MP.Event()
        ids = [f"fleet-{i}" for i in range(workers)]
        # Whole streams to each process: a stream's workers never straddle two.
        streams = [ids[i : i + per_stream] for i in range(0, workers, per_stream)]
        self.counts = [MP.Array("q", 2) for _ in range(processes)]
        self.procs = [
            MP.Process(
                target=fleet_process,
                args=(
                    address,
                    [t for s in streams[p::processes] for t in s],
                    per_stream,
                    period,
                    self.stop,
                    self.counts[p],
                ),
            )
            for p in range(processes)
        ]
        for proc in self.procs:
            proc.start()

    def answered(self) -> int:
        return sum(c[0] for c in self.counts)

    def failed(self) -> int:
        return sum(c[1] for c in self.counts)

    def close(self) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.terminate()


# -- the probe: paced transitions, timed ---------------------------------------------------------


class Probe(WorkerstateWriter):
    """watch_fanout's open-loop writer, timing each transition from send to answer."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.latencies: list[float] = []

    async def change(self, n: int) -> int:
        began = time.perf_counter()
        revision = await super().change(n)
        self.latencies.append((time.perf_counter() - began) * 1000)
        return revision


def commits(metrics: str) -> float:
    from postgres import scrape

    return scrape(metrics).get("workerstate_commit_batch_size_count", 0.0)


def measure(
    seconds: float,
    quick: bool,
    workers: int | None = None,
    period: float = 2.0,
    per_stream: int = 100,
    probe_rate: float = 20.0,
    processes: int = 2,
) -> list[Row]:
    from postgres import SqliteDaemon

    workers = workers or (1000 if quick else 10_000)
    seconds = min(seconds, 2.0) if quick else seconds
    daemon = SqliteDaemon()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # the probe's channel lives across the phases
    fleet: Fleet | None = None
    try:
        ids = (create(f"fleet-{i}") for i in range(workers))
        loop.run_until_complete(apply_all(daemon.address, ids))
        probe = Probe(daemon.address)
        loop.run_until_complete(probe.setup(max(8, int(probe_rate))))
        loop.run_until_complete(probe.change(0))  # the warm-up

        def phase() -> tuple[list[float], float, float, int]:
            """The probe for `seconds`: (its latencies, daemon CPU s, commits, beats)."""
            probe.latencies = []
            cpu, done = daemon.cpu_seconds(), commits(daemon.metrics)
            beats = fleet.answered() if fleet else 0
            loop.run_until_complete(probe.run(probe_rate, seconds))
            return (
                probe.latencies,
                daemon.cpu_seconds() - cpu,
                commits(daemon.metrics) - done,
                (fleet.answered() if fleet else 0) - beats,
            )

        idle_before = phase()
        fleet = Fleet(daemon.address, workers, per_stream, period, processes)
        time.sleep(period + 2.0)  # every stream open, every worker has beaten
        busy = phase()
        rss = daemon.peak_rss_mb()
        failed = fleet.failed()
        fleet.close()
        fleet = None
        time.sleep(FLUSH_S * 2)  # the last beats flushed before the idle phase
        idle_after = phase()
        loop.run_until_complete(probe.channel.close())
    finally:
        if fleet:
            fleet.close()
        asyncio.set_event_loop(None)
        loop.close()
        daemon.stop()
    return rows(
        workers, period, per_stream, probe_rate, seconds, idle_before, busy, idle_after, rss, failed
    )


def rows(
    workers: int,
    period: float,
    per_stream: int,
    probe_rate: float,
    seconds: float,
    idle_before: tuple[list[float], float, float, int],
    busy: tuple[list[float], float, float, int],
    idle_after: tuple[list[float], float, float, int],
    rss: float,
    failed: int,
) -> list[Row]:
    """The fleet's row (net of the probe) and the probe's, idle (both idle phases) and busy."""
    idle_lat = idle_before[0] + idle_after[0]
    idle_cpu_per_s = (idle_before[1] + idle_after[1]) / (2 * seconds)
    idle_commits_per_s = (idle_before[2] + idle_after[2]) / (2 * seconds)
    latencies, cpu, done, beats = busy
    net_cpu = max(0.0, cpu - idle_cpu_per_s * seconds)
    beats_per_s = beats / seconds
    params = {"workers": workers, "period_s": period, "per_stream": per_stream}
    fleet_row: Row = {
        "workload": BEATS,
        "system": "workerstate (SQLite)",
        "params": params,
        "ops_per_s": round(beats_per_s),
        "p50_ms": None,
        "p99_ms": None,
        "p999_ms": None,
        "errors": failed,
        "server_cpu_ms_per_op": round(net_cpu * 1000 / beats, 4) if beats else None,
        "rss_mb": round(rss, 1),
        "target_beats_per_s": round(workers / period),
        "core_percent": round(net_cpu / seconds * 100, 1),
        "core_percent_with_probe": round(cpu / seconds * 100, 1),
        "heartbeat_commits_per_s": round(done / seconds - idle_commits_per_s, 2),
        "heartbeat_rows_per_s_derived": round(min(workers, beats_per_s * FLUSH_S) / FLUSH_S),
    }

    def probe_row(phase: str, values: list[float]) -> Row:
        return {
            "workload": PROBE,
            "system": "workerstate (SQLite)",
            "params": {"rate": probe_rate, "fleet": phase},
            "ops_per_s": round(len(values) / (seconds * (2 if phase == "idle" else 1))),
            "p50_ms": round(statistics.median(values), 2) if values else None,
            "p99_ms": round(percentile(values, 0.99), 2),
            "p999_ms": round(percentile(values, 0.999), 2),
            "errors": 0,
            "server_cpu_ms_per_op": None,
            "rss_mb": None,
        }

    return [fleet_row, probe_row("idle", idle_lat), probe_row("beating", latencies)]


def targets(rows: list[Row]) -> list[Target]:
    found: list[Target] = []
    fleet = next((r for r in rows if r["workload"] == BEATS), None)
    probe = {r["params"]["fleet"]: r for r in rows if r["workload"] == PROBE}
    if fleet:
        rate, wanted = fleet["ops_per_s"], fleet["target_beats_per_s"]
        held = rate >= 0.98 * wanted
        found.append(
            (
                f"W8 {wanted:,} beats/s held at <= {TARGET_CORE:g}% of one core (goal at "
                f"{TARGET_RATE:,} beats/s)",
                f"{rate:,} beats/s at {fleet['core_percent']}% "
                f"({fleet['server_cpu_ms_per_op']} ms CPU a beat, "
                f"{fleet['heartbeat_commits_per_s']} commits/s)",
                held and fleet["core_percent"] <= TARGET_CORE and not fleet["errors"],
            )
        )
    if probe.get("idle") and probe.get("beating") and probe["idle"]["p99_ms"]:
        ratio = probe["beating"]["p99_ms"] / probe["idle"]["p99_ms"]
        found.append(
            (
                f"W8 transition p99 with the fleet beating <= {TARGET_P99}x idle fleet",
                f"{probe['beating']['p99_ms']} ms vs {probe['idle']['p99_ms']} ms = {ratio:.2f}x",
                ratio <= TARGET_P99,
            )
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 workers, 2 s a phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per phase")
    parser.add_argument("--workers", type=int, default=None, help="workers beating (10,000)")
    parser.add_argument(
        "--period", type=float, default=2.0, help="seconds between a worker's beats"
    )
    parser.add_argument("--per-stream", type=int, default=100, help="workers on one stream")
    parser.add_argument("--probe-rate", type=float, default=20.0, help="probe transitions/s")
    parser.add_argument("--processes", type=int, default=2, help="fleet client processes")
    args = parser.parse_args()
    header = machine_note()
    print(header, flush=True)
    rows = measure(
        args.seconds,
        args.quick,
        args.workers,
        args.period,
        args.per_stream,
        args.probe_rate,
        args.processes,
    )
    print(write("fleet" + ("-quick" if args.quick else ""), rows, targets(rows), header))


if __name__ == "__main__":
    main()
