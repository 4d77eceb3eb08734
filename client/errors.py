"""Every exception the client raises, decoded from gRPC status details.

The daemon puts a google.rpc.ErrorInfo (or BadRequest) in each error; `from_rpc_error`
picks the exception by its `reason`, never by message text, so no raw grpc.RpcError leaves
the library.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class WorkerStateError(Exception):
    """Base of every error this library raises; `code` and `reason` come from the daemon."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        reason: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.metadata = metadata or {}

    @property
    def operation_index(self) -> int | None:
        """For an apply() that was refused: the index of the operation that failed."""
        index = self.metadata.get("operation_index")
        return None if index is None else int(index)


class InvalidArgument(WorkerStateError):
    """Request fields broke the documented limits; `violations` maps field to problem.

    In an apply() the fields are named `operations[<i>].<kind>.<field>`."""

    def __init__(self, message: str, violations: dict[str, str], *, code: str = "") -> None:
        super().__init__(message, code=code)
        self.violations = violations

    @property
    def operation_index(self) -> int | None:
        for field in self.violations:
            if field.startswith("operations[") and "]" in field:
                return int(field[len("operations[") : field.index("]")])
        return None


class InvalidTransition(WorkerStateError):
    """The (from, to) pair is not in the transition table."""

    @property
    def allowed(self) -> list[str]:
        """The states the table allows from the requested from-state (none from COMPLETED)."""
        names = self.metadata.get("allowed_to_states", "")
        return names.split(",") if names else []


class StaleState(WorkerStateError):
    """The compare-and-set failed: the worker is not in `expected` (or not at the revision)."""

    @property
    def expected(self) -> str:
        return self.metadata.get("expected_state", "")

    @property
    def actual(self) -> str:
        return self.metadata.get("actual_state", "")

    @property
    def revision(self) -> int:
        return int(self.metadata.get("revision", "0"))


class WorkerNotFound(WorkerStateError):
    """No worker has this task id."""


class WorkerExists(WorkerStateError):
    """create() for a task id that already has a worker."""


class WorkerCompleted(WorkerStateError):
    """fail() on a COMPLETED worker, which is terminal."""


class WorkerActive(WorkerStateError):
    """delete() on a worker that is neither COMPLETED nor FAILED; fail it first."""

    @property
    def actual(self) -> str:
        return self.metadata.get("actual_state", "")


class RequestIdReused(WorkerStateError):
    """A request id already used for a different request."""


class RevisionCompacted(WorkerStateError):
    """The asked-for revision was compacted; list again and watch from the new revision."""

    @property
    def compact_revision(self) -> int:
        return int(self.metadata.get("compact_revision", "0"))


class TooManyWatchers(WorkerStateError):
    """The daemon serves its maximum number of watchers already."""


class Unauthenticated(WorkerStateError):
    """The daemon requires a token and this call had none, or a wrong one."""


class PermissionDenied(WorkerStateError):
    """A read-only token tried to change something."""


class Unavailable(WorkerStateError):
    """The daemon could not be reached or could not answer in time (after retries)."""


class ShuttingDown(Unavailable):
    """The daemon is stopping; the next one will answer."""


class StorageUnavailable(Unavailable):
    """The daemon's database refused a commit; nothing was written."""


_BY_REASON: dict[str, type[WorkerStateError]] = {
    "INVALID_TRANSITION": InvalidTransition,
    "STALE_STATE": StaleState,
    "WORKER_NOT_FOUND": WorkerNotFound,
    "WORKER_EXISTS": WorkerExists,
    "WORKER_COMPLETED": WorkerCompleted,
    "WORKER_ACTIVE": WorkerActive,
    "REQUEST_ID_REUSED": RequestIdReused,
    "REVISION_COMPACTED": RevisionCompacted,
    "TOO_MANY_WATCHERS": TooManyWatchers,
    "UNAUTHENTICATED": Unauthenticated,
    "READ_ONLY_TOKEN": PermissionDenied,
    "SHUTTING_DOWN": ShuttingDown,
    "STORAGE_UNAVAILABLE": StorageUnavailable,
}
# Codes that mean "try again": the connection, not the request, was the problem. CANCELLED
# is among them because this library never cancels a unary call it still waits for: when it
# sees one, a stopping daemon cancelled the call (grpc reports calls caught by a server's
# shutdown that way), and the retry's request id keeps it from applying twice.
TRANSIENT = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


def from_rpc_error(error: grpc.RpcError) -> WorkerStateError:
    """The library exception for a failed call."""
    code: grpc.StatusCode = error.code()
    message = error.details() or code.name.lower()
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            cls = _BY_REASON.get(info.reason, WorkerStateError)
            return cls(message, code=code.name, reason=info.reason, metadata=dict(info.metadata))
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = {v.field: v.description for v in bad.field_violations}
            return InvalidArgument(message, violations, code=code.name)
    if code in TRANSIENT:
        return Unavailable(message, code=code.name)
    return WorkerStateError(message, code=code.name)
