"""WatchState: the log in order, resume, snapshot + live, filters, liveness, progress,
compaction, shutdown and restarts, slow watchers and the watcher cap."""

from __future__ import annotations

import contextlib
import random
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from harness import NEXT, Watcher, create, details, wait_until
from workerstate.v1 import workerstate_pb2 as pb


@pytest.fixture
def make_daemon(every_backend):
    """The daemons these tests start keep their state in a file, then in PostgreSQL."""
    return every_backend


S = pb.WorkerState


def random_history(stub, writers: int, steps: int, seed: int, prefix: str = "h") -> None:
    """Creates, transitions and failures from several concurrent writers; conflicts allowed."""

    refusals: list[grpc.StatusCode] = []

    def writer(n: int) -> None:
        rng = random.Random(seed * 100 + n)
        mine = [f"{prefix}{n}-{i}" for i in range(4)]
        shared = [f"{prefix}-shared-{i}" for i in range(2)]
        for task_id in mine:
            create(stub, task_id)
        for task_id in shared:
            with contextlib.suppress(grpc.RpcError):  # another writer created it first
                create(stub, task_id)
        for _ in range(steps):
            task_id = rng.choice(mine + shared)
            try:
                state = stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker.state
                if rng.random() < 0.1 and state != S.WORKER_STATE_COMPLETED:
                    stub.FailWorker(pb.FailWorkerRequest(task_id=task_id, reason="random"))
                elif NEXT[state]:
                    stub.Transition(
                        pb.TransitionRequest(
                            task_id=task_id, from_state=state, to_state=rng.choice(NEXT[state])
                        )
                    )
            except grpc.RpcError as e:
                refusals.append(e.code())

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(writer, range(writers)))
    # Only lost races: the worker moved (or completed) between the read and the write.
    assert set(refusals) <= {grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION}


def log_of(stub) -> list[pb.WorkerEvent]:
    events, after = [], 0
    while True:
        page = stub.ListEvents(pb.ListEventsRequest(after_revision=after, limit=1000)).events
        if not page:
            return events
        events.extend(page)
        after = page[-1].revision


def test_resume_from_every_revision_reproduces_the_logs_suffix(make_daemon):
    daemon = make_daemon()
    random_history(daemon.stub, writers=4, steps=40, seed=1)
    log = log_of(daemon.stub)
    head = log[-1].revision
    assert [e.revision for e in log] == list(range(1, head + 1))
    for start in range(1, head + 1):
        watcher = Watcher(daemon.stub, start_revision=start)
        watcher.wait_for_revision(head)
        watcher.close()
        assert watcher.stored() == log[start - 1 :], f"start_revision={start}"


def test_replay_joins_live_events_without_gap_or_duplicate(make_daemon):
    daemon = make_daemon()
    for _ in range(5):
        create(daemon.stub)
    watcher = Watcher(daemon.stub, start_revision=3)
    done = threading.Event()
    threading.Thread(
        target=lambda: (random_history(daemon.stub, 3, 30, seed=2), done.set())
    ).start()
    assert done.wait(60)
    head = log_of(daemon.stub)[-1].revision
    watcher.wait_for_revision(head)
    watcher.close()
    assert [e.revision for e in watcher.stored()] == list(range(3, head + 1))


def test_snapshot_then_live_rebuilds_the_exact_state_under_concurrent_writes(make_daemon):
    daemon = make_daemon()
    random_history(daemon.stub, writers=3, steps=20, seed=3, prefix="before")
    done = threading.Event()
    threading.Thread(
        target=lambda: (random_history(daemon.stub, 3, 40, seed=4, prefix="during"), done.set())
    ).start()
    time.sleep(0.05)
    watcher = Watcher(daemon.stub, send_initial_state=True)
    assert done.wait(60)
    head = log_of(daemon.stub)[-1].revision
    wait_until(lambda: any(m.HasField("synced") for m in watcher.messages))
    watcher.wait_for_revision(head)
    watcher.close()

    synced_at = next(i for i, m in enumerate(watcher.messages) if m.HasField("synced"))
    synced = watcher.messages[synced_at].synced.revision
    state: dict[str, tuple[int, int]] = {}
    for message in watcher.messages[:synced_at]:
        for event in message.events:
            assert event.type == pb.EVENT_TYPE_SNAPSHOT
            assert event.revision == synced
            state[event.worker.task_id] = (event.worker.state, event.worker.revision)
    live = [e for m in watcher.messages[synced_at + 1 :] for e in m.events]
    assert [e.revision for e in live] == list(range(synced + 1, head + 1))
    for event in live:
        state[event.worker.task_id] = (event.worker.state, event.worker.revision)
    workers = daemon.stub.ListWorkers(pb.ListWorkersRequest(page_size=1000)).workers
    assert state == {w.task_id: (w.state, w.revision) for w in workers}


