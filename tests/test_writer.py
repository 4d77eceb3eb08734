"""The writer on a real file: groups of changes, their rollback, and retries inside a group.

These drive `Writer` directly, because what they check (several jobs landing in one group, a
group failing half way) cannot be arranged reliably from outside the daemon. A blocking
upkeep job holds the writer thread while the next group queues up behind it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from workerstate.server import validate
from workerstate.server.clock import ManualClock
from workerstate.server.domain import Event, StorageUnavailable, Worker, WorkerState
from workerstate.server.store import Store
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


def run_writer(path: Path, body: Callable[[Writer, list[Event]], Awaitable[None]]) -> None:
    """Open the file, start a writer on it, run `body`, close both."""

    async def main() -> None:
        store = Store.open(path)
        committed: list[Event] = []
        writer = Writer(
            store, ManualClock(), store.head_revision(), store.load_workers(), committed.extend
        )
        writer.start()
        try:
            await body(writer, committed)
        finally:
            await writer.close()
            store.close()

    asyncio.run(main())


async def in_one_group(writer: Writer, jobs: list[Awaitable[object]]) -> list[object]:
    """Run `jobs` as one group: they queue while an upkeep job holds the writer thread."""
    release = threading.Event()
    held = asyncio.ensure_future(writer.upkeep(lambda store: release.wait(10)))
    await asyncio.sleep(0.05)  # the writer thread is now inside the blocking job
    tasks = [asyncio.ensure_future(job) for job in jobs]
    await asyncio.sleep(0.05)  # every job is queued behind it
    release.set()
    await held
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def test_a_group_is_written_whole_across_statement_sizes(tmp_path):
    """37 changes in one group go out in several multi-row statements (32 + 4 + 1)."""
    path = tmp_path / "ws.db"

    async def body(writer: Writer, committed: list[Event]) -> None:
        answers = await in_one_group(
            writer, [writer.execute(create(f"w{i:02}", f"r{i}")) for i in range(37)]
        )
        assert [a.revision for a in answers if isinstance(a, Worker)] == list(range(1, 38))
        assert [e.revision for e in committed] == list(range(1, 38))

    run_writer(path, body)
    events, workers = stored(path)
    assert events == [(i + 1, f"w{i:02}") for i in range(37)]
    assert workers == [f"w{i:02}" for i in range(37)]


def test_a_failed_group_leaves_neither_the_file_nor_the_writer_changed(tmp_path):
    path = tmp_path / "ws.db"

    def fail(store: Store) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    async def body(writer: Writer, committed: list[Event]) -> None:
        await writer.execute(create("kept"))
        answers = await in_one_group(
            writer,
            [
                writer.execute(create("lost-1")),
                writer.upkeep(fail),
                writer.execute(create("lost-2")),
            ],
        )
        assert all(isinstance(a, StorageUnavailable) for a in answers)
        # The writer forgot the rolled-back creations: they succeed now, at the same revisions
        # the failed group would have given them.
        again = [await writer.execute(create(t)) for t in ("lost-1", "lost-2")]
        assert [(w.task_id, w.revision) for w in again] == [("lost-1", 2), ("lost-2", 3)]
        assert [e.revision for e in committed] == [1, 2, 3]

    run_writer(path, body)
    assert stored(path) == (
        [(1, "kept"), (2, "lost-1"), (3, "lost-2")],
        ["kept", "lost-1", "lost-2"],
    )


def test_a_request_id_repeated_inside_one_group_is_applied_once(tmp_path):
    path = tmp_path / "ws.db"

    async def body(writer: Writer, committed: list[Event]) -> None:
        first, second = await in_one_group(
            writer, [writer.execute(create("dup", "same")), writer.execute(create("dup", "same"))]
        )
        assert first == second
        assert isinstance(first, Worker) and first.state is WorkerState.ASSIGNED
        # And a retry in a later group is answered from the file.
        assert await writer.execute(create("dup", "same")) == first

    run_writer(path, body)
    assert stored(path) == ([(1, "dup")], ["dup"])


def test_upkeep_inside_a_group_sees_the_changes_queued_before_it(tmp_path):
    path = tmp_path / "ws.db"

    def count_events(store: Store) -> int:
        return int(store._conn.execute("SELECT count(*) FROM events").fetchone()[0])

    async def body(writer: Writer, committed: list[Event]) -> None:
        answers = await in_one_group(
            writer,
            [
                writer.execute(create("a")),
                writer.execute(create("b")),
                writer.upkeep(count_events),
                writer.execute(create("c")),
            ],
        )
        assert answers[2] == 2

    run_writer(path, body)
    assert stored(path)[1] == ["a", "b", "c"]


@pytest.mark.parametrize("size", [1, 2, 3, 255, 256])
def test_request_ids_are_looked_up_for_any_group_size(tmp_path, size):
    """Retries of `size` stored request ids, in one group, each get its original answer."""
    path = tmp_path / "ws.db"

    async def body(writer: Writer, committed: list[Event]) -> None:
        jobs = [writer.execute(create(f"w{i}", f"r{i}")) for i in range(size)]
        originals = await in_one_group(writer, jobs)
        retries = await in_one_group(
            writer, [writer.execute(create(f"w{i}", f"r{i}")) for i in range(size)]
        )
        assert retries == originals
        assert len(committed) == size

    run_writer(path, body)
