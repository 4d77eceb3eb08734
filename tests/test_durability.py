"""Durability under crashes: kill -9 the daemon mid-load, several rounds, and check that
every acknowledged change survived and no unacknowledged one was half-applied."""

from __future__ import annotations

import random
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field

import grpc
from harness import NEXT, Watcher
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

S = pb.WorkerState
# Never COMPLETED, so every worker keeps moving for the whole test.
MOVES = {
    state: [to for to in targets if to != S.WORKER_STATE_COMPLETED]
    for state, targets in NEXT.items()
    if state != S.WORKER_STATE_COMPLETED
}
CLIENTS = 16
ROUNDS = 8


@dataclass
class Ledger:
    """What one client was told: acknowledged changes, and attempts left unanswered."""

    acknowledged: list[tuple[str, int, int]] = field(default_factory=list)  # task, rev, state
    unanswered: list[tuple[str, str]] = field(default_factory=list)  # task, operation


def client_loop(address: str, n: int, round_: int, stop: threading.Event, ledger: Ledger) -> None:
    rng = random.Random(n * 1000 + round_)
    stub = pb_grpc.WorkerServiceStub(grpc.insecure_channel(address))
    mine: list[str] = [f"c{n}-{i}" for i in range(round_ * 100, round_ * 100 + 100)]
    known: dict[str, int] = {}
    while not stop.is_set():
        task_id = rng.choice(mine)
        roll = rng.random()
        operation = "heartbeat"
        try:
            if task_id not in known:
                operation = "create"
                response = stub.CreateWorker(
                    pb.CreateWorkerRequest(task_id=task_id, branch="b", worktree="w"), timeout=5
                )
            elif roll < 0.1:
                operation = "fail"
                response = stub.FailWorker(pb.FailWorkerRequest(task_id=task_id), timeout=5)
            elif roll < 0.2:
                stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id), timeout=5)
                continue
            else:
                operation = "transition"
                response = stub.Transition(
                    pb.TransitionRequest(
                        task_id=task_id,
                        from_state=known[task_id],
                        to_state=rng.choice(MOVES[known[task_id]]),
                    ),
                    timeout=5,
                )
        except grpc.RpcError as e:
            if e.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
            ):
                ledger.unanswered.append((task_id, operation))
                return  # the daemon is gone; this round is over for us
            raise
        known[task_id] = response.worker.state
        ledger.acknowledged.append((task_id, response.revision, response.worker.state))


def test_nothing_acknowledged_is_lost_across_kill_9(make_daemon, tmp_path):
    address = f"unix:{tmp_path}/d.sock"
    daemon = make_daemon(listen=address)
    ledgers = [Ledger() for _ in range(CLIENTS)]
    seen: list[pb.WorkerEvent] = []
    rng = random.Random(42)
    for round_ in range(ROUNDS):
        watcher = Watcher(daemon.stub, start_revision=len(seen) + 1)
        stop = threading.Event()
        threads = [
            threading.Thread(target=client_loop, args=(address, n, round_, stop, ledgers[n]))
            for n in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(1.0, 2.5))
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(10)
        stop.set()
        for thread in threads:
            thread.join(30)
        watcher.ended()
        seen.extend(watcher.stored())
        daemon.start()
        check(daemon, ledgers, seen)
    assert sum(len(ledger.acknowledged) for ledger in ledgers) > 500  # real load happened


def check(daemon, ledgers: list[Ledger], seen: list[pb.WorkerEvent]) -> None:
    stub = daemon.stub
    log: list[pb.WorkerEvent] = []
    while True:
        page = stub.ListEvents(
            pb.ListEventsRequest(after_revision=log[-1].revision if log else 0, limit=1000)
        ).events
        if not page:
            break
        log.extend(page)
    # Revisions are contiguous from 1.
    assert [e.revision for e in log] == list(range(1, len(log) + 1))
    by_revision = {e.revision: e for e in log}
    # Every acknowledged change is there, at its revision, as acknowledged.
    for ledger in ledgers:
        for task_id, revision, state in ledger.acknowledged:
            event = by_revision[revision]
            assert (event.worker.task_id, event.worker.state) == (task_id, state)
    # A watcher that resumes from its last revision + 1 saw exactly the log.
    assert seen == log[: len(seen)]
    # No half-applied change: each worker is exactly as its last event left it, and each
    # unanswered create either happened completely or not at all.
    workers, token = [], ""
    while True:
        page = stub.ListWorkers(pb.ListWorkersRequest(page_size=1000, page_token=token))
        workers.extend(page.workers)
        if not (token := page.next_page_token):
            break
    last: dict[str, pb.WorkerEvent] = {}
    for event in log:
        last[event.worker.task_id] = event
    assert {w.task_id for w in workers} == set(last)
    for worker in workers:
        assert (worker.revision, worker.state) == (
            last[worker.task_id].revision,
            last[worker.task_id].worker.state,
        )
    with sqlite3.connect(f"file:{daemon.db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
