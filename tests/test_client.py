"""The Python client library against a real daemon: methods, exceptions, retries, helpers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness import unique, wait_until
from workerstate.client import (
    AsyncWorkerClient,
    Event,
    EventType,
    InvalidArgument,
    InvalidTransition,
    RequestIdReused,
    RetryPolicy,
    RevisionCompacted,
    StaleLevel,
    StaleState,
    TooManyWatchers,
    Unavailable,
    Worker,
    WorkerClient,
    WorkerCompleted,
    WorkerExists,
    WorkerNotFound,
    WorkerState,
    WorkerStateError,
)


@pytest.fixture
def make_daemon(every_backend):
    """The daemons these tests start keep their state in a file, then in PostgreSQL."""
    return every_backend


W = WorkerState
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(shared_daemon):
    with WorkerClient(shared_daemon.address) as c:
        yield c


def new(client: WorkerClient, **kw) -> Worker:
    task_id = unique("c")
    return client.create(task_id, branch=f"b/{task_id}", worktree="/w", **kw)


def test_types_are_python_types(client):
    worker = new(client, description="d")
    assert isinstance(worker, Worker)
    assert worker.state is W.ASSIGNED and worker.state == "ASSIGNED"
    assert worker.stale_level is StaleLevel.OK and worker.stale_level == "ok"
    assert worker.created_at.tzinfo is UTC
    assert abs((datetime.now(UTC) - worker.created_at).total_seconds()) < 60
    assert worker.description == "d" and worker.last_heartbeat_at is None
    with pytest.raises(AttributeError):
        worker.state = W.WORKING  # frozen


def test_every_method(client):
    worker = new(client)
    moved = client.transition(worker.task_id, "ASSIGNED", W.WORKING, reason="go")
    assert moved.state is W.WORKING and moved.revision > worker.revision
    assert client.heartbeat(worker.task_id, "busy") is W.WORKING
    got = client.get(worker.task_id)
    assert got.last_heartbeat_at is not None and got.revision == moved.revision
    failed = client.fail(worker.task_id, "broken")
    assert failed.state is W.FAILED
    assert worker.task_id in {w.task_id for w in client.list(states=[W.FAILED])}
    assert worker.task_id not in {w.task_id for w in client.list(states=["WORKING"])}
    events = client.events(task_id=worker.task_id)
    assert [e.type for e in events] == [
        EventType.ASSIGNED,
        EventType.STATE_CHANGED,
        EventType.FAILED,
    ]
    assert all(isinstance(e, Event) for e in events)
    assert events[1].from_state is W.ASSIGNED and events[1].reason == "go"
    assert events[2].reason == "broken"
    assert client.events(after_revision=events[1].revision, task_id=worker.task_id) == events[2:]


def test_list_iterates_every_page(make_daemon):
    daemon = make_daemon()
    with WorkerClient(daemon.address) as c:
        for i in range(1500):
            c.create(f"p{i}", branch="b", worktree="w")
        workers = c.list()
        assert len(workers) == 1500
        assert [w.revision for w in workers] == sorted((w.revision for w in workers), reverse=True)
        assert len(c.list(stale_levels=[StaleLevel.OK])) == 1500
        assert len(c.events()) == 1500


def test_every_exception(client):
    worker = new(client)
    with pytest.raises(InvalidTransition) as invalid:
        client.transition(worker.task_id, W.ASSIGNED, W.COMPLETED)
    assert invalid.value.allowed == ["WORKING", "FAILED"]
    with pytest.raises(StaleState) as stale:
        client.transition(worker.task_id, W.WORKING, W.IN_REVIEW)
    assert (stale.value.expected, stale.value.actual) == ("WORKING", "ASSIGNED")
    assert stale.value.revision == worker.revision
    assert str(stale.value) == (
        f"worker {worker.task_id} is ASSIGNED, not WORKING (revision {worker.revision})"
    )
    with pytest.raises(WorkerNotFound):
        client.get(unique("missing"))
    with pytest.raises(WorkerExists):
        client.create(worker.task_id, branch="b", worktree="w")
    client.transition(worker.task_id, W.ASSIGNED, W.WORKING)
    for to in (W.IN_REVIEW, W.APPROVED, W.COMPLETED):
        client.transition(worker.task_id, client.get(worker.task_id).state, to)
    with pytest.raises(WorkerCompleted):
        client.fail(worker.task_id)
    with pytest.raises(InvalidArgument) as bad:
        client.create("bad id", branch="", worktree="w")
    assert set(bad.value.violations) == {"task_id", "branch"}
    request_id = unique("req")
    new(client, request_id=request_id)
    with pytest.raises(RequestIdReused):
        new(client, request_id=request_id)
    for error in (InvalidTransition, StaleState, WorkerNotFound, RequestIdReused):
        assert issubclass(error, WorkerStateError)


def test_unreachable_daemon_is_unavailable_after_bounded_retries(tmp_path):
    policy = RetryPolicy(attempts=3, first_backoff_s=0.05)
    with WorkerClient(f"unix:{tmp_path}/nobody.sock", retry=policy) as c:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            c.get("t")
        assert time.monotonic() - started < 5


def test_retries_across_a_daemon_restart_never_apply_twice(make_daemon, tmp_path):
    socket = f"unix:{tmp_path}/ws.sock"
    daemon = make_daemon(listen=socket)
    outcomes: list[object] = []

    def worker_loop(n: int) -> None:
        with WorkerClient(socket, retry=RetryPolicy(attempts=12, max_backoff_s=1.0)) as c:
            for i in range(25):
                task_id = f"r{n}-{i}"
                try:
                    c.create(task_id, branch="b", worktree="w")
                    c.transition(task_id, W.ASSIGNED, W.WORKING)
                    outcomes.append(task_id)
                except WorkerStateError as e:
                    outcomes.append(e)

    threads = [threading.Thread(target=worker_loop, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(outcomes) >= 20, timeout=30)
    daemon.stop(signal.SIGKILL)  # mid-call: some changes committed, their answers lost
    daemon.start()
    for thread in threads:
        thread.join(60)
    assert all(isinstance(o, str) for o in outcomes), [
        o for o in outcomes if not isinstance(o, str)
    ]
    assert len(outcomes) == 200
    with WorkerClient(socket) as c:
        events = c.events()
    # Exactly one ASSIGNED and one STATE_CHANGED per task: no retry applied twice.
    assert len(events) == 400
    assert len({(e.worker.task_id, e.type) for e in events}) == 400


def test_heartbeater_notices_a_failure_within_one_beat(client):
    worker = new(client)
    ended: list[WorkerState | None] = []
    with client.heartbeater(worker.task_id, interval=0.2, on_end=ended.append) as beats:
        beats.activity = "compiling"
        wait_until(lambda: beats.state is W.ASSIGNED)
        client.fail(worker.task_id, "reassigned")
        assert beats.ended.wait(2.0)
        assert beats.state is W.FAILED
    assert ended == [W.FAILED]
    last = client.get(worker.task_id).last_heartbeat_at
    assert last is not None
    time.sleep(0.6)  # three intervals: an ended heartbeater beats no more (it once did)
    assert client.get(worker.task_id).last_heartbeat_at == last


def test_heartbeater_reconnects_after_a_restart(make_daemon, tmp_path):
    socket = f"unix:{tmp_path}/hb.sock"
    daemon = make_daemon(listen=socket)
    with WorkerClient(socket) as c:
        task_id = c.create("hb", branch="b", worktree="w").task_id
        with c.heartbeater(task_id, interval=0.1) as beats:
            wait_until(lambda: beats.state is W.ASSIGNED)
            daemon.restart()
            before = c.get(task_id).last_heartbeat_at
            wait_until(lambda: c.get(task_id).last_heartbeat_at != before, timeout=10)
            assert not beats.ended.is_set()


def test_heartbeater_leaves_no_task_behind_when_the_daemon_ends_its_stream(make_daemon):
    daemon = make_daemon()

    async def main() -> None:
        async with AsyncWorkerClient(daemon.address) as c:
            task_id = (await c.create(unique("hb"), branch="b", worktree="w")).task_id
            async with c.heartbeater(task_id, interval=30.0) as beats:
                for _ in range(250):
                    if beats.state is not None:
                        break
                    await asyncio.sleep(0.02)
                assert beats.state is W.ASSIGNED
                # The heartbeater's own task and grpc's task that takes its beats.
                running = asyncio.all_tasks() - {asyncio.current_task()}
                await asyncio.to_thread(daemon.stop)  # ends the stream with SHUTTING_DOWN
                # Long before the next beat is due, only the heartbeater's task is left,
                # backing off to reconnect.
                for _ in range(40):
                    if sum(not t.done() for t in running) <= 1:
                        break
                    await asyncio.sleep(0.05)
                left = [t for t in running if not t.done()]
                assert len(left) == 1, left

    asyncio.run(main())


def test_watch_resumes_across_a_restart_without_gap_or_duplicate(make_daemon, tmp_path):
    socket = f"unix:{tmp_path}/w.sock"
    daemon = make_daemon(listen=socket)
    received: list[Event] = []
    with WorkerClient(socket, retry=RetryPolicy(attempts=12)) as c:
        watch = c.watch(start_revision=1)

        def read() -> None:
            for event in watch:
                received.append(event)
                if event.revision == 20:
                    return

        reader = threading.Thread(target=read)
        reader.start()
        for i in range(10):
            c.create(f"a{i}", branch="b", worktree="w")
        wait_until(lambda: len(received) == 10)
        daemon.restart()
        for i in range(10):
            c.create(f"b{i}", branch="b", worktree="w")
        reader.join(30)
        watch.close()
        assert [e.revision for e in received] == list(range(1, 21))
        assert [e for e in c.events() if e.revision <= 20] == received


def test_watch_snapshot_and_compaction(make_daemon):
    daemon = make_daemon(
        "--retain-events", "2", "--retain-for", "0s", "--compact-interval", "100ms"
    )
    with WorkerClient(daemon.address) as c:
        for i in range(6):
            c.create(f"s{i}", branch="b", worktree="w")
        wait_until(lambda: _compacted(c))
        with pytest.raises(RevisionCompacted) as caught:
            next(iter(c.watch(start_revision=1)))
        assert caught.value.compact_revision == 5
        relisted = c.watch(start_revision=1, relist_on_compaction=True)
        snapshot = [next(relisted) for _ in range(6)]
        assert {e.type for e in snapshot} == {EventType.SNAPSHOT}
        assert {e.worker.task_id for e in snapshot} == {f"s{i}" for i in range(6)}
        c.create("after", branch="b", worktree="w")
        live = next(relisted)
        assert (live.type, live.revision, relisted.synced) == (EventType.ASSIGNED, 7, True)
        relisted.close()


def _compacted(c: WorkerClient) -> bool:
    try:
        c.events()
    except RevisionCompacted:
        return True
    return False


def test_too_many_watchers_is_its_own_exception(make_daemon):
    daemon = make_daemon("--max-watchers", "1")
    with WorkerClient(daemon.address) as c:
        first = c.watch(start_revision=1)
        c.create("x", branch="b", worktree="w")
        next(first)
        with pytest.raises(TooManyWatchers):
            next(c.watch())
        first.close()


def test_async_client_has_the_same_methods(shared_daemon):
    async def main() -> None:
        async with AsyncWorkerClient(shared_daemon.address) as c:
            task_id = unique("async")
            await c.create(task_id, branch="b", worktree="w")
            moved = await c.transition(task_id, W.ASSIGNED, W.WORKING)
            assert (await c.get(task_id)).revision == moved.revision
            assert await c.heartbeat(task_id) is W.WORKING
            assert task_id in {w.task_id for w in await c.list(states=[W.WORKING])}
            assert len(await c.events(task_id=task_id)) == 2
            async with c.heartbeater(task_id, interval=1.0) as beats:
                await c.fail(task_id)
                for _ in range(100):
                    if beats.ended.is_set():
                        break
                    await asyncio.sleep(0.05)
                assert beats.state is W.FAILED
                # Well within one interval, nothing of the heartbeater is left running:
                # not even grpc's task that takes beats from it (a leak once).
                for _ in range(10):
                    if asyncio.all_tasks() == {asyncio.current_task()}:
                        break
                    await asyncio.sleep(0.05)
                assert asyncio.all_tasks() == {asyncio.current_task()}
            watch = c.watch([task_id], start_revision=moved.revision)
            event = await anext(aiter(watch))
            assert event.revision == moved.revision
            watch.close()

    asyncio.run(main())  # test_client_api.py compares the two clients' signatures


def test_example_worker_runs_and_stops_when_failed_elsewhere(shared_daemon, client):
    example = ROOT / "examples" / "worker.py"
    done = subprocess.run(
        [
            sys.executable,
            str(example),
            unique("ex"),
            "--server",
            shared_daemon.address,
            "--step-seconds",
            "0.1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "is IN_REVIEW" in done.stdout
    task_id = unique("ex")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(example),
            task_id,
            "--server",
            shared_daemon.address,
            "--step-seconds",
            "1.5",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: _exists(client, task_id), timeout=20)
    client.fail(task_id, "reassigned")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "was FAILED elsewhere; stopping" in out


def _exists(client: WorkerClient, task_id: str) -> bool:
    try:
        return client.get(task_id).state is W.WORKING
    except WorkerNotFound:
        return False


def test_thread_safety_of_the_blocking_client(client):
    task_ids = [new(client).task_id for _ in range(20)]
    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(lambda t: client.heartbeat(t), task_ids))
    assert states == [W.ASSIGNED] * 20


def test_closing_a_watch_ends_its_iteration(client):
    worker = new(client)
    watch = client.watch(start_revision=worker.revision)
    assert next(watch).revision == worker.revision
    watch.close()
    assert list(watch) == []  # ends instead of raising or hanging


def test_on_end_may_call_the_blocking_client(client):
    worker = new(client)
    seen: list[str] = []

    def on_end(state: WorkerState | None) -> None:
        seen.append(client.get(worker.task_id).state.value)  # would deadlock on the loop

    with client.heartbeater(worker.task_id, interval=0.1, on_end=on_end) as beats:
        wait_until(lambda: beats.state is W.ASSIGNED)
        client.fail(worker.task_id)
        wait_until(lambda: seen == ["FAILED"], timeout=5)
