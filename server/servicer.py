"""The gRPC face of the daemon: check each request, run it, translate the answer.

Mutations go to the writer; reads are answered from the in-memory view (workers), the hub's
window (recent events) or the backend's log (older events), so no read waits for a commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

from . import domain, security, validate
from .core import Core
from .domain import (
    FINISHED_STATES,
    RevisionCompacted,
    ShuttingDown,
    TooManyWatchers,
    Worker,
    WorkerNotFound,
)
from .errors import reported, reported_stream
from .messages import STATE_TO_PB, event_message, set_time, worker_message
from .watch import Sources, Watch


class WorkerService(pb_grpc.WorkerServiceServicer):
    """Implements workerstate.v1.WorkerService."""

    def __init__(self, core: Core, sources: Sources) -> None:
        self._core = core
        self.sources = sources
        self._parked: set[asyncio.Task[object]] = set()
        self._stopping = False
        self.watchers = 0
        self.heartbeat_streams = 0
        self.heartbeat_messages = 0  # Heartbeat calls and StreamHeartbeats messages

    def stop_streams(self) -> None:
        """End every open stream with UNAVAILABLE so clients reconnect to the next daemon.

        Watches wake on the hub's close; a stream waiting for its client is cancelled where
        it waits. A stream in the middle of sending ends at its next message: a cancel
        landing inside grpc's own write would be swallowed there and leave the call open,
        without a status, until the grace period ran out. That is still how a stream whose
        client has stopped reading ends, as no status could reach it anyway.
        """
        self._stopping = True
        self._core.hub.close()
        for task in self._parked:
            task.cancel()

    def _check_open(self) -> None:
        if self._stopping:
            raise ShuttingDown()

    def _worker(self, worker: Worker, now_ms: int) -> pb.Worker:
        return worker_message(
            worker,
            *self._core.liveness.level(worker, now_ms),
            self._core.heartbeats.activity(worker.task_id),
        )

    async def _apply(self, command: domain.Change) -> dict[str, Any]:
        """Run a mutation; the fields every mutation's response carries."""
        worker = await self._core.writer.execute(_by_caller(command))
        return {
            "worker": self._worker(worker, self._core.clock.now_ms()),
            "revision": worker.revision,
        }

    def _existing(self, task_id: str) -> Worker:
        worker = self._core.view.get(task_id)
        if worker is None:
            raise WorkerNotFound(task_id)
        return worker

    # -- mutations ------------------------------------------------------------------------

    @reported
    async def CreateWorker(
        self, request: pb.CreateWorkerRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateWorkerResponse:
        return pb.CreateWorkerResponse(**await self._apply(validate.create_worker(request)))

    @reported
    async def Transition(
        self, request: pb.TransitionRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransitionResponse:
        command = validate.transition(request)
        # Refused before queueing, as the seed does: an impossible pair costs the writer nothing
        # (domain.apply checks it again, for callers that skip this layer).
        domain.check_transition(command.from_state, command.to_state)
        return pb.TransitionResponse(**await self._apply(command))

    @reported
    async def FailWorker(
        self, request: pb.FailWorkerRequest, context: grpc.aio.ServicerContext
    ) -> pb.FailWorkerResponse:
        return pb.FailWorkerResponse(**await self._apply(validate.fail_worker(request)))

    @reported
    async def SetLabels(
        self, request: pb.SetLabelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetLabelsResponse:
        return pb.SetLabelsResponse(**await self._apply(validate.set_labels(request)))

    @reported
    async def DeleteWorker(
        self, request: pb.DeleteWorkerRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteWorkerResponse:
        return pb.DeleteWorkerResponse(**await self._apply(validate.delete_worker(request)))

    @reported
    async def Apply(
        self, request: pb.ApplyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApplyResponse:
        batch = validate.apply(request)
        batch = dataclasses.replace(batch, changes=tuple(_by_caller(c) for c in batch.changes))
        workers = await self._core.writer.execute_batch(batch)
        now_ms = self._core.clock.now_ms()
        return pb.ApplyResponse(
            results=[
                pb.OperationResult(worker=self._worker(w, now_ms), revision=w.revision)
                for w in workers
            ],
            revision=workers[-1].revision,
        )

    # -- reads ----------------------------------------------------------------------------

    @reported
    async def GetWorker(
        self, request: pb.GetWorkerRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetWorkerResponse:
        worker = self._existing(validate.task_id(request.task_id))
        now_ms = self._core.clock.now_ms()
        return pb.GetWorkerResponse(
            worker=self._worker(worker, now_ms), revision=self._core.view.head
        )

    @reported
    async def ListWorkers(
        self, request: pb.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkersResponse:
        query = validate.list_workers(request)
        now_ms = self._core.clock.now_ms()
        response = pb.ListWorkersResponse(revision=self._core.view.head)
        page: list[pb.Worker] = []
        for worker in self._core.view.newest_first(query.below_revision, query.states):
            if query.states and worker.state not in query.states:
                continue
            if not query.selector.matches(worker.labels):
                continue
            beat, level = self._core.liveness.level(worker, now_ms)
            if query.levels and level not in query.levels:
                continue
            if len(page) == query.page_size:
                response.next_page_token = validate.page_token(page[-1].revision)
                break
            page.append(
                worker_message(worker, beat, level, self._core.heartbeats.activity(worker.task_id))
            )
        response.workers.extend(page)
        return response

    @reported
    async def ListEvents(
        self, request: pb.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEventsResponse:
        query = validate.list_events(request)
        hub = self._core.hub
        head = hub.head
        self._check_not_compacted(query.after_revision)
        window = None if query.task_id else hub.since(query.after_revision + 1, query.limit)
        if window is not None:
            return pb.ListEventsResponse(events=[m for _, m in window], revision=head)
        events = await self.sources.events(query.after_revision, query.limit, query.task_id, head)
        self._check_not_compacted(query.after_revision)  # compaction may have run meanwhile
        return pb.ListEventsResponse(events=[event_message(e) for e in events], revision=head)

    def _check_not_compacted(self, after_revision: int) -> None:
        compact_revision = self._core.hub.compact_revision
        if after_revision < compact_revision - 1:
            raise RevisionCompacted(after_revision + 1, compact_revision)

    # -- liveness -------------------------------------------------------------------------

    def _beat(self, request: pb.HeartbeatRequest) -> pb.HeartbeatResponse:
        self.heartbeat_messages += 1
        if request.more:
            return self._beats(request)
        task_id, activity = validate.heartbeat(request)
        worker = self._existing(task_id)
        now_ms = self._core.clock.now_ms()
        self._record(worker, now_ms, activity)
        response = pb.HeartbeatResponse(task_id=task_id, state=STATE_TO_PB[worker.state])
        set_time(response.received_at, now_ms)
        return response

    def _beats(self, request: pb.HeartbeatRequest) -> pb.HeartbeatResponse:
        """A message of many beats: all found before any is recorded, so a refusal (an
        unknown task) leaves none of them half-done."""
        beats = validate.heartbeats(request)
        workers = [self._existing(task_id) for task_id, _ in beats]
        now_ms = self._core.clock.now_ms()
        for worker, (_, activity) in zip(workers, beats, strict=True):
            self._record(worker, now_ms, activity)
        first = workers[0]
        response = pb.HeartbeatResponse(task_id=first.task_id, state=STATE_TO_PB[first.state])
        set_time(response.received_at, now_ms)
        add = response.more.add
        for worker in workers[1:]:
            add(task_id=worker.task_id, state=STATE_TO_PB[worker.state])
        return response

    def _record(self, worker: Worker, now_ms: int, activity: str) -> None:
        """A beat for a finished worker is answered but changes nothing (see the proto)."""
        if worker.state not in FINISHED_STATES:
            self._core.heartbeats.beat(worker.task_id, now_ms, activity)
            self._core.liveness.on_beat(worker, now_ms)

    @reported
    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> pb.HeartbeatResponse:
        return self._beat(request)

    @reported_stream
    async def StreamHeartbeats(
        self,
        request_iterator: AsyncIterator[pb.HeartbeatRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.HeartbeatResponse]:
        self.heartbeat_streams += 1
        requests = aiter(request_iterator)
        task = asyncio.current_task()
        assert task is not None
        parked = self._parked
        try:
            while True:
                # Parked (cancellable by shutdown) only while it waits for the client's next
                # beat, never while grpc writes an answer. Inline, not a helper coroutine:
                # this runs once per beat, and beats are most of a fleet's traffic.
                self._check_open()
                parked.add(task)
                try:
                    request = await anext(requests)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if not self._stopping:
                        raise
                    task.uncancel()
                    raise ShuttingDown() from None
                finally:
                    parked.discard(task)
                yield self._beat(request)
        finally:
            self.heartbeat_streams -= 1

    # -- watch ----------------------------------------------------------------------------

    @reported_stream
    async def WatchState(
        self, request: pb.WatchStateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchStateResponse]:
        query = validate.watch(request)
        if self.watchers >= self._core.max_watchers:
            raise TooManyWatchers(self._core.max_watchers)
        self.watchers += 1
        try:
            async for response in Watch(query, self.sources).responses():
                self._check_open()
                yield response
        finally:
            self.watchers -= 1


def _by_caller(change: domain.Change) -> domain.Change:
    """The change, stamped with who asks for it (the token's name, when there is one)."""
    actor = security.caller()
    return dataclasses.replace(change, actor=actor) if actor else change
