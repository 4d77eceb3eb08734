"""Several daemons on one PostgreSQL database: shared semantics, freshness and faults.

Every test runs real daemons in subprocesses against the session's real PostgreSQL server
(a fresh database each), because what these promises rest on (the row lock that hands out
revisions, LISTEN/NOTIFY between daemons, reconnecting after the server restarts) only
exists there. The daemons never talk to each other: whatever one learns of another's work
comes through the database, which is exactly what is checked.
"""

from __future__ import annotations

import itertools
import random
import re
import signal
import socket
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import DaemonProcess, Watcher, create, details, serve_once, wait_until
from test_compare_and_set import one_wins
from test_durability import MOVES
from test_watch import assert_kept_from_16_of_20, log_of
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

S = pb.WorkerState
L = pb.StaleLevel
StartDaemon = Callable[..., DaemonProcess]
# A client retries a write the daemon could not make durable (as the real client does), and
# a daemon that is gone (killed) is left for the next address.
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@pytest.fixture
def start(pg_db) -> Iterator[StartDaemon]:
    """Start daemons on this test's database (or another URL); all are killed afterwards."""
    started: list[DaemonProcess] = []

    def factory(*args: str, url: str | None = None) -> DaemonProcess:
        daemon = DaemonProcess(url or pg_db.url, *args)
        started.append(daemon)
        return daemon.start()

    yield factory
    for daemon in started:
        daemon.kill()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port that refuses connections: bound, never listened on, so nobody takes it."""
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        yield reserved.getsockname()[1]


def head(daemon: DaemonProcess) -> int:
    return daemon.stub.ListWorkers(pb.ListWorkersRequest(page_size=1)).revision


def caught_up(*daemons: DaemonProcess, timeout: float = 10.0) -> int:
    """Wait until every daemon reports the same head; returns it."""
    wait_until(lambda: len({head(d) for d in daemons}) == 1, timeout)
    return head(daemons[0])


def workers_of(stub: pb_grpc.WorkerServiceStub) -> list[pb.Worker]:
    workers, token = [], ""
    while True:
        page = stub.ListWorkers(pb.ListWorkersRequest(page_size=1000, page_token=token))
        workers.extend(page.workers)
        if not (token := page.next_page_token):
            return workers


def stored(workers: list[pb.Worker]) -> list[tuple[str, int, int]]:
    """What two daemons must agree on (liveness and beats are each daemon's own view)."""
    return sorted((w.task_id, w.state, w.revision) for w in workers)


def transition(stub, task_id: str, frm: int, to: int, **kw: object) -> pb.TransitionResponse:
    return stub.Transition(pb.TransitionRequest(task_id=task_id, from_state=frm, to_state=to, **kw))


def flip(state: int) -> int:
    """WORKING from anywhere else, IN_REVIEW from WORKING: a worker that moves forever."""
    return S.WORKER_STATE_IN_REVIEW if state == S.WORKER_STATE_WORKING else S.WORKER_STATE_WORKING


def reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason, or "" when the call failed before reaching a daemon."""
    try:
        info = details(error)[1]
    except AssertionError:
        return ""
    return info.reason if info else ""


# -- several daemons, one history -------------------------------------------------------------


def test_revisions_are_global_gap_free_and_in_commit_order_across_daemons(start):
    a, b = start(), start()
    acknowledged: list[tuple[int, str, int]] = []  # revision, task, state

    def writer(n: int) -> None:
        stub = (a, b)[n % 2].stub
        task_id = f"w{n}"
        worker = create(stub, task_id)
        acknowledged.append((worker.revision, task_id, worker.state))
        state = worker.state
        for _ in range(8):
            moved = transition(stub, task_id, state, flip(state))
            acknowledged.append((moved.revision, task_id, moved.worker.state))
            state = moved.worker.state

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(writer, range(32)))
    total = caught_up(a, b)
    assert total == 32 * 9
    logs = [log_of(a.stub), log_of(b.stub)]
    assert logs[0] == logs[1]
    assert [e.revision for e in logs[0]] == list(range(1, total + 1))
    # Each acknowledged answer is the event at its revision: nothing was renumbered.
    by_revision = {e.revision: (e.worker.task_id, e.worker.state) for e in logs[0]}
    assert {r: (t, s) for r, t, s in acknowledged} == by_revision
    # And revision order is commit order: a change made after another answered (each writer
    # waits for one answer before the next call) has the higher revision.
    for n in range(32):
        made = [(r, s) for r, t, s in acknowledged if t == f"w{n}"]
        assert made == [
            (e.revision, e.worker.state) for e in logs[0] if e.worker.task_id == f"w{n}"
        ]
    assert stored(workers_of(a.stub)) == stored(workers_of(b.stub))


def test_compare_and_set_holds_across_daemons(start):
    a, b = start(), start()
    worker = create(a.stub, "cas")
    transition(b.stub, "cas", S.WORKER_STATE_ASSIGNED, S.WORKER_STATE_WORKING)

    def attempt(i: int) -> object:
        target = S.WORKER_STATE_IN_REVIEW if i % 2 else S.WORKER_STATE_CONFLICTED
        try:
            return transition((a, b)[i % 2].stub, "cas", S.WORKER_STATE_WORKING, target)
        except grpc.RpcError as e:
            return e

    winner = one_wins(attempt)
    caught_up(a, b)
    for daemon in (a, b):
        events = daemon.stub.ListEvents(pb.ListEventsRequest(task_id="cas")).events
        assert [e.revision for e in events] == [
            worker.revision,
            worker.revision + 1,
            winner.revision,
        ]


def test_a_request_id_applied_on_one_daemon_is_answered_from_it_on_the_other(start):
    a, b = start(), start()
    create(a.stub, "r")
    request = pb.TransitionRequest(
        task_id="r",
        from_state=S.WORKER_STATE_ASSIGNED,
        to_state=S.WORKER_STATE_WORKING,
        request_id="move-r",
        reason="first",
    )
    original = a.stub.Transition(request)
    before = caught_up(a, b)
    retried = b.stub.Transition(request)
    assert retried == original
    assert head(a) == head(b) == before
    request.to_state = S.WORKER_STATE_FAILED  # other content, same id
    with pytest.raises(grpc.RpcError) as caught:
        b.stub.Transition(request)
    code, info, _ = details(caught.value)
    assert (code, info.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")
    assert info.metadata["request_id"] == "move-r"
    assert head(a) == head(b) == before


def test_a_retry_through_b_right_after_a_answered_writes_nothing(start):
    """The same, without waiting for B to have heard of A's change first."""
    a, b = start(), start()
    for i in range(20):
        created = create(a.stub, f"q{i}", request_id=f"create-q{i}")
        again = b.stub.CreateWorker(
            pb.CreateWorkerRequest(
                task_id=f"q{i}", branch=f"work/q{i}", worktree="/tmp/wt", request_id=f"create-q{i}"
            )
        )
        assert again.worker == created
    assert caught_up(a, b) == 20


def test_watchers_on_any_daemon_see_every_change_and_resume_across_daemons(start):
    a, b = start(), start()
    on_b = Watcher(b.stub, start_revision=1)
    on_a = Watcher(a.stub, start_revision=1)

    def writer(n: int) -> None:
        stub = (a, b)[n % 2].stub
        state = create(stub, f"w{n}").state
        for _ in range(5):
            state = transition(stub, f"w{n}", state, flip(state)).worker.state

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    total = caught_up(a, b)
    log = log_of(a.stub)
    on_b.wait_for_revision(total)
    on_a.wait_for_revision(total)
    on_b.close()
    on_a.close()
    assert on_b.stored() == log == on_a.stored()
    assert [e.revision for e in log] == list(range(1, total + 1))
    # A watcher that read up to R on A goes on on B from R + 1 and gets exactly the rest,
    # including what is written through A after it moved.
    r = total // 2
    resumed = Watcher(b.stub, start_revision=r + 1)
    create(a.stub, "late")
    resumed.wait_for_revision(total + 1)
    resumed.close()
    assert on_a.stored()[:r] + resumed.stored() == log_of(b.stub)


# -- freshness ------------------------------------------------------------------------------


class TimedWatcher(Watcher):
    """A watcher that also notes when each revision arrived."""

    def __init__(self, stub: pb_grpc.WorkerServiceStub, **request: object) -> None:
        self.arrived: dict[int, float] = {}
        super().__init__(stub, **request)

    def _read(self) -> None:
        try:
            for message in self.stream:
                now = time.monotonic()
                for event in message.events:
                    self.arrived.setdefault(event.revision, now)
                self.messages.append(message)
        except grpc.RpcError as e:
            self.error = e


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    p50, p99, top = cuts[49] * 1000, cuts[98] * 1000, max(samples) * 1000
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {top:.1f} ms"


def test_a_change_through_a_reaches_b_reads_and_watchers_within_a_second(start):
    a, b = start(), start()
    create(a.stub, "f")
    watcher = TimedWatcher(b.stub)
    caught_up(a, b)
    to_read, to_watch = [], []
    state = S.WORKER_STATE_ASSIGNED
    for _ in range(50):
        moved = transition(a.stub, "f", state, flip(state))
        acknowledged = time.monotonic()
        state = moved.worker.state
        while b.stub.GetWorker(pb.GetWorkerRequest(task_id="f")).worker.revision < moved.revision:
            assert time.monotonic() - acknowledged < 5, "B never saw the change"
            time.sleep(0.001)
        to_read.append(time.monotonic() - acknowledged)
        listed = {w.task_id: w for w in b.stub.ListWorkers(pb.ListWorkersRequest()).workers}
        assert (listed["f"].state, listed["f"].revision) == (state, moved.revision)
        watcher.wait_for_revision(moved.revision, timeout=5)
        to_watch.append(max(0.0, watcher.arrived[moved.revision] - acknowledged))
        time.sleep(0.01)  # light load: one change at a time
    watcher.close()
    print(f"\nA -> B GetWorker: {percentiles(to_read)}; WatchState: {percentiles(to_watch)}")
    assert max(to_read) < 1.0
    assert max(to_watch) < 1.0


LIVENESS = ("--warn-after", "300ms", "--stale-after", "600ms", "--dead-after", "1h")


def test_a_beat_through_a_brings_the_worker_back_to_ok_on_b(start):
    a, b = (start(*LIVENESS, "--heartbeat-flush", "200ms") for _ in range(2))
    # Both watchers are in sync before the worker exists, so each sees every crossing
    # however slowly the machine runs; B is read only once it has the worker.
    watchers = [
        Watcher(d.stub, liveness=True, task_ids=["quiet"], send_initial_state=True) for d in (a, b)
    ]
    for watcher in watchers:
        wait_until(lambda w=watcher: any(m.HasField("synced") for m in w.messages))
    create(a.stub, "quiet")
    caught_up(a, b)
    wait_until(lambda: level(b, "quiet") == L.STALE_LEVEL_STALE, timeout=5)
    beat = a.stub.Heartbeat(pb.HeartbeatRequest(task_id="quiet", activity="back"))
    sent = time.monotonic()
    wait_until(lambda: level(b, "quiet") == L.STALE_LEVEL_OK, timeout=5, interval=0.01)
    assert time.monotonic() - sent < 0.2 + 1.0
    seen_on_b = b.stub.GetWorker(pb.GetWorkerRequest(task_id="quiet")).worker
    assert seen_on_b.last_heartbeat_at == beat.received_at
    # Each daemon announces the crossing back to its own watchers.
    for watcher in watchers:
        wait_until(lambda w=watcher: (L.STALE_LEVEL_STALE, L.STALE_LEVEL_OK) in crossings(w))
        watcher.close()
        assert crossings(watcher)[:3] == [
            (L.STALE_LEVEL_OK, L.STALE_LEVEL_WARN),
            (L.STALE_LEVEL_WARN, L.STALE_LEVEL_STALE),
            (L.STALE_LEVEL_STALE, L.STALE_LEVEL_OK),
        ]


def level(daemon: DaemonProcess, task_id: str) -> int:
    return daemon.stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker.stale_level


def crossings(watcher: Watcher) -> list[tuple[int, int]]:
    return [
        (e.from_stale_level, e.worker.stale_level)
        for e in watcher.events
        if e.type == pb.EVENT_TYPE_LIVENESS_CHANGED
    ]


def test_compaction_runs_on_one_daemon_and_holds_on_both(start):
    retention = ("--retain-events", "5", "--retain-for", "0s", "--compact-interval", "200ms")
    a, b = start(*retention), start(*retention)
    for i in range(20):
        create((a, b)[i % 2].stub, f"c{i}")
    caught_up(a, b)

    def compacted(daemon: DaemonProcess) -> bool:
        try:
            daemon.stub.ListEvents(pb.ListEventsRequest(after_revision=14))
        except grpc.RpcError:
            return True
        return False

    wait_until(lambda: compacted(a) and compacted(b), timeout=10)
    for daemon in (a, b):
        assert_kept_from_16_of_20(daemon.stub)
    compactors = [d for d in (a, b) if any("this daemon compacts" in line for line in d.log)]
    assert len(compactors) == 1, "".join(a.log + b.log)
    # What the compactor deleted, the other daemon did not try to delete too.
    other = b if compactors[0] is a else a
    assert not any("compacted" in line for line in other.log), "".join(other.log)


# -- faults ---------------------------------------------------------------------------------


@dataclass
class Client:
    """A client that owns its workers and writes with request ids, moving to the next
    daemon (same request id) when one cannot answer, as the real client does."""

    n: int
    stubs: list[pb_grpc.WorkerServiceStub]
    acknowledged: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # revision, state
    refusals: list[tuple[grpc.StatusCode, str]] = field(default_factory=list)
    acknowledged_at: list[float] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        rng = random.Random(self.n)
        mine = [f"c{self.n}-{i}" for i in range(4)]
        for seq in itertools.count():
            if stop.is_set():
                return
            task_id = rng.choice(mine)
            request_id = f"c{self.n}-{seq}"
            history = self.acknowledged.get(task_id)
            if history is None:
                call = "CreateWorker"
                request: object = pb.CreateWorkerRequest(
                    task_id=task_id, branch="b", worktree="w", request_id=request_id
                )
            else:
                state = history[-1][1]
                call = "Transition"
                request = pb.TransitionRequest(
                    task_id=task_id,
                    from_state=state,
                    to_state=rng.choice(MOVES[state]),
                    request_id=request_id,
                )
            response = self._until_answered(call, request)
            self.acknowledged.setdefault(task_id, []).append(
                (response.revision, response.worker.state)
            )
            self.acknowledged_at.append(time.monotonic())

    def _until_answered(self, call: str, request: object) -> pb.TransitionResponse:
        """Try each daemon in turn, with the same request, until one answers."""
        deadline = time.monotonic() + 30
        for attempt in itertools.count():
            stub = self.stubs[attempt % len(self.stubs)]
            try:
                return getattr(stub, call)(request, timeout=5)
            except grpc.RpcError as e:
                if e.code() not in RETRIED or time.monotonic() > deadline:
                    raise
                self.refusals.append((e.code(), reason(e)))
                time.sleep(0.05)


def run_clients(clients: list[Client]) -> Callable[[], None]:
    """Start the clients on threads; returns what stops and joins them (re-raising a
    client's failure)."""
    stop = threading.Event()
    pool = ThreadPoolExecutor(len(clients))
    futures = [pool.submit(c.run, stop) for c in clients]

    def join() -> None:
        stop.set()
        for future in futures:
            future.result(60)
        pool.shutdown()

    return join


def check_ledgers(daemon: DaemonProcess, clients: list[Client]) -> list[pb.WorkerEvent]:
    """Every acknowledged change is in the log at its revision, and nothing else is: each
    worker's events are exactly what its one client was told, in order (no loss, no double
    apply of a retried request)."""
    told = {task: history for c in clients for task, history in c.acknowledged.items()}
    # The last changes may have been made through another daemon: wait to have heard of them.
    latest = max(revision for history in told.values() for revision, _ in history)
    try:
        wait_until(lambda: head(daemon) >= latest, timeout=10)
    except AssertionError:
        raise AssertionError(
            f"at revision {head(daemon)}, not {latest}:\n" + "".join(daemon.log[-40:])
        ) from None
    log = log_of(daemon.stub)
    assert [e.revision for e in log] == list(range(1, len(log) + 1))
    by_task: dict[str, list[tuple[int, int]]] = {}
    for event in log:
        by_task.setdefault(event.worker.task_id, []).append((event.revision, event.worker.state))
    assert by_task == told
    return log


def test_kill_9_of_one_daemon_under_load_loses_nothing_acknowledged(start):
    a, b = start(), start()
    clients = [Client(n, [(a, b)[n % 2].stub, (b, a)[n % 2].stub]) for n in range(12)]
    watcher = Watcher(b.stub, start_revision=1)
    join = run_clients(clients)
    time.sleep(1.5)
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    killed = time.monotonic()
    time.sleep(1.5)
    join()
    # A's clients were cut off, moved to the survivor, and it kept serving them and B's.
    assert all(c.refusals for c in clients[::2])
    for client in clients:
        assert any(t > killed + 0.5 for t in client.acknowledged_at), client.n
    assert sum(len(c.acknowledged_at) for c in clients) > 200  # real load happened
    log = check_ledgers(b, clients)
    watcher.wait_for_revision(len(log))
    watcher.close()
    assert watcher.stored() == log
    a.start()
    caught_up(a, b)
    assert stored(workers_of(a.stub)) == stored(workers_of(b.stub))
    assert log_of(a.stub) == log


def test_a_postgres_restart_under_load_loses_nothing_and_writes_resume(start, pg_db):
    a, b = start(), start()
    clients = [Client(n, [(a, b)[n % 2].stub, (b, a)[n % 2].stub]) for n in range(8)]
    received: list[pb.WorkerEvent] = []
    watcher = Watcher(a.stub, start_revision=1)
    join = run_clients(clients)
    time.sleep(1.0)
    pg_db.server.restart()
    back = time.monotonic()
    time.sleep(0.5)
    # Writes work again within 10 s of the server being back.
    wait_until(lambda: any(t > back for c in clients for t in c.acknowledged_at), timeout=10)
    time.sleep(1.0)
    join()
    # Writes were refused while the server was down, and only as storage being unavailable.
    refusals = {r for c in clients for r in c.refusals}
    assert refusals == {(grpc.StatusCode.UNAVAILABLE, "STORAGE_UNAVAILABLE")}, refusals
    log = check_ledgers(b, clients)
    # The watcher went on, or was ended with UNAVAILABLE and resumes with no gap.
    while True:
        wait_until(
            lambda w=watcher: w.error is not None or len(w.stored()) == len(log) - len(received)
        )
        if watcher.error is None:
            break
        assert watcher.error.code() == grpc.StatusCode.UNAVAILABLE, watcher.error
        received.extend(watcher.stored())
        watcher = Watcher(a.stub, start_revision=len(received) + 1)
    watcher.close()
    received.extend(watcher.stored())
    assert received == log
    caught_up(a, b)
    assert stored(workers_of(a.stub)) == stored(workers_of(b.stub))


def serving(daemon: DaemonProcess) -> int:
    health = health_pb2_grpc.HealthStub(daemon.channel)
    return health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status


def test_with_the_database_down_writes_fail_reads_answer_and_health_says_so(start, pg_db):
    daemon = start()
    create(daemon.stub, "kept")
    assert serving(daemon) == health_pb2.HealthCheckResponse.SERVING
    pg_db.server.stop()
    lost = time.monotonic()
    wait_until(lambda: serving(daemon) == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=6)
    assert time.monotonic() - lost < 5
    with pytest.raises(grpc.RpcError) as caught:
        create(daemon.stub, "lost")
    code, info, _ = details(caught.value)
    assert (code, info.reason) == (grpc.StatusCode.UNAVAILABLE, "STORAGE_UNAVAILABLE")
    assert daemon.stub.GetWorker(pb.GetWorkerRequest(task_id="kept")).worker.task_id == "kept"
    assert [w.task_id for w in workers_of(daemon.stub)] == ["kept"]
    pg_db.server.start()
    back = time.monotonic()
    wait_until(lambda: serving(daemon) == health_pb2.HealthCheckResponse.SERVING, timeout=10)
    wait_until(lambda: writes(daemon), timeout=10)
    assert time.monotonic() - back < 10
    assert {w.task_id for w in workers_of(daemon.stub)} == {"kept", "again"}


def writes(daemon: DaemonProcess) -> bool:
    try:
        create(daemon.stub, "again")
    except grpc.RpcError as e:
        refused = e
    else:
        return True
    assert reason(refused) == "STORAGE_UNAVAILABLE", refused
    return False


def test_a_start_with_the_database_unreachable_exits_naming_the_host(pg_db, dead_port):
    url = f"postgresql://{pg_db.server.user}:{pg_db.server.password}@127.0.0.1:{dead_port}/db"
    began = time.monotonic()
    refused = serve_once(url)
    assert time.monotonic() - began < 30
    assert refused.returncode != 0
    errors = [line for line in refused.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, refused.stderr
    assert f"127.0.0.1:{dead_port}" in errors[0]
    assert "Traceback" not in refused.stderr
    assert pg_db.server.password not in refused.stderr + refused.stdout


def scrape(daemon: DaemonProcess) -> str:
    address = next(
        m.group(1)
        for line in daemon.log
        if (m := re.search(r"serving metrics on http://(\S+)/metrics", line))
    )
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        return response.read().decode()


def test_the_password_appears_in_no_output_and_no_metric(start, pg_db):
    password = pg_db.server.password
    daemon = start("--log-level", "debug", "--metrics-listen", "127.0.0.1:0")
    create(daemon.stub, "p")
    pg_db.server.restart()
    wait_until(lambda: writes(daemon), timeout=10)
    assert password not in scrape(daemon)
    assert daemon.stop() == 0
    output = "".join(daemon.log)
    assert "lost" in output  # the restart was noticed, and logged
    wrong_name = serve_once(pg_db.url.rsplit("/", 1)[0] + "/nosuchdb", "--log-level", "debug")
    assert wrong_name.returncode != 0
    assert "nosuchdb" in wrong_name.stderr
    for text in (output, wrong_name.stdout + wrong_name.stderr):
        assert password not in text


def test_a_newer_schema_is_refused_and_other_tables_are_left_alone(start, pg_db):
    server = pg_db.server
    server.admin(
        f"CREATE TABLE public.other (k int); INSERT INTO public.other VALUES (7);"
        f' ALTER TABLE public.other OWNER TO "{server.user}"',
        pg_db.name,
    )
    daemon = start()
    create(daemon.stub, "s")
    assert daemon.stop() == 0
    tables = server.admin(
        "SELECT schemaname || '.' || tablename FROM pg_tables"
        " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        pg_db.name,
    ).split()
    assert [t for t in tables if not t.startswith("workerstate.")] == ["public.other"]
    assert server.admin("SELECT k FROM public.other", pg_db.name).split() == ["7"]
    server.admin("INSERT INTO workerstate.schema_version VALUES (99)", pg_db.name)
    refused = serve_once(pg_db.url)
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "newer" in refused.stderr and "99" in refused.stderr


def test_a_socket_url_and_a_multi_host_url_serve_the_same_database(start, pg_db, dead_port):
    server = pg_db.server
    multi = (
        f"postgresql://{server.user}:{server.password}@127.0.0.1:{dead_port},"
        f"127.0.0.1:{server.port}/{pg_db.name}?target_session_attrs=read-write"
    )
    on_socket, on_multi = start(url=pg_db.socket_url), start(url=multi)
    create(on_socket.stub, "one")
    create(on_multi.stub, "two")
    caught_up(on_socket, on_multi)
    for daemon in (on_socket, on_multi):
        assert {w.task_id for w in workers_of(daemon.stub)} == {"one", "two"}


def test_apply_is_atomic_across_daemons(start):
    a, b = start(), start()
    create(a.stub, "stacked")
    watcher = Watcher(a.stub, start_revision=head(a) + 1)
    # B takes in A's create under the revision lock, so the batch sees it at once.
    batch = b.stub.Apply(
        pb.ApplyRequest(
            operations=[
                pb.Operation(
                    transition=pb.TransitionRequest(
                        task_id="stacked",
                        from_state=S.WORKER_STATE_ASSIGNED,
                        to_state=S.WORKER_STATE_WORKING,
                    )
                ),
                pb.Operation(
                    create=pb.CreateWorkerRequest(task_id="stacked-2", branch="b", worktree="/w")
                ),
            ]
        )
    )
    before = caught_up(a, b)
    assert before == batch.revision
    watcher.wait_for_revision(batch.revision)
    assert [len(m.events) for m in watcher.messages] == [2]
    watcher.close()
    # A refused batch through A stores nothing that B could see.
    with pytest.raises(grpc.RpcError) as refused:
        a.stub.Apply(
            pb.ApplyRequest(
                operations=[
                    pb.Operation(
                        create=pb.CreateWorkerRequest(
                            task_id="stacked-3", branch="b", worktree="/w"
                        )
                    ),
                    pb.Operation(
                        create=pb.CreateWorkerRequest(
                            task_id="stacked-2", branch="b", worktree="/w"
                        )
                    ),
                ]
            )
        )
    assert details(refused.value)[1].metadata["operation_index"] == "1"
    create(b.stub, "after")
    caught_up(a, b)
    for daemon in (a, b):
        names = {w.task_id for w in daemon.stub.ListWorkers(pb.ListWorkersRequest()).workers}
        assert names == {"stacked", "stacked-2", "after"}
        assert head(daemon) == before + 1
