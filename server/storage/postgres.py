"""The PostgreSQL backend: any number of daemons serve one database, through asyncpg.

Revisions are handed out under one row lock: a group's transaction begins with
`SELECT ... FROM meta FOR UPDATE`, which serialises commits across daemons once per group.
Under that lock it reads the events other daemons committed after this daemon's head (the
seam's `foreign`), and at its end it moves the head and NOTIFYs every daemon of it. So
revisions are gap-free and in commit order (a rolled-back group never moved the head), and
nothing polls: idle daemons LISTEN and read what the notice announces.

Everything lives in the `workerstate` schema, so a database that holds other tables is used
only through workerstate's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import asyncpg

from ..domain import Event, RevisionCompacted, StorageUnavailable
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

log = logging.getLogger(__name__)

SCHEMA = "workerstate"
CHANNEL = "workerstate"
# Held by the daemon that compacts (pg_advisory_lock key: "wSt1" again), so one does at a time.
COMPACTOR_LOCK = 0x77537431
# MIGRATIONS[n] takes the schema from version n to n + 1.
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE {SCHEMA}.meta (
        id integer PRIMARY KEY CHECK (id = 1),
        head bigint NOT NULL,               -- newest revision; locked by every commit
        beats bigint NOT NULL,              -- bumped by each heartbeat flush
        compact_revision bigint NOT NULL    -- oldest revision still stored (or to be)
    );
    INSERT INTO {SCHEMA}.meta VALUES (1, 0, 0, 1);
    CREATE TABLE {SCHEMA}.workers (
        task_id text PRIMARY KEY,
        state text NOT NULL,
        branch text NOT NULL,
        worktree text NOT NULL,
        description text,
        created_at_ms bigint NOT NULL,
        state_changed_at_ms bigint NOT NULL,
        revision bigint NOT NULL
    );
    CREATE TABLE {SCHEMA}.events (
        revision bigint PRIMARY KEY,
        type text NOT NULL,
        task_id text NOT NULL,
        state text NOT NULL,
        from_state text,
        reason text NOT NULL,
        time_ms bigint NOT NULL,
        branch text NOT NULL,
        worktree text NOT NULL,
        description text,
        created_at_ms bigint NOT NULL
    );
    CREATE INDEX events_by_task ON {SCHEMA}.events (task_id, revision);
    CREATE INDEX events_by_time ON {SCHEMA}.events (time_ms);
    CREATE TABLE {SCHEMA}.heartbeats (
        task_id text PRIMARY KEY,
        ts_ms bigint NOT NULL,
        activity text NOT NULL,
        version bigint NOT NULL             -- meta.beats of the flush that wrote it
    );
    CREATE INDEX heartbeats_by_version ON {SCHEMA}.heartbeats (version);
    CREATE TABLE {SCHEMA}.requests (
        request_id text PRIMARY KEY,
        fingerprint text NOT NULL,
        worker text NOT NULL,
        created_at_ms bigint NOT NULL
    );
    CREATE INDEX requests_by_age ON {SCHEMA}.requests (created_at_ms);
    """,
    # As SQLite's second migration: labels, actors, and an event's state_changed_at.
    f"""
    ALTER TABLE {SCHEMA}.workers ADD COLUMN labels text NOT NULL DEFAULT '';
    ALTER TABLE {SCHEMA}.events ADD COLUMN labels text NOT NULL DEFAULT '';
    ALTER TABLE {SCHEMA}.events ADD COLUMN from_labels text;
    ALTER TABLE {SCHEMA}.events ADD COLUMN actor text NOT NULL DEFAULT '';
    ALTER TABLE {SCHEMA}.events ADD COLUMN state_changed_at_ms bigint;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# A start against an unreachable server retries this long, then the daemon exits.
CONNECT_FOR_S = 15.0
CONNECT_TIMEOUT_S = 5.0
# Any statement that takes longer fails (and its group with it) rather than hang a writer.
COMMAND_TIMEOUT_S = 5.0
# The listening connection is checked this often: a lost database shows as NOT_SERVING
# within PING_S + PING_TIMEOUT_S, even when the network drops without a word.
PING_S = 1.0
PING_TIMEOUT_S = 2.0
RECONNECT_S = 0.5

# The driver's and the network's failures: what makes a group fail, not the daemon.
FAULTS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


def redact(url: str) -> str:
    """The URL without its password (in the authority or as `password=`), for logs."""
    parts = urlsplit(url)
    netloc = re.sub(r":[^@:]*@", ":***@", parts.netloc) if "@" in parts.netloc else parts.netloc
    query = "&".join(
        f"{k}={'***' if k == 'password' else v}" for k, v in parse_qsl(parts.query, True)
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _hosts(url: str) -> str:
    """Where the URL points, for the one line a failed start prints."""
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    query = dict(parse_qsl(parts.query))
    return query.get("host", hosts) or "the local socket"


@contextlib.contextmanager
def _faults() -> Iterator[None]:
    try:
        yield
    except FAULTS as e:
        raise BackendFault(_describe(e)) from None


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


# A group's rows: workers upserted, events appended, request ids recorded (data-modifying
# CTEs, so one round trip; the three tables are disjoint, so the order does not matter).
WRITE_ROWS = (
    f"WITH workers AS (INSERT INTO {SCHEMA}.workers ({WORKER_COLUMNS})"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
    " $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[])"
    " ON CONFLICT (task_id) DO UPDATE SET state = excluded.state,"
    " branch = excluded.branch, worktree = excluded.worktree,"
    " description = excluded.description,"
    " created_at_ms = excluded.created_at_ms,"
    " state_changed_at_ms = excluded.state_changed_at_ms,"
    " revision = excluded.revision, labels = excluded.labels),"
    f" events AS (INSERT INTO {SCHEMA}.events ({EVENT_COLUMNS})"
    " SELECT * FROM unnest($10::bigint[], $11::text[], $12::text[], $13::text[],"
    " $14::text[], $15::text[], $16::bigint[], $17::text[], $18::text[],"
    " $19::text[], $20::bigint[], $21::text[], $22::text[], $23::text[],"
    " $24::bigint[]))"
    f" INSERT INTO {SCHEMA}.requests ({REQUEST_COLUMNS})"
    " SELECT * FROM unnest($25::text[], $26::text[], $27::text[], $28::bigint[])"
)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as one list per column, for `unnest`: one prepared statement for any group size."""
    return [[row[i] for row in rows] for i in range(width)] if rows else [[] for _ in range(width)]


