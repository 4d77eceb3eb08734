"""Typed builders for the operations of an apply() batch, named after the calls they stand for.

    from workerstate.client import operations as op

    client.apply([
        op.create("t-1", branch="feat/t-1", worktree="/w/t-1", labels={"epic": "e1"}),
        op.transition("t-1", "ASSIGNED", "WORKING"),
    ])

An operation carries no request id of its own: apply()'s request id covers the whole batch.
The client's single calls build their requests here too, and add a request id.
"""

from __future__ import annotations

from collections.abc import Mapping

from workerstate.v1 import workerstate_pb2 as pb

from .types import WorkerState

Operation = pb.Operation


def create(
    task_id: str,
    *,
    branch: str,
    worktree: str,
    description: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Operation:
    return pb.Operation(
        create=pb.CreateWorkerRequest(
            task_id=task_id,
            branch=branch,
            worktree=worktree,
            description=description,
            labels=labels or {},
        )
    )


def transition(
    task_id: str,
    from_state: WorkerState | str,
    to_state: WorkerState | str,
    *,
    expected_revision: int | None = None,
    reason: str = "",
) -> Operation:
    return pb.Operation(
        transition=pb.TransitionRequest(
            task_id=task_id,
            from_state=WorkerState(from_state).to_pb(),
            to_state=WorkerState(to_state).to_pb(),
            expected_revision=expected_revision or 0,
            reason=reason,
        )
    )


def fail(task_id: str, reason: str = "") -> Operation:
    return pb.Operation(fail=pb.FailWorkerRequest(task_id=task_id, reason=reason))


def set_labels(
    task_id: str, labels: Mapping[str, str], *, expected_revision: int | None = None
) -> Operation:
    return pb.Operation(
        set_labels=pb.SetLabelsRequest(
            task_id=task_id, labels=labels, expected_revision=expected_revision or 0
        )
    )


def delete(task_id: str, *, expected_revision: int | None = None, reason: str = "") -> Operation:
    return pb.Operation(
        delete=pb.DeleteWorkerRequest(
            task_id=task_id, expected_revision=expected_revision or 0, reason=reason
        )
    )
