"""An example worker: pick up a task, heartbeat in the background, move it through review.

    python examples/worker.py t-17 --server 127.0.0.1:50051

It creates the task if it does not exist (or picks it up where it is), beats every few
seconds while it works, and stops as soon as someone fails or completes it elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from workerstate.client import (
    StaleState,
    WorkerClient,
    WorkerExists,
    WorkerState,
)


def work(step: str, seconds: float) -> None:
    """Stands in for the real work (edit, build, test) of each step."""
    print(f"{step}...", flush=True)
    time.sleep(seconds)


def run(client: WorkerClient, task_id: str, step_seconds: float) -> int:
    with contextlib.suppress(WorkerExists):  # picked up again, e.g. after a restart
        client.create(task_id, branch=f"work/{task_id}", worktree=f"/tmp/worktrees/{task_id}")
    worker = client.get(task_id)
    if worker.state is WorkerState.ASSIGNED:
        worker = client.transition(task_id, WorkerState.ASSIGNED, WorkerState.WORKING)

    with client.heartbeater(task_id, interval=1.0) as beats:
        for step in ("editing", "building", "testing"):
            if beats.ended.is_set():
                print(f"{task_id} was {beats.state} elsewhere; stopping", flush=True)
                return 1
            beats.activity = step
            work(step, step_seconds)
        try:
            worker = client.transition(
                task_id,
                WorkerState.WORKING,
                WorkerState.IN_REVIEW,
                reason="tests pass",
                expected_revision=client.get(task_id).revision,
            )
        except StaleState as e:
            print(f"{task_id} changed under us: it is {e.actual}; stopping", flush=True)
            return 1
    print(f"{task_id} is {worker.state} at revision {worker.revision}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="An example workerstate worker.")
    parser.add_argument("task_id")
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--step-seconds", type=float, default=1.0)
    args = parser.parse_args()
    with WorkerClient(args.server) as client:
        return run(client, args.task_id, args.step_seconds)


if __name__ == "__main__":
    sys.exit(main())
