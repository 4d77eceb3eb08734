"""Compaction: delete old events under the retention policy, a small batch at a time.

The new compact revision is announced to the hub before anything is deleted, so a watcher or
ListEvents that asks for an older revision gets REVISION_COMPACTED rather than a silent gap.
Each batch is one writer job, so a compaction never holds up writers for more than a batch.
"""

from __future__ import annotations

import asyncio
import logging

from .clock import Clock
from .config import Retention
from .domain import WorkerStateError
from .hub import Hub
from .storage.base import Backend, DeleteEventsBelow
from .writer import Writer

log = logging.getLogger(__name__)

# Events deleted per writer job: a few milliseconds of work, so commands queued behind a
# batch wait about as long as behind one group commit.
COMPACT_BATCH = 1000


async def compact(
    retention: Retention, hub: Hub, backend: Backend, writer: Writer, clock: Clock
) -> int:
    """Delete what the policy allows now; returns how many events were deleted."""
    cutoff = await backend.compaction_cutoff(
        hub.head, retention.events, clock.now_ms() - retention.for_ms
    )
    # Never below what was announced: a run cut short by a fault finishes the job next time.
    cutoff = max(cutoff, hub.compact_revision)
    hub.compact_revision = cutoff
    deleted = 0
    while True:
        count = await writer.upkeep(DeleteEventsBelow(cutoff, COMPACT_BATCH))
        deleted += count
        if count < COMPACT_BATCH:
            break
    if deleted:
        log.info("compacted %d events; the oldest stored revision is now %d", deleted, cutoff)
    return deleted


async def compact_every(
    retention: Retention, hub: Hub, backend: Backend, writer: Writer, clock: Clock
) -> None:
    while True:
        await asyncio.sleep(retention.interval_ms / 1000)
        try:
            await compact(retention, hub, backend, writer, clock)
        except WorkerStateError as e:
            log.warning("compaction failed, will retry next interval: %s", e)
