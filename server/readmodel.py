"""The read side's one owner: every committed batch, this daemon's and other daemons', in order.

The writer hands each committed batch here once it is durable. This applies it to everything
readers see (the workers in the view, the heartbeats a deleted worker leaves, the watchers'
window, liveness, the finished workers retention waits on) and logs it once the callers are
answered, so a new kind of event changes what readers see in this one place, and nothing
else moves the head.
"""

from __future__ import annotations

import asyncio
import logging

from .domain import Event, EventType
from .heartbeats import Heartbeats
from .hub import Hub
from .liveness import Liveness
from .messages import event_message
from .retention import FinishedRetention
from .view import WorkerView

# One line per stored change (per Apply batch), at INFO: task, from, to, revision, actor
# (fields of their own in JSON logs).
change_log = logging.getLogger("workerstate.changes")


class ReadModel:
    """Applies committed events to the view, the heartbeats, the hub, liveness and
    retention (when on)."""

    def __init__(
        self,
        view: WorkerView,
        hub: Hub,
        heartbeats: Heartbeats,
        liveness: Liveness,
        retention: FinishedRetention | None = None,
    ) -> None:
        self.view = view
        self.hub = hub
        self.heartbeats = heartbeats
        self.liveness = liveness
        self.retention = retention

    def apply(self, events: list[Event]) -> None:
        """Readers see a change only now that it is durable; messages are built once here
        and shared by every watcher."""
        self.view.apply(events)
        for event in events:
            if event.type is EventType.DELETED:
                self.heartbeats.forget(event.worker.task_id)
        self.hub.publish(events, [event_message(e) for e in events])
        self.liveness.on_commit(events)
        if self.retention is not None:
            self.retention.on_commit(events)
        if change_log.isEnabledFor(logging.INFO):
            # A line costs more than the rest of this put together: written on the loop's
            # next turn, it comes after the callers the writer has just answered.
            asyncio.get_running_loop().call_soon(_log_changes, events)

    def compacted_to(self, revision: int) -> None:
        """Another daemon compacted the shared log up to `revision`."""
        self.hub.compacted_to(revision)


def _log_changes(events: list[Event]) -> None:
    """One INFO line per change, but one per Apply batch (its changes at DEBUG): a batch of a
    thousand would bury the log, and logging each line costs more than storing the change."""
    batch_first: Event | None = None
    for event in events:
        if not event.batch_end:
            _log_change(event)
            continue
        if change_log.isEnabledFor(logging.DEBUG):
            _log_change(event, logging.DEBUG)
        batch_first = batch_first or event
        if event.revision == event.batch_end:
            by = f" by {event.actor}" if event.actor else ""
            change_log.info(
                "batch of %d changes%s (revisions %d-%d)",
                event.revision - batch_first.revision + 1,
                by,
                batch_first.revision,
                event.revision,
                extra={"batch_first": batch_first.revision, "revision": event.revision},
            )
            batch_first = None


def _log_change(event: Event, level: int = logging.INFO) -> None:
    worker = event.worker
    before = event.from_state.value if event.from_state else "new"
    after = "deleted" if event.type is EventType.DELETED else worker.state.value
    args: tuple[str, ...]
    if event.type is EventType.LABELS_CHANGED:
        labels = ",".join(f"{k}={v}" for k, v in worker.labels) or "none"
        message, args = "worker %s labels %s (revision %d)", (worker.task_id, labels)
    else:
        message, args = "worker %s %s -> %s (revision %d)", (worker.task_id, before, after)
    fields = {"task_id": worker.task_id, "from": before, "to": after, "revision": event.revision}
    if event.actor:
        fields["actor"] = event.actor
        message = message.replace(" (revision", " by %s (revision")
        args = (*args, event.actor)
    change_log.log(level, message, *args, event.revision, extra=fields)
