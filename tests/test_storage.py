"""The file: durable across restarts and kill -9, owned by one daemon, strangers refused."""

from __future__ import annotations

import signal
import sqlite3

from harness import DaemonProcess, create, serve_once
from workerstate.v1 import workerstate_pb2 as pb

S = pb.WorkerState


def all_events(stub) -> list[pb.WorkerEvent]:
    return list(stub.ListEvents(pb.ListEventsRequest(limit=1000)).events)


def test_everything_survives_a_restart_and_revisions_continue(make_daemon):
    daemon = make_daemon()
    workers = [create(daemon.stub, f"task-{i}", description=f"d{i}") for i in range(5)]
    daemon.stub.Transition(
        pb.TransitionRequest(
            task_id="task-0", from_state=S.WORKER_STATE_ASSIGNED, to_state=S.WORKER_STATE_WORKING
        )
    )
    daemon.stub.FailWorker(pb.FailWorkerRequest(task_id="task-1", reason="gone"))
    before_workers = daemon.stub.ListWorkers(pb.ListWorkersRequest())
    before_events = all_events(daemon.stub)

    daemon.restart()
    after_workers = daemon.stub.ListWorkers(pb.ListWorkersRequest())
    assert after_workers.revision == before_workers.revision == 7
    strip = [(w.task_id, w.state, w.revision, w.description) for w in after_workers.workers]
    assert strip == [
        (w.task_id, w.state, w.revision, w.description) for w in before_workers.workers
    ]
    assert all_events(daemon.stub) == before_events
    next_change = daemon.stub.Transition(
        pb.TransitionRequest(
            task_id="task-2", from_state=S.WORKER_STATE_ASSIGNED, to_state=S.WORKER_STATE_WORKING
        )
    )
    assert next_change.revision == 8
    assert [e.revision for e in all_events(daemon.stub)] == list(range(1, 9))
    assert len(workers) == 5


def test_acknowledged_changes_survive_kill_9(make_daemon):
    daemon = make_daemon()
    acknowledged = [create(daemon.stub).task_id for _ in range(50)]
    daemon.stop(signal.SIGKILL)
    daemon.start()
    for task_id in acknowledged:
        assert daemon.stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker.task_id
    revisions = [e.revision for e in all_events(daemon.stub)]
    assert revisions == list(range(1, 51))
    with sqlite3.connect(daemon.db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_second_daemon_on_the_same_file_is_refused(make_daemon):
    first = make_daemon()
    result = serve_once(first.db)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(first.db) in lines[0] and "another workerstate daemon" in lines[0]
    assert "Traceback" not in result.stderr
    create(first.stub)  # the first one is unaffected


def test_a_garbage_file_is_refused_and_left_byte_for_byte(tmp_path):
    db = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 100
    db.write_bytes(content)
    result = serve_once(db)
    assert result.returncode == 1
    assert "not a workerstate database" in result.stderr and str(db) in result.stderr
    assert "Traceback" not in result.stderr
    assert db.read_bytes() == content


def test_another_programs_sqlite_file_is_refused_untouched(tmp_path):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE mine (x)")
    content = db.read_bytes()
    result = serve_once(db)
    assert result.returncode == 1
    assert "another program" in result.stderr
    assert db.read_bytes() == content


def test_a_corrupt_database_is_refused_untouched(tmp_path):
    db = tmp_path / "corrupt.db"
    daemon = DaemonProcess(db).start()
    create(daemon.stub)
    assert daemon.stop() == 0
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # smash the schema page after the header
    db.write_bytes(bytes(data))
    result = serve_once(db)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert db.read_bytes() == bytes(data)


def test_a_file_from_a_newer_daemon_is_refused(tmp_path):
    db = tmp_path / "new.db"
    daemon = DaemonProcess(db).start()
    assert daemon.stop() == 0
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    result = serve_once(db)
    assert result.returncode == 1
    assert "newer" in result.stderr and "upgrade workerstate" in result.stderr


def test_database_file_is_private_and_in_wal_mode(make_daemon):
    daemon = make_daemon()
    assert daemon.db.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(daemon.db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)


def test_missing_folder_is_a_clear_error(tmp_path):
    result = serve_once(tmp_path / "nope" / "w.db")
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
