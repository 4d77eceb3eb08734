"""Heartbeats and stale levels: computed when read, from an injected clock."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import grpc
import pytest
from harness import InProcessDaemon, create, details, unique, wait_until
from workerstate.server.clock import ManualClock
from workerstate.server.config import Config
from workerstate.server.domain import StaleThresholds, StorageUnavailable
from workerstate.server.heartbeats import FLUSH_CHUNK, Heartbeats
from workerstate.server.storage.base import SaveHeartbeats
from workerstate.v1 import workerstate_pb2 as pb

S = pb.WorkerState
L = pb.StaleLevel
THRESHOLDS = StaleThresholds(warn_ms=10_000, stale_ms=20_000, dead_ms=30_000)


@pytest.fixture
def config(tmp_path):
    return Config(db=str(tmp_path / "w.db"), listen="127.0.0.1:0", thresholds=THRESHOLDS)


@pytest.fixture
def live(config):
    daemon = InProcessDaemon(config, ManualClock())
    yield daemon
    daemon.stop()


def level(stub, task_id: str) -> int:
    return stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker.stale_level


def test_levels_apply_once_the_age_reaches_each_threshold(live):
    task_id = create(live.stub).task_id
    steps = [
        (9_999, L.STALE_LEVEL_OK),
        (1, L.STALE_LEVEL_WARN),
        (9_999, L.STALE_LEVEL_WARN),
        (1, L.STALE_LEVEL_STALE),
        (10_000, L.STALE_LEVEL_DEAD),
    ]
    for advance, expected in steps:
        live.clock.advance(advance)
        assert level(live.stub, task_id) == expected


def test_a_heartbeat_brings_a_worker_back_to_ok(live):
    task_id = create(live.stub).task_id
    live.clock.advance(31_000)
    assert level(live.stub, task_id) == L.STALE_LEVEL_DEAD
    beat = live.stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id, activity="compiling"))
    assert beat.state == S.WORKER_STATE_ASSIGNED
    worker = live.stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker
    assert worker.stale_level == L.STALE_LEVEL_OK
    assert worker.last_heartbeat_at == beat.received_at
    live.clock.advance(10_000)
    assert level(live.stub, task_id) == L.STALE_LEVEL_WARN


def test_last_activity_is_the_latest_beats_and_an_empty_one_clears_it(live):
    task_id = create(live.stub).task_id

    def activity() -> tuple[str | None, str | None, str | None]:
        got = live.stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker
        listed = live.stub.ListWorkers(pb.ListWorkersRequest()).workers
        watch = live.stub.WatchState(
            pb.WatchStateRequest(task_ids=[task_id], send_initial_state=True)
        )
        snapshot = next(iter(watch)).events[0].worker
        watch.cancel()
        return tuple(  # type: ignore[return-value]
            w.last_activity if w.HasField("last_activity") else None
            for w in (got, next(w for w in listed if w.task_id == task_id), snapshot)
        )

    assert activity() == (None, None, None)  # never beat
    live.stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id, activity="compiling"))
    live.stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id, activity="testing"))
    assert activity() == ("testing", "testing", "testing")
    live.stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id))
    assert activity() == (None, None, None)
    events = live.stub.ListEvents(pb.ListEventsRequest(task_id=task_id)).events
    assert not any(e.worker.HasField("last_activity") for e in events)


def test_only_assigned_and_working_workers_go_stale(live):
    task_id = create(live.stub).task_id
    for state in (S.WORKER_STATE_WORKING, S.WORKER_STATE_IN_REVIEW):
        live.stub.Transition(
            pb.TransitionRequest(
                task_id=task_id,
                from_state=live.stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker.state,
                to_state=state,
            )
        )
    live.clock.advance(1_000_000)
    assert level(live.stub, task_id) == L.STALE_LEVEL_OK


def test_a_worker_that_never_beat_is_aged_from_entering_its_state(live):
    task_id = create(live.stub).task_id
    live.clock.advance(25_000)
    assert level(live.stub, task_id) == L.STALE_LEVEL_STALE
    live.stub.Transition(
        pb.TransitionRequest(
            task_id=task_id, from_state=S.WORKER_STATE_ASSIGNED, to_state=S.WORKER_STATE_WORKING
        )
    )
    assert level(live.stub, task_id) == L.STALE_LEVEL_OK


def test_a_restart_does_not_make_the_fleet_look_dead(config):
    clock = ManualClock()
    first = InProcessDaemon(config, clock)
    quiet = create(first.stub).task_id
    beating = create(first.stub).task_id
    first.stub.Heartbeat(pb.HeartbeatRequest(task_id=beating))
    first.stop()
    clock.advance(3_600_000)  # an hour of downtime
    second = InProcessDaemon(config, clock)
    try:
        assert level(second.stub, quiet) == L.STALE_LEVEL_OK
        assert level(second.stub, beating) == L.STALE_LEVEL_OK
        # The beat itself was kept (flushed at shutdown) ...
        worker = second.stub.GetWorker(pb.GetWorkerRequest(task_id=beating)).worker
        assert worker.HasField("last_heartbeat_at")
        # ... and ages count again from the restart.
        clock.advance(10_000)
        assert level(second.stub, quiet) == L.STALE_LEVEL_WARN
    finally:
        second.stop()


def test_list_filters_by_computed_stale_level(live):
    fresh, silent = create(live.stub).task_id, create(live.stub).task_id
    live.clock.advance(20_000)
    live.stub.Heartbeat(pb.HeartbeatRequest(task_id=fresh))
    stale = live.stub.ListWorkers(pb.ListWorkersRequest(stale_levels=[L.STALE_LEVEL_STALE]))
    assert [w.task_id for w in stale.workers] == [silent]
    ok = live.stub.ListWorkers(pb.ListWorkersRequest(stale_levels=[L.STALE_LEVEL_OK]))
    assert [w.task_id for w in ok.workers] == [fresh]


def test_heartbeat_tells_a_worker_it_was_failed_elsewhere(stub):
    task_id = create(stub).task_id
    assert stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id)).state == S.WORKER_STATE_ASSIGNED
    stub.FailWorker(pb.FailWorkerRequest(task_id=task_id, reason="reassigned"))
    assert stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id)).state == S.WORKER_STATE_FAILED


def test_a_finished_worker_is_answered_but_its_beats_change_nothing(live):
    failed, completed = create(live.stub).task_id, create(live.stub).task_id
    for task_id, path in ((failed, []), (completed, ["WORKING", "IN_REVIEW", "APPROVED"])):
        state = S.WORKER_STATE_ASSIGNED
        for step in path:
            to = S.Value(f"WORKER_STATE_{step}")
            live.stub.Transition(
                pb.TransitionRequest(task_id=task_id, from_state=state, to_state=to)
            )
            state = to
        live.stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id, activity="last words"))
        live.clock.advance(1_000)
        before = live.stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker
        if task_id == failed:
            live.stub.FailWorker(pb.FailWorkerRequest(task_id=task_id, reason="gave up"))
            finished = S.WORKER_STATE_FAILED
        else:
            live.stub.Transition(
                pb.TransitionRequest(
                    task_id=task_id, from_state=state, to_state=S.WORKER_STATE_COMPLETED
                )
            )
            finished = S.WORKER_STATE_COMPLETED
        live.clock.advance(1_000)
        answer = live.stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id, activity="still going"))
        streamed = list(
            live.stub.StreamHeartbeats(iter([pb.HeartbeatRequest(task_id=task_id, activity="x")]))
        )
        assert answer.state == streamed[0].state == finished
        after = live.stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker
        assert after.last_activity == "last words"
        assert after.last_heartbeat_at == before.last_heartbeat_at
        assert after.stale_level == L.STALE_LEVEL_OK
    # Reassigned, the worker beats again.
    live.stub.Transition(
        pb.TransitionRequest(
            task_id=failed, from_state=S.WORKER_STATE_FAILED, to_state=S.WORKER_STATE_ASSIGNED
        )
    )
    live.stub.Heartbeat(pb.HeartbeatRequest(task_id=failed, activity="back at it"))
    again = live.stub.GetWorker(pb.GetWorkerRequest(task_id=failed)).worker
    assert again.last_activity == "back at it"


def test_stream_heartbeats_answers_each_beat_and_ends_on_unknown_task(stub):
    task_id = create(stub).task_id
    requests = [pb.HeartbeatRequest(task_id=task_id, activity=f"step {i}") for i in range(5)]
    responses = list(stub.StreamHeartbeats(iter(requests)))
    assert [r.task_id for r in responses] == [task_id] * 5
    assert all(r.state == S.WORKER_STATE_ASSIGNED for r in responses)
    stream = stub.StreamHeartbeats(
        iter([pb.HeartbeatRequest(task_id=task_id), pb.HeartbeatRequest(task_id=unique("no"))])
    )
    assert next(stream).task_id == task_id
    with pytest.raises(grpc.RpcError) as caught:
        next(stream)
    code, info, _ = details(caught.value)
    assert code == grpc.StatusCode.NOT_FOUND and info.reason == "WORKER_NOT_FOUND"


def test_beats_are_written_in_batches(make_daemon):
    daemon = make_daemon("--heartbeat-flush", "100ms")
    task_id = create(daemon.stub).task_id
    beat = daemon.stub.Heartbeat(pb.HeartbeatRequest(task_id=task_id, activity="testing"))

    def stored() -> tuple[int, str] | None:
        with sqlite3.connect(f"file:{daemon.db}?mode=ro", uri=True) as conn:
            return conn.execute(
                "SELECT ts_ms, activity FROM heartbeats WHERE task_id = ?", (task_id,)
            ).fetchone()

    wait_until(lambda: stored() is not None, timeout=5)
    assert stored() == (beat.received_at.ToMilliseconds(), "testing")


def test_thresholds_are_set_by_flags(make_daemon):
    daemon = make_daemon("--warn-after", "300ms", "--stale-after", "1m", "--dead-after", "1h")
    task_id = create(daemon.stub).task_id
    assert level(daemon.stub, task_id) == L.STALE_LEVEL_OK
    time.sleep(0.35)
    assert level(daemon.stub, task_id) == L.STALE_LEVEL_WARN


def _beating(workers: int) -> Heartbeats:
    """Heartbeats with one unsaved beat from each of `workers` workers, w0 at 1000 ms on."""
    beats = Heartbeats({})
    for i in range(workers):
        beats.beat(f"w{i}", 1000 + i, "busy")
    return beats


def test_a_fleets_flush_is_short_commits_and_keeps_what_failed():
    beats = _beating(2 * FLUSH_CHUNK + FLUSH_CHUNK // 2)
    written: list[tuple[int, bool]] = []

    async def save(job: SaveHeartbeats) -> int:
        if len(written) == 2:
            raise StorageUnavailable("the disk is full")
        written.append((len(job.beats), job.synced))
        return len(job.beats)

    asyncio.run(beats.flush(save))
    # No commit holds the event loop for a whole fleet's upserts.
    assert written == [(FLUSH_CHUNK, False), (FLUSH_CHUNK, False)]
    assert beats.oldest_unsaved_ms() == 1000 + 2 * FLUSH_CHUNK  # the rest waits, none lost
    written.clear()
    asyncio.run(beats.flush(save))
    # The flush's last commit waits for the disk, and so makes the earlier ones durable.
    assert written == [(FLUSH_CHUNK // 2, True)] and beats.oldest_unsaved_ms() is None


def test_a_flush_lets_other_calls_reach_the_writer_between_its_commits():
    beats = _beating(3 * FLUSH_CHUNK)
    order: list[str] = []

    async def save(job: SaveHeartbeats) -> int:
        order.append("flush")
        return len(job.beats)

    async def call() -> None:
        # A call takes a few turns of the loop to get from the socket to the writer.
        for _ in range(5):
            await asyncio.sleep(0)
        order.append("call")

    async def main() -> None:
        await asyncio.gather(beats.flush(save, spread_s=1.0), call())

    asyncio.run(main())
    assert order == ["flush", "call", "flush", "flush"]


def test_a_worker_deleted_during_a_flush_does_not_get_its_beat_row_back():
    beats = _beating(2 * FLUSH_CHUNK)
    saved: list[str] = []

    async def save(job: SaveHeartbeats) -> int:
        if not saved:
            beats.forget(f"w{FLUSH_CHUNK}")  # deleted while the first commit ran
        saved.extend(task_id for task_id, _, _ in job.beats)
        return len(job.beats)

    asyncio.run(beats.flush(save, spread_s=1.0))
    assert len(saved) == 2 * FLUSH_CHUNK - 1 and f"w{FLUSH_CHUNK}" not in saved
