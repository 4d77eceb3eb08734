"""Heartbeaters, and the one StreamHeartbeats stream that all of a client's heartbeaters share.

A fleet's traffic is mostly beats, and every gRPC message costs the daemon far more than the
beat it carries: on grpc.aio an empty echo takes about 0.1 ms of a core per message when
messages arrive one at a time, so 5,000 beats a second, one to a message, need more than half
a core before the daemon does anything. A client therefore multiplexes its heartbeaters onto
one stream and sends the beats that fall due together as one message (`more` in
HeartbeatRequest): when the first beat is due, every other beat due within a tenth of its own
interval goes along. A beat may be early by that much, never late.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, Self, TypeAlias

import grpc
from workerstate.v1 import workerstate_pb2 as pb

from .errors import InvalidArgument, Unavailable, WorkerNotFound, WorkerStateError, from_rpc_error
from .types import WorkerState

logger = logging.getLogger(__name__)

EARLY = 0.1  # of its interval, by which a beat may go early to share a message
MAX_BEATS = 1000  # in one message: the daemon's limit
_ENTRY = re.compile(r"more\[(\d+)\]")  # a BadRequest's field path into `more`
FINISHED = (WorkerState.FAILED, WorkerState.COMPLETED)
Call: TypeAlias = "grpc.aio.StreamStreamCall[pb.HeartbeatRequest, pb.HeartbeatResponse]"


class Backoff(Protocol):
    """How long to wait before a reconnection (the client's RetryPolicy)."""

    def delay(self, attempt: int) -> float: ...


class AsyncHeartbeater:
    """Beats for one worker in the background while its `async with` block runs, reconnecting
    on its own (see BeatStream).

    `state` is the worker's state as the daemon last reported it. When the worker is FAILED,
    COMPLETED or gone (changed elsewhere), `ended` is set and `on_end(state)` called once, so
    the worker can stop. If beating itself is refused (a bad token, an invalid task id),
    `error` holds why and `ended` is set too. Set `activity` to say what it is doing;
    `interval` may change too, from the next beat on.
    """

    def __init__(
        self,
        stream: BeatStream,
        task_id: str,
        interval: float,
        on_end: Callable[[WorkerState | None], None] | None,
    ) -> None:
        self._stream = stream
        self.task_id = task_id
        self.interval = interval
        self.activity = ""
        self.state: WorkerState | None = None
        self.ended = threading.Event()  # usable from threads and coroutines alike
        self.error: WorkerStateError | None = None
        self._on_end = on_end

    async def __aenter__(self) -> Self:
        self._stream.join(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stream.leave(self)

    def _end(self, state: WorkerState | None, error: WorkerStateError | None = None) -> None:
        if not self.ended.is_set():
            self.error = error
            self.ended.set()
            if self._on_end is not None:
                self._on_end(state)


class BeatStream:
    """One client's StreamHeartbeats stream, open while any of its heartbeaters runs.

    Beats wait in a heap by when they are due. The writer sends what is due as one message;
    the reader matches each answer to the message it answers (the daemon answers in order).
    When the daemon goes away, every heartbeater keeps its place and the stream reconnects
    with backoff, for as long as anyone beats. A refusal ends only the heartbeaters it names
    (an unknown task, an invalid task id), or all of them (a bad token), and the rest go on
    on a new stream at once.
    """

    def __init__(
        self,
        open_stream: Callable[[], Call],
        target: str,
        backoff: Backoff,
    ) -> None:
        self._open = open_stream
        self._target = target
        self._backoff = backoff
        self._members: dict[AsyncHeartbeater, int] = {}  # heartbeater: its live heap entry
        self._due: list[tuple[float, int, AsyncHeartbeater]] = []
        self._entries = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batches = MAX_BEATS  # 1 once a daemon shows it answers only one beat a message

    def join(self, heartbeater: AsyncHeartbeater) -> None:
        self._schedule(heartbeater, asyncio.get_running_loop().time())
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="workerstate-heartbeats")

    async def leave(self, heartbeater: AsyncHeartbeater) -> None:
        self._members.pop(heartbeater, None)
        if not self._members:
            await self.close()

    async def close(self) -> None:
        """The client is closing: its heartbeaters stop beating (they do not end)."""
        self._members.clear()
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _schedule(self, heartbeater: AsyncHeartbeater, due: float) -> None:
        entry = next(self._entries)
        self._members[heartbeater] = entry
        heapq.heappush(self._due, (due, entry, heartbeater))

    def _take_due(self, now: float) -> list[AsyncHeartbeater]:
        """The beats to send now: none unless one is due, then every one due soon enough."""
        due = self._due
        batch: list[AsyncHeartbeater] = []
        later: list[tuple[float, AsyncHeartbeater]] = []
        while due and len(batch) < self._batches:
            when, entry, heartbeater = due[0]
            if self._members.get(heartbeater) != entry:  # left, or rescheduled since
                heapq.heappop(due)
                continue
            if when > (now + heartbeater.interval * EARLY if batch else now):
                break
            heapq.heappop(due)
            batch.append(heartbeater)
            # On schedule, unless it fell behind (an outage): then a whole interval from now.
            following = when + heartbeater.interval
            if following <= now:
                following = now + heartbeater.interval
            later.append((following, heartbeater))
        for when, heartbeater in later:
            self._schedule(heartbeater, when)
        return batch

    def _next_due(self) -> float | None:
        while self._due and self._members.get(self._due[0][2]) != self._due[0][1]:
            heapq.heappop(self._due)
        return self._due[0][0] if self._due else None

    async def _write(
        self,
        call: Call,
        sent: deque[list[AsyncHeartbeater]],
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if batch := self._take_due(loop.time()):
                first, rest = batch[0], batch[1:]
                message = pb.HeartbeatRequest(task_id=first.task_id, activity=first.activity)
                message.more.extend(
                    pb.HeartbeatRequest(task_id=h.task_id, activity=h.activity) for h in rest
                )
                sent.append(batch)
                try:
                    await call.write(message)
                except (grpc.RpcError, asyncio.InvalidStateError):
                    return  # the stream is over: the reader learns why from the call
                continue
            self._wake.clear()
            when = self._next_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), None if when is None else max(0.0, when - loop.time())
                )

    def _answered(self, batch: list[AsyncHeartbeater], response: pb.HeartbeatResponse) -> None:
        answers: Sequence[pb.HeartbeatResponse] = [response, *response.more]
        if len(answers) < len(batch):
            # A daemon from before `more`: it answered the first beat only. One a message, then,
            # and the others again now rather than an interval late.
            logger.info("heartbeats: the daemon at %s takes one beat a message", self._target)
            self._batches = 1
            now = asyncio.get_running_loop().time()
            for heartbeater in batch[len(answers) :]:
                if heartbeater in self._members:
                    self._schedule(heartbeater, now)
            self._wake.set()
        for heartbeater, answer in zip(batch, answers, strict=False):
            if heartbeater not in self._members:
                continue
            heartbeater.state = WorkerState.from_pb(answer.state)
            if heartbeater.state in FINISHED:
                self._members.pop(heartbeater)
                heartbeater._end(heartbeater.state)

    def _refused(self, error: WorkerStateError, sent: deque[list[AsyncHeartbeater]]) -> None:
        """End the heartbeaters the refusal names (all of them if it names none). The daemon
        recorded none of the unanswered beats, so the others' are due again at once."""
        self._end_named(error, sent)
        now = asyncio.get_running_loop().time()
        for heartbeater in {h for batch in sent for h in batch if h in self._members}:
            self._schedule(heartbeater, now)

    def _end_named(self, error: WorkerStateError, sent: deque[list[AsyncHeartbeater]]) -> None:
        if isinstance(error, WorkerNotFound):  # gone, like a deleted worker: no error
            task_id = error.metadata.get("task_id")
            for heartbeater in [h for h in self._members if h.task_id == task_id]:
                self._members.pop(heartbeater)
                heartbeater._end(None)
            return
        batch = sent[0] if sent else []  # the daemon answers in order: the oldest unanswered
        named: list[AsyncHeartbeater] = []
        if isinstance(error, InvalidArgument):
            for field in error.violations:
                found = _ENTRY.match(field)
                index = int(found.group(1)) + 1 if found else 0
                if index < len(batch) and batch[index] in self._members:
                    named.append(batch[index])
        for heartbeater in named or list(self._members):
            self._members.pop(heartbeater, None)
            heartbeater._end(None, error)

    async def _run(self) -> None:
        failures = 0
        while self._members:
            if failures:  # back from an outage: tell the daemon at once who is alive
                now = asyncio.get_running_loop().time()
                for heartbeater in list(self._members):
                    self._schedule(heartbeater, now)
            call = self._open()
            sent: deque[list[AsyncHeartbeater]] = deque()
            writer = asyncio.create_task(self._write(call, sent))
            try:
                async for response in call:
                    if failures:
                        logger.info("heartbeats: the daemon at %s answers again", self._target)
                        failures = 0
                    self._answered(sent.popleft(), response)
                    if not self._members:
                        return
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                if not isinstance(error, Unavailable):
                    self._refused(error, sent)
                    continue  # the others go on at once, on a new stream
                if not failures:
                    logger.warning(
                        "heartbeats: cannot reach the daemon at %s (%s); retrying",
                        self._target,
                        error.message,
                    )
            finally:
                writer.cancel()
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            # The daemon is restarting: keep trying, backing off, for as long as anyone beats.
            await asyncio.sleep(self._backoff.delay(min(failures, 10)))
            failures += 1
