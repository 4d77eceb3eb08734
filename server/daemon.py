"""One running daemon: the backend, the writer, the gRPC server and their background tasks.

Start and stop happen in a fixed order so that nothing acknowledged is lost: the server stops
taking calls and drains before the writer commits its queue, heartbeats are flushed last, and
the database is closed (and a file's lock released) only after all of that.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from workerstate.client.durations import format_duration
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

from .board import Board, Fleet, Reasons, ssl_context
from .clock import Clock, SystemClock
from .compaction import compact_every
from .config import Config
from .core import Core
from .domain import WorkerStateError
from .follower import Follower
from .heartbeats import Heartbeats
from .hub import Hub
from .liveness import Liveness
from .metrics import FleetFigures, Metrics, RpcMetrics
from .readmodel import ReadModel
from .retention import FinishedRetention
from .security import (
    Token,
    TokenAuth,
    check_listen,
    is_loopback,
    load_tokens,
    server_credentials,
)
from .servicer import WorkerService
from .storage import open_backend
from .storage.base import Backend, PruneRequests
from .timeout import HeartbeatTimeout
from .view import WorkerView
from .watch import Sources, Watch
from .writer import Writer

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["WorkerService"].full_name
# Applied request ids are kept this long, so a client may retry a change for a day.
REQUEST_ID_RETENTION_MS = 24 * 3_600_000
REQUEST_ID_PRUNE_INTERVAL_S = 3600.0


SERVER_OPTIONS = (
    # Without this, a second daemon (on another file) could bind the same port and take
    # half the connections.
    ("grpc.so_reuseport", 0),
    # Requests are a few KB at most (see the field limits): 4 MB refuses a flood early with
    # RESOURCE_EXHAUSTED, before it is read into memory.
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    # One connection may not hog the daemon: more streams wait for a slot (HTTP/2 flow),
    # and --max-watchers caps watches across all connections.
    ("grpc.max_concurrent_streams", 1000),
    # A connection that never completes its handshake is dropped after 10 s.
    ("grpc.server_handshake_timeout_ms", 10_000),
    # Probe quiet clients every minute, so dead peers free their streams...
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    # ...and refuse clients that ping more often than every 10 s (GOAWAY too_many_pings).
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
)


class ListenError(Exception):
    """The listen address cannot be bound."""


@dataclass
class Daemon:
    """A started daemon; `stop()` shuts it down in order."""

    config: Config
    address: str
    core: Core
    service: WorkerService
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    follower: Follower
    tasks: list[asyncio.Task[None]]
    stop_metrics: Callable[[], None] | None
    board: Board | None

    @classmethod
    async def start(cls, config: Config, clock: Clock | None = None) -> Daemon:
        clock = clock or SystemClock()
        backend = await open_backend(config.db)
        try:
            return await cls._start(config, clock, backend)
        except BaseException:
            await backend.close()
            raise

    @classmethod
    async def _start(cls, config: Config, clock: Clock, backend: Backend) -> Daemon:
        loaded = await backend.load()
        head = loaded.head
        view = WorkerView(loaded.workers, head)
        hub = Hub(head, loaded.compact_revision)
        heartbeats = Heartbeats(loaded.heartbeats)
        timeout = None
        if config.fail_after_ms:
            timeout = HeartbeatTimeout(config.fail_after_ms, view, heartbeats)
        liveness = Liveness(
            view, heartbeats, clock, config.thresholds, hub.publish_liveness, timeout
        )
        retention = None
        if config.retain_finished_ms:
            retention = FinishedRetention(config.retain_finished_ms, view, clock)
        read_model = ReadModel(view, hub, heartbeats, liveness, retention)
        metrics = Metrics() if config.metrics_listen else None
        writer = Writer(
            backend,
            clock,
            head,
            loaded.workers,
            read_model.apply,
            metrics.observe_commit if metrics else None,
            config.group_wait_ms / 1000,
        )
        core = Core(
            writer=writer,
            view=view,
            hub=hub,
            heartbeats=heartbeats,
            liveness=liveness,
            backend=backend,
            clock=clock,
            progress_interval_ms=config.progress_interval_ms,
            max_watchers=config.max_watchers,
        )
        # What both faces read, built once: neither can reach storage but through `events`.
        sources = Sources(
            hub=hub,
            view=view,
            level=liveness.level,
            activity=heartbeats.activity,
            events=backend.events,
            clock=clock,
            progress_interval_ms=config.progress_interval_ms,
        )
        service = WorkerService(core, sources)
        tokens = load_tokens(config.token_file) if config.token_file else None
        check_listen(
            config.listen,
            tls=config.tls_cert is not None,
            tokens=bool(tokens),
            insecure=config.insecure,
        )
        credentials = None
        if config.tls_cert and config.tls_key:
            credentials = server_credentials(config.tls_cert, config.tls_key, config.client_ca)
        board, board_url = _bind_board(config, core, sources, tokens)
        # Interceptors cost every RPC a little; only pay for the ones asked for.
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if metrics:
            interceptors.append(RpcMetrics(metrics))
        if tokens:
            interceptors.append(TokenAuth(tokens))
            read_only = sum(t.read_only for t in tokens)
            log.info("token authentication on: %d tokens, %d read-only", len(tokens), read_only)
        server = grpc.aio.server(interceptors=interceptors or None, options=SERVER_OPTIONS)
        pb_grpc.add_WorkerServiceServicer_to_server(service, server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = _bind(server, config.listen, credentials, config.socket_mode)
        follower = Follower(
            writer,
            view,
            heartbeats,
            liveness,
            backend.beats_since,
            read_model.compacted_to,
            loaded.position,
        )
        stop_metrics = None
        if metrics is not None:
            metrics.add_fleet(asyncio.get_running_loop(), lambda: _figures(core, service))
            try:
                metrics_address, stop_metrics = metrics.serve(config.metrics_listen)
            except OSError as e:
                raise ListenError(f"cannot serve metrics on {config.metrics_listen}: {e}") from None
        writer.start()
        await server.start()
        # Ages count from here at the earliest: a restart must not make the fleet look dead.
        liveness.start(serving_since_ms=clock.now_ms())
        if board is not None:
            await board.start()  # after liveness: a page must not see ages from before
            log.info("serving the board on %s", board_url)
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        tasks = [
            asyncio.create_task(
                heartbeats.flush_every(writer.upkeep, config.heartbeat_flush_ms / 1000)
            ),
            asyncio.create_task(_prune_request_ids(writer, clock)),
            asyncio.create_task(liveness.run()),
            asyncio.create_task(compact_every(config.retention, hub, backend, writer, clock)),
            asyncio.create_task(backend.follow(follower.notice, _health_setter(health_servicer))),
        ]
        for policy in (timeout, retention):
            if policy is not None:
                tasks.append(asyncio.create_task(policy.run(writer.execute)))
        log.info(
            "serving %s on %s (db %s, revision %d, %d workers)",
            SERVICE_NAME,
            address,
            backend.name,
            head,
            len(view),
        )
        if stop_metrics is not None:
            log.info("serving metrics on http://%s/metrics", metrics_address)
        if timeout is not None:
            log.info(
                "heartbeat timeout on: ASSIGNED and WORKING workers silent for %s are failed",
                format_duration(config.fail_after_ms),
            )
        if retention is not None:
            log.info(
                "retention on: COMPLETED and FAILED workers are deleted %s after they finish",
                format_duration(config.retain_finished_ms),
            )
        return cls(
            config,
            address,
            core,
            service,
            server,
            health_servicer,
            follower,
            tasks,
            stop_metrics,
            board,
        )

    def cut_grace(self) -> None:
        """Cancel in-flight calls now instead of waiting out the grace period."""
        self.tasks.append(asyncio.create_task(self.server.stop(0)))

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking calls, drain, end streams with UNAVAILABLE, flush, close the file."""
        grace = self.config.shutdown_grace_ms / 1000 if grace_s is None else grace_s
        log.info("shutting down (grace %.1fs)", grace)
        await self.health.enter_graceful_shutdown()
        self.service.stop_streams()
        if self.board is not None:
            await self.board.stop()  # its feeds end with the hub: pages reconnect
        await self.server.stop(grace)
        for task in self.tasks:
            task.cancel()
        for outcome in await asyncio.gather(*self.tasks, return_exceptions=True):
            if not isinstance(outcome, asyncio.CancelledError | None):
                log.error("a background task had failed: %r", outcome)
        await self.follower.stop()
        await self.core.heartbeats.flush(self.core.writer.upkeep)
        await self.core.writer.close()
        await self.core.backend.close()
        if self.stop_metrics is not None:
            self.stop_metrics()
        log.info("stopped at revision %d", self.core.view.head)