def test_filters_by_task_state_and_both(make_daemon):
    daemon = make_daemon()
    # From revision 1, not "from now": a stream may open after the first write.
    by_task = Watcher(daemon.stub, start_revision=1, task_ids=["a", "c"])
    by_state = Watcher(daemon.stub, start_revision=1, states=[S.WORKER_STATE_WORKING])
    both = Watcher(daemon.stub, start_revision=1, task_ids=["a"], states=[S.WORKER_STATE_WORKING])
    for task_id in "abc":
        create(daemon.stub, task_id)
        daemon.stub.Transition(
            pb.TransitionRequest(
                task_id=task_id,
                from_state=S.WORKER_STATE_ASSIGNED,
                to_state=S.WORKER_STATE_WORKING,
            )
        )
    wait_until(
        lambda: len(by_task.events) == 4 and len(by_state.events) == 3 and len(both.events) == 1
    )
    assert [(e.worker.task_id, e.type) for e in by_task.events] == [
        ("a", pb.EVENT_TYPE_ASSIGNED),
        ("a", pb.EVENT_TYPE_STATE_CHANGED),
        ("c", pb.EVENT_TYPE_ASSIGNED),
        ("c", pb.EVENT_TYPE_STATE_CHANGED),
    ]
    assert [e.worker.task_id for e in by_state.events] == ["a", "b", "c"]
    assert [(e.worker.task_id, e.revision) for e in both.events] == [("a", 2)]
    snapshot = Watcher(daemon.stub, send_initial_state=True, task_ids=["b"])
    wait_until(lambda: len(snapshot.messages) == 2)
    assert [e.worker.task_id for e in snapshot.events] == ["b"]
    assert snapshot.messages[1].synced.revision == 6
    for watcher in (by_task, by_state, both, snapshot):
        watcher.close()


def test_a_watcher_that_never_reads_does_not_hold_up_writers(make_daemon):
    daemon = make_daemon()
    stuck = daemon.stub.WatchState(pb.WatchStateRequest(start_revision=1))
    rss_before = rss_kb(daemon.proc.pid)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: create(daemon.stub, f"w{i}"), range(10_000)))
    rss_after = rss_kb(daemon.proc.pid)
    # A stuck watcher holds no events of its own: memory stays near the shared window's.
    assert rss_after - rss_before < 80_000, (rss_before, rss_after)
    revisions = []
    for message in stuck:
        revisions.extend(e.revision for e in message.events)
        if revisions[-1] == 10_000:
            break
    stuck.cancel()
    assert revisions == list(range(1, 10_001))


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1))


def test_compaction_refuses_compacted_revisions_and_serves_the_rest(make_daemon):
    daemon = make_daemon(
        "--retain-events", "5", "--retain-for", "0s", "--compact-interval", "100ms"
    )
    for _ in range(20):
        create(daemon.stub)

    def compacted() -> bool:
        # Revision 15, not 1: a compaction that ran while the events were being created
        # already refuses revision 1, but keeps more than the last 5.
        try:
            daemon.stub.ListEvents(pb.ListEventsRequest(after_revision=14))
        except grpc.RpcError:
            return True
        return False

    wait_until(compacted, timeout=10)
    assert_kept_from_16_of_20(daemon.stub)


