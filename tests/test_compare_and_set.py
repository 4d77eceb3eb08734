"""Compare-and-set: racing transitions, expected revisions."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from harness import create, details
from workerstate.v1 import workerstate_pb2 as pb

S = pb.WorkerState


def one_wins(attempt: Callable[[int], object]) -> pb.Worker:
    """Run 32 attempts from WORKING at once: exactly one wins, and each loser is told the
    winner's state and revision (ABORTED, STALE_STATE); returns the winner's worker."""
    with ThreadPoolExecutor(32) as pool:
        outcomes = list(pool.map(attempt, range(32)))
    wins = [o for o in outcomes if isinstance(o, pb.TransitionResponse)]
    losses = [o for o in outcomes if isinstance(o, grpc.RpcError)]
    assert len(wins) == 1 and len(losses) == 31
    winner = wins[0].worker
    for loss in losses:
        code, info, _ = details(loss)
        assert code == grpc.StatusCode.ABORTED
        assert info.reason == "STALE_STATE"
        assert info.metadata["task_id"] == winner.task_id
        assert info.metadata["expected_state"] == "WORKING"
        assert info.metadata["actual_state"] == S.Name(winner.state).removeprefix("WORKER_STATE_")
        assert info.metadata["revision"] == str(winner.revision)
    return winner


def test_32_racing_transitions_exactly_one_wins(stub):
    worker = create(stub)
    stub.Transition(
        pb.TransitionRequest(
            task_id=worker.task_id,
            from_state=S.WORKER_STATE_ASSIGNED,
            to_state=S.WORKER_STATE_WORKING,
        )
    )

    def attempt(i: int) -> object:
        target = S.WORKER_STATE_IN_REVIEW if i % 2 else S.WORKER_STATE_CONFLICTED
        try:
            return stub.Transition(
                pb.TransitionRequest(
                    task_id=worker.task_id, from_state=S.WORKER_STATE_WORKING, to_state=target
                )
            )
        except grpc.RpcError as e:
            return e

    one_wins(attempt)
    events = stub.ListEvents(pb.ListEventsRequest(task_id=worker.task_id)).events
    assert len(events) == 3  # created, WORKING, and the one winner


def test_expected_revision_must_match(stub):
    worker = create(stub)
    request = pb.TransitionRequest(
        task_id=worker.task_id,
        from_state=S.WORKER_STATE_ASSIGNED,
        to_state=S.WORKER_STATE_WORKING,
        expected_revision=worker.revision + 1000,
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.Transition(request)
    code, info, _ = details(caught.value)
    assert code == grpc.StatusCode.ABORTED
    assert info.reason == "STALE_STATE"
    assert info.metadata["actual_state"] == "ASSIGNED"
    assert info.metadata["revision"] == str(worker.revision)
    request.expected_revision = worker.revision
    assert stub.Transition(request).worker.state == S.WORKER_STATE_WORKING
