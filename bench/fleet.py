"""W8, a fleet's heartbeats: 10,000 workers beating every 2 s, many to a stream, on SQLite.

    python bench/fleet.py                    # 10,000 workers every 2 s (5,000 beats/s), 20 s
    python bench/fleet.py --quick            # 1,000 workers (500 beats/s), 2 s (a smoke run)
    python bench/fleet.py --workers 4000 --period 1

The fleet runs on hosts of --per-stream (100) workers, each host one AsyncWorkerClient whose
heartbeaters (`client.heartbeater(task_id, interval=period)`) share one StreamHeartbeats
stream, as the library multiplexes them: the beats due together go as one message. Each
worker starts at a random moment of the first period, so beats spread evenly over it. The
hosts run in two client processes. One daemon, default (durable) settings, with a metrics
listener. Three phases, each --seconds long, in this order:

1. an idle fleet (the workers exist, nobody beats) while a probe makes paced transitions;
2. the fleet beating, with the same probe;
3. idle again, with the probe (its latencies pool with phase 1's as the idle baseline).

Reported for phase 2: beats/s the daemon recorded (`workerstate_heartbeats_received_total`)
and the messages that carried them; the daemon's CPU per beat and as a share of one core, net
of the probe's (its rate in the idle phases); peak RSS; the database commits per second that
heartbeats add (`workerstate_commit_batch_size_count`, fleet phase minus idle); the heartbeat
rows those commits write, derived (each flush upserts every worker that beat since the last:
the beats in one --heartbeat-flush interval, at most the fleet); and the probe's p99.
Goals: 5,000 beats/s held at no more than 35% of one core; the probe's p99 within 1.5x idle.

For context, two more rows without the probe: the same fleet sending one beat a message on
raw streams (what a client without `more` costs the daemon), and the floor (bench/floor.py,
an empty grpc.aio echo) under that same one-message-a-beat load: gRPC's own cost per message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import time
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bulk import apply_all, create
from report import Row, Target, machine_note, percentile, write
from run import MP
from servers import Floor, cpu_seconds
from watch_fanout import WorkerstateWriter
from workerstate.client import AsyncWorkerClient
from workerstate.v1 import workerstate_pb2 as pb

BEATS = "W8 fleet heartbeats"
PROBE = "W8 transitions"
HEARTBEATERS = "heartbeaters"  # the library's: one stream a host, the beats due together
ONE_A_MESSAGE = "one beat a message"  # raw streams, a message per beat
STREAMS_PER_CHANNEL = 50
FLUSH_S = 1.0  # the daemon's default --heartbeat-flush
TARGET_CORE = 35.0  # % of one core
TARGET_RATE = 5000  # beats/s the core budget is for
TARGET_P99 = 1.5


# -- the fleet: client processes, each with hosts of many workers ------------------------------


async def _host(
    address: str, task_ids: list[str], period: float, stop: Any, out: list[int]
) -> None:
    """One host's workers on one client, each beating once a `period` from a random start;
    out[1] counts the heartbeaters that ended (refused, or their worker finished)."""
    async with AsyncWorkerClient(address) as client, contextlib.AsyncExitStack() as stack:
        running = []
        starts = sorted(random.uniform(0, period) for _ in task_ids)
        began = time.monotonic()
        for task_id, start in zip(task_ids, starts, strict=True):
            await asyncio.sleep(max(0.0, began + start - time.monotonic()))
            running.append(await stack.enter_async_context(client.heartbeater(task_id, period)))
        await asyncio.to_thread(stop.wait)
        out[1] += sum(h.ended.is_set() for h in running)


async def _raw_streams(
    address: str, task_ids: list[str], per_stream: int, period: float, stop: Any, out: list[int]
) -> None:
    """One beat a message: each stream's workers take turns, spread evenly over `period`.
    `address` with a leading "floor:" sends raw bytes to the floor's echo instead."""
    floor = address.startswith("floor:")
    address = address.removeprefix("floor:")
    groups = [task_ids[i : i + per_stream] for i in range(0, len(task_ids), per_stream)]
    channels = [
        grpc.aio.insecure_channel(address)
        for _ in range((len(groups) + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)
    ]

    async def stream(index: int, ids: list[str]) -> None:
        channel = channels[index // STREAMS_PER_CHANNEL]
        method = "/floor.Floor/Bidi" if floor else "/workerstate.v1.WorkerService/StreamHeartbeats"
        call = channel.stream_stream(method)()
        requests = [
            pb.HeartbeatRequest(task_id=t, activity="working").SerializeToString() for t in ids
        ]
        slot = period / len(ids)

        async def read() -> None:
            async for _ in call:
                out[0] += 1

        reader = asyncio.ensure_future(read())
        begin = time.monotonic() + random.uniform(0, period)
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
            out[1] += 1
            reader.cancel()

    await asyncio.gather(*(stream(i, ids) for i, ids in enumerate(groups)))
    for channel in channels:
        await channel.close()


def fleet_process(
    address: str,
    task_ids: list[str],
    per_stream: int,
    period: float,
    client: str,
    stop: Any,
    counts: Any,
) -> None:
    """Beat every worker of `task_ids` once a `period` until `stop`. counts[0] is the beats
    answered so far (raw streams only), counts[1] the streams or heartbeaters that failed."""

    async def main() -> None:
        out = [0, 0]

        async def report() -> None:
            while not stop.is_set():
                counts[0], counts[1] = out
                await asyncio.sleep(0.1)

        reporter = asyncio.ensure_future(report())
        if client == HEARTBEATERS:
            hosts = [task_ids[i : i + per_stream] for i in range(0, len(task_ids), per_stream)]
            await asyncio.gather(*(_host(address, ids, period, stop, out) for ids in hosts))
        else:
            await _raw_streams(address, task_ids, per_stream, period, stop, out)
        reporter.cancel()
        counts[0], counts[1] = out

    asyncio.run(main())


class Fleet:
    """The client processes, started and stopped together."""

    def __init__(
        self,
        address: str,
        workers: int,
        per_stream: int,
        period: float,
        processes: int,
        client: str = HEARTBEATERS,
    ) -> None:
        self.stop = MP.Event()
        ids = [f"fleet-{i}" for i in range(workers)]
        # Whole hosts to each process: a host's workers never straddle two.
        hosts = [ids[i : i + per_stream] for i in range(0, workers, per_stream)]
        self.counts = [MP.Array("q", 2) for _ in range(processes)]
        self.procs = [
            MP.Process(
                target=fleet_process,
                args=(
                    address,
                    [t for h in hosts[p::processes] for t in h],
                    per_stream,
                    period,
                    client,
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

    def cpu_seconds(self) -> float:
        """The client processes' CPU: on 2 cores it competes with the daemon and the probe."""
        return sum(cpu_seconds(p.pid) for p in self.procs if p.pid is not None)

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


@dataclass(frozen=True)
class Tally:
    """The daemon's counters that a phase reads before and after (or their difference)."""

    cpu: float
    commits: float
    beats: float
    messages: float

    @classmethod
    def read(cls, daemon: Any) -> Tally:
        from postgres import scrape

        samples = scrape(daemon.metrics)
        return cls(
            daemon.cpu_seconds(),
            samples.get("workerstate_commit_batch_size_count", 0.0),
            samples.get("workerstate_heartbeats_received_total", 0.0),
            samples.get("workerstate_heartbeat_messages_total", 0.0),
        )

    def since(self, before: Tally) -> Tally:
        return Tally(*(a - b for a, b in zip(astuple(self), astuple(before), strict=True)))


Phase = tuple[list[float], Tally]  # the probe's latencies, what the daemon counted meanwhile


def measure(
    seconds: float,
    quick: bool,
    workers: int | None = None,
    period: float = 2.0,
    per_stream: int = 100,
    probe_rate: float = 50.0,
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

        def phase(with_probe: bool = True) -> Phase:
            """`seconds` of the probe (or of nothing), and the daemon's counts meanwhile."""
            probe.latencies = []
            before = Tally.read(daemon)
            if with_probe:
                loop.run_until_complete(probe.run(probe_rate, seconds))
            else:
                time.sleep(seconds)
            return probe.latencies, Tally.read(daemon).since(before)

        idle_before = phase()
        fleet = Fleet(daemon.address, workers, per_stream, period, processes)
        time.sleep(period + 2.0)  # every stream open, every worker has beaten
        clients_cpu = fleet.cpu_seconds()
        busy = phase()
        clients_cpu = fleet.cpu_seconds() - clients_cpu
        rss = daemon.peak_rss_mb()
        failed = fleet.failed()
        fleet.close()
        fleet = None
        time.sleep(FLUSH_S * 2)  # the last beats flushed before the idle phase
        idle_after = phase()
        loop.run_until_complete(probe.channel.close())
        # Context: the same fleet, one beat a message, on this daemon and on the floor.
        fleet = Fleet(daemon.address, workers, per_stream, period, processes, ONE_A_MESSAGE)
        time.sleep(period + 2.0)
        raw = phase(with_probe=False)[1]
        raw_failed = fleet.failed()
        fleet.close()
        fleet = None
        floor = floor_phase(workers, per_stream, period, processes, seconds)
    finally:
        if fleet:
            fleet.close()
        asyncio.set_event_loop(None)
        loop.close()
        daemon.stop()
    params = {"workers": workers, "period_s": period, "per_stream": per_stream}
    return [
        *rows(params, probe_rate, seconds, idle_before, busy, idle_after, rss, failed, clients_cpu),
        one_a_message_row("workerstate (SQLite)", params, seconds, raw, raw_failed),
        one_a_message_row("floor", params, seconds, *floor),
    ]


def floor_phase(
    workers: int, per_stream: int, period: float, processes: int, seconds: float
) -> tuple[Tally, int]:
    """The one-beat-a-message fleet against the floor's echo: its CPU and the echoes."""
    server = Floor()
    fleet = Fleet(f"floor:{server.address}", workers, per_stream, period, processes, ONE_A_MESSAGE)
    try:
        time.sleep(period + 2.0)
        cpu, answered = server.cpu_seconds(), fleet.answered()
        time.sleep(seconds)
        echoes = fleet.answered() - answered
        return Tally(server.cpu_seconds() - cpu, 0.0, echoes, echoes), fleet.failed()
    finally:
        fleet.close()
        server.stop()


def one_a_message_row(
    system: str, params: dict[str, Any], seconds: float, tally: Tally, failed: int
) -> Row:
    """A context row: the daemon's (or the floor's) gross CPU for one beat a message."""
    return {
        "workload": BEATS,
        "system": system,
        "params": {**params, "client": ONE_A_MESSAGE},
        "ops_per_s": round(tally.beats / seconds),
        "p50_ms": None,
        "p99_ms": None,
        "p999_ms": None,
        "errors": failed,
        "server_cpu_ms_per_op": round(tally.cpu * 1000 / tally.beats, 4) if tally.beats else None,
        "rss_mb": None,
        "core_percent": round(tally.cpu / seconds * 100, 1),
        "messages_per_s": round(tally.messages / seconds),
    }


def rows(
    params: dict[str, Any],
    probe_rate: float,
    seconds: float,
    idle_before: Phase,
    busy: Phase,
    idle_after: Phase,
    rss: float,
    failed: int,
    clients_cpu: float,
) -> list[Row]:
    """The fleet's row (net of the probe) and the probe's, idle (both idle phases) and busy."""
    idle_lat = idle_before[0] + idle_after[0]
    idle_cpu_per_s = (idle_before[1].cpu + idle_after[1].cpu) / (2 * seconds)
    idle_commits_per_s = (idle_before[1].commits + idle_after[1].commits) / (2 * seconds)
    latencies, tally = busy
    net_cpu = max(0.0, tally.cpu - idle_cpu_per_s * seconds)
    beats_per_s = tally.beats / seconds
    workers = params["workers"]
    fleet_row: Row = {
        "workload": BEATS,
        "system": "workerstate (SQLite)",
        "params": {**params, "client": HEARTBEATERS},
        "ops_per_s": round(beats_per_s),
        "p50_ms": None,
        "p99_ms": None,
        "p999_ms": None,
        "errors": failed,
        "server_cpu_ms_per_op": round(net_cpu * 1000 / tally.beats, 4) if tally.beats else None,
        "rss_mb": round(rss, 1),
        "target_beats_per_s": round(workers / params["period_s"]),
        "core_percent": round(net_cpu / seconds * 100, 1),
        "core_percent_with_probe": round(tally.cpu / seconds * 100, 1),
        "messages_per_s": round(tally.messages / seconds),
        "clients_core_percent": round(clients_cpu / seconds * 100, 1),
        "heartbeat_commits_per_s": round(tally.commits / seconds - idle_commits_per_s, 2),
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
            "probes": len(values),
        }

    return [fleet_row, probe_row("idle", idle_lat), probe_row("beating", latencies)]


def targets(rows: list[Row]) -> list[Target]:
    found: list[Target] = []
    beats = [r for r in rows if r["workload"] == BEATS]
    fleet = next((r for r in beats if r["params"].get("client") == HEARTBEATERS), None)
    raw = {r["system"]: r for r in beats if r["params"].get("client") == ONE_A_MESSAGE}
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
                f"{fleet['messages_per_s']:,} messages/s, "
                f"{fleet['heartbeat_commits_per_s']} commits/s)",
                held and fleet["core_percent"] <= TARGET_CORE and not fleet["errors"],
            )
        )
    ours, floor = raw.get("workerstate (SQLite)"), raw.get("floor")
    if ours and floor and ours["server_cpu_ms_per_op"] and floor["server_cpu_ms_per_op"]:
        ratio = ours["server_cpu_ms_per_op"] / floor["server_cpu_ms_per_op"]
        found.append(
            (
                "(context) W8 one beat a message: daemon CPU a beat vs the floor's a message",
                f"{ours['server_cpu_ms_per_op']} ms ({ours['core_percent']}% of a core) vs "
                f"{floor['server_cpu_ms_per_op']} ms ({floor['core_percent']}%) = {ratio:.2f}x",
                ratio <= 1.5,
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
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="measured time per phase (20 s: the probe's p99 from 1,000 transitions)",
    )
    parser.add_argument("--workers", type=int, default=None, help="workers beating (10,000)")
    parser.add_argument(
        "--period", type=float, default=2.0, help="seconds between a worker's beats"
    )
    parser.add_argument(
        "--per-stream", type=int, default=100, help="workers on one host (a client, a stream)"
    )
    parser.add_argument("--probe-rate", type=float, default=50.0, help="probe transitions/s")
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
