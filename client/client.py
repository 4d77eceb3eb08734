"""WorkerClient (blocking) and AsyncWorkerClient (asyncio): typed calls with safe retries.

The asyncio client does the work; the blocking one runs it on a private event-loop thread,
so both behave the same: every mutation carries a request id (generated unless given), and
a call that fails with UNAVAILABLE, DEADLINE_EXCEEDED or a daemon-side CANCELLED is retried
with backoff and the same request id, so a retry never applies twice.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import random
import threading
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

from . import operations as ops
from .errors import (
    TRANSIENT,
    RevisionCompacted,
    Unavailable,
    WorkerStateError,
    from_rpc_error,
)
from .heartbeats import AsyncHeartbeater, BeatStream
from .operations import Operation
from .targets import channel_target
from .types import Event, EventType, StaleLevel, Worker, WorkerState

DEFAULT_TARGET = "127.0.0.1:50051"
# Silent unless the application configures logging (the library adds a NullHandler).
logger = logging.getLogger(__name__)
# Told (back, revision) when a watch loses the daemon (False) and gets it back (True).
ConnectionHook = Callable[[bool, int], None]
T = TypeVar("T")
Request = TypeVar("Request")
Response = TypeVar("Response")


# Ping a quiet connection every 30 s (the daemon allows one per 10 s), so a long watch or
# heartbeat stream on a half-open connection fails over instead of hanging. With several
# addresses, `pick_first` (gRPC's default, named so it stays so) keeps every call on one
# daemon, so a client reads its own writes, and moves on, in the listed order, only when
# that daemon is unreachable; `round_robin` would spread a client's calls over daemons.
CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"pick_first": {}}]})),
)


@dataclass(frozen=True)
class Security:
    """How to reach a daemon that requires TLS, mutual TLS or tokens (all off by default).

    `tls_ca` verifies the daemon's certificate (None with `tls=True`: the system's roots);
    `tls_cert` and `tls_key` are this client's certificate for mutual TLS; `token` is sent
    as `authorization: Bearer <token>` on every call.
    """

    token: str | None = None
    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def channel(self, target: str) -> grpc.aio.Channel:
        """A channel to `target`: one address, or several separated by commas (see
        `targets`), with TLS and tokens as configured."""
        target, authority = channel_target(target)
        options: tuple[tuple[str, str | int], ...] = CHANNEL_OPTIONS
        if authority is not None:
            options += (("grpc.default_authority", authority),)
        if not (self.tls or self.tls_ca or self.tls_cert):
            return grpc.aio.insecure_channel(target, options=options)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.tls_ca.read_bytes() if self.tls_ca else None,
            private_key=self.tls_key.read_bytes() if self.tls_key else None,
            certificate_chain=self.tls_cert.read_bytes() if self.tls_cert else None,
        )
        return grpc.aio.secure_channel(target, credentials, options=options)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures are retried: `attempts` tries in all, backoff doubling from
    `first_backoff_s` up to `max_backoff_s`, with jitter. The defaults ride out a daemon
    restart (about 3 s of waiting in all) without hiding a daemon that is down.

    `give_up_after_s` bounds a call's attempts and waits together (and a watch's first
    connection), for callers such as a command line that promise an answer within a time;
    None leaves only `attempts` and the client's per-attempt timeout."""

    attempts: int = 6
    first_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    give_up_after_s: float | None = None

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.first_backoff_s * 2.0**attempt) * random.uniform(
            0.8, 1.2
        )

    def deadline(self) -> float | None:
        """When a call starting now must give up, on the event loop's clock."""
        if self.give_up_after_s is None:
            return None
        return asyncio.get_running_loop().time() + self.give_up_after_s


def _left(deadline: float | None, limit: float) -> float:
    """The time an attempt may take: `limit`, or less when the deadline is nearer."""
    if deadline is None:
        return limit
    return min(limit, deadline - asyncio.get_running_loop().time())


