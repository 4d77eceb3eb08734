"""The daemon's own cost per call, without gRPC: its servicer called in-process.

    python bench/in_process.py --concurrency 64 --rounds 200
    python bench/in_process.py --concurrency 1 --rounds 2000 -- --group-wait 0ms

A real daemon (default settings, a SQLite file in a temporary folder) is started in this
process, and its servicer is called directly by `--concurrency` asyncio tasks: each round,
every task moves its own worker WORKING <-> IN_REVIEW, then each reads its worker. What the
process's CPU time grows by, per call, is what the daemon's Python, SQLite and fsync cost
beyond gRPC: set it against `make bench`'s server CPU per call to see where a call's time
goes. Flags after `--` go to the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from workerstate.server import logs
from workerstate.server.config import add_serve_arguments, config_from_args
from workerstate.server.daemon import Daemon
from workerstate.v1 import workerstate_pb2 as pb

S = pb.WorkerState
FLIP = {
    S.WORKER_STATE_WORKING: S.WORKER_STATE_IN_REVIEW,
    S.WORKER_STATE_IN_REVIEW: S.WORKER_STATE_WORKING,
}


class Context:
    """Just enough of grpc.aio.ServicerContext for calls that succeed."""

    async def abort_with_status(self, status: Any) -> None:
        raise RuntimeError(f"the call failed: {status}")


async def start_daemon(folder: str, daemon_args: list[str]) -> Daemon:
    """The daemon, in this process, on a new file in `folder`; `daemon_args` are serve flags."""
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    flags = ["--db", f"{folder}/ws.db", "--listen", "127.0.0.1:0", "--log-level", "warning"]
    config = config_from_args(parser.parse_args([*flags, *daemon_args]), parser)
    logs.configure(config.log_level, config.log_format)
    return await Daemon.start(config)


async def measure(concurrency: int, rounds: int, daemon_args: list[str]) -> None:
    daemon = await start_daemon(tempfile.mkdtemp(prefix="workerstate-in-process-"), daemon_args)
    service, context = daemon.service, Context()
    states: dict[str, int] = {}
    for i in range(concurrency):
        task_id = f"t{i}"
        create = pb.CreateWorkerRequest(task_id=task_id, branch="b", worktree="w")
        await service.CreateWorker(create, context)  # type: ignore[arg-type]
        await service.Transition(
            pb.TransitionRequest(
                task_id=task_id, from_state=S.WORKER_STATE_ASSIGNED, to_state=S.WORKER_STATE_WORKING
            ),
            context,  # type: ignore[arg-type]
        )
        states[task_id] = S.WORKER_STATE_WORKING

    async def transition(task_id: str) -> None:
        to = FLIP[states[task_id]]
        request = pb.TransitionRequest(task_id=task_id, from_state=states[task_id], to_state=to)
        await service.Transition(request, context)  # type: ignore[arg-type]
        states[task_id] = to

    async def read(task_id: str) -> None:
        await service.GetWorker(pb.GetWorkerRequest(task_id=task_id), context)  # type: ignore[arg-type]

    calls: list[tuple[str, Callable[[str], Awaitable[None]]]] = [
        ("Transition", transition),
        ("GetWorker", read),
    ]
    for name, call in calls:
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            await asyncio.gather(*(call(task_id) for task_id in states))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        per_call = cpu / (rounds * concurrency) * 1e6
        print(
            f"{name} x{concurrency}: {per_call:.0f} us of CPU a call, "
            f"{wall / rounds * 1000:.2f} ms a round"
        )
    await daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="flags after -- go to the daemon"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="tasks calling at once")
    parser.add_argument("--rounds", type=int, default=200, help="calls each task makes")
    args, daemon_args = parser.parse_known_args()
    asyncio.run(measure(args.concurrency, args.rounds, [a for a in daemon_args if a != "--"]))


if __name__ == "__main__":
    main()