def _payload(notice: Notice) -> str:
    """A notice as NOTIFY carries it (well under the 8,000-byte limit); `_notice` reads it."""
    return f"{notice.head} {notice.beats} {notice.compact_revision}"


def _notice(payload: str) -> Notice:
    head, beats, compact = (int(x) for x in payload.split())
    return Notice(head, beats, compact)


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S)


async def _migrate(conn: asyncpg.Connection, name: str) -> None:
    """Create or migrate the schema; daemons starting together take turns on a lock."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", COMPACTOR_LOCK + 1)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (version integer NOT NULL)"
        )
        version = await conn.fetchval(f"SELECT max(version) FROM {SCHEMA}.schema_version")
        version = version or 0
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{name} has workerstate schema version {version}, newer than this daemon's"
                f" {SCHEMA_VERSION}; upgrade workerstate"
            )
        for step in range(version, SCHEMA_VERSION):
            await conn.execute(MIGRATIONS[step])
            await conn.execute(f"INSERT INTO {SCHEMA}.schema_version VALUES ($1)", step + 1)
            log.info("migrated %s to workerstate schema version %d", name, step + 1)


class PostgresBackend:
    """A database shared with any number of daemons."""

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self._url = url
        self._pool = pool
        self.name = redact(url)
        self.compactor = False  # holds COMPACTOR_LOCK on its listening connection

    @classmethod
    async def open(cls, url: str) -> PostgresBackend:
        """Connect (retrying for a while at start), create or migrate the schema."""
        name = redact(url)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + CONNECT_FOR_S
        while True:
            try:
                conn = await _connect(url)
                break
            except (
                asyncpg.InvalidPasswordError,
                asyncpg.InvalidAuthorizationSpecificationError,
            ) as e:
                raise StorageError(f"PostgreSQL at {_hosts(url)} refused us: {e}") from None
            except asyncpg.InvalidCatalogNameError as e:
                raise StorageError(f"PostgreSQL at {_hosts(url)}: {e}; create it first") from None
            except (*FAULTS, ValueError) as e:
                if isinstance(e, ValueError) or loop.time() >= give_up:
                    raise StorageError(
                        f"cannot reach PostgreSQL at {_hosts(url)}: {_describe(e)}"
                    ) from None
                log.warning("PostgreSQL at %s not reachable yet (%s); retrying", name, e)
                await asyncio.sleep(1.0)
        try:
            await _migrate(conn, name)
        except FAULTS as e:
            raise StorageError(f"cannot set up {name}: {_describe(e)}") from None
        finally:
            await conn.close()
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=8,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
            )
        except FAULTS as e:
            raise StorageError(
                f"cannot reach PostgreSQL at {_hosts(url)}: {_describe(e)}"
            ) from None
        return cls(url, pool)

    async def close(self) -> None:
        with contextlib.suppress(*FAULTS):
            await asyncio.wait_for(self._pool.close(), COMMAND_TIMEOUT_S)
        self._pool.terminate()

    async def load(self) -> Loaded:
        with _faults():
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                meta = await conn.fetchrow(
                    f"SELECT head, beats, compact_revision FROM {SCHEMA}.meta WHERE id = 1"
                )
                workers = await conn.fetch(
                    f"SELECT {WORKER_COLUMNS} FROM {SCHEMA}.workers ORDER BY revision"
                )
                beats = await conn.fetch(
                    f"SELECT task_id, ts_ms, activity FROM {SCHEMA}.heartbeats"
                )
        return Loaded(
            head=meta["head"],
            compact_revision=meta["compact_revision"],
            workers=[worker_from_row(row) for row in workers],
            heartbeats={row[0]: (row[1], row[2]) for row in beats},
            position=Notice(meta["head"], meta["beats"], meta["compact_revision"]),
        )

    async def begin(self, known_head: int, synced: bool = True) -> PostgresTransaction:
        with _faults():
            conn = await self._pool.acquire()
            try:
                transaction = conn.transaction()
                await transaction.start()
                if not synced:
                    await conn.execute("SET LOCAL synchronous_commit = off")
                meta = await conn.fetchrow(
                    f"SELECT head, beats, compact_revision FROM {SCHEMA}.meta"
                    " WHERE id = 1 FOR UPDATE"
                )
                locked_at = time.perf_counter()
                foreign: list[Event] = []
                if meta["head"] > known_head:
                    rows = await conn.fetch(
                        f"SELECT {EVENT_COLUMNS} FROM {SCHEMA}.events"
                        " WHERE revision > $1 ORDER BY revision",
                        known_head,
                    )
                    foreign = [event_from_row(row) for row in rows]
                    if not foreign or foreign[0].revision != known_head + 1:
                        raise BehindCompaction(known_head, meta["compact_revision"])
            except BaseException:
                await self._pool.release(conn)
                raise
        return PostgresTransaction(self._pool, conn, transaction, foreign, meta, locked_at)

    async def events(self, after_revision: int, limit: int, task_id: str, upto: int) -> list[Event]:
        where = "revision > $1 AND revision <= $2" + (" AND task_id = $4" if task_id else "")
        params: tuple[Any, ...] = (after_revision, upto, limit) + ((task_id,) if task_id else ())
        try:
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                compact = await conn.fetchval(f"SELECT compact_revision FROM {SCHEMA}.meta")
                rows = await conn.fetch(
                    f"SELECT {EVENT_COLUMNS} FROM {SCHEMA}.events WHERE {where}"
                    " ORDER BY revision LIMIT $3",
                    *params,
                )
        except FAULTS as e:
            raise StorageUnavailable(f"the event log could not be read ({_describe(e)})") from None
        # Another daemon may have compacted what this one has not yet heard of: a gap would
        # be silent, so it is refused here, in the same snapshot as the read.
        if after_revision + 1 < compact:
            raise RevisionCompacted(after_revision + 1, compact)
        return [event_from_row(row) for row in rows]

    async def compaction_cutoff(self, head: int, keep_events: int, before_ms: int) -> int:
        if not self.compactor:
            return 0  # another daemon compacts; 0 keeps everything
        try:
            async with self._pool.acquire() as conn:
                first = await conn.fetchval(
                    f"SELECT min(revision) FROM {SCHEMA}.events WHERE time_ms >= $1", before_ms
                )
        except FAULTS as e:
            raise StorageUnavailable(f"the event log could not be read ({_describe(e)})") from None
        by_age = head + 1 if first is None else int(first)
        return min(head - keep_events + 1, by_age)

    async def beats_since(self, version: int) -> list[tuple[str, int, str]]:
        """Beats that flushes after `version` wrote (by any daemon)."""
        try:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    f"SELECT task_id, ts_ms, activity FROM {SCHEMA}.heartbeats WHERE version > $1",
                    version,
                )
        except FAULTS as e:
            raise StorageUnavailable(f"heartbeats could not be read ({_describe(e)})") from None
        return [(row[0], row[1], row[2]) for row in rows]

    async def follow(
        self, notices: Callable[[Notice], None], healthy: Callable[[bool], None]
    ) -> None:
        """LISTEN for other daemons' commits, forever; reconnect when the database goes.

        On every (re)connection the current position is announced too, since whatever was
        notified while this daemon was not listening is gone. The check that tells a lost
        database doubles as the election of the compactor: whoever holds the advisory lock.
        """
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await _connect(self._url)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _, lost=lost: lost.set())
                await conn.add_listener(
                    CHANNEL, lambda _c, _pid, _channel, payload: notices(_notice(payload))
                )
                meta = await conn.fetchrow(
                    f"SELECT head, beats, compact_revision FROM {SCHEMA}.meta WHERE id = 1"
                )
                notices(Notice(meta["head"], meta["beats"], meta["compact_revision"]))
                healthy(True)
                log.info("following %s for other daemons' commits", self.name)
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), PING_S)
                    if not lost.is_set():
                        await self._check(conn)
                raise ConnectionError("the connection was closed")
            except FAULTS as e:
                log.warning("lost %s (%s); reconnecting", self.name, _describe(e))
            finally:
                self.compactor = False
                healthy(False)
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(RECONNECT_S)

    async def _check(self, conn: asyncpg.Connection) -> None:
        if self.compactor:
            await conn.fetchval("SELECT 1", timeout=PING_TIMEOUT_S)
            return
        self.compactor = bool(
            await conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", COMPACTOR_LOCK, timeout=PING_TIMEOUT_S
            )
        )
        if self.compactor:
            log.info("this daemon compacts %s", self.name)


class BehindCompaction(BackendFault):
    """Events this daemon has not seen were compacted away: only a restart can catch up."""

    def __init__(self, head: int, compact_revision: int) -> None:
        super().__init__(
            f"this daemon is at revision {head} but the database keeps revisions from"
            f" {compact_revision} on; restart it to load the current state"
        )


class PostgresTransaction:
    """A group's transaction, holding the meta row's lock from `begin` to its end."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        conn: asyncpg.Connection,
        transaction: Any,
        foreign: list[Event],
        meta: Any,
        locked_at: float,
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._transaction = transaction
        self.foreign = foreign
        self._released = False
        self._locked_at = locked_at  # perf_counter() when the meta row's lock was granted
        self.locked_s = 0.0
        # Where the database stands as this group changes it: what its commit announces.
        self._position = Notice(meta["head"], meta["beats"], meta["compact_revision"])

    async def applied_requests(self, request_ids: Sequence[str]) -> dict[str, tuple[str, Answer]]:
        with _faults():
            rows = await self._conn.fetch(
                f"SELECT request_id, fingerprint, worker FROM {SCHEMA}.requests"
                " WHERE request_id = ANY($1::text[])",
                list(request_ids),
            )
        return {row[0]: (row[1], answer_from_json(row[2])) for row in rows}

    async def stored_heartbeats(self, task_ids: Sequence[str]) -> dict[str, int]:
        with _faults():
            rows = await self._conn.fetch(
                f"SELECT task_id, ts_ms FROM {SCHEMA}.heartbeats WHERE task_id = ANY($1::text[])",
                list(task_ids),
            )
        return {row[0]: row[1] for row in rows}

    async def write(self, rows: Sequence[Row], upkeep: Sequence[Upkeep]) -> list[int]:
        conn = self._conn
        with _faults():
            if rows:
                gone, kept = stored_workers(rows)
                if gone:
                    for table in ("workers", "heartbeats"):
                        await conn.execute(
                            f"DELETE FROM {SCHEMA}.{table} WHERE task_id = ANY($1::text[])", gone
                        )
                # One statement, one round trip under the revision lock: the lock is the
                # cluster's serial section, and each round trip held it ~0.1 ms longer.
                await conn.execute(
                    WRITE_ROWS,
                    *_columns([worker_row(w) for w in kept], 9),
                    *_columns([event_row(r.event) for r in rows], 15),
                    *_columns(request_rows(rows), 4),
                )
            return [await self._upkeep(job) for job in upkeep]

    async def _upkeep(self, job: Upkeep) -> int:
        conn = self._conn
        if isinstance(job, SaveHeartbeats):
            self._position = replace(self._position, beats=self._position.beats + 1)
            await conn.execute(
                f"WITH saved AS (INSERT INTO {SCHEMA}.heartbeats (task_id, ts_ms, activity,"
                " version)"
                " SELECT t, ms, a, $4 FROM unnest($1::text[], $2::bigint[], $3::text[])"
                " AS b(t, ms, a)"
                " ON CONFLICT (task_id) DO UPDATE SET version = excluded.version,"
                " activity = CASE WHEN excluded.ts_ms >= heartbeats.ts_ms"
                " THEN excluded.activity ELSE heartbeats.activity END,"
                " ts_ms = greatest(heartbeats.ts_ms, excluded.ts_ms))"
                f" UPDATE {SCHEMA}.meta SET beats = $4 WHERE id = 1",
                *_columns(job.beats, 3),
                self._position.beats,
            )
            return len(job.beats)
        if isinstance(job, DeleteEventsBelow):
            if job.revision > self._position.compact_revision:
                self._position = replace(self._position, compact_revision=job.revision)
                await conn.execute(
                    f"UPDATE {SCHEMA}.meta SET compact_revision = $1 WHERE id = 1", job.revision
                )
            status = await conn.execute(
                f"DELETE FROM {SCHEMA}.events WHERE revision IN (SELECT revision FROM"
                f" {SCHEMA}.events WHERE revision < $1 ORDER BY revision LIMIT $2)",
                job.revision,
                job.limit,
            )
            return int(status.split()[-1])
        status = await conn.execute(
            f"DELETE FROM {SCHEMA}.requests WHERE created_at_ms < $1", job.before_ms
        )
        return int(status.split()[-1])

    async def commit(self, head: int) -> None:
        try:
            with _faults():
                # The head's move (none for an upkeep-only group) rides with the NOTIFY.
                self._position = replace(self._position, head=head)
                await self._conn.execute(
                    f"WITH moved AS (UPDATE {SCHEMA}.meta SET head = $1"
                    " WHERE id = 1 AND head <> $1) SELECT pg_notify($2, $3)",
                    head,
                    CHANNEL,
                    _payload(self._position),
                )
                await self._transaction.commit()
                self.locked_s = time.perf_counter() - self._locked_at
        finally:
            await self._release()

    async def rollback(self) -> None:
        with contextlib.suppress(*FAULTS):
            await self._transaction.rollback()
        await self._release()

    async def _release(self) -> None:
        if not self._released:
            self._released = True
            with contextlib.suppress(*FAULTS):
                await self._pool.release(self._conn)