class AsyncWorkerClient:
    """The daemon's API as typed coroutines. Use as `async with AsyncWorkerClient(...)`."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        security: Security = Security(),
    ) -> None:
        """`target` is `host:port` or `unix:/path`, or several of them separated by commas
        to fail over between (tried in order); `timeout` bounds each attempt.

        Raises ValueError for a list entry that is not an address."""
        self.target = target
        self._timeout = timeout
        self._retry = retry
        self._metadata = security.metadata()
        self._channel = security.channel(target)
        self.stub = pb_grpc.WorkerServiceStub(self._channel)  # the raw stub, for raw messages
        self._beats = BeatStream(
            lambda: self.stub.StreamHeartbeats(metadata=self._metadata), target, retry
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._beats.close()
        await self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[Response]], request: object) -> Response:
        deadline = self._retry.deadline()
        for attempt in range(self._retry.attempts):
            try:
                timeout = max(0.0, _left(deadline, self._timeout))
                return await method(request, timeout=timeout, metadata=self._metadata)
            except grpc.RpcError as error:
                delay = self._retry.delay(attempt)
                # No retry that could only start at the deadline: give up now instead.
                last = attempt + 1 == self._retry.attempts or _left(deadline, delay) < delay
                if error.code() not in TRANSIENT or last:
                    raise from_rpc_error(error) from None
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt raises")

    async def create(
        self,
        task_id: str,
        *,
        branch: str,
        worktree: str,
        description: str | None = None,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Worker:
        """Create a worker in ASSIGNED."""
        request = ops.create(
            task_id, branch=branch, worktree=worktree, description=description, labels=labels
        ).create
        request.request_id = request_id or uuid.uuid4().hex
        return Worker.from_pb((await self._call(self.stub.CreateWorker, request)).worker)

    async def transition(
        self,
        task_id: str,
        from_state: WorkerState | str,
        to_state: WorkerState | str,
        *,
        expected_revision: int | None = None,
        reason: str = "",
        request_id: str | None = None,
    ) -> Worker:
        """Compare-and-set move; raises StaleState if the worker is not in `from_state`."""
        request = ops.transition(
            task_id, from_state, to_state, expected_revision=expected_revision, reason=reason
        ).transition
        request.request_id = request_id or uuid.uuid4().hex
        return Worker.from_pb((await self._call(self.stub.Transition, request)).worker)

    async def fail(
        self, task_id: str, reason: str = "", *, request_id: str | None = None
    ) -> Worker:
        """Move a worker (from any state but COMPLETED) to FAILED."""
        request = ops.fail(task_id, reason).fail
        request.request_id = request_id or uuid.uuid4().hex
        return Worker.from_pb((await self._call(self.stub.FailWorker, request)).worker)

    async def set_labels(
        self,
        task_id: str,
        labels: Mapping[str, str],
        *,
        expected_revision: int | None = None,
        request_id: str | None = None,
    ) -> Worker:
        """Replace the worker's labels with `labels` (in any state)."""
        request = ops.set_labels(task_id, labels, expected_revision=expected_revision).set_labels
        request.request_id = request_id or uuid.uuid4().hex
        return Worker.from_pb((await self._call(self.stub.SetLabels, request)).worker)

    async def delete(
        self,
        task_id: str,
        *,
        expected_revision: int | None = None,
        reason: str = "",
        request_id: str | None = None,
    ) -> Worker:
        """Delete a COMPLETED or FAILED worker; returns it as it was."""
        request = ops.delete(task_id, expected_revision=expected_revision, reason=reason).delete
        request.request_id = request_id or uuid.uuid4().hex
        return Worker.from_pb((await self._call(self.stub.DeleteWorker, request)).worker)

    async def apply(
        self, operations: Iterable[Operation], *, request_id: str | None = None
    ) -> builtins.list[Worker]:
        """Apply a batch built with `workerstate.client.operations`, all or nothing; the
        worker each operation left, in order. A refused operation raises its own error,
        with `operation_index` set, and nothing of the batch is stored."""
        request = pb.ApplyRequest(
            operations=list(operations), request_id=request_id or uuid.uuid4().hex
        )
        response = await self._call(self.stub.Apply, request)
        return [Worker.from_pb(result.worker) for result in response.results]

    async def get(self, task_id: str) -> Worker:
        response = await self._call(self.stub.GetWorker, pb.GetWorkerRequest(task_id=task_id))
        return Worker.from_pb(response.worker)

    async def list(
        self,
        states: Iterable[WorkerState | str] = (),
        stale_levels: Iterable[StaleLevel | str] = (),
        *,
        label_selector: str = "",
    ) -> list[Worker]:
        """Every matching worker, newest change first (all pages)."""
        request = pb.ListWorkersRequest(
            states=[WorkerState(s).to_pb() for s in states],
            stale_levels=[StaleLevel(s).to_pb() for s in stale_levels],
            page_size=1000,
            label_selector=label_selector,
        )
        workers: list[Worker] = []
        while True:
            page = await self._call(self.stub.ListWorkers, request)
            workers.extend(Worker.from_pb(w) for w in page.workers)
            if not page.next_page_token:
                return workers
            request.page_token = page.next_page_token

    async def heartbeat(self, task_id: str, activity: str = "") -> WorkerState:
        """Say the worker is alive; returns its current state (stop if FAILED)."""
        request = pb.HeartbeatRequest(task_id=task_id, activity=activity)
        state = WorkerState.from_pb((await self._call(self.stub.Heartbeat, request)).state)
        assert state is not None
        return state

    async def events(
        self, after_revision: int = 0, task_id: str | None = None
    ) -> builtins.list[Event]:
        """The log after `after_revision` (all of it up to now), oldest first."""
        events: builtins.list[Event] = []
        while True:
            request = pb.ListEventsRequest(
                after_revision=after_revision, task_id=task_id or "", limit=1000
            )
            page = await self._call(self.stub.ListEvents, request)
            events.extend(Event.from_pb(e) for e in page.events)
            if len(page.events) < 1000:
                return events
            after_revision = page.events[-1].revision

    def watch(
        self,
        task_ids: Iterable[str] = (),
        states: Iterable[WorkerState | str] = (),
        *,
        start_revision: int = 0,
        send_initial_state: bool = False,
        liveness: bool = False,
        relist_on_compaction: bool = False,
        on_connection: ConnectionHook | None = None,
        label_selector: str = "",
    ) -> AsyncWatch:
        """Stream events; reconnects and resumes on its own (see AsyncWatch)."""
        return AsyncWatch(
            self,
            pb.WatchStateRequest(
                start_revision=start_revision,
                task_ids=list(task_ids),
                states=[WorkerState(s).to_pb() for s in states],
                send_initial_state=send_initial_state,
                liveness=liveness,
                label_selector=label_selector,
                # Progress keeps `revision` current when filters hide events, so a resume
                # does not replay what was already skipped.
                progress_notify=True,
            ),
            relist_on_compaction,
            on_connection,
        )

    def heartbeater(
        self,
        task_id: str,
        interval: float = 5.0,
        on_end: Callable[[WorkerState | None], None] | None = None,
    ) -> AsyncHeartbeater:
        """Beat in the background while the `async with` block runs (see AsyncHeartbeater).
        Every heartbeater of this client shares one stream, and beats due together share a
        message (see workerstate.client.heartbeats)."""
        return AsyncHeartbeater(self._beats, task_id, interval, on_end)


