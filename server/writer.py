"""The one writer: checks every change against the workers in memory and commits them in groups.

This is the domain side of writing, the same for every backend. It runs as a task on the
daemon's event loop. Whatever is queued when a group starts joins it: each compare-and-set is
checked on its own against the state the earlier changes in the group left, one commit covers
them all, and every caller is answered only after it. A group that fails is rolled back in
the database and undone in memory, so both are as they were.

Under concurrent writes a group waits a moment for company before it starts (MySQL's
`binlog_group_commit_sync_delay`, PostgreSQL's `commit_delay`): the loop that runs the writer
also parses requests and feeds watchers, and without the wait it commits each change alone as
soon as it arrives, so every change pays a whole commit and every watcher a message of its
own. The wait happens only after a group that had company, so a lone writer never waits.

The workers in memory are exactly the database's as of `head`, plus the group's pending
changes. On a database that other daemons write too, a transaction first reports what they
committed since `head` (taken under the same lock that gives the next revisions); those
events are applied to memory before this group's compare-and-sets are checked, and reach the
read side in revision order, ahead of the group's own.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from . import domain
from .clock import Clock
from .domain import (
    Batch,
    Change,
    Command,
    Event,
    EventType,
    FailSilent,
    OperationFailed,
    ShuttingDown,
    StorageUnavailable,
    Worker,
    WorkerStateError,
)
from .storage.base import (
    Answer,
    Backend,
    BackendFault,
    Row,
    SaveHeartbeats,
    Transaction,
    Upkeep,
)

log = logging.getLogger(__name__)

# Most events read in one catch-up with other daemons' commits; more are read in turns, with
# this daemon's own groups in between.
CATCH_UP_BATCH = 1000
# A catch-up that failed (the database went away) is tried again after this long.
CATCH_UP_RETRY_S = 1.0

# How many queued jobs one commit may carry. Larger groups amortise the commit further but
# make the first caller in a group wait for the last one's statements; 256 changes take a few
# milliseconds to apply, well under what the RPCs around them cost.
MAX_GROUP = 256


@dataclass(slots=True)
class _Job:
    """One queued unit of work, a command or an upkeep job, and where its answer goes."""

    future: asyncio.Future[object]
    work: Command | Upkeep


class Writer:
    """Serialises every write; hands committed events to `on_commit` in revision order."""

    def __init__(
        self,
        backend: Backend,
        clock: Clock,
        head_revision: int,
        workers: Iterable[Worker],
        on_commit: Callable[[list[Event]], None],
        observe: Callable[[int, float, float | None], None] | None = None,
        group_wait_s: float = 0.0,
    ) -> None:
        """`workers` are the database's as of `head_revision`; `observe(jobs, seconds)` is
        called after each group; `group_wait_s` is the longest a group waits for company."""
        self._backend = backend
        self._clock = clock
        self._head = head_revision
        self._workers = {w.task_id: w for w in workers}
        self._on_commit = on_commit
        self._observe = observe
        self._queue: collections.deque[_Job] = collections.deque()
        self._idle: asyncio.Future[None] | None = None  # set while the task waits for work
        self._group_wait_s = group_wait_s
        self._filling: asyncio.Future[None] | None = None  # set while a group waits for company
        self._had_company = False  # the last group held more than one job
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._remote_head = head_revision  # newest revision other daemons announced
        # The stored last beat of each worker the group's FailSilent changes name, read under
        # the write lock: the newest any daemon has flushed.
        self._stored_beats: dict[str, int] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="workerstate-writer")

    async def close(self) -> None:
        """Commit what is queued, then stop; later submissions get ShuttingDown."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        _settle(self._filling)
        if self._task is not None:
            await self._task

    async def execute(self, command: Change) -> Worker:
        """Apply a change; returns the worker it left (or, for a retry, the original answer)."""
        result = await self._submit(command)
        assert isinstance(result, Worker)
        return result

    async def execute_batch(self, batch: Batch) -> tuple[Worker, ...]:
        """Apply a batch all or nothing; the worker each change left, in order. A refused
        change raises OperationFailed, and nothing of the batch is stored."""
        result = await self._submit(batch)
        assert isinstance(result, tuple)
        return result

    async def upkeep(self, job: Upkeep) -> int:
        """Run an upkeep job (heartbeats, pruning, compaction) inside the next group's
        transaction, so it never races a command and shares its commit; returns its count."""
        result = await self._submit(job)
        assert isinstance(result, int)
        return result

    def catch_up(self, head: int) -> None:
        """The database holds revisions up to `head`: read any this daemon lacks when no
        group is waiting (a waiting group takes them in under its lock anyway)."""
        if head > self._remote_head:
            self._remote_head = head
            self._wake()

    async def _submit(self, work: Command | Upkeep) -> object:
        if self._closed:
            raise ShuttingDown()
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(future, work))
        self._wake()
        if len(self._queue) >= MAX_GROUP:
            _settle(self._filling)  # the group is full: waiting longer gains nothing
        # A caller that gives up (deadline, cancel) cancels only its future: the queued change
        # still commits or fails as a whole, and the answer is dropped.
        return await future

    def _wake(self) -> None:
        _settle(self._idle)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed:
                    return
                if self._remote_head > self._head:
                    await self._read_foreign()
                    continue
                self._idle = loop.create_future()
                await self._idle
                continue
            if (
                self._had_company
                and self._group_wait_s
                and not self._closed
                and len(self._queue) < MAX_GROUP
            ):
                await self._wait_for_company(loop)
            size = min(len(self._queue), MAX_GROUP)
            group = [self._queue.popleft() for _ in range(size)]
            # Company is other callers' changes: a heartbeat flush or other upkeep sharing a
            # caller's group says nothing of concurrent writers, and must not make the next
            # caller wait for company that is not coming.
            self._had_company = sum(not isinstance(j.work, Upkeep) for j in group) > 1
            await self._commit(group)

    async def _wait_for_company(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let more jobs join the next group: until the delay passes, the group is full, or
        the writer closes."""
        self._filling = filling = loop.create_future()
        timer = loop.call_later(self._group_wait_s, _settle, filling)
        try:
            await filling
        finally:
            timer.cancel()
            self._filling = None

    async def _commit(self, group: list[_Job]) -> None:
        head_before = self._head
        undo: dict[str, Worker | None] = {}  # task id: worker before the group
        rows: list[Row] = []
        outcomes: list[object] = []
        events: list[Event] = []
        started = time.perf_counter()
        transaction: Transaction | None = None
        locked_s: float | None = None  # how long the committed group held the write lock
        try:
            transaction = await self._backend.begin(self._head, _synced(group))
            for event in transaction.foreign:
                self._take(event, undo)
            events.extend(transaction.foreign)
            outcomes = await self._apply(group, transaction, rows, undo)
            upkeep = [job.work for job in group if isinstance(job.work, Upkeep)]
            counts = iter(await transaction.write(rows, upkeep))
            outcomes = [next(counts) if o is None else o for o in outcomes]
            await transaction.commit(self._head)
            locked_s = transaction.locked_s
            events.extend(row.event for row in rows)
        except BackendFault as e:
            log.error("commit of %d jobs failed, nothing written: %s", len(group), e)
            await self._roll_back(transaction, head_before, undo)
            error = StorageUnavailable(
                f"the database could not commit ({e}); nothing was written, retry later"
            )
            events, outcomes = [], [error] * len(group)
        except Exception:
            # A bug, not a storage fault: keep the writer alive and the database consistent.
            log.exception("the writer failed on a group of %d jobs; rolled back", len(group))
            await self._roll_back(transaction, head_before, undo)
            error = StorageUnavailable("internal error in the writer; nothing was written")
            events, outcomes = [], [error] * len(group)
        if self._observe is not None:
            self._observe(len(group), time.perf_counter() - started, locked_s)
        # Answered before publishing, in the same step: no caller resumes before the step
        # ends, so none sees its answer before readers see the change, and what publishing
        # leaves for the loop's next turn (the change log) comes after the answers.
        _answer(group, outcomes)
        if events:
            self._publish(events)

    async def _read_foreign(self) -> None:
        """Take in what other daemons committed, outside any transaction: the log only ever
        grows at its head, in order, so what is there past `head` is final."""
        remote = self._remote_head
        try:
            events = await self._backend.events(self._head, CATCH_UP_BATCH, "", remote)
        except WorkerStateError as e:
            log.warning("could not read other daemons' changes, will retry: %s", e)
            self._remote_head = self._head
            asyncio.get_running_loop().call_later(CATCH_UP_RETRY_S, self.catch_up, remote)
            return
        if not events:
            self._remote_head = self._head  # announced but gone: compacted, say, or rolled back
            return
        for event in events:
            self._take(event, {})
        self._publish(events)

    def _publish(self, events: list[Event]) -> None:
        """Hand committed events to the read side; a bug there must not stop the writer,
        which would leave every later caller waiting."""
        try:
            self._on_commit(events)
        except Exception:
            log.exception(
                "publishing revisions %d-%d failed", events[0].revision, events[-1].revision
            )

    async def _apply(
        self,
        group: Sequence[_Job],
        transaction: Transaction,
        rows: list[Row],
        undo: dict[str, Worker | None],
    ) -> list[object]:
        """Check and apply each command in memory; an outcome per job (None for upkeep)."""
        # Retries are answered from the database: every request id in the group is looked up
        # at once, and `requests` then also records those applied in this group.
        request_ids = [
            job.work.request_id
            for job in group
            if isinstance(job.work, Command) and job.work.request_id
        ]
        requests = await transaction.applied_requests(request_ids) if request_ids else {}
        silent = [job.work.task_id for job in group if isinstance(job.work, FailSilent)]
        self._stored_beats = await transaction.stored_heartbeats(silent) if silent else {}
        now_ms = self._clock.now_ms()
        outcomes: list[object] = []
        for job in group:
            if not isinstance(job.work, Command):
                outcomes.append(None)
                continue
            try:
                outcomes.append(self._apply_one(job.work, now_ms, requests, rows, undo))
            except WorkerStateError as e:
                outcomes.append(e)
        return outcomes

    def _apply_one(
        self,
        command: Command,
        now_ms: int,
        requests: dict[str, tuple[str, Answer]],
        rows: list[Row],
        undo: dict[str, Worker | None],
    ) -> Answer:
        fingerprint = ""
        if command.request_id:
            fingerprint = domain.fingerprint(command)
            applied = requests.get(command.request_id)
            if applied is not None:
                if applied[0] != fingerprint:
                    raise domain.RequestIdReused(command.request_id)
                return applied[1]
        answer: Answer
        if isinstance(command, Batch):
            events = self._apply_batch(command.changes, now_ms, undo)
            answer = tuple(event.worker for event in events)
            rows.extend(Row(event) for event in events[:-1])
            rows.append(Row(events[-1], command.request_id, fingerprint, answer))
        else:
            event = self._apply_change(command, now_ms, undo)
            answer = event.worker
            rows.append(Row(event, command.request_id, fingerprint))
        if command.request_id:
            requests[command.request_id] = (fingerprint, answer)
        return answer

    def _apply_change(
        self, change: Change, now_ms: int, undo: dict[str, Worker | None], batch_end: int = 0
    ) -> Event:
        task_id = change.task_id
        event = domain.apply(
            change,
            self._workers.get(task_id),
            self._head + 1,
            now_ms,
            self._stored_beats.get(task_id) if isinstance(change, FailSilent) else None,
            batch_end,
        )
        self._take(event, undo)
        return event

    def _apply_batch(
        self, changes: Sequence[Change], now_ms: int, undo: dict[str, Worker | None]
    ) -> list[Event]:
        """Apply every change of a batch, or, when one is refused, none: memory is put back
        as it was before the batch, and the rest of the group goes on."""
        head_before = self._head
        end = head_before + len(changes)  # each change makes exactly one event
        mine: dict[str, Worker | None] = {}
        events = []
        for index, change in enumerate(changes):
            try:
                events.append(self._apply_change(change, now_ms, mine, end))
            except WorkerStateError as error:
                self._restore(mine)
                self._head = head_before
                raise OperationFailed(index, error) from None
        for task_id, worker in mine.items():
            undo.setdefault(task_id, worker)
        return events

    def _take(self, event: Event, undo: dict[str, Worker | None]) -> None:
        """Apply a committed or pending event to the workers in memory."""
        task_id = event.worker.task_id
        undo.setdefault(task_id, self._workers.get(task_id))
        if event.type is EventType.DELETED:
            self._workers.pop(task_id, None)
        else:
            self._workers[task_id] = event.worker
        self._head = event.revision

    def _restore(self, undo: dict[str, Worker | None]) -> None:
        for task_id, worker in undo.items():
            if worker is None:
                self._workers.pop(task_id, None)
            else:
                self._workers[task_id] = worker

    async def _roll_back(
        self, transaction: Transaction | None, head_before: int, undo: dict[str, Worker | None]
    ) -> None:
        self._head = head_before
        self._restore(undo)
        if transaction is not None:
            await transaction.rollback()


def _answer(group: Sequence[_Job], outcomes: Sequence[object]) -> None:
    """Answer a group's callers, the refused ones first.

    Callers resume in the order their futures are set. Under contention the winner of a
    compare-and-set, answered first, would re-read first, reach the next group first and
    win again, while the callers it beat waited: the same few would win every round. A
    refused caller, answered first, re-reads first and gets the first try at the next group.
    """
    answers = list(zip(group, outcomes, strict=True))
    for job, outcome in answers:
        if isinstance(outcome, BaseException) and not job.future.done():
            job.future.set_exception(outcome)
    for job, outcome in answers:
        if not isinstance(outcome, BaseException) and not job.future.done():
            job.future.set_result(outcome)


def _settle(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _synced(group: list[_Job]) -> bool:
    """Whether the group's commit must wait for the disk: unless it holds only a flush's
    unsynced beats (see SaveHeartbeats.synced), it must."""
    return not all(isinstance(j.work, SaveHeartbeats) and not j.work.synced for j in group)
