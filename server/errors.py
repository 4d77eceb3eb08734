"""The one place where domain errors become gRPC statuses with ErrorInfo or BadRequest.

Details travel in `grpc-status-details-bin` (google.rpc.Status), so a client in any language
decodes the same reason and metadata. Clients match on the reason, never on message text.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .domain import (
    FieldViolation,
    InvalidArgument,
    InvalidTransition,
    OperationFailed,
    PermissionDenied,
    RequestIdReused,
    RevisionCompacted,
    ShuttingDown,
    StaleState,
    StorageUnavailable,
    TooManyWatchers,
    Unauthenticated,
    WorkerActive,
    WorkerCompleted,
    WorkerExists,
    WorkerNotFound,
    WorkerStateError,
)

log = logging.getLogger(__name__)

DOMAIN = "workerstate.v1"


def _no_metadata(_: Any) -> dict[str, str]:
    return {}


def _task(e: Any) -> dict[str, str]:
    return {"task_id": e.task_id}


def _stale(e: StaleState) -> dict[str, str]:
    return {
        "task_id": e.task_id,
        "expected_state": e.expected.value,
        "actual_state": e.actual.value,
        "revision": str(e.revision),
    }


# Domain error -> (status code, ErrorInfo reason, ErrorInfo metadata). InvalidArgument is
# the one exception: it carries BadRequest field violations instead of an ErrorInfo.
ERRORS: dict[
    type[WorkerStateError], tuple[grpc.StatusCode, str, Callable[[Any], dict[str, str]]]
] = {
    InvalidTransition: (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_TRANSITION",
        lambda e: {"allowed_to_states": ",".join(s.value for s in e.allowed)},
    ),
    StaleState: (grpc.StatusCode.ABORTED, "STALE_STATE", _stale),
    WorkerNotFound: (grpc.StatusCode.NOT_FOUND, "WORKER_NOT_FOUND", _task),
    WorkerExists: (grpc.StatusCode.ALREADY_EXISTS, "WORKER_EXISTS", _task),
    WorkerCompleted: (grpc.StatusCode.FAILED_PRECONDITION, "WORKER_COMPLETED", _task),
    WorkerActive: (
        grpc.StatusCode.FAILED_PRECONDITION,
        "WORKER_ACTIVE",
        lambda e: {"task_id": e.task_id, "actual_state": e.actual.value},
    ),
    RequestIdReused: (
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
        lambda e: {"request_id": e.request_id},
    ),
    RevisionCompacted: (
        grpc.StatusCode.OUT_OF_RANGE,
        "REVISION_COMPACTED",
        lambda e: {"compact_revision": str(e.compact_revision)},
    ),
    TooManyWatchers: (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_WATCHERS",
        lambda e: {"max_watchers": str(e.limit)},
    ),
    Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", _no_metadata),
    PermissionDenied: (
        grpc.StatusCode.PERMISSION_DENIED,
        "READ_ONLY_TOKEN",
        lambda e: {"token": e.name},
    ),
    StorageUnavailable: (grpc.StatusCode.UNAVAILABLE, "STORAGE_UNAVAILABLE", _no_metadata),
    ShuttingDown: (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", _no_metadata),
}


# An error the table lacks is a bug here, not the caller's: INTERNAL, never a crash.
UNKNOWN: tuple[grpc.StatusCode, str, Callable[[Any], dict[str, str]]] = (
    grpc.StatusCode.INTERNAL,
    "INTERNAL",
    _no_metadata,
)


def to_status(error: WorkerStateError) -> grpc.Status:
    """The status (code, message, packed details) that reports `error` to the caller.

    A refused operation of an Apply batch is reported as its own error would be, with its
    index in the ErrorInfo metadata (operation_index) or in its fields (operations[<i>].)."""
    detail = any_pb2.Any()
    cause, index = error, None
    if isinstance(error, OperationFailed):
        cause, index = error.error, error.index
    if isinstance(cause, InvalidArgument):
        code = grpc.StatusCode.INVALID_ARGUMENT
        prefix = "" if index is None else f"operations[{index}]."
        violations = [FieldViolation(prefix + v.field, v.description) for v in cause.violations]
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in violations
                ]
            )
        )
    else:
        code, reason, metadata = ERRORS.get(type(cause), UNKNOWN)
        fields = metadata(cause)
        if index is not None:
            fields["operation_index"] = str(index)
        detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=fields))
    return rpc_status.to_status(
        status_pb2.Status(code=getattr(code_pb2, code.name), message=str(error), details=[detail])
    )


Unary = TypeVar("Unary", bound=Callable[..., Awaitable[Any]])
Streaming = TypeVar("Streaming", bound=Callable[..., AsyncIterator[Any]])


def reported(handler: Unary) -> Unary:
    """Wrap a unary servicer method so domain errors reach the caller as mapped statuses."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except WorkerStateError as error:
            await context.abort_with_status(to_status(error))

    return wrapper  # type: ignore[return-value]


def reported_stream(handler: Streaming) -> Streaming:
    """Wrap a streaming servicer method: a domain error ends the stream with its status."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            async for response in handler(self, request, context):
                yield response
        except WorkerStateError as error:
            await context.abort_with_status(to_status(error))

    return wrapper  # type: ignore[return-value]
