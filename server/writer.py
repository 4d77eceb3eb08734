"""The one writer: owns the write connection and commits queued changes in groups.

Every change goes through here, on one thread, inside `BEGIN IMMEDIATE ... COMMIT` (the seed's
discipline, without cross-process lock races). Whatever is queued when a commit starts joins
it: each compare-and-set is still checked on its own against the state the earlier changes in
the group left, but one fsync covers them all, and every caller is answered after it.

Each SQLite statement releases the GIL and must win it back from the busy event loop, which
took ~0.4 ms a change when every change ran its own three statements. So the writer keeps
the current workers in memory (it is the only writer: they are exactly the file's, plus the
group's pending changes), checks each compare-and-set against them, looks up a group's
request ids at once, and writes the group in a few multi-row statements per table.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from . import domain
from .clock import Clock
from .domain import Command, Event, ShuttingDown, StorageUnavailable, Worker, WorkerStateError
from .store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")

# How many queued changes one commit may carry. Larger groups amortise the fsync further but
# make the first caller in a group wait for the last one's statements; 256 changes take a few
# milliseconds to apply, well under what the RPCs around them cost.
MAX_GROUP = 256


@dataclass(slots=True)
class _Pending:
    """What the group in progress has applied but not yet written, and how to undo it."""

    rows: list[tuple[Event, str, str]] = field(default_factory=list)  # event, request id, print
    requests: dict[str, tuple[str, Worker]] = field(default_factory=dict)  # id: print, answer
    undo: dict[str, Worker | None] = field(default_factory=dict)  # task id: worker before
    written: int = 0  # rows already written to the file


@dataclass(slots=True)
class _Job:
    """One queued unit of work and where its answer goes: a command, or upkeep of the file."""

    future: asyncio.Future[object]
    command: Command | None = None
    upkeep: Callable[[Store], object] | None = None


class Writer:
    """Serialises every write; hands committed events to `on_commit` in revision order."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        head_revision: int,
        workers: Iterable[Worker],
        on_commit: Callable[[list[Event]], None],
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        """`workers` are the file's; `observe(jobs, seconds)` is called on the writer thread
        after each commit."""
        self._store = store
        self._clock = clock
        self._head = head_revision
        self._workers = {w.task_id: w for w in workers}
        self._on_commit = on_commit
        self._observe = observe
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="workerstate-writer", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    async def close(self) -> None:
        """Commit what is queued, then stop the thread; later submissions get ShuttingDown."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    async def execute(self, command: Command) -> Worker:
        """Apply a command; returns the worker it left (or, for a retry, the original answer)."""
        result = await self._submit(_Job(self._new_future(), command=command))
        assert isinstance(result, Worker)
        return result

    async def upkeep(self, work: Callable[[Store], T]) -> T:
        """Run `work` on the store inside the next group's transaction (heartbeats, pruning,
        compaction), so it never races a command and shares its fsync."""
        result = await self._submit(_Job(self._new_future(), upkeep=work))
        return cast(T, result)

    def _new_future(self) -> asyncio.Future[object]:
        assert self._loop is not None, "Writer.start() was not called"
        return self._loop.create_future()

    async def _submit(self, job: _Job) -> object:
        if self._closed:
            raise ShuttingDown()
        self._queue.put(job)
        # A caller that gives up (deadline, cancel) cancels only its future: the queued change
        # still commits or fails as a whole, and `_deliver` skips the answer.
        return await job.future

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                group.append(job)
            self._commit(group)

    def _commit(self, group: list[_Job]) -> None:
        head_before = self._head
        pending = _Pending()
        events: list[Event] = []
        outcomes: list[object] = []
        now_ms = self._clock.now_ms()
        started = time.perf_counter()
        try:
            self._store.begin()
            # Retries are answered from the file: every request id in the group is looked up
            # at once, and `pending.requests` then also records those applied in this group.
            request_ids = [
                j.command.request_id for j in group if j.command and j.command.request_id
            ]
            if request_ids:
                pending.requests = self._store.applied_requests(request_ids)
            for job in group:
                try:
                    outcomes.append(self._apply(job, now_ms, pending))
                except WorkerStateError as e:
                    outcomes.append(e)
            self._write(pending)
            self._store.commit()
            events = [event for event, _, _ in pending.rows]
        except sqlite3.Error as e:
            log.error("commit of %d changes failed, nothing written: %s", len(group), e)
            self._roll_back(head_before, pending)
            error = StorageUnavailable(
                f"the database could not commit ({e}); nothing was written, retry later"
            )
            events, outcomes = [], [error] * len(group)
        except Exception:
            # A bug, not a storage fault: keep the writer alive and the file consistent.
            log.exception("the writer failed on a group of %d jobs; rolled back", len(group))
            self._roll_back(head_before, pending)
            error = StorageUnavailable("internal error in the writer; nothing was written")
            events, outcomes = [], [error] * len(group)
        if self._observe is not None:
            self._observe(len(group), time.perf_counter() - started)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, group, outcomes, events)

    def _roll_back(self, head_before: int, pending: _Pending) -> None:
        self._head = head_before
        for task_id, worker in pending.undo.items():
            if worker is None:
                del self._workers[task_id]
            else:
                self._workers[task_id] = worker
        try:
            self._store.rollback()
        except sqlite3.Error as e:
            log.error("rollback failed: %s", e)

    def _write(self, pending: _Pending) -> None:
        """Write the rows the group applied since the last write."""
        if len(pending.rows) > pending.written:
            self._store.append(pending.rows[pending.written :])
            pending.written = len(pending.rows)

    def _apply(self, job: _Job, now_ms: int, pending: _Pending) -> object:
        if job.upkeep is not None:
            # Upkeep reads and writes the file itself: everything before it is written first.
            self._write(pending)
            return job.upkeep(self._store)
        command = job.command
        assert command is not None
        fingerprint = ""
        if command.request_id:
            fingerprint = domain.fingerprint(command)
            applied = pending.requests.get(command.request_id)
            if applied is not None:
                if applied[0] != fingerprint:
                    raise domain.RequestIdReused(command.request_id)
                return applied[1]
        current = self._workers.get(command.task_id)
        event = domain.apply(command, current, self._head + 1, now_ms)
        worker = event.worker
        pending.undo.setdefault(worker.task_id, current)
        self._workers[worker.task_id] = worker
        pending.rows.append((event, command.request_id, fingerprint))
        if command.request_id:
            pending.requests[command.request_id] = (fingerprint, worker)
        self._head = event.revision
        return worker

    # -- back on the event loop -----------------------------------------------------------

    def _deliver(
        self, group: Sequence[_Job], outcomes: Sequence[object], events: list[Event]
    ) -> None:
        if events:
            self._on_commit(events)
        for job, outcome in zip(group, outcomes, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