def _health_setter(servicer: health.aio.HealthServicer) -> Callable[[bool], None]:
    """What the backend calls when the database is lost or back: NOT_SERVING lets a load
    balancer move clients to another daemon while this one cannot write."""
    serving = True
    pending: set[asyncio.Task[None]] = set()

    def healthy(ok: bool) -> None:
        nonlocal serving
        if ok == serving:
            return
        serving = ok
        log.log(
            logging.INFO if ok else logging.WARNING,
            "health: %s",
            "SERVING" if ok else "NOT_SERVING, the database is unreachable",
        )
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ok
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            task = asyncio.create_task(servicer.set(service, status))
            pending.add(task)
            task.add_done_callback(pending.discard)

    return healthy


def _bind(
    server: grpc.aio.Server,
    listen: str,
    credentials: grpc.ServerCredentials | None,
    socket_mode: int,
) -> str:
    """Bind the listen address; returns it with the real port when port 0 was asked for."""
    try:
        if credentials is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, credentials)
    except RuntimeError as e:
        raise ListenError(f"cannot listen on {listen}: {e}") from None
    if listen.startswith("unix:"):
        # By default only the owner may talk to the daemon through its socket.
        os.chmod(listen.removeprefix("unix:").removeprefix("//"), socket_mode)
        return listen
    if port == 0:
        raise ListenError(f"cannot listen on {listen}: address in use or not permitted")
    host = listen.rsplit(":", 1)[0]
    return f"{host}:{port}"


