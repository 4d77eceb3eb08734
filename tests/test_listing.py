"""ListWorkers filters and pages; ListEvents reads the log."""

from __future__ import annotations

import pytest
from harness import create
from workerstate.v1 import workerstate_pb2 as pb

S = pb.WorkerState


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """300 workers spread over three states, on a daemon of their own."""
    from harness import DaemonProcess

    daemon = DaemonProcess(tmp_path_factory.mktemp("fleet") / "w.db").start()
    stub = daemon.stub
    for i in range(300):
        worker = create(stub, f"w{i:03d}")
        if i % 3 >= 1:
            stub.Transition(
                pb.TransitionRequest(
                    task_id=worker.task_id,
                    from_state=S.WORKER_STATE_ASSIGNED,
                    to_state=S.WORKER_STATE_WORKING,
                )
            )
        if i % 3 == 2:
            stub.FailWorker(pb.FailWorkerRequest(task_id=worker.task_id, reason=f"r{i}"))
    yield stub
    assert daemon.stop() == 0


def list_all(stub, page_size: int, **filters) -> tuple[list[pb.Worker], int]:
    workers, token, pages = [], "", 0
    while True:
        page = stub.ListWorkers(
            pb.ListWorkersRequest(page_size=page_size, page_token=token, **filters)
        )
        workers.extend(page.workers)
        pages += 1
        token = page.next_page_token
        if not token:
            return workers, pages


def test_pages_cover_every_worker_once_newest_change_first(fleet):
    workers, pages = list_all(fleet, 70)
    assert pages == 5
    assert len({w.task_id for w in workers}) == len(workers) == 300
    revisions = [w.revision for w in workers]
    assert revisions == sorted(revisions, reverse=True)
    stamps = [w.state_changed_at.ToNanoseconds() for w in workers]
    assert stamps == sorted(stamps, reverse=True)


def test_a_filter_over_finished_and_active_states_pages_newest_first(fleet):
    # FAILED and WORKING workers are held apart (finished ones must not slow the live view),
    # so this listing merges the two: still one order, each worker once.
    both = [S.WORKER_STATE_FAILED, S.WORKER_STATE_WORKING]
    workers, _ = list_all(fleet, 33, states=both)
    assert len({w.task_id for w in workers}) == len(workers) == 200
    revisions = [w.revision for w in workers]
    assert revisions == sorted(revisions, reverse=True)
    live, _ = list_all(fleet, 33, states=[S.WORKER_STATE_WORKING])
    assert [w.task_id for w in live] == [w.task_id for w in workers if w.state == both[1]]


def test_default_page_size_is_100_and_large_sizes_are_capped(fleet):
    assert len(fleet.ListWorkers(pb.ListWorkersRequest()).workers) == 100
    assert len(fleet.ListWorkers(pb.ListWorkersRequest(page_size=5000)).workers) == 300


def test_state_filters(fleet):
    assigned, _ = list_all(fleet, 40, states=[S.WORKER_STATE_ASSIGNED])
    assert {w.task_id for w in assigned} == {f"w{i:03d}" for i in range(0, 300, 3)}
    several, _ = list_all(fleet, 33, states=[S.WORKER_STATE_WORKING, S.WORKER_STATE_FAILED])
    assert len(several) == 200
    assert {w.state for w in several} == {S.WORKER_STATE_WORKING, S.WORKER_STATE_FAILED}
    assert list_all(fleet, 10, states=[S.WORKER_STATE_COMPLETED]) == ([], 1)


def test_stale_level_filter(fleet):
    ok, _ = list_all(fleet, 100, stale_levels=[pb.STALE_LEVEL_OK])
    assert len(ok) == 300  # default thresholds: nobody is stale yet
    assert list_all(fleet, 100, stale_levels=[pb.STALE_LEVEL_DEAD]) == ([], 1)


def test_list_then_watch_revision_is_the_head(fleet):
    page = fleet.ListWorkers(pb.ListWorkersRequest(page_size=1))
    assert page.revision == 300 + 200 + 100


def test_events_after_revision_limit_and_task(fleet):
    page = fleet.ListEvents(pb.ListEventsRequest(after_revision=10, limit=25))
    assert [e.revision for e in page.events] == list(range(11, 36))
    assert page.revision == 600
    mine = fleet.ListEvents(pb.ListEventsRequest(task_id="w002")).events
    assert [e.type for e in mine] == [
        pb.EVENT_TYPE_ASSIGNED,
        pb.EVENT_TYPE_STATE_CHANGED,
        pb.EVENT_TYPE_FAILED,
    ]
    assert mine[-1].reason == "r2" and mine[-1].from_state == S.WORKER_STATE_WORKING
    assert fleet.ListEvents(pb.ListEventsRequest(after_revision=600)).events == []
    assert len(fleet.ListEvents(pb.ListEventsRequest()).events) == 100
    assert len(fleet.ListEvents(pb.ListEventsRequest(limit=100000)).events) == 600
