"""Labels, SetLabels and label selectors, through the real daemon on both backends (issue 19)."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest
from harness import Watcher, create, details, unique, wait_until
from workerstate.v1 import workerstate_pb2 as pb

S = pb.WorkerState
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def labels_of(stub, task_id):
    return dict(stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker.labels)


def refused(call, request) -> tuple[grpc.StatusCode, object, object]:
    with pytest.raises(grpc.RpcError) as error:
        call(request)
    return details(error.value)


def test_a_worker_is_created_with_labels_and_its_events_carry_them(stub):
    task = unique()
    labels = {"repo": "api", "agent": "claude-code", "example.com/epic": "E-7", "draft": ""}
    created = stub.CreateWorker(
        pb.CreateWorkerRequest(task_id=task, branch="b", worktree="/w", labels=labels)
    )
    assert dict(created.worker.labels) == labels
    assert labels_of(stub, task) == labels
    (event,) = stub.ListEvents(pb.ListEventsRequest(task_id=task)).events
    assert dict(event.worker.labels) == labels


@pytest.mark.parametrize(
    ("labels", "offender"),
    [
        ({"-bad": "x"}, "-bad"),
        ({"a" * 64: "x"}, "a" * 64),
        ({"Upper.Case/name": "x"}, "Upper.Case/name"),
        ({"/name": "x"}, "/name"),
        ({"good": "has space"}, "good"),
        ({"good": "v" * 64}, "good"),
        ({"ok": "trailing-"}, "ok"),
    ],
)
def test_invalid_labels_are_a_bad_request_naming_the_key(stub, labels, offender):
    code, _, bad = refused(
        stub.CreateWorker,
        pb.CreateWorkerRequest(task_id=unique(), branch="b", worktree="/w", labels=labels),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    (violation,) = bad.field_violations
    assert violation.field == "labels"
    assert repr(offender) in violation.description


def test_at_most_64_labels(stub):
    ok = {f"k{i}": "v" for i in range(64)}
    create(stub, labels=ok)
    code, _, bad = refused(
        stub.CreateWorker,
        pb.CreateWorkerRequest(
            task_id=unique(), branch="b", worktree="/w", labels={**ok, "k64": "v"}
        ),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad.field_violations[0].field == "labels"
    assert "64" in bad.field_violations[0].description


def test_set_labels_replaces_the_set_in_any_state_and_records_the_old_one(stub):
    task = create(stub, labels={"repo": "api", "tier": "1"}).task_id
    for to in (S.WORKER_STATE_WORKING, S.WORKER_STATE_IN_REVIEW, S.WORKER_STATE_APPROVED):
        worker = stub.GetWorker(pb.GetWorkerRequest(task_id=task)).worker
        stub.Transition(pb.TransitionRequest(task_id=task, from_state=worker.state, to_state=to))
    stub.Transition(
        pb.TransitionRequest(
            task_id=task, from_state=S.WORKER_STATE_APPROVED, to_state=S.WORKER_STATE_COMPLETED
        )
    )
    before = stub.GetWorker(pb.GetWorkerRequest(task_id=task)).worker
    answer = stub.SetLabels(pb.SetLabelsRequest(task_id=task, labels={"repo": "web"}))
    assert dict(answer.worker.labels) == {"repo": "web"}
    assert answer.revision == answer.worker.revision > before.revision
    assert answer.worker.state == S.WORKER_STATE_COMPLETED
    assert answer.worker.state_changed_at == before.state_changed_at
    event = stub.ListEvents(pb.ListEventsRequest(task_id=task)).events[-1]
    assert event.type == pb.EVENT_TYPE_LABELS_CHANGED
    assert dict(event.from_labels) == {"repo": "api", "tier": "1"}
    assert dict(event.worker.labels) == {"repo": "web"}
    assert event.worker.state_changed_at == before.state_changed_at
    # An empty set removes them all.
    stub.SetLabels(pb.SetLabelsRequest(task_id=task))
    assert labels_of(stub, task) == {}


def test_set_labels_is_a_compare_and_set_and_idempotent(stub):
    worker = create(stub, labels={"a": "1"})
    code, info, _ = refused(
        stub.SetLabels,
        pb.SetLabelsRequest(task_id=worker.task_id, labels={"a": "2"}, expected_revision=1),
    )
    assert (code, info.reason) == (grpc.StatusCode.ABORTED, "STALE_STATE")
    assert info.metadata["revision"] == str(worker.revision)
    request = pb.SetLabelsRequest(
        task_id=worker.task_id,
        labels={"a": "2"},
        expected_revision=worker.revision,
        request_id=unique("req"),
    )
    first = stub.SetLabels(request)
    again = stub.SetLabels(request)
    assert again.revision == first.revision
    assert len(stub.ListEvents(pb.ListEventsRequest(task_id=worker.task_id)).events) == 2
    code, info, _ = refused(stub.SetLabels, pb.SetLabelsRequest(task_id=unique()))
    assert (code, info.reason) == (grpc.StatusCode.NOT_FOUND, "WORKER_NOT_FOUND")


def test_labels_survive_a_restart(make_daemon_any):
    daemon = make_daemon_any()
    task = create(daemon.stub, labels={"repo": "api"}).task_id
    daemon.stub.SetLabels(pb.SetLabelsRequest(task_id=task, labels={"repo": "web", "x": ""}))
    daemon.restart()
    assert labels_of(daemon.stub, task) == {"repo": "web", "x": ""}
    events = daemon.stub.ListEvents(pb.ListEventsRequest(task_id=task)).events
    assert [dict(e.worker.labels) for e in events] == [{"repo": "api"}, {"repo": "web", "x": ""}]
    assert dict(events[1].from_labels) == {"repo": "api"}


@pytest.fixture
def make_daemon_any(every_backend):
    return every_backend


# -- databases written before labels ------------------------------------------------------


def check_pre_labels_fleet(stub):
    """The fixtures hold t-1 WORKING (beat "running tests"), t-2 IN_REVIEW, t-3 FAILED."""
    listed = stub.ListWorkers(pb.ListWorkersRequest())
    assert {w.task_id: w.state for w in listed.workers} == {
        "t-1": S.WORKER_STATE_WORKING,
        "t-2": S.WORKER_STATE_IN_REVIEW,
        "t-3": S.WORKER_STATE_FAILED,
    }
    assert all(not w.labels for w in listed.workers)
    assert listed.revision == 7
    events = stub.ListEvents(pb.ListEventsRequest()).events
    assert [e.revision for e in events] == list(range(1, 8))
    assert events[6].reason == "abandoned" and events[3].reason == "started"
    # The event's time is the worker's state_changed_at for rows written before labels.
    assert all(e.worker.state_changed_at == e.time for e in events)
    one = stub.GetWorker(pb.GetWorkerRequest(task_id="t-1")).worker
    assert one.description == "first task" and one.last_activity == "running tests"
    # Applied request ids still answer retries with the original worker.
    retry = stub.CreateWorker(
        pb.CreateWorkerRequest(
            task_id="t-1",
            branch="feat/t-1",
            worktree="/w/t-1",
            description="first task",
            request_id="req-create-1",
        )
    )
    assert retry.revision == 1
    # And labels can be added to the old workers.
    stub.SetLabels(pb.SetLabelsRequest(task_id="t-2", labels={"repo": "api"}))
    assert labels_of(stub, "t-2") == {"repo": "api"}


def test_a_sqlite_file_from_before_labels_opens_with_everything_kept(make_daemon, tmp_path):
    db = tmp_path / "old.db"
    shutil.copy(FIXTURES / "pre-labels.db", db)
    daemon = make_daemon(db=db)
    check_pre_labels_fleet(daemon.stub)
    daemon.restart()
    assert labels_of(daemon.stub, "t-2") == {"repo": "api"}


def test_a_postgres_database_from_before_labels_opens_with_everything_kept(pg_db, make_daemon):
    # Restored as the daemon's own user would have written it: it owns the schema.
    dump = (FIXTURES / "pre-labels.postgres.sql").read_text()
    pg_db.server.admin(f'SET ROLE "{pg_db.server.user}";\n{dump}', pg_db.name)
    daemon = make_daemon(db=pg_db.url)
    check_pre_labels_fleet(daemon.stub)
    daemon.restart()
    assert labels_of(daemon.stub, "t-2") == {"repo": "api"}


# -- selectors ------------------------------------------------------------------------------


@pytest.fixture
def fleet(stub):
    """Five workers with a label `batch` of their own, so selectors see only these."""
    batch = unique("b")
    specs = {
        "api-1": {"repo": "api", "tier": "1"},
        "api-2": {"repo": "api", "tier": "2", "draft": ""},
        "web-1": {"repo": "web", "tier": "1"},
        "web-3": {"repo": "web", "tier": "3"},
        "bare": {},
    }
    names = {}
    for name, labels in specs.items():
        names[create(stub, labels={"batch": batch, **labels}).task_id] = name
    return batch, names


def selected(stub, batch, names, selector, **request):
    listed = stub.ListWorkers(
        pb.ListWorkersRequest(label_selector=f"batch={batch},{selector}", **request)
    )
    return {names[w.task_id] for w in listed.workers}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("repo=api", {"api-1", "api-2"}),
        ("repo == web", {"web-1", "web-3"}),
        ("repo!=api", {"web-1", "web-3", "bare"}),
        ("tier in (1, 3)", {"api-1", "web-1", "web-3"}),
        ("tier notin (1)", {"api-2", "web-3", "bare"}),
        ("draft", {"api-2"}),
        ("!draft", {"api-1", "web-1", "web-3", "bare"}),
        ("!repo", {"bare"}),
        (" repo = api , tier in (2) ", {"api-2"}),
    ],
)
def test_list_workers_applies_kubernetes_selectors(stub, fleet, selector, expected):
    assert selected(stub, *fleet, selector) == expected


def test_a_selector_combines_with_states_and_paging(stub, fleet):
    batch, names = fleet
    api_1 = next(t for t, n in names.items() if n == "api-1")
    stub.Transition(
        pb.TransitionRequest(
            task_id=api_1, from_state=S.WORKER_STATE_ASSIGNED, to_state=S.WORKER_STATE_WORKING
        )
    )
    assert selected(stub, batch, names, "repo=api", states=[S.WORKER_STATE_WORKING]) == {"api-1"}
    seen, token = [], ""
    while True:
        page = stub.ListWorkers(
            pb.ListWorkersRequest(
                label_selector=f"batch={batch},repo", page_size=1, page_token=token
            )
        )
        seen += [names[w.task_id] for w in page.workers]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == ["api-1", "api-2", "web-1", "web-3"]


@pytest.mark.parametrize("selector", ["repo in api", "=x", "repo=(", "a b", "Bad_/x"])
def test_an_invalid_selector_is_a_bad_request(stub, selector):
    for call, request in (
        (stub.ListWorkers, pb.ListWorkersRequest(label_selector=selector)),
        (
            lambda r: next(iter(stub.WatchState(r))),
            pb.WatchStateRequest(label_selector=selector),
        ),
    ):
        code, _, bad = refused(call, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert bad.field_violations[0].field == "label_selector"


def test_watch_with_a_selector_sees_workers_enter_and_leave_it(stub):
    batch = unique("b")
    selector = f"batch={batch},repo=api"
    inside = create(stub, labels={"batch": batch, "repo": "api"}).task_id
    outside = create(stub, labels={"batch": batch, "repo": "web"}).task_id
    watcher = Watcher(stub, send_initial_state=True, label_selector=selector)
    wait_until(lambda: any(m.HasField("synced") for m in watcher.messages))
    snapshot = [e.worker.task_id for m in watcher.messages for e in m.events]
    assert snapshot == [inside]
    start = watcher.messages[-1].synced.revision + 1

    stub.Transition(
        pb.TransitionRequest(
            task_id=outside, from_state=S.WORKER_STATE_ASSIGNED, to_state=S.WORKER_STATE_WORKING
        )
    )
    entered = stub.SetLabels(
        pb.SetLabelsRequest(task_id=outside, labels={"batch": batch, "repo": "api"})
    )
    left = stub.SetLabels(
        pb.SetLabelsRequest(task_id=inside, labels={"batch": batch, "repo": "web"})
    )
    stub.Transition(
        pb.TransitionRequest(
            task_id=inside, from_state=S.WORKER_STATE_ASSIGNED, to_state=S.WORKER_STATE_WORKING
        )
    )
    last = stub.Transition(
        pb.TransitionRequest(
            task_id=outside, from_state=S.WORKER_STATE_WORKING, to_state=S.WORKER_STATE_IN_REVIEW
        )
    )
    expected = [
        (entered.revision, outside, pb.EVENT_TYPE_LABELS_CHANGED),
        (left.revision, inside, pb.EVENT_TYPE_LABELS_CHANGED),
        (last.revision, outside, pb.EVENT_TYPE_STATE_CHANGED),
    ]

    def live():
        return [
            (e.revision, e.worker.task_id, e.type)
            for m in watcher.messages
            for e in m.events
            if e.type != pb.EVENT_TYPE_SNAPSHOT
        ]

    wait_until(lambda: len(live()) >= 3)
    assert live() == expected
    watcher.close()
    # The same on replay from a revision.
    replay = Watcher(stub, start_revision=start, label_selector=selector)
    wait_until(lambda: len([e for m in replay.messages for e in m.events]) >= 3)
    assert [
        (e.revision, e.worker.task_id, e.type) for m in replay.messages for e in m.events
    ] == expected
    replay.close()


def test_liveness_changes_are_filtered_by_the_selector(make_daemon):
    daemon = make_daemon("--warn-after", "300ms", "--stale-after", "10s", "--dead-after", "20s")
    stub = daemon.stub
    inside = create(stub, labels={"repo": "api"}).task_id
    create(stub, labels={"repo": "web"})
    watcher = Watcher(stub, liveness=True, label_selector="repo=api")
    wait_until(
        lambda: any(
            e.type == pb.EVENT_TYPE_LIVENESS_CHANGED for m in watcher.messages for e in m.events
        ),
        timeout=10,
    )
    changes = [e for m in watcher.messages for e in m.events]
    assert {e.worker.task_id for e in changes} == {inside}
    watcher.close()
