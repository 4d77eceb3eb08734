"""Where a lone transition's and a beat's time goes inside the daemon, part by part.

    python bench/split.py                    # 3,000 transitions and 30,000 beats
    python bench/split.py --rounds 10000

A real daemon (default settings, a SQLite file in a temporary folder, its change log at INFO
written to a file) runs in this process, and its servicer is called directly, one call at a
time, as W1 at one in flight calls it over gRPC. The functions that do each part are wrapped
with a timer: the wall time each adds per call is printed, and the rest of the call (the
servicer, the writer's queue and futures, the loop's turns) as what is left. Parsing and
serializing, which gRPC does around the servicer, are timed on the same messages. Set the
total against `make bench`'s W1 N=1 p50 minus the floor's to see what gRPC adds on top.
The timers cost about a microsecond each, so small parts read a little high.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import tempfile
import time
import timeit
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from in_process import FLIP, Context, start_daemon
from workerstate.server import readmodel, servicer, validate
from workerstate.server.servicer import WorkerService
from workerstate.server.storage.sqlite import SQLiteBackend, SQLiteTransaction
from workerstate.server.writer import Writer
from workerstate.v1 import workerstate_pb2 as pb

S = pb.WorkerState
spent: defaultdict[str, float] = defaultdict(float)


def timed(owner: Any, name: str, part: str) -> None:
    """Replace owner.name with a wrapper that adds its wall time to `spent[part]`."""
    inner = getattr(owner, name)
    if inspect.iscoroutinefunction(inner):

        async def wrapper_async(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await inner(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - began

        setattr(owner, name, wrapper_async)
    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - began

        setattr(owner, name, wrapper)


def report(title: str, calls: int, total_s: float, extra: dict[str, float]) -> None:
    parts = {part: seconds / calls * 1e6 for part, seconds in spent.items()}
    parts["the rest (servicer, queue, futures, loop turns)"] = total_s / calls * 1e6 - sum(
        parts.values()
    )
    print(f"\n{title}: {total_s / calls * 1e6:.0f} us a call, {calls} calls")
    for part, us in {**parts, **extra}.items():
        print(f"  {part:<52} {us:7.1f} us")
    spent.clear()


def per_call_us(function: Callable[[], object], number: int = 20_000) -> float:
    return min(timeit.repeat(function, number=number, repeat=3)) / number * 1e6


async def measure(rounds: int, beats: int) -> None:
    folder = tempfile.mkdtemp(prefix="workerstate-split-")
    daemon = await start_daemon(folder, ["--log-level", "info"])
    changes = logging.FileHandler(f"{folder}/changes.log")  # a change log, as an operator keeps
    logging.getLogger().handlers = [changes]
    service, context = daemon.service, Context()
    await service.CreateWorker(
        pb.CreateWorkerRequest(task_id="t", branch="b", worktree="w"), context
    )  # type: ignore[arg-type]
    state = S.WORKER_STATE_ASSIGNED
    first = pb.TransitionRequest(task_id="t", from_state=state, to_state=S.WORKER_STATE_WORKING)
    response = await service.Transition(first, context)  # type: ignore[arg-type]
    state = S.WORKER_STATE_WORKING

    timed(validate, "transition", "validation")
    timed(SQLiteBackend, "begin", "BEGIN (and the file's identity check)")
    timed(Writer, "_apply", "compare-and-set in memory, request ids")
    timed(SQLiteTransaction, "write", "statements (event, worker rows)")
    timed(SQLiteTransaction, "commit", "COMMIT (the fsync)")
    # The writer holds the read model's bound `apply`: wrap what it calls.
    timed(daemon.core.writer, "_on_commit", "read model: view, hub, watch window, liveness")
    timed(readmodel, "_log_changes", "the change-log line (next loop turn)")
    timed(servicer, "worker_message", "response: the worker message")
    began = time.perf_counter()
    for _ in range(rounds):
        to = FLIP[state]
        request = pb.TransitionRequest(task_id="t", from_state=state, to_state=to)
        await service.Transition(request, context)  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the change-log line's turn, as between two gRPC calls
        state = to
    total = time.perf_counter() - began
    raw = first.SerializeToString()
    report(
        "Transition, one at a time",
        rounds,
        total,
        {
            "(gRPC, outside the servicer) parse the request": per_call_us(
                lambda: pb.TransitionRequest.FromString(raw)
            ),
            "(gRPC, outside the servicer) serialize the response": per_call_us(
                response.SerializeToString
            ),
        },
    )

    for i in range(beats):
        await service.CreateWorker(
            pb.CreateWorkerRequest(task_id=f"b{i}", branch="b", worktree="w"), context
        )  # type: ignore[arg-type]
    requests = [pb.HeartbeatRequest(task_id=f"b{i}", activity="tests") for i in range(beats)]
    await asyncio.sleep(0.1)  # the creations' change-log lines
    spent.clear()  # the creations above went through the writer
    timed(validate, "heartbeat", "validation")
    timed(WorkerService, "_record", "record: beat time, activity, liveness")
    timed(servicer, "set_time", "response: received_at")
    began = time.perf_counter()
    for request in requests:
        await service.Heartbeat(request, context)  # type: ignore[arg-type]
    total = time.perf_counter() - began
    beat_parts = dict(spent)
    flush_began = time.perf_counter()
    await daemon.core.heartbeats.flush(daemon.core.writer.upkeep)  # no pauses: its own cost
    flush = time.perf_counter() - flush_began
    spent.clear()
    spent.update(beat_parts)
    raw_beat = requests[0].SerializeToString()
    beat_response = await service.Heartbeat(requests[0], context)  # type: ignore[arg-type]
    report(
        "Heartbeat, one at a time",
        beats,
        total,
        {
            "(later, in the flush) writing the beat": flush / beats * 1e6,
            "(gRPC, outside the servicer) parse the request": per_call_us(
                lambda: pb.HeartbeatRequest.FromString(raw_beat)
            ),
            "(gRPC, outside the servicer) serialize the response": per_call_us(
                beat_response.SerializeToString
            ),
        },
    )
    await daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000, help="transitions timed")
    parser.add_argument("--beats", type=int, default=30_000, help="heartbeats (and workers)")
    args = parser.parse_args()
    asyncio.run(measure(args.rounds, args.beats))


if __name__ == "__main__":
    main()
