"""Stale levels: computed on read, and announced to watchers when they cross a threshold.

Levels are never stored. For watchers, each live worker has one entry in a heap keyed by the
time it would next cross a threshold if it stayed silent; one timer sleeps until the earliest
entry. A heartbeat only updates a dict (its entry, now early, is re-pushed when it comes due),
so 100k idle or busily beating workers cost nothing per tick. With a heartbeat timeout, a DEAD
worker's next crossing is the timeout, and the same heap hands it to the timeout when due.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from typing import Protocol

from . import domain
from .clock import Clock
from .domain import LIVE_STATES, Event, LivenessChange, StaleLevel, StaleThresholds, Worker
from .heartbeats import Heartbeats
from .view import WorkerView

# Longest the timer sleeps without looking: a wall-clock step (or a test's manual clock) is
# noticed within this long, and crossings fire within it.
MAX_SLEEP_S = 1.0


class Timeout(Protocol):
    """What fails a worker silent for `after_ms` (the daemon's heartbeat timeout)."""

    @property
    def after_ms(self) -> int: ...

    def expire(self, worker: Worker, last_heartbeat_ms: int | None) -> None: ...


class Liveness:
    """Stale levels for reads, and crossings announced through `announce`."""

    def __init__(
        self,
        view: WorkerView,
        heartbeats: Heartbeats,
        clock: Clock,
        thresholds: StaleThresholds,
        announce: Callable[[LivenessChange], None],
        timeout: Timeout | None = None,
    ) -> None:
        self._view = view
        self._heartbeats = heartbeats
        self._clock = clock
        self._thresholds = thresholds
        self.serving_since_ms = 0
        self._levels: dict[str, StaleLevel] = {}  # last announced level of each live worker
        self._due: list[tuple[int, str]] = []  # (next crossing ms, task id), a heap
        self._queued: set[str] = set()  # task ids with an entry in the heap
        self._wake = asyncio.Event()
        self._announce_change = announce
        self._timeout = timeout
        self._fail_after_ms = timeout.after_ms if timeout else 0

    def level(self, worker: Worker, now_ms: int) -> tuple[int | None, StaleLevel]:
        """The worker's last beat and its stale level at `now_ms`."""
        beat = self._heartbeats.last_ms(worker.task_id)
        level = domain.stale_level(worker, beat, now_ms, self.serving_since_ms, self._thresholds)
        return beat, level

    def aged_from_ms(self, worker: Worker) -> int:
        """When the worker's silence started counting, as its stale level counts it."""
        beat = self._heartbeats.last_ms(worker.task_id)
        return domain.aged_from_ms(worker, beat, self.serving_since_ms)

    def start(self, serving_since_ms: int) -> None:
        """Begin tracking every live worker; ages count from `serving_since_ms` at the earliest.

        So at start every live worker is OK, and none can cross before `serving_since_ms`
        plus the WARN threshold: each gets that as its first due time, in one heapify, with
        no per-worker arithmetic (100,000 workers would take half a second). An entry can
        only be early (a beat stamped after `serving_since_ms`), and `check_due` re-pushes
        early entries at their real crossing.
        """
        self.serving_since_ms = serving_since_ms
        live = [
            w.task_id for w in self._view.newest_first(states=LIVE_STATES) if w.state in LIVE_STATES
        ]
        first_due = serving_since_ms + self._thresholds.warn_ms
        self._levels = dict.fromkeys(live, StaleLevel.OK)
        self._due = [(first_due, task_id) for task_id in live]
        heapq.heapify(self._due)
        self._queued = set(live)

    def on_commit(self, events: list[Event]) -> None:
        """Take note of changed workers. One that is (again) ASSIGNED or WORKING at a level
        other than the one last announced (OK while it was not live) crossed a threshold:
        say so. One that leaves those states is OK by definition; its event says enough."""
        now_ms = self._clock.now_ms()
        for event in events:
            worker = event.worker
            if worker.state not in LIVE_STATES:
                self._levels.pop(worker.task_id, None)
                continue
            beat, level = self.level(worker, now_ms)
            before = self._levels.get(worker.task_id, StaleLevel.OK)
            self._levels[worker.task_id] = level
            if level is not before:
                self._announce(worker, before, level, now_ms)
            self._schedule(worker, beat, level)

    def on_beat(self, worker: Worker, now_ms: int) -> None:
        """A beat brings a stale worker back to OK at once."""
        previous = self._levels.get(worker.task_id)
        if previous is None:
            return
        if previous is not StaleLevel.OK:
            self._levels[worker.task_id] = StaleLevel.OK
            self._announce(worker, previous, StaleLevel.OK, now_ms)
        self._schedule(worker, now_ms, StaleLevel.OK)

    def _schedule(self, worker: Worker, beat: int | None, level: StaleLevel) -> None:
        """Queue the worker's next crossing, given its last beat and its level now."""
        if worker.task_id in self._queued:
            return  # its entry is at or before the new crossing; re-pushed when it comes due
        due = domain.next_crossing_ms(
            worker, beat, self.serving_since_ms, self._thresholds, level, self._fail_after_ms
        )
        if due is not None:
            self._push(due, worker.task_id)

    def _push(self, due: int, task_id: str) -> None:
        if not self._due or due < self._due[0][0]:
            self._wake.set()
        heapq.heappush(self._due, (due, task_id))
        self._queued.add(task_id)

    def _announce(self, worker: Worker, before: StaleLevel, after: StaleLevel, now_ms: int) -> None:
        change = LivenessChange(
            revision=self._view.head,
            worker=worker,
            last_heartbeat_ms=self._heartbeats.last_ms(worker.task_id),
            from_level=before,
            level=after,
            time_ms=now_ms,
        )
        self._announce_change(change)

    def check_due(self) -> float:
        """Announce every crossing that is due; returns seconds until the next one."""
        now_ms = self._clock.now_ms()
        while self._due and self._due[0][0] <= now_ms:
            _, task_id = heapq.heappop(self._due)
            self._queued.discard(task_id)
            worker = self._view.get(task_id)
            if worker is None or worker.state not in LIVE_STATES:
                self._levels.pop(task_id, None)
                continue
            beat, level = self.level(worker, now_ms)
            previous = self._levels.get(task_id, StaleLevel.OK)
            if level is not previous:
                self._levels[task_id] = level
                self._announce(worker, previous, level, now_ms)
            if self._timeout is not None and self._timed_out(worker, beat, now_ms):
                self._timeout.expire(worker, beat)
                # Looked at again shortly: gone once failed, handed over again if refused.
                self._push(now_ms + int(MAX_SLEEP_S * 1000), task_id)
            else:
                self._schedule(worker, beat, level)
        if not self._due:
            return MAX_SLEEP_S
        return min(MAX_SLEEP_S, max(0.0, (self._due[0][0] - now_ms) / 1000))

    def _timed_out(self, worker: Worker, beat: int | None, now_ms: int) -> bool:
        silent_ms = now_ms - domain.aged_from_ms(worker, beat, self.serving_since_ms)
        return silent_ms >= self._fail_after_ms

    async def run(self) -> None:
        """The timer: sleep until the next crossing (or a sooner one is scheduled)."""
        while True:
            delay = self.check_due()
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
