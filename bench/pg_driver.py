"""Choose the PostgreSQL driver by measurement: asyncpg against psycopg 3 (async).

    python bench/pg_driver.py [--seconds 3] [--notifies 500]

Starts a throwaway cluster (the test suite's, so fsync stays on), and for each driver, on one
asyncio loop as in the daemon, measures:

- commits/s of the backend's group commit: BEGIN; SELECT head ... FOR UPDATE; a multi-row INSERT
  of 1 or 16 events; UPDATE the head; pg_notify(new head); COMMIT. With 1 connection, and with 2
  contending for the one counter row, as two daemons would;
- the latency from a NOTIFY committed on one connection to the listener on another seeing it;
- the CPU this process spends per commit (process time; the server's own CPU is not counted),
  which is what the daemon pays on the loop it shares with gRPC.

Both drivers run the same statements; the events go in through unnest() of arrays, so one
prepared statement serves any group size. The table is printed as markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from postgres import PostgresServer, find_bindir

SCHEMA = """
CREATE TABLE counter (id int PRIMARY KEY, head bigint NOT NULL);
INSERT INTO counter VALUES (1, 0);
CREATE TABLE events (revision bigint PRIMARY KEY, worker text NOT NULL, body bytea NOT NULL);
"""
SELECT_HEAD = "SELECT head FROM counter WHERE id = 1 FOR UPDATE"
INSERT = (
    "INSERT INTO events (revision, worker, body) "
    "SELECT * FROM unnest({0}::bigint[], {1}::text[], {2}::bytea[])"
)
UPDATE_HEAD = "UPDATE counter SET head = {0} WHERE id = 1"
NOTIFY = "SELECT pg_notify('workerstate', {0})"
BODY = b"x" * 200  # about one serialized event
CHANNEL = "workerstate"

# One group commit on an open connection, given the group's size.
Commit = Callable[[int], Awaitable[None]]


@dataclass
class Row:
    driver: str
    measure: str
    value: str


def rows_for(head: int, size: int) -> tuple[list[int], list[str], list[bytes]]:
    revisions = list(range(head + 1, head + size + 1))
    return revisions, [f"w-{r % 1000}" for r in revisions], [BODY] * size


class Asyncpg:
    name = f"asyncpg {asyncpg.__version__}"

    def __init__(self, url: str) -> None:
        self.url = url
        self.conns: list[asyncpg.Connection] = []

    async def connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.url)
        self.conns.append(conn)
        return conn

    async def committer(self) -> Commit:
        conn = await self.connect()
        insert = INSERT.format("$1", "$2", "$3")
        update, notify = UPDATE_HEAD.format("$1"), NOTIFY.format("$1")

        async def commit(size: int) -> None:
            async with conn.transaction():
                head = await conn.fetchval(SELECT_HEAD)
                await conn.execute(insert, *rows_for(head, size))
                await conn.execute(update, head + size)
                await conn.execute(notify, str(head + size))

        return commit

    async def listen(self, on_payload: Callable[[str], None]) -> None:
        conn = await self.connect()
        await conn.add_listener(CHANNEL, lambda _c, _pid, _ch, payload: on_payload(payload))

    async def notifier(self) -> Callable[[str], Awaitable[None]]:
        conn = await self.connect()

        async def notify(payload: str) -> None:
            await conn.execute(NOTIFY.format("$1"), payload)

        return notify

    async def close(self) -> None:
        for conn in self.conns:
            await conn.close()


class Psycopg:
    name = f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__})"

    def __init__(self, url: str) -> None:
        self.url = url
        self.conns: list[psycopg.AsyncConnection[Any]] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self, autocommit: bool = False) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=autocommit)
        self.conns.append(conn)
        return conn

    async def committer(self) -> Commit:
        conn = await self.connect()
        insert = INSERT.format("%s", "%s", "%s")
        update, notify = UPDATE_HEAD.format("%s"), NOTIFY.format("%s")

        async def commit(size: int) -> None:
            async with conn.transaction():
                row = await (await conn.execute(SELECT_HEAD)).fetchone()
                assert row is not None
                head = row[0]
                await conn.execute(insert, rows_for(head, size))
                await conn.execute(update, (head + size,))
                await conn.execute(notify, (str(head + size),))

        return commit

    async def listen(self, on_payload: Callable[[str], None]) -> None:
        conn = await self.connect(autocommit=True)
        await conn.execute(f"LISTEN {CHANNEL}")

        async def pump() -> None:
            async for notify in conn.notifies():
                on_payload(notify.payload)

        self.tasks.append(asyncio.create_task(pump()))

    async def notifier(self) -> Callable[[str], Awaitable[None]]:
        conn = await self.connect(autocommit=True)

        async def notify(payload: str) -> None:
            await conn.execute(NOTIFY.format("%s"), (payload,))

        return notify

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for conn in self.conns:
            await conn.close()


async def commits(driver: Asyncpg | Psycopg, size: int, conns: int, seconds: float) -> list[Row]:
    """Commit groups of `size` back to back on `conns` connections for `seconds`."""
    committers = [await driver.committer() for _ in range(conns)]
    for commit in committers:  # warm up: connections, prepared statements, caches
        for _ in range(20):
            await commit(size)
    done = 0
    deadline = time.monotonic() + seconds

    async def loop(commit: Commit) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await commit(size)
            done += 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop(c) for c in committers))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    label = f"{size} row{'s' if size > 1 else ''}, {conns} conn{'s' if conns > 1 else ''}"
    return [
        Row(driver.name, f"commits/s ({label})", f"{done / wall:.0f}"),
        Row(driver.name, f"CPU us/commit ({label})", f"{cpu / done * 1e6:.0f}"),
    ]


async def notify_latency(driver: Asyncpg | Psycopg, count: int) -> list[Row]:
    """NOTIFY on one connection, timed until the listener on another has the payload."""
    latencies: list[float] = []
    arrived = asyncio.Event()

    def on_payload(payload: str) -> None:
        latencies.append(time.perf_counter() - float(payload))
        arrived.set()

    await driver.listen(on_payload)
    notify = await driver.notifier()
    for _ in range(count):
        arrived.clear()
        await notify(repr(time.perf_counter()))
        await asyncio.wait_for(arrived.wait(), 5)
        await asyncio.sleep(0.002)  # light load: one at a time, as between idle daemons
    cuts = statistics.quantiles(latencies, n=100)
    return [
        Row(driver.name, "NOTIFY -> listener p50 ms", f"{cuts[49] * 1e3:.2f}"),
        Row(driver.name, "NOTIFY -> listener p99 ms", f"{cuts[98] * 1e3:.2f}"),
    ]


async def run(server: PostgresServer, seconds: float, notifies: int) -> list[Row]:
    results: list[Row] = []
    for kind in (Asyncpg, Psycopg):
        db = server.create_database()
        driver = kind(db.url)
        setup = await asyncpg.connect(db.url)
        await setup.execute(SCHEMA)
        await setup.close()
        try:
            for size in (1, 16):
                for conns in (1, 2):
                    results += await commits(driver, size, conns, seconds)
            results += await notify_latency(driver, notifies)
        finally:
            await driver.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per commit measurement")
    parser.add_argument("--notifies", type=int, default=500, help="notifications timed")
    args = parser.parse_args()
    with PostgresServer(find_bindir()) as server:
        results = asyncio.run(run(server, args.seconds, args.notifies))
    drivers = list(dict.fromkeys(r.driver for r in results))
    measures = list(dict.fromkeys(r.measure for r in results))
    value = {(r.driver, r.measure): r.value for r in results}
    print("| measure | " + " | ".join(drivers) + " |")
    print("|---|" + "---|" * len(drivers))
    for measure in measures:
        print(f"| {measure} | " + " | ".join(value[(d, measure)] for d in drivers) + " |")


if __name__ == "__main__":
    main()
