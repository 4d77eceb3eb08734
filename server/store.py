"""The SQLite file: ownership lock, schema and migrations, and the statements behind each change.

Only the writer calls the mutating methods, always between `begin()` and `commit()`. Reads of
the event log go through `EventReader`, whose connections never wait for the writer (WAL).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .domain import Event, EventType, StorageUnavailable, Worker, WorkerState

T = TypeVar("T")

# Marks the file as ours ("wSt1"), so a stranger's SQLite file is refused, not migrated.
APPLICATION_ID = 0x77537431
SQLITE_HEADER = b"SQLite format 3\x00"

# MIGRATIONS[n] takes a file from schema version n to n + 1 (PRAGMA user_version).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE workers (
        task_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        branch TEXT NOT NULL,
        worktree TEXT NOT NULL,
        description TEXT,
        created_at_ms INTEGER NOT NULL,
        state_changed_at_ms INTEGER NOT NULL,
        revision INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- The log. Each row also holds the worker as it was right after the change, so a
    -- watcher or ListEvents can be answered from this table alone.
    CREATE TABLE events (
        revision INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        task_id TEXT NOT NULL,
        state TEXT NOT NULL,
        from_state TEXT,
        reason TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        branch TEXT NOT NULL,
        worktree TEXT NOT NULL,
        description TEXT,
        created_at_ms INTEGER NOT NULL
    );
    CREATE INDEX events_by_task ON events (task_id, revision);
    CREATE TABLE heartbeats (
        task_id TEXT PRIMARY KEY,
        ts_ms INTEGER NOT NULL,
        activity TEXT NOT NULL
    ) WITHOUT ROWID;
    -- Applied request ids and the worker each one answered with, for idempotent retries.
    CREATE TABLE requests (
        request_id TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        worker TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX requests_by_age ON requests (created_at_ms);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_EVENT_COLUMNS = (
    "revision, type, task_id, state, from_state, reason, time_ms,"
    " branch, worktree, description, created_at_ms"
)
_WORKER_COLUMNS = (
    "task_id, state, branch, worktree, description, created_at_ms, state_changed_at_ms, revision"
)


class StoreError(Exception):
    """The file cannot be served: locked by another daemon, not ours, corrupt, or too new."""


def _connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode={'ro' if read_only else 'rw'}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    # WAL readers never block on the writer; a checkpoint can briefly, hence a timeout.
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _acquire_lock(path: Path) -> int:
    """Hold an exclusive lock beside the file for the daemon's lifetime."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise StoreError(f"cannot lock {path}: {lock_path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreError(
            f"{path} is already served by another workerstate daemon (pid {owner})"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _check_existing(path: Path) -> None:
    """Refuse, without writing a byte, a file that is not a workerstate database we can serve."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise StoreError(f"{path} is not a workerstate database (not SQLite); left untouched")
    try:
        with contextlib.closing(_connect(path, read_only=True)) as conn:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} cannot be read as a database ({e}); left untouched") from None
    if app_id != APPLICATION_ID and (app_id != 0 or tables):
        raise StoreError(f"{path} is a SQLite file of another program; left untouched")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this daemon's {SCHEMA_VERSION};"
            " upgrade workerstate"
        )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for step in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        for statement in MIGRATIONS[step].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {step + 1}")
        conn.execute("COMMIT")


# Stored names to members by plain dict lookup: `WorkerState(name)` goes through Enum's
# Python-level constructor, a visible share of loading 100,000 workers at start.
_STATES = {s.value: s for s in WorkerState}


def _worker_from_row(row: tuple[Any, ...]) -> Worker:
    task_id, state, branch, worktree, description, created, changed, revision = row
    return Worker(
        task_id, _STATES[state], branch, worktree, description, created, changed, revision
    )


def _event_from_row(row: tuple[Any, ...]) -> Event:
    revision, type_, task_id, state, from_state, reason, time_ms = row[:7]
    branch, worktree, description, created = row[7:]
    worker = _worker_from_row(
        (task_id, state, branch, worktree, description, created, time_ms, revision)
    )
    return Event(
        worker.revision,
        EventType(type_),
        worker,
        None if from_state is None else _STATES[from_state],
        reason,
        worker.state_changed_at_ms,
    )


def _worker_row(w: Worker) -> tuple[Any, ...]:
    return (
        w.task_id,
        w.state.value,
        w.branch,
        w.worktree,
        w.description,
        w.created_at_ms,
        w.state_changed_at_ms,
        w.revision,
    )


def _event_row(event: Event) -> tuple[Any, ...]:
    w = event.worker
    return (
        event.revision,
        event.type.value,
        w.task_id,
        w.state.value,
        None if event.from_state is None else event.from_state.value,
        event.reason,
        event.time_ms,
        w.branch,
        w.worktree,
        w.description,
        w.created_at_ms,
    )


def _worker_to_json(worker: Worker) -> str:
    return json.dumps(_worker_row(worker))


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """`items` in slices whose sizes are powers of two, largest first.

    Each statement the writer runs costs it a wait for the GIL, so a group's rows go in a
    few multi-row statements rather than one each; and as the statement text depends on
    the row count, sizes limited to powers of two keep the prepared statements few (a
    statement for 256 rows holds about 160 KB)."""
    start = 0
    while start < len(items):
        size = 1 << ((len(items) - start).bit_length() - 1)
        yield items[start : start + size]
        start += size


class Store:
    """The daemon's one write connection to its file, and the file's ownership lock."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int) -> None:
        self.path = path
        self._conn = conn
        self._lock_fd = lock_fd
        self._identity = _identity(path)

    @classmethod
    def open(cls, path: Path) -> Store:
        """Lock, check, create or migrate the file; raises StoreError with a clear reason."""
        if not path.parent.is_dir():
            raise StoreError(f"cannot create {path}: folder {path.parent} does not exist")
        lock_fd = _acquire_lock(path)
        try:
            _check_existing(path)
            # Created 0600: worker data is nobody else's business.
            try:
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            except OSError as e:
                raise StoreError(f"cannot open {path} for writing: {e.strerror}") from None
            conn = _connect(path)
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: an acknowledged change survives a power cut, not only a crash.
            conn.execute("PRAGMA synchronous = FULL")
            _migrate(conn)
        except sqlite3.Error as e:
            os.close(lock_fd)
            raise StoreError(f"cannot open {path} for writing: {e}") from None
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, conn, lock_fd)

    def close(self) -> None:
        self._conn.close()
        os.close(self._lock_fd)

    # -- loading at start -------------------------------------------------------------

    def head_revision(self) -> int:
        return int(
            self._conn.execute("SELECT coalesce(max(revision), 0) FROM events").fetchone()[0]
        )

    def oldest_revision(self) -> int:
        """The compact revision: the oldest stored event's, or the next one when none is."""
        oldest = self._conn.execute("SELECT min(revision) FROM events").fetchone()[0]
        return 1 if oldest is None else int(oldest)

    def load_workers(self) -> list[Worker]:
        """Every worker, oldest change first."""
        rows = self._conn.execute(f"SELECT {_WORKER_COLUMNS} FROM workers ORDER BY revision")
        return [_worker_from_row(row) for row in rows]

    def load_heartbeats(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT task_id, ts_ms FROM heartbeats").fetchall())

    # -- the writer's statements --------------------------------------------------------

    def begin(self) -> None:
        # A file deleted or replaced under us would swallow every later write (they would go
        # to an unlinked inode and vanish at restart): refuse to write instead.
        if _identity(self.path) != self._identity:
            raise sqlite3.OperationalError(
                f"{self.path} was deleted or replaced while the daemon had it open; "
                "restore it and restart the daemon"
            )
        self._conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def applied_requests(self, request_ids: Sequence[str]) -> dict[str, tuple[str, Worker]]:
        """The fingerprint and answer of each of `request_ids` already applied."""
        found: dict[str, tuple[str, Worker]] = {}
        for chunk in _chunks(request_ids):
            marks = ", ".join("?" * len(chunk))
            for request_id, fingerprint, worker in self._conn.execute(
                f"SELECT request_id, fingerprint, worker FROM requests"
                f" WHERE request_id IN ({marks})",
                chunk,
            ):
                found[request_id] = (fingerprint, _worker_from_row(tuple(json.loads(worker))))
        return found

    def append(self, rows: Sequence[tuple[Event, str, str]]) -> None:
        """Store a group's changes, given as (event, request id or "", fingerprint): each
        worker as its last event left it, every event, and the request ids."""
        workers = {event.worker.task_id: event.worker for event, _, _ in rows}
        self._insert(
            "INSERT OR REPLACE INTO workers",
            _WORKER_COLUMNS,
            [_worker_row(w) for w in workers.values()],
        )
        self._insert("INSERT INTO events", _EVENT_COLUMNS, [_event_row(e) for e, _, _ in rows])
        requests = [
            (request_id, fingerprint, _worker_to_json(event.worker), event.time_ms)
            for event, request_id, fingerprint in rows
            if request_id
        ]
        self._insert(
            "INSERT INTO requests", "request_id, fingerprint, worker, created_at_ms", requests
        )

    def _insert(self, into: str, columns: str, rows: Sequence[tuple[Any, ...]]) -> None:
        for chunk in _chunks(rows):
            one = "(" + ", ".join("?" * len(chunk[0])) + ")"
            self._conn.execute(
                f"{into} ({columns}) VALUES {', '.join([one] * len(chunk))}",
                [value for row in chunk for value in row],
            )

    def save_heartbeats(self, beats: Iterable[tuple[str, int, str]]) -> None:
        self._conn.executemany(
            "INSERT INTO heartbeats (task_id, ts_ms, activity) VALUES (?, ?, ?)"
            " ON CONFLICT (task_id) DO UPDATE SET ts_ms = excluded.ts_ms,"
            " activity = excluded.activity",
            beats,
        )

    def delete_events_below(self, revision: int, limit: int) -> int:
        """Delete up to `limit` of the oldest events below `revision`; returns how many."""
        return self._conn.execute(
            "DELETE FROM events WHERE revision IN"
            " (SELECT revision FROM events WHERE revision < ? ORDER BY revision LIMIT ?)",
            (revision, limit),
        ).rowcount

    def prune_requests(self, before_ms: int) -> int:
        """Forget request ids applied before `before_ms`; returns how many."""
        return self._conn.execute(
            "DELETE FROM requests WHERE created_at_ms < ?", (before_ms,)
        ).rowcount


class EventReader:
    """Reads the log on read-only connections, one per thread, never waiting for a commit."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self._path, read_only=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def events(self, after_revision: int, limit: int, task_id: str, upto: int) -> list[Event]:
        """Up to `limit` events in (after_revision, upto], oldest first; one task's or all.

        `upto` keeps an answer consistent with the head the caller reports: the file may
        already hold a commit whose answer has not yet reached the event loop.
        """
        where = "revision > ? AND revision <= ?" + (" AND task_id = ?" if task_id else "")
        params = (after_revision, upto, task_id) if task_id else (after_revision, upto)
        try:
            rows = self._conn().execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE {where} ORDER BY revision LIMIT ?",
                (*params, limit),
            )
            return [_event_from_row(row) for row in rows]
        except sqlite3.Error as e:
            raise StorageUnavailable(f"the event log could not be read ({e})") from None

    def compaction_cutoff(self, head: int, keep_events: int, before_ms: int) -> int:
        """The oldest revision to keep: events below it are both older than `before_ms` and
        not among the newest `keep_events`."""
        by_count = head - keep_events + 1
        row = (
            self._conn()
            .execute(
                "SELECT revision FROM events WHERE time_ms >= ? ORDER BY revision LIMIT 1",
                (before_ms,),
            )
            .fetchone()
        )
        by_age = head + 1 if row is None else int(row[0])
        return min(by_count, by_age)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
