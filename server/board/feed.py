"""One open board's live feed: a WatchState stream turned into Server-Sent Events.

A fresh page gets the layout, then every card (`reset`, whose id is the snapshot's revision),
then `changes` as they commit (id: the last revision they reach). A page that reconnects
sends that id back as `Last-Event-ID` and is sent only what it missed, from the log, plus the
current stale levels and activities (`levels`): those live in memory, not in the log, so they
cannot be replayed. Activity changes from heartbeats, which are not events, are looked for
every ACTIVITY_POLL_S on a numbered list of changes, so an idle fleet costs nothing; the
heartbeat ages the page sorts by follow every BEATS_S (`beats`), only the ones that moved.

A page may ask for the workers a label selector picks: the watch then filters, and a `changes`
event names the cards that leave (`removed`): workers deleted, and workers whose labels no
longer match.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from workerstate.v1 import workerstate_pb2 as pb

from .. import validate
from ..domain import RevisionCompacted, ShuttingDown, Worker
from ..labels import as_labels
from ..messages import EVENT_TYPE_FROM_PB, STATE_FROM_PB
from ..validate import WatchQuery
from .fleet import Card, Fleet

# How often heartbeat activities are looked for: new activity shows within about this long.
ACTIVITY_POLL_S = 0.5
# A comment line this often finds a vanished page (its socket errors) and keeps proxies from
# closing a quiet stream.
KEEPALIVE_S = 15.0
# How often a page is told which heartbeat ages moved, so "stalest first" stays true between
# events (a beat changes the order but is no event).
BEATS_S = 5.0
# How long the browser waits before reconnecting (sent as `retry`): short, since a restart
# takes about a second and the page should be live again soon after.
RETRY_MS = 500


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One Server-Sent Event; JSON never holds a raw newline, so it is one `data` line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def watch_query(selector: str, resume_after: int | None) -> WatchQuery:
    """A page's watch (from `resume_after`, None: from a fresh snapshot), checked as a
    WatchState request is: a bad selector raises InvalidArgument in the gRPC API's words."""
    return validate.watch(
        pb.WatchStateRequest(
            start_revision=0 if resume_after is None else resume_after + 1,
            send_initial_state=resume_after is None,
            liveness=True,
            label_selector=selector,
        )
    )


