"""The workerstate client library: typed calls to the daemon, for workers and tools.

    from workerstate.client import WorkerClient, WorkerState

    with WorkerClient("127.0.0.1:50051") as client:
        client.create("t-17", branch="feat/t-17", worktree="/work/t-17")
        client.transition("t-17", WorkerState.ASSIGNED, WorkerState.WORKING)

The generated stub (`workerstate.v1`) stays available for raw messages (`client.stub`).
"""

import logging

from . import operations as operations  # the builders for apply(), as a namespace
from .client import (
    DEFAULT_TARGET,
    AsyncHeartbeater,
    AsyncWatch,
    AsyncWorkerClient,
    Heartbeater,
    RetryPolicy,
    Security,
    Watch,
    WorkerClient,
)
from .errors import (
    InvalidArgument,
    InvalidTransition,
    PermissionDenied,
    RequestIdReused,
    RevisionCompacted,
    ShuttingDown,
    StaleState,
    StorageUnavailable,
    TooManyWatchers,
    Unauthenticated,
    Unavailable,
    WorkerActive,
    WorkerCompleted,
    WorkerExists,
    WorkerNotFound,
    WorkerStateError,
)
from .types import Event, EventType, StaleLevel, Worker, WorkerState

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "DEFAULT_TARGET",
    "AsyncHeartbeater",
    "AsyncWatch",
    "AsyncWorkerClient",
    "Event",
    "EventType",
    "Heartbeater",
    "InvalidArgument",
    "InvalidTransition",
    "PermissionDenied",
    "RequestIdReused",
    "RetryPolicy",
    "RevisionCompacted",
    "Security",
    "ShuttingDown",
    "StaleLevel",
    "StaleState",
    "StorageUnavailable",
    "TooManyWatchers",
    "Unauthenticated",
    "Unavailable",
    "Watch",
    "Worker",
    "WorkerActive",
    "WorkerClient",
    "WorkerCompleted",
    "WorkerExists",
    "WorkerNotFound",
    "WorkerState",
    "WorkerStateError",
]
