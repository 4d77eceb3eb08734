"""The writer on a real file: groups of changes, their rollback, and retries inside a group.

These drive `Writer` directly, because what they check (several jobs landing in one group, a
group failing half way) cannot be arranged reliably from outside the daemon. Jobs submitted
together are all queued before the writer task next runs, so they form one group; the
writer's `observe` hook records each group's size, and the tests check it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from harness import scrape
from workerstate.server import validate
from workerstate.server.clock import ManualClock
from workerstate.server.domain import Event, StorageUnavailable, Worker, WorkerState
from workerstate.server.storage.base import BackendFault, Row, SaveHeartbeats, Upkeep
from workerstate.server.storage.sqlite import COMMIT_DELAY_ENV, SQLiteBackend, SQLiteTransaction
from workerstate.server.writer import Writer
from workerstate.v1 import workerstate_pb2 as pb


def create(task_id: str, request_id: str = "") -> validate.CreateWorker:
    return validate.create_worker(
        pb.CreateWorkerRequest(task_id=task_id, branch="b", worktree="/w", request_id=request_id)
    )


def stored(path: Path) -> tuple[list[tuple[int, str]], list[str]]:
    """(revision, task id) of every event, and every worker's task id, read from the file."""
    with sqlite3.connect(path) as conn:
        events = conn.execute("SELECT revision, task_id FROM events ORDER BY revision")
        workers = conn.execute("SELECT task_id FROM workers ORDER BY task_id")
        return [tuple(row) for row in events], [row[0] for row in workers]  # type: ignore[misc]


class FailingWrites(SQLiteBackend):
    """The real file, but a group that carries a heartbeat for task "boom" fails in the
    middle of its statements, as a full disk would."""

    async def begin(self, known_head: int, synced: bool = True) -> SQLiteTransaction:
        transaction = await super().begin(known_head, synced)
        write = transaction.write

        async def failing(rows: Sequence[Row], upkeep: Sequence[Upkeep]) -> list[int]:
            counts = await write(rows, upkeep)
            if any(isinstance(j, SaveHeartbeats) and j.beats[0][0] == "boom" for j in upkeep):
                raise BackendFault("disk I/O error")
            return counts

        transaction.write = failing  # type: ignore[method-assign]
        return transaction


def run_writer(
    path: Path,
    body: Callable[[Writer, list[Event]], Awaitable[None]],
    backend_type: type[SQLiteBackend] = SQLiteBackend,
    observe: Callable[[int, float, float | None], None] | None = None,
    group_wait_s: float = 0.0,
) -> None:
    """Open the file, start a writer on it, run `body`, close both."""

    async def main() -> None:
        backend = backend_type.open(path)
        loaded = await backend.load()
        committed: list[Event] = []
        writer = Writer(
            backend,
            ManualClock(),
            loaded.head,
            loaded.workers,
            committed.extend,
            observe,
            group_wait_s,
        )
        writer.start()
        try:
            await body(writer, committed)
        finally:
            await writer.close()
            await backend.close()

    asyncio.run(main())