class Feed:
    """The events for one page: those of `query` (see `watch_query`)."""

    def __init__(self, fleet: Fleet, user: str | None, can_write: bool, query: WatchQuery) -> None:
        self._fleet = fleet
        self._user = user
        self._can_write = can_write
        self._query = query

    @staticmethod
    def resumable(fleet: Fleet, last_event_id: str | None) -> int | None:
        """The revision to resume after, if the log still holds everything since it."""
        if not last_event_id or not last_event_id.isdigit():
            return None
        revision = int(last_event_id)
        if revision > fleet.hub.head or revision < fleet.hub.compact_revision - 1:
            return None  # another file, or compacted away: start from a snapshot
        return revision

    async def events(self) -> AsyncIterator[bytes]:
        fleet = self._fleet
        layout = fleet.layout(self._user, self._can_write)
        yield f"retry: {RETRY_MS}\n\n".encode() + sse("layout", layout)
        activity_seen = fleet.heartbeats.activity_seq
        responses = fleet.watch(self._query)
        pending = asyncio.ensure_future(anext(responses))
        snapshot: list[Card] = []
        last_sent = beats_sent = time.monotonic()
        aged: dict[str, int] = {}  # what the page was last told of each worker's silence
        try:
            if not self._query.send_initial_state:
                # Let the watch take its liveness cursor first: a crossing after that reaches
                # the page through the watch, one before it is in these levels.
                await asyncio.sleep(0)
                yield sse("levels", self._levels())
            while True:
                done, _ = await asyncio.wait({pending}, timeout=ACTIVITY_POLL_S)
                out: list[bytes] = []
                if done:
                    response = pending.result()
                    pending = asyncio.ensure_future(anext(responses))
                    if response.HasField("synced"):
                        await fleet.reasons.fill(snapshot, response.synced.revision)
                        out.append(sse("reset", snapshot, response.synced.revision))
                        aged = {card["task_id"]: card["aged_ms"] for card in snapshot}
                        snapshot = []
                    elif response.events and response.events[0].type == pb.EVENT_TYPE_SNAPSHOT:
                        snapshot.extend(fleet.card(e.worker) for e in response.events)
                    elif response.events:
                        out.append(self._changes(response.events))
                if fleet.heartbeats.activity_seq != activity_seen:
                    changed = fleet.heartbeats.activity_changed_since(activity_seen)
                    activity_seen = fleet.heartbeats.activity_seq
                    activities = {
                        t: fleet.heartbeats.activity(t) for t in changed if self._shows(t)
                    }
                    if activities:
                        out.append(sse("activity", activities))
                if time.monotonic() - beats_sent >= BEATS_S:
                    beats_sent = time.monotonic()
                    beats = self._beats(aged)
                    if beats:
                        out.append(sse("beats", beats))
                if not out and time.monotonic() - last_sent >= KEEPALIVE_S:
                    out.append(b": keepalive\n\n")
                if out:
                    last_sent = time.monotonic()
                    yield b"".join(out)
        except (ShuttingDown, RevisionCompacted, StopAsyncIteration):
            # The page reconnects with its last id: to the next daemon, or (compacted) to a
            # fresh snapshot.
            return
        finally:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
            if isinstance(responses, AsyncGenerator):
                await responses.aclose()

    def _changes(self, events: Sequence[pb.WorkerEvent]) -> bytes:
        """One `changes` event: the newest card of each worker the events touch, or its
        task id in `removed` if its last event deleted it or took it out of the selection."""
        stored = [e for e in events if e.type != pb.EVENT_TYPE_LIVENESS_CHANGED]
        for event in stored:
            worker = event.worker
            self._fleet.reasons.follow(
                EVENT_TYPE_FROM_PB[event.type],
                STATE_FROM_PB[worker.state],
                worker.task_id,
                event.revision,
                event.reason,
            )
        last = {event.worker.task_id: event for event in events}
        selector = self._query.selector
        removed = {
            task_id
            for task_id, event in last.items()
            if event.type == pb.EVENT_TYPE_DELETED
            or not selector.matches(as_labels(event.worker.labels))
        }
        return sse(
            "changes",
            {
                "cards": [self._fleet.card(e.worker) for t, e in last.items() if t not in removed],
                "removed": sorted(removed),
                "stored": sorted({e.worker.task_id for e in stored}),
            },
            max(e.revision for e in events),
        )

    def _shows(self, task_id: str) -> bool:
        """Whether the page has a card for the worker now."""
        worker = self._fleet.view.get(task_id)
        return worker is not None and self._query.selector.matches(worker.labels)

    def _selected(self) -> list[Worker]:
        """The workers the page has cards for, newest first."""
        matches = self._query.selector.matches
        return [w for w in self._fleet.view.newest_first() if matches(w.labels)]

    def _beats(self, aged: dict[str, int]) -> dict[str, int]:
        """When each worker's silence started counting, for those whose start moved since
        the page was last told (a beat moves it without any event); `aged` is updated."""
        fleet = self._fleet
        moved: dict[str, int] = {}
        for worker in self._selected():
            since = fleet.aged_from(worker)
            if aged.get(worker.task_id) != since:
                aged[worker.task_id] = moved[worker.task_id] = since
        return moved

    def _levels(self) -> dict[str, list[str | None]]:
        """Every worker's level and activity now, for a page that was away: only the ones
        that are not `ok` without activity, which the page takes for all the others."""
        fleet = self._fleet
        now_ms = fleet.clock.now_ms()
        levels: dict[str, list[str | None]] = {}
        for worker in self._selected():
            level = fleet.level(worker, now_ms)[1].value
            activity = fleet.heartbeats.activity(worker.task_id)
            if level != "ok" or activity is not None:
                levels[worker.task_id] = [level, activity]
        return levels