def assert_kept_from_16_of_20(stub) -> None:
    """With 20 events and 5 kept: reads below 16 are refused, 16..20 are served."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListEvents(pb.ListEventsRequest(after_revision=14))
    code, info, _ = details(caught.value)
    assert code == grpc.StatusCode.OUT_OF_RANGE
    assert info.reason == "REVISION_COMPACTED"
    assert info.metadata["compact_revision"] == "16"
    kept = stub.ListEvents(pb.ListEventsRequest(after_revision=15)).events
    assert [e.revision for e in kept] == [16, 17, 18, 19, 20]
    below = Watcher(stub, start_revision=15)
    code, info, _ = details(below.ended())
    assert code == grpc.StatusCode.OUT_OF_RANGE
    assert info.metadata["compact_revision"] == "16"
    at = Watcher(stub, start_revision=16)
    at.wait_for_revision(20)
    at.close()
    assert [e.revision for e in at.stored()] == [16, 17, 18, 19, 20]


def test_retention_keeps_young_events(make_daemon):
    daemon = make_daemon(
        "--retain-events", "1", "--retain-for", "1h", "--compact-interval", "100ms"
    )
    for _ in range(10):
        create(daemon.stub)
    time.sleep(0.5)  # several compaction rounds
    assert len(daemon.stub.ListEvents(pb.ListEventsRequest()).events) == 10


def test_liveness_crossings_and_back_to_ok(make_daemon):
    daemon = make_daemon("--warn-after", "300ms", "--stale-after", "600ms", "--dead-after", "900ms")
    quiet = create(daemon.stub, "quiet")
    watcher = Watcher(daemon.stub, liveness=True, task_ids=["quiet"])
    wait_until(lambda: len(watcher.events) >= 3, timeout=5)
    daemon.stub.Heartbeat(pb.HeartbeatRequest(task_id="quiet"))
    wait_until(lambda: len(watcher.events) >= 4, timeout=5)
    watcher.close()
    changes = [(e.from_stale_level, e.worker.stale_level) for e in watcher.events[:4]]
    assert changes == [
        (pb.STALE_LEVEL_OK, pb.STALE_LEVEL_WARN),
        (pb.STALE_LEVEL_WARN, pb.STALE_LEVEL_STALE),
        (pb.STALE_LEVEL_STALE, pb.STALE_LEVEL_DEAD),
        (pb.STALE_LEVEL_DEAD, pb.STALE_LEVEL_OK),
    ]
    for event in watcher.events[:4]:
        assert event.type == pb.EVENT_TYPE_LIVENESS_CHANGED
        assert event.revision == quiet.revision  # the head when observed
    # Each crossing came within a second of its threshold.
    created = quiet.created_at.ToMilliseconds()
    for event, threshold in zip(watcher.events[:3], (300, 600, 900), strict=True):
        assert 0 <= event.time.ToMilliseconds() - created - threshold < 1000


def test_liveness_is_only_sent_when_asked(make_daemon):
    daemon = make_daemon("--warn-after", "100ms", "--stale-after", "1h", "--dead-after", "2h")
    plain = Watcher(daemon.stub, start_revision=1)
    create(daemon.stub, "w")
    time.sleep(0.4)
    plain.close()
    assert [e.type for e in plain.events] == [pb.EVENT_TYPE_ASSIGNED]


def test_progress_tells_a_filtered_watcher_the_head(make_daemon):
    daemon = make_daemon("--progress-interval", "200ms")
    watcher = Watcher(daemon.stub, task_ids=["nobody"], progress_notify=True)
    for _ in range(3):
        create(daemon.stub)
    wait_until(lambda: any(m.progress.revision == 3 for m in watcher.messages), timeout=5)
    watcher.close()
    assert not watcher.events


def test_watch_resumes_across_restarts_and_kill_9(make_daemon):
    daemon = make_daemon()
    received: list[pb.WorkerEvent] = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        watcher = Watcher(daemon.stub, start_revision=len(received) + 1)
        for _ in range(5):
            create(daemon.stub)
        watcher.wait_for_revision(len(received) + 5)
        daemon.proc.send_signal(sig)
        daemon.proc.wait(20)
        ended = watcher.ended()
        assert ended.code() == grpc.StatusCode.UNAVAILABLE
        if sig == signal.SIGTERM:
            assert details(ended)[1].reason == "SHUTTING_DOWN"
        received.extend(watcher.stored())
        daemon.start()
    watcher = Watcher(daemon.stub, start_revision=len(received) + 1)
    create(daemon.stub)
    watcher.wait_for_revision(11)
    watcher.close()
    received.extend(watcher.stored())
    assert [e.revision for e in received] == list(range(1, 12))
    assert received == log_of(daemon.stub)


def test_watcher_cap_is_resource_exhausted(make_daemon):
    daemon = make_daemon("--max-watchers", "2")
    first, second = Watcher(daemon.stub, start_revision=1), Watcher(daemon.stub, start_revision=1)
    create(daemon.stub)
    wait_until(lambda: first.events and second.events)
    third = Watcher(daemon.stub)
    code, info, _ = details(third.ended())
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.reason == "TOO_MANY_WATCHERS"
    first.close()
    wait_until(lambda: _can_watch(daemon.stub))
    second.close()


def _can_watch(stub) -> bool:
    watcher = Watcher(stub, progress_notify=True)
    time.sleep(0.2)
    watcher.close()
    return watcher.error is None or watcher.error.code() == grpc.StatusCode.CANCELLED


def test_snapshot_and_start_revision_together_are_refused(stub):
    watcher = Watcher(stub, send_initial_state=True, start_revision=4)
    code, _, bad = details(watcher.ended())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad.field_violations] == ["start_revision"]


def test_a_worker_that_becomes_live_again_announces_its_level(make_daemon):
    daemon = make_daemon("--warn-after", "100ms", "--stale-after", "200ms", "--dead-after", "300ms")
    create(daemon.stub, "back")
    daemon.stub.Heartbeat(pb.HeartbeatRequest(task_id="back"))
    for to in (S.WORKER_STATE_WORKING, S.WORKER_STATE_IN_REVIEW):
        state = daemon.stub.GetWorker(pb.GetWorkerRequest(task_id="back")).worker.state
        daemon.stub.Transition(pb.TransitionRequest(task_id="back", from_state=state, to_state=to))
    time.sleep(0.5)  # long in review: its last beat is old
    watcher = Watcher(daemon.stub, liveness=True, task_ids=["back"])
    time.sleep(0.2)
    daemon.stub.Transition(
        pb.TransitionRequest(
            task_id="back", from_state=S.WORKER_STATE_IN_REVIEW, to_state=S.WORKER_STATE_WORKING
        )
    )
    wait_until(lambda: len(watcher.events) >= 2)
    watcher.close()
    moved, announced = watcher.events[:2]
    assert moved.type == pb.EVENT_TYPE_STATE_CHANGED
    assert announced.type == pb.EVENT_TYPE_LIVENESS_CHANGED
    assert (announced.from_stale_level, announced.worker.stale_level) == (
        pb.STALE_LEVEL_OK,
        pb.STALE_LEVEL_DEAD,
    )
