"""The PostgreSQL fixture itself: the URL works, databases are separate, faults are real.

The backend's tests lean on these promises (an empty database each, a restart that really cuts
sessions and keeps data, a stop that really refuses connections), so they are checked here
first, with the driver the backend uses.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

# Tables anyone created: the system's own schemas aside.
TABLES = (
    "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
)


def test_the_url_connects_as_the_app_user_and_can_create_tables(pg_db):
    async def main() -> None:
        conn = await asyncpg.connect(pg_db.url)
        try:
            assert await conn.fetchval("SELECT current_user") == pg_db.server.user
            assert await conn.fetchval("SHOW fsync") == "on"
            assert await conn.fetchval(TABLES) == 0
            await conn.execute("CREATE TABLE t (k int PRIMARY KEY, v text)")
            await conn.execute("INSERT INTO t VALUES (1, 'one')")
            assert await conn.fetchval("SELECT v FROM t WHERE k = 1") == "one"
        finally:
            await conn.close()

    asyncio.run(main())
    assert pg_db.url.startswith(f"postgresql://{pg_db.server.user}:{pg_db.server.password}@")


def test_each_database_starts_empty_and_sees_no_other(pg_db, pg_server):
    other = pg_server.create_database()
    try:

        async def main() -> None:
            mine = await asyncpg.connect(pg_db.url)
            theirs = await asyncpg.connect(other.url)
            try:
                await mine.execute("CREATE TABLE only_mine (k int)")
                assert await theirs.fetchval(TABLES) == 0
            finally:
                await mine.close()
                await theirs.close()

        asyncio.run(main())
    finally:
        pg_server.drop_database(other.name)


def test_the_socket_url_and_the_password_are_both_required_and_work(pg_db):
    async def main() -> None:
        conn = await asyncpg.connect(pg_db.socket_url)
        try:
            assert await conn.fetchval("SELECT inet_server_addr()") is None  # a unix socket
        finally:
            await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(pg_db.server.url(pg_db.name, password=False))

    asyncio.run(main())


def test_committed_data_survives_a_restart_that_cuts_every_session(pg_db):
    async def before() -> asyncpg.Connection:
        conn = await asyncpg.connect(pg_db.url)
        await conn.execute("CREATE TABLE t (k int)")
        await conn.execute("INSERT INTO t VALUES (42)")
        return conn

    async def after(conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        # The cut session's end reaches the loop (the driver's termination callback), and
        # the next use of the old connection fails, as a daemon's would.
        await asyncio.wait_for(lost.wait(), 5)
        with pytest.raises((asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError)):
            await conn.fetchval("SELECT 1")
        fresh = await asyncpg.connect(pg_db.url)
        try:
            assert await fresh.fetchval("SELECT k FROM t") == 42
        finally:
            await fresh.close()

    async def main() -> None:
        conn = await before()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        pid = pg_db.server.pid()
        await asyncio.to_thread(pg_db.server.restart)
        assert pg_db.server.pid() not in (None, pid)
        await after(conn, lost)

    asyncio.run(main())


def test_a_stopped_server_refuses_connections_until_started(pg_db):
    pg_db.server.stop()
    assert not pg_db.server.running
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(asyncpg.connect(pg_db.url, timeout=5))
    pg_db.server.start()

    async def main() -> None:
        conn = await asyncpg.connect(pg_db.url)
        await conn.close()

    asyncio.run(main())


def test_a_crash_loses_no_committed_row(pg_db):
    async def write() -> None:
        conn = await asyncpg.connect(pg_db.url)
        try:
            await conn.execute("CREATE TABLE t (k int)")
            await conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
        finally:
            await conn.close()

    async def count() -> int:
        conn = await asyncpg.connect(pg_db.url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM t"))
        finally:
            await conn.close()

    asyncio.run(write())
    pg_db.server.stop("immediate")  # no shutdown checkpoint: recovery replays the WAL
    pg_db.server.start()
    assert asyncio.run(count()) == 1000