class AsyncWatch:
    """Events from WatchState as an async iterator that survives daemon restarts.

    When the daemon goes away it reconnects with backoff (for as long as it takes, once it
    has connected at all) and resumes from `revision + 1`: no stored event is missed or
    repeated. Computed events are not replayed: LIVENESS_CHANGED events that happened
    during the outage are gone (ask for a snapshot to learn current levels), and a
    connection lost before `synced` sends the whole snapshot again. On REVISION_COMPACTED it
    raises, or with `relist_on_compaction` starts over with a fresh snapshot. `close()` (or
    leaving `async with`) ends the iteration, by the same name as the blocking Watch's. Do
    not wrap `anext()` in a timeout: cancelling an async generator mid-step closes it.

    `on_connection(False, revision)` is called when an outage starts and
    `on_connection(True, revision)` when the daemon answers again, `revision` being the last
    one covered before the outage, so a person watching knows the silence is not calm.
    """

    def __init__(
        self,
        client: AsyncWorkerClient,
        request: pb.WatchStateRequest,
        relist: bool,
        on_connection: ConnectionHook | None = None,
    ) -> None:
        self._client = client
        self._request = request
        self._relist = relist
        self._on_connection = on_connection
        # The last revision this watch has covered; resuming asks for the next one.
        self.revision = request.start_revision - 1
        self.synced = False
        self._snapshot_needed = request.send_initial_state
        self._call: Any = None
        self._closed = False
        self._events = self._stream()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the iteration: the next step (or the one waiting now) stops it."""
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    def _next_request(self) -> pb.WatchStateRequest:
        request = pb.WatchStateRequest()
        request.CopyFrom(self._request)
        request.send_initial_state = self._snapshot_needed
        request.start_revision = 0 if self._snapshot_needed else self.revision + 1
        return request

    async def _stream(self) -> AsyncIterator[Event]:
        client, retry = self._client, self._client._retry
        if self.revision < 0 and not self._snapshot_needed:
            # "From now" must mean one fixed revision, or a reconnect would skip the outage.
            head = await client._call(client.stub.ListWorkers, pb.ListWorkersRequest(page_size=1))
            self.revision = head.revision
        failures, connected, away = 0, False, False
        deadline = retry.deadline()
        while not self._closed:  # close() during a backoff sleep must not start a new call
            self._call = client.stub.WatchState(self._next_request(), metadata=client._metadata)
            try:
                if not connected or away:
                    await self._connection(None if connected else deadline)
                    connected = True
                    if away:
                        away = False
                        self._tell(back=True)
                async for message in self._call:
                    failures, connected = 0, True
                    if message.HasField("synced"):
                        self.revision, self.synced = message.synced.revision, True
                        self._snapshot_needed = False
                    elif message.HasField("progress"):
                        self.revision = max(self.revision, message.progress.revision)
                    for raw in message.events:
                        event = Event.from_pb(raw)
                        if event.type is not EventType.SNAPSHOT:
                            self.revision = max(self.revision, event.revision)
                        yield event
                return
            except asyncio.CancelledError:
                if self._closed:
                    return  # grpc.aio reports our own close() this way
                raise
            except grpc.RpcError as rpc_error:
                if self._closed:
                    return  # our own close(); anything else is the daemon's doing
                error = from_rpc_error(rpc_error)
                if isinstance(error, RevisionCompacted) and self._relist:
                    self.synced, self._snapshot_needed = False, True
                    continue
                if not isinstance(error, Unavailable):
                    raise error from None
                # Once connected, ride out any outage (a restart, a long upgrade); before
                # that, give up after the retry policy so a wrong address fails fast.
                delay = retry.delay(min(failures, 10))
                gone = failures + 1 >= retry.attempts or _left(deadline, delay) < delay
                if not connected and gone:
                    raise error from None
                if connected and not away:
                    away = True
                    self._tell(back=False)
                await asyncio.sleep(delay)
                failures += 1

    async def _connection(self, deadline: float | None) -> None:
        """Wait until the daemon has taken the call; past `deadline`, it is unavailable."""
        if deadline is None:
            await self._call.wait_for_connection()
            return
        try:
            async with asyncio.timeout_at(deadline):
                await self._call.wait_for_connection()
        except TimeoutError:
            self._call.cancel()
            raise Unavailable("deadline exceeded", code="DEADLINE_EXCEEDED") from None

    def _tell(self, back: bool) -> None:
        if self._on_connection is not None:
            self._on_connection(back, self.revision)


class WorkerClient:
    """The same API as AsyncWorkerClient, blocking; for ordinary worker scripts.

    Use as `with WorkerClient("127.0.0.1:50051") as client:`.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        security: Security = Security(),
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="workerstate-client", daemon=True
        )
        self._thread.start()

        async def make() -> AsyncWorkerClient:
            return AsyncWorkerClient(target, timeout=timeout, retry=retry, security=security)

        try:
            self._async = self._run(make())
        except BaseException:  # a malformed target, an unreadable TLS file: no thread left
            self._stop_loop()
            raise
        self.target = target

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._async.close())
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def create(
        self,
        task_id: str,
        *,
        branch: str,
        worktree: str,
        description: str | None = None,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Worker:
        """Create a worker in ASSIGNED."""
        return self._run(
            self._async.create(
                task_id,
                branch=branch,
                worktree=worktree,
                description=description,
                request_id=request_id,
                labels=labels,
            )
        )

    def transition(
        self,
        task_id: str,
        from_state: WorkerState | str,
        to_state: WorkerState | str,
        *,
        expected_revision: int | None = None,
        reason: str = "",
        request_id: str | None = None,
    ) -> Worker:
        """Compare-and-set move; raises StaleState if the worker is not in `from_state`."""
        return self._run(
            self._async.transition(
                task_id,
                from_state,
                to_state,
                expected_revision=expected_revision,
                reason=reason,
                request_id=request_id,
            )
        )

    def fail(self, task_id: str, reason: str = "", *, request_id: str | None = None) -> Worker:
        """Move a worker (from any state but COMPLETED) to FAILED."""
        return self._run(self._async.fail(task_id, reason, request_id=request_id))

    def set_labels(
        self,
        task_id: str,
        labels: Mapping[str, str],
        *,
        expected_revision: int | None = None,
        request_id: str | None = None,
    ) -> Worker:
        """Replace the worker's labels with `labels` (in any state)."""
        return self._run(
            self._async.set_labels(
                task_id, labels, expected_revision=expected_revision, request_id=request_id
            )
        )

    def delete(
        self,
        task_id: str,
        *,
        expected_revision: int | None = None,
        reason: str = "",
        request_id: str | None = None,
    ) -> Worker:
        """Delete a COMPLETED or FAILED worker; returns it as it was."""
        return self._run(
            self._async.delete(
                task_id, expected_revision=expected_revision, reason=reason, request_id=request_id
            )
        )

    def apply(
        self, operations: Iterable[Operation], *, request_id: str | None = None
    ) -> builtins.list[Worker]:
        """Apply a batch built with `workerstate.client.operations`, all or nothing."""
        return self._run(self._async.apply(operations, request_id=request_id))

    def get(self, task_id: str) -> Worker:
        return self._run(self._async.get(task_id))

    def list(
        self,
        states: Iterable[WorkerState | str] = (),
        stale_levels: Iterable[StaleLevel | str] = (),
        *,
        label_selector: str = "",
    ) -> list[Worker]:
        """Every matching worker, newest change first (all pages)."""
        return self._run(self._async.list(states, stale_levels, label_selector=label_selector))

    def heartbeat(self, task_id: str, activity: str = "") -> WorkerState:
        """Say the worker is alive; returns its current state (stop if FAILED)."""
        return self._run(self._async.heartbeat(task_id, activity))

    def events(self, after_revision: int = 0, task_id: str | None = None) -> builtins.list[Event]:
        """The log after `after_revision` (all of it up to now), oldest first."""
        return self._run(self._async.events(after_revision, task_id))

    def watch(
        self,
        task_ids: Iterable[str] = (),
        states: Iterable[WorkerState | str] = (),
        *,
        start_revision: int = 0,
        send_initial_state: bool = False,
        liveness: bool = False,
        relist_on_compaction: bool = False,
        on_connection: ConnectionHook | None = None,
        label_selector: str = "",
    ) -> Watch:
        """Stream events; reconnects and resumes on its own (see AsyncWatch). `on_connection`
        runs on the client's event-loop thread."""

        async def make() -> AsyncWatch:
            return self._async.watch(
                task_ids,
                states,
                start_revision=start_revision,
                send_initial_state=send_initial_state,
                liveness=liveness,
                relist_on_compaction=relist_on_compaction,
                on_connection=on_connection,
                label_selector=label_selector,
            )

        return Watch(self, self._run(make()))

    def heartbeater(
        self,
        task_id: str,
        interval: float = 5.0,
        on_end: Callable[[WorkerState | None], None] | None = None,
    ) -> Heartbeater:
        """Beat in the background while the `with` block runs (see AsyncHeartbeater)."""
        if on_end is not None:
            # Off the client's event-loop thread, so the callback may call this client.
            on_end = _on_own_thread(on_end)
        return Heartbeater(self, self._async.heartbeater(task_id, interval, on_end))


def _on_own_thread(
    callback: Callable[[WorkerState | None], None],
) -> Callable[[WorkerState | None], None]:
    def start(state: WorkerState | None) -> None:
        threading.Thread(target=callback, args=(state,), name="workerstate-on-end").start()

    return start


class Watch:
    """A blocking iterator over an AsyncWatch; `close()` (or leaving `with`) stops it."""

    def __init__(self, client: WorkerClient, watch: AsyncWatch) -> None:
        self._client = client
        self._watch = watch

    @property
    def revision(self) -> int:
        return self._watch.revision

    @property
    def synced(self) -> bool:
        return self._watch.synced

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        try:
            return self._client._run(self._watch.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client._loop.call_soon_threadsafe(self._watch.close)


class Heartbeater:
    """The blocking face of AsyncHeartbeater: `with client.heartbeater(task_id) as beats:`."""

    def __init__(self, client: WorkerClient, heartbeater: AsyncHeartbeater) -> None:
        self._client = client
        self._heartbeater = heartbeater

    @property
    def task_id(self) -> str:
        return self._heartbeater.task_id

    @property
    def state(self) -> WorkerState | None:
        return self._heartbeater.state

    @property
    def error(self) -> WorkerStateError | None:
        """Why the daemon refused the beats, once `ended` is set because of it."""
        return self._heartbeater.error

    @property
    def ended(self) -> threading.Event:
        return self._heartbeater.ended

    @property
    def activity(self) -> str:
        return self._heartbeater.activity

    @activity.setter
    def activity(self, value: str) -> None:
        self._heartbeater.activity = value

    @property
    def interval(self) -> float:
        return self._heartbeater.interval

    @interval.setter
    def interval(self, value: float) -> None:
        self._heartbeater.interval = value

    def __enter__(self) -> Self:
        self._client._run(self._heartbeater.__aenter__())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client._run(self._heartbeater.__aexit__(exc_type, exc, tb))


__all__ = [
    "DEFAULT_TARGET",
    "AsyncHeartbeater",
    "AsyncWatch",
    "AsyncWorkerClient",
    "Heartbeater",
    "RetryPolicy",
    "Security",
    "Watch",
    "WorkerClient",
    "WorkerStateError",
]
