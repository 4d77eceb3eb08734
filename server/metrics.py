"""Prometheus metrics, served on an optional HTTP listener (--metrics-listen).

Counters and histograms are updated where things happen (RPCs by an interceptor, commits by
the writer's observer). Fleet-wide figures (workers by state and stale level, watchers,
revisions) are computed at scrape time on the event loop, where the view lives, so they cost
nothing between scrapes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .handlers import behaviour, handler_like, streams_responses

# Latency buckets from 250 µs (an in-memory read) to 10 s (a deadline).
RPC_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10)
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class FleetFigures:
    """What the collector reports, taken on the event loop in one go."""

    by_state: dict[str, int]
    by_level: dict[str, int]
    watchers: int
    heartbeat_streams: int
    heartbeat_messages: int
    heartbeats_received: int
    head_revision: int
    compact_revision: int
    heartbeat_flush_lag_s: float


class Metrics:
    """The daemon's metrics registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpcs = Counter(
            "workerstate_rpcs",
            "RPCs handled, by method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            "workerstate_rpc_duration_seconds",
            "Time from receiving an RPC to its last response, by method.",
            ["method"],
            buckets=RPC_BUCKETS,
            registry=self.registry,
        )
        self.commit_size = Histogram(
            "workerstate_commit_batch_size",
            "Jobs (changes, heartbeat flushes, upkeep) committed per transaction.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "workerstate_commit_duration_seconds",
            "Time to apply and commit one group, fsync included.",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.lock_seconds = Histogram(
            "workerstate_commit_lock_seconds",
            "Time each committed group held the database's write lock (on PostgreSQL the "
            "revision row lock every daemon takes), from taking it to the end of COMMIT.",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )

    def observe_commit(self, jobs: int, seconds: float, locked_s: float | None) -> None:
        """Called by the writer after each group (prometheus_client is thread-safe);
        `locked_s` is None for a group that did not commit."""
        self.commit_size.observe(jobs)
        self.commit_seconds.observe(seconds)
        if locked_s is not None:
            self.lock_seconds.observe(locked_s)

    def add_fleet(
        self, loop: asyncio.AbstractEventLoop, figures: Callable[[], FleetFigures]
    ) -> None:
        self.registry.register(_FleetCollector(loop, figures))

    def serve(self, listen: str) -> tuple[str, Callable[[], None]]:
        """Serve /metrics on HOST:PORT (port 0 picks one); returns the address and a stopper."""
        host, _, port = listen.rpartition(":")
        server, thread = start_http_server(int(port), host.strip("[]"), registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)

        return f"{host}:{server.server_port}", stop


class _FleetCollector(Collector):
    """Gauges computed at scrape time, on the event loop that owns the view."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, figures: Callable[[], FleetFigures]
    ) -> None:
        self._loop = loop
        self._figures = figures

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        async def take() -> FleetFigures:
            return self._figures()

        f = asyncio.run_coroutine_threadsafe(take(), self._loop).result(timeout=10)
        states = GaugeMetricFamily("workerstate_workers", "Workers by state.", labels=["state"])
        for state, count in sorted(f.by_state.items()):
            states.add_metric([state], count)
        yield states
        levels = GaugeMetricFamily(
            "workerstate_workers_by_stale_level",
            "Workers by stale level, computed at scrape time.",
            labels=["stale_level"],
        )
        for level, count in sorted(f.by_level.items()):
            levels.add_metric([level], count)
        yield levels
        for name, text, value in (
            ("workerstate_watchers", "Open WatchState streams.", f.watchers),
            (
                "workerstate_heartbeat_streams",
                "Open StreamHeartbeats streams.",
                f.heartbeat_streams,
            ),
            ("workerstate_head_revision", "Newest revision of the event log.", f.head_revision),
            ("workerstate_compact_revision", "Oldest revision still stored.", f.compact_revision),
            (
                "workerstate_heartbeat_flush_lag_seconds",
                "Age of the oldest heartbeat not yet written to the file.",
                f.heartbeat_flush_lag_s,
            ),
        ):
            yield GaugeMetricFamily(name, text, value=value)
        # Beats per message: how well clients batch the beats due together.
        yield CounterMetricFamily(
            "workerstate_heartbeat_messages",
            "Heartbeat messages received (unary calls and stream messages).",
            value=f.heartbeat_messages,
        )
        yield CounterMetricFamily(
            "workerstate_heartbeats_received",
            "Beats recorded (a message may carry many; beats of finished workers are not).",
            value=f.heartbeats_received,
        )


class RpcMetrics(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts every RPC by method and final status code, and times it."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def _observe(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        start: float,
        error: BaseException | None,
    ) -> None:
        code = context.code()
        if code is None:
            code = grpc.StatusCode.OK if error is None else _code_of(error)
        self._metrics.rpcs.labels(method, code.name).inc()
        self._metrics.rpc_seconds.labels(method).observe(time.perf_counter() - start)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]
        observe = self._observe
        inner = behaviour(handler)

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start, error = time.perf_counter(), None
            try:
                return await inner(request, context)
            except BaseException as e:
                error = e
                raise
            finally:
                observe(method, context, start, error)

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            start, error = time.perf_counter(), None
            try:
                async for response in inner(request, context):
                    yield response
            except BaseException as e:
                error = e
                raise
            finally:
                observe(method, context, start, error)

        return handler_like(handler, streaming if streams_responses(handler) else unary)


def _code_of(error: BaseException) -> grpc.StatusCode:
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN
