"""Many beats in one message (HeartbeatRequest.more), and the client that sends them: every
heartbeater of a client on one stream, the beats due together in one message."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from harness import create, details, scrape, unique
from workerstate.client import AsyncWorkerClient, InvalidArgument, WorkerState
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

S = pb.WorkerState


def beats(*task_ids: str, activity: str = "") -> pb.HeartbeatRequest:
    first, *rest = task_ids
    return pb.HeartbeatRequest(
        task_id=first,
        activity=activity,
        more=[pb.HeartbeatRequest(task_id=t, activity=activity) for t in rest],
    )


def last_beat(stub: pb_grpc.WorkerServiceStub, task_id: str) -> tuple[bool, str]:
    worker = stub.GetWorker(pb.GetWorkerRequest(task_id=task_id)).worker
    return worker.HasField("last_heartbeat_at"), worker.last_activity


def test_one_message_carries_many_beats_answered_in_order(stub):
    a, b, done = (create(stub).task_id for _ in range(3))
    stub.FailWorker(pb.FailWorkerRequest(task_id=done, reason="gone"))
    answer = stub.Heartbeat(beats(a, b, done, activity="linking"))
    assert answer.task_id == a and answer.state == S.WORKER_STATE_ASSIGNED
    assert answer.HasField("received_at")
    assert [(m.task_id, m.state) for m in answer.more] == [
        (b, S.WORKER_STATE_ASSIGNED),
        (done, S.WORKER_STATE_FAILED),
    ]
    assert last_beat(stub, a) == last_beat(stub, b) == (True, "linking")
    assert last_beat(stub, done) == (False, "")  # a finished worker's beat changes nothing
    # The same on a stream, message after message, each answered whole and in order.
    answers = list(stub.StreamHeartbeats(iter([beats(a, b), beats(b, a, a)])))
    assert [[r.task_id, *(m.task_id for m in r.more)] for r in answers] == [[a, b], [b, a, a]]


# Each message is made from two workers' task ids, with the field its refusal names.
BAD: dict[str, tuple[Callable[[str, str], pb.HeartbeatRequest], str]] = {
    "invalid task id": (lambda a, b: beats(a, b, "-bad"), "more[1].task_id"),
    "control characters": (
        lambda a, b: beats(a, b, activity="x\x00"),
        "activity, more[0].activity",
    ),
    "nested more": (
        lambda a, b: pb.HeartbeatRequest(
            task_id=a, more=[pb.HeartbeatRequest(task_id=b, more=[beats(a)])]
        ),
        "more[0].more",
    ),
    "1,001 beats": (lambda a, b: beats(a, *[b] * 1000), "more"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_entry_refuses_the_whole_message_and_records_nothing(stub, case):
    make, field = BAD[case]
    a, b = create(stub).task_id, create(stub).task_id
    with pytest.raises(grpc.RpcError) as caught:
        stub.Heartbeat(make(a, b))
    code, _, bad = details(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad is not None and ", ".join(v.field for v in bad.field_violations) == field
    assert last_beat(stub, a) == last_beat(stub, b) == (False, "")


def test_an_unknown_task_refuses_the_whole_message_naming_it(stub):
    a, ghost = create(stub).task_id, unique("ghost")
    with pytest.raises(grpc.RpcError) as caught:
        stub.Heartbeat(beats(a, ghost))
    code, info, _ = details(caught.value)
    assert code == grpc.StatusCode.NOT_FOUND and info is not None
    assert info.reason == "WORKER_NOT_FOUND" and info.metadata["task_id"] == ghost
    assert last_beat(stub, a) == (False, "")


def test_a_clients_heartbeaters_share_one_stream_and_its_messages(make_daemon):
    daemon = make_daemon("--metrics-listen", "127.0.0.1:0")
    task_ids = [create(daemon.stub).task_id for _ in range(40)]

    async def main() -> None:
        async with (
            AsyncWorkerClient(daemon.address) as client,
            contextlib.AsyncExitStack() as stack,
        ):
            running = [
                await stack.enter_async_context(client.heartbeater(t, interval=0.5))
                for t in task_ids
            ]
            await asyncio.sleep(2.2)  # five rounds of beats
            samples = await asyncio.to_thread(scrape, daemon)
            assert all(h.state is WorkerState.ASSIGNED for h in running)
        assert samples["workerstate_heartbeat_streams"] == 1
        received = samples["workerstate_heartbeats_received_total"]
        messages = samples["workerstate_heartbeat_messages_total"]
        assert received >= 4 * len(task_ids)
        # Every round of beats falls due together, so each round is about one message.
        assert messages * 10 <= received, (messages, received)

    asyncio.run(main())


def test_a_refused_heartbeater_ends_and_the_others_beat_on(make_daemon):
    daemon = make_daemon()
    alive = [create(daemon.stub).task_id for _ in range(3)]

    async def main() -> None:
        async with (
            AsyncWorkerClient(daemon.address) as client,
            contextlib.AsyncExitStack() as stack,
        ):
            running = [
                await stack.enter_async_context(client.heartbeater(t, interval=0.2))
                for t in [*alive, unique("ghost"), "-not-a-task-id"]
            ]
            *good, ghost, invalid = running
            for _ in range(250):
                if ghost.ended.is_set() and invalid.ended.is_set():
                    break
                await asyncio.sleep(0.02)
            assert ghost.ended.is_set() and ghost.error is None  # gone, as if deleted
            assert isinstance(invalid.error, InvalidArgument)
            before = [await client.get(t) for t in alive]
            await asyncio.sleep(0.5)
            after = [await client.get(t) for t in alive]
            assert not any(h.ended.is_set() for h in good)
            assert all(
                b.last_heartbeat_at is not None
                and a.last_heartbeat_at is not None
                and a.last_heartbeat_at > b.last_heartbeat_at
                for a, b in zip(after, before, strict=True)
            )

    asyncio.run(main())


class _FirstBeatOnly(pb_grpc.WorkerServiceServicer):
    """A daemon from before `more`: it reads the first beat of a message and answers it alone."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def StreamHeartbeats(  # type: ignore[override]
        self, requests: AsyncIterator[pb.HeartbeatRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.HeartbeatResponse]:
        async for request in requests:
            self.seen.append(request.task_id)
            yield pb.HeartbeatResponse(task_id=request.task_id, state=S.WORKER_STATE_WORKING)


def test_a_daemon_that_answers_one_beat_a_message_gets_one_a_message():
    async def main() -> None:
        old = _FirstBeatOnly()
        server = grpc.aio.server()
        pb_grpc.add_WorkerServiceServicer_to_server(old, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with (
                AsyncWorkerClient(f"127.0.0.1:{port}") as client,
                contextlib.AsyncExitStack() as stack,
            ):
                running = [
                    await stack.enter_async_context(client.heartbeater(f"w{i}", interval=0.2))
                    for i in range(5)
                ]
                for _ in range(250):
                    if all(h.state is WorkerState.WORKING for h in running):
                        break
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.5)
            assert all(h.state is WorkerState.WORKING for h in running)
            # Every worker's beats reached it, not only the first of each message's.
            assert {f"w{i}" for i in range(5)} <= set(old.seen[-10:])
        finally:
            await server.stop(None)

    asyncio.run(main())
