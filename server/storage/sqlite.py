"""The SQLite backend: one daemon owns one file (WAL, `synchronous=FULL`).

The file's lock makes this daemon its only writer, so a transaction never finds foreign
events. Its statements run inline on the event loop: each one releases the GIL, and a thread
of its own had to win it back from the busy loop after every statement, which cost a group
~3.5 ms against the 0.2 ms its statements cost. Only the COMMIT, with its fsync, may move to a
thread: when callers are waiting behind it, or when the disk is slow (see SLOW_COMMIT_S).
Reads of the log go through `EventReader` on threads: its connections never wait for the
writer (WAL) and a long read never holds up the loop.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..domain import Event, StorageUnavailable
from .base import (
    Answer,
    BackendFault,
    DeleteEventsBelow,
    Loaded,
    Notice,
    Row,
    SaveHeartbeats,
    StorageError,
    Upkeep,
)
from .rows import (
    EVENT_COLUMNS,
    REQUEST_COLUMNS,
    WORKER_COLUMNS,
    answer_from_json,
    event_from_row,
    event_row,
    request_rows,
    stored_workers,
    worker_from_row,
    worker_row,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

# Marks the file as ours ("wSt1"), so a stranger's SQLite file is refused, not migrated.
APPLICATION_ID = 0x77537431
SQLITE_HEADER = b"SQLite format 3\x00"
# Every commit waits for the disk, but a flush's unsynced beats (see SaveHeartbeats.synced).
SYNCHRONOUS = "FULL"

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
    # Labels, the actor of each event, and the state_changed_at of an event's worker (a
    # LABELS_CHANGED event's time is not when the worker entered its state). Rows from
    # before read as no labels, no actor, and the event's own time.
    """
    ALTER TABLE workers ADD COLUMN labels TEXT NOT NULL DEFAULT '';
    ALTER TABLE events ADD COLUMN labels TEXT NOT NULL DEFAULT '';
    ALTER TABLE events ADD COLUMN from_labels TEXT;
    ALTER TABLE events ADD COLUMN actor TEXT NOT NULL DEFAULT '';
    ALTER TABLE events ADD COLUMN state_changed_at_ms INTEGER;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


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
        raise StorageError(f"cannot lock {path}: {lock_path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StorageError(
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
        raise StorageError(f"{path} is not a workerstate database (not SQLite); left untouched")
    try:
        with contextlib.closing(_connect(path, read_only=True)) as conn:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise StorageError(f"{path} cannot be read as a database ({e}); left untouched") from None
    if app_id != APPLICATION_ID and (app_id != 0 or tables):
        raise StorageError(f"{path} is a SQLite file of another program; left untouched")
    if version > SCHEMA_VERSION:
        raise StorageError(
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


# Where a COMMIT runs. Handing it to a thread and its answer back costs two GIL hand-offs
# (~0.7 ms of CPU here), more than a fast fsync (0.2-0.4 ms): a group of one change, with
# nobody else waiting, commits inline on the loop. A group of several means callers are
# arriving concurrently: its COMMIT goes to a thread, and the loop serves them (and gathers
# the next group) while the disk works. So does every COMMIT on a disk whose typical commit
# is slower than this (non-const so tests and benchmarks may change it): the loop would
# otherwise stall every read for as long as the disk takes.
SLOW_COMMIT_S = 0.002
# How many recent commits the typical (median) duration is taken over: a few slow fsyncs
# on a busy disk do not make it slow.
_RECENT_COMMITS = 16
# For tests and benchmarks only: sleep this long before each COMMIT, as a slow disk would.
COMMIT_DELAY_ENV = "WORKERSTATE_TEST_COMMIT_DELAY_MS"


@contextlib.contextmanager
def _faults() -> Iterator[None]:
    """SQLite's errors as the seam's: the writer needs no driver to tell a fault."""
    try:
        yield
    except sqlite3.Error as e:
        raise BackendFault(str(e)) from None


class SQLiteBackend:
    """The daemon's one write connection to its file, and the file's ownership lock."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int) -> None:
        self.path = path
        self._conn = conn
        self._lock_fd = lock_fd
        self._identity = _identity(path)
        self._reader = EventReader(path)
        self._recent: collections.deque[float] = collections.deque(maxlen=_RECENT_COMMITS)
        # One thread, reused: slow commits are serial anyway, and the pool's start-up is paid once.
        self._committer = concurrent.futures.ThreadPoolExecutor(1, "workerstate-commit")
        self._delay_s = int(os.environ.get(COMMIT_DELAY_ENV, "0") or 0) / 1000

    @property
    def name(self) -> str:
        return str(self.path)

    @classmethod
    def open(cls, path: Path) -> SQLiteBackend:
        """Lock, check, create or migrate the file; raises StorageError with a clear reason."""
        if not path.parent.is_dir():
            raise StorageError(f"cannot create {path}: folder {path.parent} does not exist")
        lock_fd = _acquire_lock(path)
        try:
            _check_existing(path)
            # Created 0600: worker data is nobody else's business.
            try:
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            except OSError as e:
                raise StorageError(f"cannot open {path} for writing: {e.strerror}") from None
            conn = _connect(path)
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: an acknowledged change survives a power cut, not only a crash.
            conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
            _migrate(conn)
        except sqlite3.Error as e:
            os.close(lock_fd)
            raise StorageError(f"cannot open {path} for writing: {e}") from None
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, conn, lock_fd)

    async def close(self) -> None:
        self._committer.shutdown()
        self._reader.close()
        self._conn.close()
        os.close(self._lock_fd)

    async def load(self) -> Loaded:
        conn = self._conn
        with _faults():
            head = int(conn.execute("SELECT coalesce(max(revision), 0) FROM events").fetchone()[0])
            oldest = conn.execute("SELECT min(revision) FROM events").fetchone()[0]
            rows = conn.execute(f"SELECT {WORKER_COLUMNS} FROM workers ORDER BY revision")
            workers = [worker_from_row(row) for row in rows]
            beats = {
                task_id: (ms, activity)
                for task_id, ms, activity in conn.execute(
                    "SELECT task_id, ts_ms, activity FROM heartbeats"
                )
            }
        compact = head + 1 if oldest is None else int(oldest)
        return Loaded(head, compact, workers, beats, Notice(head, 0, compact))

    async def begin(self, known_head: int, synced: bool = True) -> SQLiteTransaction:
        # A file deleted or replaced under us would swallow every later write (they would go
        # to an unlinked inode and vanish at restart): refuse to write instead.
        if _identity(self.path) != self._identity:
            raise BackendFault(
                f"{self.path} was deleted or replaced while the daemon had it open; "
                "restore it and restart the daemon"
            )
        with _faults():
            if not synced:  # the level cannot change inside a transaction
                self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("BEGIN IMMEDIATE")
        return SQLiteTransaction(self, synced)

    async def events(self, after_revision: int, limit: int, task_id: str, upto: int) -> list[Event]:
        return await asyncio.to_thread(self._reader.events, after_revision, limit, task_id, upto)

    async def compaction_cutoff(self, head: int, keep_events: int, before_ms: int) -> int:
        return await asyncio.to_thread(self._reader.compaction_cutoff, head, keep_events, before_ms)

    async def follow(
        self, notices: Callable[[Notice], None], healthy: Callable[[bool], None]
    ) -> None:
        return  # the lock makes this daemon the file's only writer: nothing to follow

    async def beats_since(self, flushes: int) -> list[tuple[str, int, str]]:
        return []

    def _commit_now(self) -> float:
        """COMMIT; returns how long it took."""
        started = time.perf_counter()
        if self._delay_s:
            time.sleep(self._delay_s)
        self._conn.execute("COMMIT")
        return time.perf_counter() - started

    async def _commit(self, changes: int, synced: bool) -> None:
        """COMMIT a group of `changes` rows and jobs, inline or on a thread (see above). An
        unsynced one (begun so) only appends to the WAL: the next synced commit syncs it."""
        with _faults():
            if not synced:
                try:
                    self._conn.execute("COMMIT")
                finally:
                    self._conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
                return
            if changes > 1 or self._slow_disk():
                loop = asyncio.get_running_loop()
                took = await loop.run_in_executor(self._committer, self._commit_now)
            else:
                took = self._commit_now()
        self._recent.append(took)

    def _slow_disk(self) -> bool:
        recent = self._recent
        return len(recent) > 0 and statistics.median(recent) > SLOW_COMMIT_S

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
        except sqlite3.Error as e:
            log.error("rollback failed: %s", e)


class SQLiteTransaction:
    """A group's `BEGIN IMMEDIATE ... COMMIT` on the owned file."""

    foreign: Sequence[Event] = ()  # the flock makes this daemon the file's only writer

    def __init__(self, backend: SQLiteBackend, synced: bool) -> None:
        self._backend = backend
        self._synced = synced
        self._conn = backend._conn
        self._changes = 0
        self._locked_at = time.perf_counter()  # BEGIN IMMEDIATE took the file's write lock
        self.locked_s = 0.0

    async def applied_requests(self, request_ids: Sequence[str]) -> dict[str, tuple[str, Answer]]:
        found: dict[str, tuple[str, Answer]] = {}
        with _faults():
            for chunk in _chunks(request_ids):
                marks = ", ".join("?" * len(chunk))
                for request_id, fingerprint, worker in self._conn.execute(
                    f"SELECT request_id, fingerprint, worker FROM requests"
                    f" WHERE request_id IN ({marks})",
                    chunk,
                ):
                    found[request_id] = (fingerprint, answer_from_json(worker))
        return found

    async def stored_heartbeats(self, task_ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        with _faults():
            for chunk in _chunks(task_ids):
                marks = ", ".join("?" * len(chunk))
                found.update(
                    self._conn.execute(
                        f"SELECT task_id, ts_ms FROM heartbeats WHERE task_id IN ({marks})",
                        chunk,
                    )
                )
        return found

    async def write(self, rows: Sequence[Row], upkeep: Sequence[Upkeep]) -> list[int]:
        self._changes += len(rows) + len(upkeep)
        with _faults():
            if rows:
                self._append(rows)
            return [self._upkeep(job) for job in upkeep]

    async def commit(self, head: int) -> None:
        await self._backend._commit(self._changes, self._synced)
        self.locked_s = time.perf_counter() - self._locked_at

    async def rollback(self) -> None:
        self._backend._rollback()

    def _append(self, rows: Sequence[Row]) -> None:
        gone, kept = stored_workers(rows)
        for table in ("workers", "heartbeats") if gone else ():
            self._conn.executemany(
                f"DELETE FROM {table} WHERE task_id = ?", [(task_id,) for task_id in gone]
            )
        self._insert(
            "INSERT OR REPLACE INTO workers", WORKER_COLUMNS, [worker_row(w) for w in kept]
        )
        self._insert("INSERT INTO events", EVENT_COLUMNS, [event_row(r.event) for r in rows])
        self._insert("INSERT INTO requests", REQUEST_COLUMNS, request_rows(rows))

    def _insert(self, into: str, columns: str, rows: Sequence[tuple[Any, ...]]) -> None:
        for chunk in _chunks(rows):
            one = "(" + ", ".join("?" * len(chunk[0])) + ")"
            self._conn.execute(
                f"{into} ({columns}) VALUES {', '.join([one] * len(chunk))}",
                [value for row in chunk for value in row],
            )

    def _upkeep(self, job: Upkeep) -> int:
        if isinstance(job, SaveHeartbeats):
            return self._conn.executemany(
                "INSERT INTO heartbeats (task_id, ts_ms, activity) VALUES (?, ?, ?)"
                " ON CONFLICT (task_id) DO UPDATE SET ts_ms = excluded.ts_ms,"
                " activity = excluded.activity",
                job.beats,
            ).rowcount
        if isinstance(job, DeleteEventsBelow):
            return self._conn.execute(
                "DELETE FROM events WHERE revision IN"
                " (SELECT revision FROM events WHERE revision < ? ORDER BY revision LIMIT ?)",
                (job.revision, job.limit),
            ).rowcount
        return self._conn.execute(
            "DELETE FROM requests WHERE created_at_ms < ?", (job.before_ms,)
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
                f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY revision LIMIT ?",
                (*params, limit),
            )
            return [event_from_row(row) for row in rows]
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
