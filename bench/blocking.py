"""What blocking the event loop costs a lone call on grpc.aio, beyond the block itself.

    python bench/blocking.py                 # 3 rounds of 5 s a row
    python bench/blocking.py --rounds 1 --seconds 2

W1 at one in flight (bench/run.py's clients) against servers that differ in one thing each,
run in turns: the floor (raw bytes, bench/floor.py); a "typed floor", WorkerService's own
GetWorker and Transition on protobuf messages with handlers that only answer; the same with
Transition holding the loop for --block-us, busy (the GIL held) or asleep (the GIL released,
as SQLite releases it for the fsync of the daemon's inline COMMIT); and the daemon. It prints
each one's p50 per round. The daemon's own work for a lone transition is measured apart by
bench/split.py; this says what gRPC adds around it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import measured, ws_setup
from servers import BenchDaemon, Floor, Server
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

READY = re.compile(r"serving typed floor on (\S+)")


class TypedFloor(pb_grpc.WorkerServiceServicer):
    """GetWorker and Transition that only answer, after blocking as told."""

    def __init__(self, block: str, block_s: float) -> None:
        self._block, self._block_s = block, block_s

    async def GetWorker(self, request: pb.GetWorkerRequest, context: Any) -> pb.GetWorkerResponse:
        worker = pb.Worker(task_id=request.task_id, state=pb.WORKER_STATE_WORKING)
        return pb.GetWorkerResponse(worker=worker)

    async def Transition(
        self, request: pb.TransitionRequest, context: Any
    ) -> pb.TransitionResponse:
        if self._block == "asleep":
            time.sleep(self._block_s)  # noqa: ASYNC251 - blocking the loop is what is measured
        elif self._block == "busy":
            end = time.perf_counter() + self._block_s
            while time.perf_counter() < end:
                pass
        worker = pb.Worker(task_id=request.task_id, state=request.to_state)
        return pb.TransitionResponse(worker=worker, revision=1)


async def serve(block: str, block_s: float) -> None:
    server = grpc.aio.server()
    pb_grpc.add_WorkerServiceServicer_to_server(TypedFloor(block, block_s), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"serving typed floor on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def typed(block: str, block_us: int) -> Server:
    args = [sys.executable, __file__, "--serve", block, "--block-us", str(block_us)]
    return Server(args, READY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="turns through every server")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time a row")
    parser.add_argument("--block-us", type=int, default=200, help="how long a block lasts")
    parser.add_argument("--serve", choices=("none", "busy", "asleep"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.block_us / 1e6))
        return
    block = f"{args.block_us} us"
    p50s: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        servers: list[tuple[str, str, Any]] = [
            ("floor (raw bytes)", "floor_unary", Floor),
            ("typed floor", "ws_transition", lambda: typed("none", 0)),
            (f"typed floor, {block} busy", "ws_transition", lambda: typed("busy", args.block_us)),
            (
                f"typed floor, {block} asleep",
                "ws_transition",
                lambda: typed("asleep", args.block_us),
            ),
            ("the daemon", "ws_transition", BenchDaemon),
        ]
        for name, client, start in servers:
            server = start()
            try:
                if isinstance(server, BenchDaemon):
                    asyncio.run(ws_setup(server.address, 1))
                row = measured("W1 transitions", name, server, client, 1, args.seconds)
                p50s.setdefault(name, []).append(row["p50_ms"])
            finally:
                server.stop()
    print(f"W1 at one in flight, p50 in ms, {args.rounds} rounds of {args.seconds:g} s:")
    for name, values in p50s.items():
        print(f"  {name:<32} {', '.join(f'{v:.2f}' for v in values)}")


if __name__ == "__main__":
    main()
