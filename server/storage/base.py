"""The storage seam: what the daemon asks of a database, whichever engine holds it.

The domain side of writing (compare-and-set against the workers in memory, request ids,
grouping, undo) lives in the writer and is written once. A backend only opens and migrates
its database, loads it, runs one group's transaction, and reads the log. Everything that
crosses the seam is plain data, so a backend may run its statements inline, on a thread, in
another process or over a network connection.

A transaction begins by taking the database's write lock, the one that hands out the next
revisions. Under that lock it reports what other daemons committed since this one last looked
(`Transaction.foreign`): on a database several daemons share, the writer applies those events
to memory before it checks its own compare-and-sets. On a file one daemon owns there are
never any.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..domain import Event, Worker


class StorageError(Exception):
    """The database cannot be served at all (locked, foreign, too new, unreachable); the
    daemon refuses to start with this message."""


class BackendFault(Exception):
    """A statement or commit failed; the transaction is rolled back, nothing was written."""


@dataclass(frozen=True, slots=True)
class Notice:
    """Where a shared database stands: what a commit announces to every daemon."""

    head: int  # newest revision
    beats: int  # count of heartbeat flushes
    compact_revision: int  # oldest revision kept


@dataclass(frozen=True, slots=True)
class Loaded:
    """One consistent picture of the database, read at start."""

    head: int  # newest revision, 0 for an empty log
    compact_revision: int  # oldest stored revision (head + 1 when none is stored)
    workers: list[Worker]  # oldest change first
    heartbeats: dict[str, tuple[int, str]]  # task id: last stored beat (ms, activity)
    position: Notice  # the same, as a notice: what `follow` announces later moves on from


# What a request id answers a retry with: the worker a change left, or, for an Apply batch,
# the worker each of its changes left.
Answer = Worker | tuple[Worker, ...]


@dataclass(frozen=True, slots=True)
class Row:
    """One change to store: its event, and the request id (or "") with its fingerprint.

    A batch's request id rides on its last row, with `batch` holding the whole answer."""

    event: Event
    request_id: str = ""
    fingerprint: str = ""
    batch: tuple[Worker, ...] = ()

    @property
    def answer(self) -> Answer:
        return self.batch or self.event.worker


@dataclass(frozen=True, slots=True)
class SaveHeartbeats:
    """Upsert beat times and activities: (task id, ms, activity).

    `synced=False` lets a backend commit it without waiting for the disk: a flush writes a
    fleet's beats in several commits and only its last must be synced, which syncs the
    earlier ones with it (SQLite's WAL is one file, appended in order). A crash then still
    loses at most one flush interval of beats, and never a transition: a commit that carries
    anything else is synced as always."""

    beats: tuple[tuple[str, int, str], ...]
    synced: bool = True


@dataclass(frozen=True, slots=True)
class DeleteEventsBelow:
    """Compaction: delete up to `limit` of the oldest events below `revision`."""

    revision: int
    limit: int


@dataclass(frozen=True, slots=True)
class PruneRequests:
    """Forget request ids applied before `before_ms`."""

    before_ms: int


# Upkeep jobs ride in a group's transaction like commands do, so they never race one and
# share its commit. Each answers with how many rows it touched.
Upkeep = SaveHeartbeats | DeleteEventsBelow | PruneRequests


class Transaction(Protocol):
    """One group's transaction, begun under the database's write lock."""

    @property
    def foreign(self) -> Sequence[Event]:
        """Events other daemons committed after the head this daemon knew, oldest first."""
        ...

    async def applied_requests(self, request_ids: Sequence[str]) -> dict[str, tuple[str, Answer]]:
        """The fingerprint and answer of each of `request_ids` already applied."""
        ...

    async def stored_heartbeats(self, task_ids: Sequence[str]) -> dict[str, int]:
        """The stored last beat time of each of `task_ids` that has one: under the write
        lock, the newest that any daemon has flushed."""
        ...

    async def write(self, rows: Sequence[Row], upkeep: Sequence[Upkeep]) -> list[int]:
        """Store the group's changes (each worker as its last event left it, every event,
        the request ids), then run the upkeep jobs; returns each job's count."""
        ...

    async def commit(self, head: int) -> None:
        """Make the group durable; `head` is the newest revision it holds."""
        ...

    @property
    def locked_s(self) -> float:
        """After `commit`: how long the transaction held the database's write lock, from
        `begin` taking it to the end of COMMIT. With several daemons on one database this is
        the serial section: groups from all of them hold the lock one after another."""
        ...

    async def rollback(self) -> None:
        """Undo everything since `begin`; never raises."""
        ...


class Backend(Protocol):
    """A database the daemon serves from."""

    @property
    def name(self) -> str:
        """What the logs call it: a path, or a URL without its password."""
        ...

    async def load(self) -> Loaded: ...

    async def begin(self, known_head: int, synced: bool = True) -> Transaction:
        """Take the write lock and start a group's transaction; raises BackendFault. With
        `synced=False` its commit need not wait for the disk (see SaveHeartbeats.synced)."""
        ...

    async def events(self, after_revision: int, limit: int, task_id: str, upto: int) -> list[Event]:
        """Up to `limit` stored events in (after_revision, upto], oldest first; one task's
        or all. `upto` keeps an answer consistent with the head the caller reports: the
        database may already hold a commit whose answer has not reached the read side."""
        ...

    async def compaction_cutoff(self, head: int, keep_events: int, before_ms: int) -> int:
        """The oldest revision to keep: events below it are both older than `before_ms`
        and not among the newest `keep_events`. On a shared database only one daemon
        compacts; the others get 0 (keep everything)."""
        ...

    async def follow(
        self, notices: Callable[[Notice], None], healthy: Callable[[bool], None]
    ) -> None:
        """Announce, for as long as the daemon runs, where the database stands whenever
        another daemon commits, and whether it can be reached; returns at once when no
        other daemon can write (an owned file)."""
        ...

    async def beats_since(self, flushes: int) -> list[tuple[str, int, str]]:
        """Beats written by the flushes after the first `flushes`, by any daemon."""
        ...

    async def close(self) -> None: ...
