"""The gRPC face of the daemon: check each request, run it, translate the answer.

Mutations go to the writer; reads are answered from the in-memory view (workers), the hub's
window (recent events) or the log on a reader thread (older events), so no read waits for
a commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

from . import domain, validate
from .clock import Clock
from .domain import Event, ShuttingDown, StaleThresholds, Worker, WorkerNotFound
from .errors import reported, reported_stream
from .heartbeats import Heartbeats
from .hub import Hub
from .messages import STATE_TO_PB, event_message, timestamp, worker_message
from .store import EventReader
from .view import WorkerView
from .writer import Writer

# Most events in one WatchState message: each gRPC message costs far more than its bytes, so a
# watcher gets everything it has pending at once, up to this many (about 100 KB).
WATCH_BATCH = 500


@dataclass
class Core:
    """The parts a request touches, built once by the daemon."""

    writer: Writer
    view: WorkerView
    hub: Hub
    heartbeats: Heartbeats
    reader: EventReader
    clock: Clock
    thresholds: StaleThresholds
    serving_since_ms: int


class WorkerService(pb_grpc.WorkerServiceServicer):
    """Implements workerstate.v1.WorkerService."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._streams: set[asyncio.Task[object]] = set()
        self._stopping = False

    def stop_streams(self) -> None:
        """End every open stream with UNAVAILABLE so clients reconnect to the next daemon."""
        self._stopping = True
        self._core.hub.close()
        for task in self._streams:
            task.cancel()

    def _liveness(self, worker: Worker, now_ms: int) -> tuple[int | None, domain.StaleLevel]:
        """The worker's last beat and its stale level now (computed, never stored)."""
        core = self._core
        beat = core.heartbeats.last_ms(worker.task_id)
        level = domain.stale_level(worker, beat, now_ms, core.serving_since_ms, core.thresholds)
        return beat, level

    def _worker(self, worker: Worker, now_ms: int) -> pb.Worker:
        return worker_message(worker, *self._liveness(worker, now_ms))

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
        worker = await self._core.writer.execute(validate.create_worker(request))
        now_ms = self._core.clock.now_ms()
        return pb.CreateWorkerResponse(
            worker=self._worker(worker, now_ms), revision=worker.revision
        )

    @reported
    async def Transition(
        self, request: pb.TransitionRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransitionResponse:
        command = validate.transition(request)
        domain.check_transition(command.from_state, command.to_state)
        worker = await self._core.writer.execute(command)
        now_ms = self._core.clock.now_ms()
        return pb.TransitionResponse(worker=self._worker(worker, now_ms), revision=worker.revision)

    @reported
    async def FailWorker(
        self, request: pb.FailWorkerRequest, context: grpc.aio.ServicerContext
    ) -> pb.FailWorkerResponse:
        worker = await self._core.writer.execute(validate.fail_worker(request))
        now_ms = self._core.clock.now_ms()
        return pb.FailWorkerResponse(worker=self._worker(worker, now_ms), revision=worker.revision)

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
        for worker in self._core.view.newest_first(query.below_revision):
            if query.states and worker.state not in query.states:
                continue
            beat, level = self._liveness(worker, now_ms)
            if query.levels and level not in query.levels:
                continue
            if len(page) == query.page_size:
                response.next_page_token = validate.page_token(page[-1].revision)
                break
            page.append(worker_message(worker, beat, level))
        response.workers.extend(page)
        return response

    @reported
    async def ListEvents(
        self, request: pb.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEventsResponse:
        query = validate.list_events(request)
        head = self._core.hub.head
        events = (
            None if query.task_id else self._core.hub.since(query.after_revision + 1, query.limit)
        )
        if events is None:
            events = await asyncio.to_thread(
                self._core.reader.events, query.after_revision, query.limit, query.task_id, head
            )
        return pb.ListEventsResponse(events=[event_message(e) for e in events], revision=head)

    # -- liveness -------------------------------------------------------------------------

    def _beat(self, request: pb.HeartbeatRequest) -> pb.HeartbeatResponse:
        task_id, activity = validate.heartbeat(request)
        worker = self._existing(task_id)
        now_ms = self._core.clock.now_ms()
        self._core.heartbeats.beat(task_id, now_ms, activity)
        return pb.HeartbeatResponse(
            task_id=task_id, state=STATE_TO_PB[worker.state], received_at=timestamp(now_ms)
        )

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
        async with self._stream():
            async for request in request_iterator:
                yield self._beat(request)

    # -- watch ----------------------------------------------------------------------------

    @reported_stream
    async def WatchState(
        self, request: pb.WatchStateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchStateResponse]:
        query = validate.watch(request)
        hub = self._core.hub
        next_revision = query.start_revision or hub.head + 1
        async with self._stream():
            while True:
                events = hub.since(next_revision, WATCH_BATCH)
                if events is None:
                    events = await asyncio.to_thread(
                        self._core.reader.events, next_revision - 1, WATCH_BATCH, "", hub.head
                    )
                if not events:
                    await hub.wait_past(next_revision - 1)
                    continue
                next_revision = events[-1].revision + 1
                matching = [event_message(e) for e in events if _matches(query, e)]
                if matching:
                    yield pb.WatchStateResponse(events=matching)

    def _stream(self) -> _StreamScope:
        return _StreamScope(self)


class _StreamScope:
    """Tracks a streaming call so shutdown can end it with UNAVAILABLE."""

    def __init__(self, service: WorkerService) -> None:
        self._service = service
        self._task: asyncio.Task[object] | None = None

    async def __aenter__(self) -> None:
        if self._service._stopping:
            raise ShuttingDown()
        self._task = asyncio.current_task()
        assert self._task is not None
        self._service._streams.add(self._task)

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        assert self._task is not None
        self._service._streams.discard(self._task)
        if exc_type is asyncio.CancelledError and self._service._stopping:
            self._task.uncancel()
            raise ShuttingDown()


def _matches(query: validate.WatchQuery, event: Event) -> bool:
    worker = event.worker
    if query.task_ids and worker.task_id not in query.task_ids:
        return False
    return not query.states or worker.state in query.states
