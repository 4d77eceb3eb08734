"""Soak: mixed load for a long time, with daemon restarts; nothing may be lost or doubled.

    python bench/soak.py --minutes 10

Writers move their own workers through the states with the client library (request ids,
retries), heartbeaters beat, 200 watchers (in a second process) follow the log and resume
across restarts, and the daemon is restarted every --restart-every seconds, alternating
SIGTERM and kill -9. At the end it prints acknowledged operations, lost ones (an
acknowledged change missing from the log), duplicated ones (a change in the log twice, or a
watcher given a revision twice or out of order), and the daemon's RSS over time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import READY
from workerstate.client import (
    AsyncWorkerClient,
    RetryPolicy,
    WorkerState,
    WorkerStateError,
)

W = WorkerState
CYCLE = [W.WORKING, W.IN_REVIEW, W.WORKING, W.IN_REVIEW, W.APPROVED, W.COMPLETED]
# Long enough to ride out a restart (start-up takes about a second here).
PATIENT = RetryPolicy(attempts=30, first_backoff_s=0.05, max_backoff_s=1.0)


class Daemon:
    def __init__(self, folder: Path) -> None:
        self.target = f"unix:{folder}/soak.sock"
        self.args = [
            sys.executable,
            "-m",
            "workerstate.server",
            "--db",
            str(folder / "soak.db"),
            "--listen",
            self.target,
            "--max-watchers",
            "1000",
        ]
        self.proc: subprocess.Popen[str] | None = None
        self.rss: list[tuple[float, float]] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if READY.search(line):
                break
        else:
            raise RuntimeError("the daemon did not start")
        # Keep draining its log so it never blocks on a full pipe.
        stderr = self.proc.stderr
        asyncio.get_running_loop().run_in_executor(None, lambda: [None for _ in stderr])

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)

    def sample_rss(self, since: float) -> None:
        assert self.proc is not None
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except FileNotFoundError:
            return
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        self.rss.append((round(time.monotonic() - since), round(kb / 1024, 1)))


async def writer(target: str, n: int, stop: asyncio.Event, acked: dict[str, list[int]]) -> None:
    async with AsyncWorkerClient(target, retry=PATIENT) as client:
        i = 0
        while not stop.is_set():
            task_id = f"soak-{n}-{i}"
            i += 1
            try:
                worker = await client.create(task_id, branch="b", worktree="w")
                acked[task_id] = [worker.revision]
                state = W.ASSIGNED
                for target_state in CYCLE:
                    if stop.is_set():
                        break
                    worker = await client.transition(task_id, state, target_state)
                    acked[task_id].append(worker.revision)
                    state = target_state
            except WorkerStateError as e:
                print(f"writer {n}: {type(e).__name__}: {e}", file=sys.stderr)


async def beater(target: str, stop: asyncio.Event) -> int:
    beats = 0
    async with AsyncWorkerClient(target, retry=PATIENT) as client:
        await client.create(f"beater-{random.random()}", branch="b", worktree="w")
        while not stop.is_set():
            try:
                await client.heartbeat((await client.list())[0].task_id)
                beats += 1
            except WorkerStateError:
                pass
            await asyncio.sleep(0.05)
    return beats


def watchers(target: str, count: int, stop: mp.Event, out: mp.Queue) -> None:
    async def main() -> None:
        async with AsyncWorkerClient(target, retry=PATIENT) as client:
            results = [[0, 0, True] for _ in range(count)]  # seen, last revision, in order

            async def follow(result: list) -> None:
                async for event in client.watch(start_revision=1):
                    result[2] &= event.revision == result[1] + 1
                    result[0], result[1] = result[0] + 1, event.revision

            tasks = [asyncio.create_task(follow(r)) for r in results]
            await asyncio.to_thread(stop.wait)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            out.put([tuple(r) for r in results])

    asyncio.run(main())


async def soak(minutes: float, restart_every: float, writers: int, n_watchers: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="workerstate-soak-"))
    daemon = Daemon(folder)
    daemon.start()
    stop, watch_stop = asyncio.Event(), mp.Event()
    out: mp.Queue = mp.Queue()
    watcher_proc = mp.Process(target=watchers, args=(daemon.target, n_watchers, watch_stop, out))
    watcher_proc.start()
    acked: dict[str, list[int]] = {}
    load = [asyncio.create_task(writer(daemon.target, n, stop, acked)) for n in range(writers)]
    beats = asyncio.create_task(beater(daemon.target, stop))
    begin = time.monotonic()
    restarts, next_restart = 0, begin + restart_every
    while time.monotonic() - begin < minutes * 60:
        await asyncio.sleep(5)
        daemon.sample_rss(begin)
        if time.monotonic() >= next_restart:
            daemon.stop(signal.SIGTERM if restarts % 2 == 0 else signal.SIGKILL)
            daemon.start()
            restarts += 1
            next_restart = time.monotonic() + restart_every
            print(
                f"{time.monotonic() - begin:6.0f}s restart {restarts}, "
                f"{sum(map(len, acked.values()))} acknowledged so far",
                flush=True,
            )
    stop.set()
    await asyncio.gather(*load)
    beat_count = await beats
    async with AsyncWorkerClient(daemon.target, retry=PATIENT) as client:
        log = await client.events()
    await asyncio.sleep(3)  # let the watchers catch up with the head
    watch_stop.set()
    results = out.get(timeout=120)
    watcher_proc.join(30)
    daemon.stop(signal.SIGTERM)

    in_log: dict[str, list[int]] = {}
    for event in log:
        in_log.setdefault(event.worker.task_id, []).append(event.revision)
    lost = sum(len(set(revs) - set(in_log.get(task, []))) for task, revs in acked.items())
    duplicated = sum(max(0, len(in_log.get(task, [])) - len(revs)) for task, revs in acked.items())
    head = log[-1].revision if log else 0
    watcher_gaps = sum(1 for seen, last, ordered in results if not ordered or last != head)
    return {
        "minutes": minutes,
        "restarts": restarts,
        "acknowledged_changes": sum(map(len, acked.values())),
        "heartbeats": beat_count,
        "lost": lost,
        "duplicated": duplicated,
        "watchers": len(results),
        "watchers_with_gaps_or_duplicates": watcher_gaps,
        "events_per_watcher": head,
        "rss_mb_over_time": daemon.rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10, help="how long to run")
    parser.add_argument("--restart-every", type=float, default=60, help="seconds between restarts")
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers")
    parser.add_argument("--watchers", type=int, default=200, help="concurrent watchers")
    args = parser.parse_args()
    result = asyncio.run(soak(args.minutes, args.restart_every, args.writers, args.watchers))
    print(json.dumps(result, indent=2))
    if result["lost"] or result["duplicated"] or result["watchers_with_gaps_or_duplicates"]:
        sys.exit("FAILED: something was lost or doubled")


if __name__ == "__main__":
    main()