async def in_one_group(jobs: list[Awaitable[object]]) -> list[object]:
    """Run `jobs` as one group: all are queued before the writer task next runs."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def test_a_group_is_written_whole_across_statement_sizes(tmp_path):
    """37 changes in one group go out in several multi-row statements (32 + 4 + 1)."""
    path = tmp_path / "ws.db"
    groups: list[int] = []

    async def body(writer: Writer, committed: list[Event]) -> None:
        answers = await in_one_group(
            [writer.execute(create(f"w{i:02}", f"r{i}")) for i in range(37)]
        )
        assert [a.revision for a in answers if isinstance(a, Worker)] == list(range(1, 38))
        assert [e.revision for e in committed] == list(range(1, 38))

    run_writer(path, body, observe=lambda jobs, *_: groups.append(jobs))
    assert groups == [37]
    events, workers = stored(path)
    assert events == [(i + 1, f"w{i:02}") for i in range(37)]
    assert workers == [f"w{i:02}" for i in range(37)]


def test_a_lone_writer_never_waits_for_company(tmp_path):
    """One change at a time commits at once, however long a group may wait."""
    groups: list[int] = []

    async def body(writer: Writer, committed: list[Event]) -> None:
        started = time.monotonic()
        for i in range(5):
            await writer.execute(create(f"alone{i}"))
        assert time.monotonic() - started < 5.0, "a lone change waited for company"

    run_writer(
        tmp_path / "ws.db", body, observe=lambda jobs, *_: groups.append(jobs), group_wait_s=5.0
    )
    assert groups == [1] * 5


def test_after_a_shared_commit_the_next_group_waits_for_company(tmp_path):
    """Changes that arrive one by one, 20 ms apart, while writes are concurrent share one
    commit."""
    groups: list[int] = []

    async def body(writer: Writer, committed: list[Event]) -> None:
        await in_one_group([writer.execute(create(f"pair{i}")) for i in range(2)])
        arriving = []
        for i in range(5):
            arriving.append(asyncio.ensure_future(writer.execute(create(f"late{i}"))))
            await asyncio.sleep(0.02)
        answers = await asyncio.gather(*arriving)
        assert [a.revision for a in answers] == [3, 4, 5, 6, 7]

    run_writer(
        tmp_path / "ws.db", body, observe=lambda jobs, *_: groups.append(jobs), group_wait_s=1.0
    )
    assert groups == [2, 5]


def test_closing_the_writer_ends_a_wait_for_company(tmp_path):
    """A group waiting for company commits at once when the daemon stops."""
    groups: list[int] = []

    async def body(writer: Writer, committed: list[Event]) -> None:
        await in_one_group([writer.execute(create(f"pair{i}")) for i in range(2)])
        waiting = asyncio.ensure_future(writer.execute(create("last")))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # waiting for company, for up to a minute
        closed = time.monotonic()
        await writer.close()
        assert time.monotonic() - closed < 30.0
        assert waiting.result().revision == 3

    run_writer(
        tmp_path / "ws.db", body, observe=lambda jobs, *_: groups.append(jobs), group_wait_s=60.0
    )
    assert groups == [2, 1]


def test_a_failed_group_leaves_neither_the_file_nor_the_writer_changed(tmp_path):
    path = tmp_path / "ws.db"

    async def body(writer: Writer, committed: list[Event]) -> None:
        await writer.execute(create("kept"))
        answers = await in_one_group(
            [
                writer.execute(create("lost-1")),
                writer.upkeep(SaveHeartbeats((("boom", 1, ""),))),
                writer.execute(create("lost-2")),
            ]
        )
        assert all(isinstance(a, StorageUnavailable) for a in answers)
        # The writer forgot the rolled-back creations: they succeed now, at the same revisions
        # the failed group would have given them.
        again = [await writer.execute(create(t)) for t in ("lost-1", "lost-2")]
        assert [(w.task_id, w.revision) for w in again] == [("lost-1", 2), ("lost-2", 3)]
        assert [e.revision for e in committed] == [1, 2, 3]

    run_writer(path, body, FailingWrites)
    assert stored(path) == (
        [(1, "kept"), (2, "lost-1"), (3, "lost-2")],
        ["kept", "lost-1", "lost-2"],
    )


def test_a_request_id_repeated_inside_one_group_is_applied_once(tmp_path):
    path = tmp_path / "ws.db"

    async def body(writer: Writer, committed: list[Event]) -> None:
        first, second = await in_one_group(
            [writer.execute(create("dup", "same")), writer.execute(create("dup", "same"))]
        )
        assert first == second
        assert isinstance(first, Worker) and first.state is WorkerState.ASSIGNED
        # And a retry in a later group is answered from the file.
        assert await writer.execute(create("dup", "same")) == first

    run_writer(path, body)
    assert stored(path) == ([(1, "dup")], ["dup"])


def test_upkeep_shares_the_commit_of_the_commands_around_it(tmp_path):
    path = tmp_path / "ws.db"
    groups: list[int] = []

    async def body(writer: Writer, committed: list[Event]) -> None:
        answers = await in_one_group(
            [
                writer.execute(create("a")),
                writer.upkeep(SaveHeartbeats((("a", 5, "x"), ("b", 6, "")))),
                writer.execute(create("b")),
            ]
        )
        assert answers[1] == 2
        assert [e.revision for e in committed] == [1, 2]

    run_writer(path, body, observe=lambda jobs, *_: groups.append(jobs))
    assert groups == [3]
    assert stored(path)[1] == ["a", "b"]
    with sqlite3.connect(path) as conn:
        beats = conn.execute("SELECT task_id, ts_ms, activity FROM heartbeats ORDER BY task_id")
        assert beats.fetchall() == [("a", 5, "x"), ("b", 6, "")]


@pytest.mark.parametrize("size", [1, 2, 3, 255, 256])
def test_request_ids_are_looked_up_for_any_group_size(tmp_path, size):
    """Retries of `size` stored request ids, in one group, each get its original answer."""
    path = tmp_path / "ws.db"

    async def body(writer: Writer, committed: list[Event]) -> None:
        jobs = [writer.execute(create(f"w{i}", f"r{i}")) for i in range(size)]
        originals = await in_one_group(jobs)
        retries = await in_one_group(
            [writer.execute(create(f"w{i}", f"r{i}")) for i in range(size)]
        )
        assert retries == originals
        assert len(committed) == size

    run_writer(path, body)


def test_reads_do_not_wait_for_a_slow_disk(make_daemon, monkeypatch):
    """On a disk whose commits take a second, a read sent while a transition commits is
    answered before that commit could have ended: slow commits run off the event loop."""
    monkeypatch.setenv(COMMIT_DELAY_ENV, "1000")
    daemon = make_daemon()
    stub = daemon.stub
    stub.CreateWorker(pb.CreateWorkerRequest(task_id="slow", branch="b", worktree="/w"))
    with ThreadPoolExecutor(1) as pool:
        sent = time.monotonic()
        moving = pool.submit(
            stub.Transition,
            pb.TransitionRequest(
                task_id="slow",
                from_state=pb.WORKER_STATE_ASSIGNED,
                to_state=pb.WORKER_STATE_WORKING,
            ),
        )
        time.sleep(0.05)  # the transition is in its commit now
        read = stub.GetWorker(pb.GetWorkerRequest(task_id="slow"))
        assert time.monotonic() - sent < 1.0, "the read waited for the commit"
        assert read.worker.state == pb.WORKER_STATE_ASSIGNED  # not durable yet, so not shown
        assert moving.result(10).worker.state == pb.WORKER_STATE_WORKING


def test_the_daemon_lets_concurrent_writes_share_a_commit(make_daemon, monkeypatch):
    """Through the daemon, with commits taking 500 ms: once two changes have shared a commit,
    a change and another sent 100 ms after it commit together (--group-wait 1s); without
    the wait the second would find the first's commit under way and commit on its own."""
    monkeypatch.setenv(COMMIT_DELAY_ENV, "500")
    daemon = make_daemon("--group-wait", "1s", "--metrics-listen", "127.0.0.1:0")
    stub = daemon.stub

    def create_worker(task_id: str) -> object:
        return stub.CreateWorker(pb.CreateWorkerRequest(task_id=task_id, branch="b", worktree="/w"))

    def groups() -> tuple[float, float]:
        samples = scrape(daemon)
        return (
            samples["workerstate_commit_batch_size_count"],
            samples["workerstate_commit_batch_size_sum"],
        )

    with ThreadPoolExecutor(3) as pool:
        alone = pool.submit(create_worker, "alone")
        time.sleep(0.05)  # "alone" is in its 500 ms commit: the next two queue behind it
        pair = [pool.submit(create_worker, f"pair{i}") for i in range(2)]
        for call in (alone, *pair):
            call.result(10)
        before = groups()
        first = pool.submit(create_worker, "first")
        time.sleep(0.1)
        second = pool.submit(create_worker, "second")
        assert [c.result(10).worker.revision for c in (first, second)] == [4, 5]
    after = groups()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 2)
