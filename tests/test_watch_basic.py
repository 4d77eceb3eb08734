"""WatchState as the foundation serves it: replay from a revision, then live, in order."""

from __future__ import annotations

import threading

from harness import create
from workerstate.v1 import workerstate_pb2 as pb


def test_replay_then_live_without_gap_or_duplicate(make_daemon):
    daemon = make_daemon()
    for _ in range(5):
        create(daemon.stub)
    stream = daemon.stub.WatchState(pb.WatchStateRequest(start_revision=3))
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        for message in stream:
            seen.extend(e.revision for e in message.events)
            if seen and seen[-1] >= 10:
                done.set()
                return

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(5):
        create(daemon.stub)
    assert done.wait(10)
    stream.cancel()
    reader.join(5)
    assert seen == list(range(3, 11))


def test_watch_from_now_sees_only_new_events_matching_filters(make_daemon):
    daemon = make_daemon()
    create(daemon.stub, "old")
    stream = daemon.stub.WatchState(pb.WatchStateRequest(task_ids=["b"]))
    create(daemon.stub, "a")
    create(daemon.stub, "b")
    first = next(stream)
    assert [(e.worker.task_id, e.revision) for e in first.events] == [("b", 3)]
    stream.cancel()