def _bind_board(
    config: Config, core: Core, sources: Sources, tokens: list[Token] | None
) -> tuple[Board | None, str]:
    """The board (--board-listen) bound to its address, under the gRPC listener's policy."""
    if not config.board_listen:
        return None, ""
    check_listen(
        config.board_listen,
        tls=config.tls_cert is not None,
        tokens=bool(tokens),
        insecure=config.insecure,
    )
    fleet = Fleet(
        view=core.view,
        hub=core.hub,
        heartbeats=core.heartbeats,
        level=core.liveness.level,
        watch=lambda query: Watch(query, sources).responses(),
        execute=core.writer.execute,
        events=core.backend.events,
        clock=core.clock,
        aged_from=core.liveness.aged_from_ms,
        reasons=Reasons(core.backend.events),
    )
    tls = None
    if config.tls_cert and config.tls_key:
        tls = ssl_context(config.tls_cert, config.tls_key, config.client_ca)
    board = Board(fleet, tokens, tls, loopback=is_loopback(config.board_listen))
    try:
        return board, board.bind(config.board_listen)
    except (OSError, ValueError) as e:
        raise ListenError(f"cannot serve the board on {config.board_listen}: {e}") from None


def _figures(core: Core, service: WorkerService) -> FleetFigures:
    now_ms = core.clock.now_ms()
    by_state: Counter[str] = Counter()
    by_level: Counter[str] = Counter()
    for worker in core.view.newest_first():
        by_state[worker.state.value] += 1
        by_level[core.liveness.level(worker, now_ms)[1].value] += 1
    oldest = core.heartbeats.oldest_unsaved_ms()
    return FleetFigures(
        by_state=dict(by_state),
        by_level=dict(by_level),
        watchers=service.watchers,
        heartbeat_streams=service.heartbeat_streams,
        heartbeat_messages=service.heartbeat_messages,
        heartbeats_received=core.heartbeats.received,
        head_revision=core.hub.head,
        compact_revision=core.hub.compact_revision,
        heartbeat_flush_lag_s=0.0 if oldest is None else max(0, now_ms - oldest) / 1000,
    )


async def _prune_request_ids(writer: Writer, clock: Clock) -> None:
    while True:
        before_ms = clock.now_ms() - REQUEST_ID_RETENTION_MS
        try:
            pruned = await writer.upkeep(PruneRequests(before_ms))
        except WorkerStateError as e:
            log.warning("could not forget old request ids, will retry: %s", e)
        else:
            if pruned:
                log.info("forgot %d request ids older than 24h", pruned)
        await asyncio.sleep(REQUEST_ID_PRUNE_INTERVAL_S)
