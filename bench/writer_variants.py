"""The daemon with another write path, for `bench/write_path.py` to measure side by side.

    python bench/writer_variants.py VARIANT [serve flags...]

Variants (the daemon is otherwise the real one, on a real file):
- `adaptive`: as shipped. Statements inline on the event loop; the COMMIT too for a group of
  one change on a fast disk, else on a thread (see SLOW_COMMIT_S in server/storage/sqlite.py).
- `inline`: every COMMIT inline, however slow the disk (the loop waits for each fsync).
- `thread`: every COMMIT on a thread (two GIL hand-offs per group).
- `process`: the file's writer in a process of its own, fed each whole group over a pipe
  (no GIL shared; one round trip per group, pickling both ways).

None of these but `adaptive` ships: they exist to be measured against it.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import pickle
import sqlite3
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from workerstate.server import main
from workerstate.server.domain import Worker
from workerstate.server.storage import sqlite
from workerstate.server.storage.base import BackendFault, Row, Upkeep


class _Conn:
    """Just enough of a backend for SQLiteTransaction's statements to run on `_conn`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn


def _child(path: str, pipe: Connection) -> None:
    """The writer process: one connection, a group per message, an answer after COMMIT."""
    conn = sqlite._connect(Path(path))
    conn.execute("PRAGMA synchronous = FULL")
    statements = sqlite.SQLiteTransaction(_Conn(conn))  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()  # for the one async method, on the rare retried request
    delay_s = int(os.environ.get(sqlite.COMMIT_DELAY_ENV, "0") or 0) / 1000
    while True:
        kind, payload = pickle.loads(pipe.recv_bytes())
        try:
            conn.execute("BEGIN IMMEDIATE")
            if kind == "requests":
                answer: Any = loop.run_until_complete(statements.applied_requests(payload))
                conn.execute("ROLLBACK")
            else:
                rows, upkeep = payload
                if rows:
                    statements._append(rows)
                answer = [statements._upkeep(job) for job in upkeep]
                time.sleep(delay_s)
                conn.execute("COMMIT")
        except Exception as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            answer = BackendFault(str(e))
        pipe.send_bytes(pickle.dumps(answer))


class ProcessTransaction:
    foreign: Sequence[Any] = ()

    def __init__(self, backend: ProcessBackend) -> None:
        self._backend = backend
        self._rows: Sequence[Row] = ()
        self._upkeep: Sequence[Upkeep] = ()

    async def applied_requests(self, request_ids: Sequence[str]) -> dict[str, tuple[str, Worker]]:
        answer: dict[str, tuple[str, Worker]] = await self._backend.call("requests", request_ids)
        return answer

    async def write(self, rows: Sequence[Row], upkeep: Sequence[Upkeep]) -> list[int]:
        # Sent with the commit: one round trip per group. The counts are not known before,
        # which only an upkeep job's caller would notice.
        self._rows, self._upkeep = rows, upkeep
        return [0] * len(upkeep)

    async def commit(self, head: int) -> None:
        await self._backend.call("commit", (list(self._rows), list(self._upkeep)))

    async def rollback(self) -> None:
        return


class ProcessBackend(sqlite.SQLiteBackend):
    """Loads and reads as the SQLite backend does; writes through the child process."""

    def start_child(self) -> None:
        self._pipe, child = mp.Pipe()
        self._child = mp.get_context("spawn").Process(
            target=_child, args=(str(self.path), child), daemon=True
        )
        self._child.start()

    async def call(self, kind: str, payload: object) -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()
        fd = self._pipe.fileno()
        loop.add_reader(fd, lambda: done.done() or done.set_result(self._pipe.recv_bytes()))
        try:
            self._pipe.send_bytes(pickle.dumps((kind, payload)))
            answer = pickle.loads(await done)
        finally:
            loop.remove_reader(fd)
        if isinstance(answer, BackendFault):
            raise answer
        return answer

    async def begin(self, known_head: int) -> ProcessTransaction:  # type: ignore[override]
        return ProcessTransaction(self)


def _set_variant(name: str) -> None:
    backend = sqlite.SQLiteBackend
    if name == "inline":
        commit = backend._commit
        backend._commit = lambda self, changes: commit(self, 1)  # type: ignore[method-assign]
        backend._slow_disk = lambda self: False  # type: ignore[method-assign]
    elif name == "thread":
        backend._slow_disk = lambda self: True  # type: ignore[method-assign]
    elif name == "process":
        from workerstate.server import storage

        async def open_process(location: str) -> ProcessBackend:
            backend = ProcessBackend.open(Path(location))
            backend.start_child()
            return backend

        storage.open_backend = open_process  # type: ignore[assignment]
        import workerstate.server.daemon as daemon

        daemon.open_backend = open_process  # type: ignore[assignment]
    elif name != "adaptive":
        sys.exit(f"unknown variant {name!r}: adaptive, inline, thread or process")


if __name__ == "__main__":
    _set_variant(sys.argv[1])
    sys.exit(main.serve_main(sys.argv[2:]))
