"""Faults: a full disk, a file deleted or made read-only under the daemon, hostile clients."""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from harness import DaemonProcess, create, details, serve_once
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc


@pytest.fixture
def small_fs(tmp_path) -> Iterator[Path]:
    """A 2 MB tmpfs of the test's own, so the disk can really fill up (needs root)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def storage_error(call) -> tuple[grpc.StatusCode, str, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    code, info, _ = details(caught.value)
    return code, info.reason, caught.value.details()


def test_disk_full_fails_cleanly_and_recovers(small_fs):
    ballast = small_fs / "ballast"
    daemon = DaemonProcess(small_fs / "w.db").start()
    try:
        stub = daemon.stub
        ballast.write_bytes(b"\0" * 1_400_000)  # most of the space, to give back later
        acknowledged: list[str] = []
        with pytest.raises(grpc.RpcError) as caught:
            fill(stub, acknowledged)
        code, info, _ = details(caught.value)
        assert code == grpc.StatusCode.UNAVAILABLE
        assert info.reason == "STORAGE_UNAVAILABLE"
        assert "full" in caught.value.details()
        # Reads go on, and every acknowledged worker is there.
        assert stub.GetWorker(pb.GetWorkerRequest(task_id=acknowledged[-1])).worker.task_id
        # Space returns: writes succeed again.
        ballast.unlink()
        create(stub, "after-full")
        assert daemon.stop() == 0
        daemon.start()
        workers = daemon.stub.ListWorkers(pb.ListWorkersRequest(page_size=1000)).workers
        assert {w.task_id for w in workers} == {*acknowledged, "after-full"}
        events = daemon.stub.ListEvents(pb.ListEventsRequest(limit=1000)).events
        assert [e.revision for e in events] == list(range(1, len(acknowledged) + 2))
    finally:
        daemon.kill()


def fill(stub: pb_grpc.WorkerServiceStub, acknowledged: list[str]) -> None:
    for i in range(10_000):
        acknowledged.append(create(stub, f"full-{i}", description="x" * 4000).task_id)


def test_a_deleted_database_refuses_writes_but_serves_reads(make_daemon):
    daemon = make_daemon()
    create(daemon.stub, "kept")
    os.unlink(daemon.db)
    code, reason, message = storage_error(lambda: create(daemon.stub, "lost"))
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "STORAGE_UNAVAILABLE")
    assert "deleted or replaced" in message
    assert daemon.stub.GetWorker(pb.GetWorkerRequest(task_id="kept")).worker.task_id == "kept"
    code, reason, _ = storage_error(lambda: create(daemon.stub, "lost-again"))
    assert reason == "STORAGE_UNAVAILABLE"  # still refusing, not crashed, not looping
    assert daemon.proc.poll() is None


def test_a_file_made_read_only_under_the_daemon_loses_nothing(make_daemon):
    daemon = make_daemon()
    create(daemon.stub, "before")
    daemon.db.chmod(0o400)
    # The daemon's open handle still writes (as SQLite itself would), so nothing acknowledged
    # is lost; a restart then reports the file's mode (unless run as root, who may write).
    create(daemon.stub, "after")
    daemon.db.chmod(0o600)
    daemon.restart()
    names = {w.task_id for w in daemon.stub.ListWorkers(pb.ListWorkersRequest()).workers}
    assert names == {"before", "after"}


def test_a_read_only_filesystem_is_refused_at_start(small_fs):
    db = small_fs / "w.db"
    daemon = DaemonProcess(db).start()
    try:
        create(daemon.stub, "before")
        assert daemon.stop() == 0
        subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
        refused = serve_once(db)
        assert refused.returncode == 1
        assert "Traceback" not in refused.stderr
        assert str(db) in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
        daemon.start()
        assert daemon.stub.GetWorker(pb.GetWorkerRequest(task_id="before")).worker.task_id
    finally:
        daemon.kill()


def test_a_100_mb_message_is_refused_and_the_daemon_goes_on(make_daemon):
    daemon = make_daemon()
    with pytest.raises(grpc.RpcError) as caught:
        daemon.stub.CreateWorker(
            pb.CreateWorkerRequest(task_id="big", branch="b", worktree="w" * 100_000_000)
        )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert create(daemon.stub, "small").task_id == "small"


def test_ten_thousand_streams_from_one_client(make_daemon):
    daemon = make_daemon("--max-watchers", "100")
    # Channels to one address share a connection unless each keeps its own subchannels;
    # "everyone else" is another client, so it gets a connection of its own.
    own_connection = [("grpc.use_local_subchannel_pool", 1)]
    greedy = grpc.insecure_channel(daemon.address, options=own_connection)
    stub = pb_grpc.WorkerServiceStub(greedy)
    streams = [stub.WatchState(pb.WatchStateRequest(), timeout=60) for _ in range(10_000)]
    other = pb_grpc.WorkerServiceStub(grpc.insecure_channel(daemon.address, options=own_connection))
    # Everyone else is still served while the greedy client holds its streams.
    created = other.CreateWorker(pb.CreateWorkerRequest(task_id="x", branch="b", worktree="w"))
    codes, messages = [], set()
    for stream in streams[:1500]:
        try:
            next(stream)
        except grpc.RpcError as e:
            codes.append(e.code())
            messages.add(e.details())
    # Past --max-watchers: RESOURCE_EXHAUSTED; past 1000 streams on one connection, HTTP/2
    # REFUSED_STREAM (UNAVAILABLE: not processed, safe to retry).
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}, messages
    assert len(codes) >= 1400  # at most 100 watchers; the rest told why
    for stream in streams:
        stream.cancel()
    greedy.close()
    assert other.GetWorker(pb.GetWorkerRequest(task_id="x")).worker.revision == created.revision


def raw(address: str, payload: bytes, wait: float = 0.5) -> None:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(payload)
        sock.settimeout(wait)
        try:
            while sock.recv(65536):
                pass
        except (TimeoutError, ConnectionResetError):
            pass


def literal(name: str, value: str) -> bytes:
    """An HPACK literal header field without indexing, no Huffman (lengths < 127)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def frame(kind: int, flags: int, stream: int, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + body
    )


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def test_garbage_on_the_wire_leaves_the_daemon_up(make_daemon):
    daemon = make_daemon()
    rng = random.Random(7)
    headers = b"".join(
        [
            literal(":method", "POST"),
            literal(":scheme", "http"),
            literal(":path", "/workerstate.v1.WorkerService/GetWorker"),
            literal(":authority", "x"),
            literal("content-type", "text/plain"),
        ]
    )
    attacks = [
        bytes(rng.randrange(256) for _ in range(4096)),  # random bytes
        PREFACE[:10],  # a truncated preface
        PREFACE + frame(4, 0, 0, b"") + frame(1, 4, 1, headers)[:12],  # a truncated frame
        PREFACE + frame(4, 0, 0, b"") + frame(1, 5, 1, headers),  # wrong content-type
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # plain HTTP/1.1
        b"",  # connect and send nothing
    ]
    for payload in attacks:
        raw(daemon.address, payload)
    with pytest.raises(grpc.RpcError) as caught:
        daemon.channel.unary_unary("/workerstate.v1.WorkerService/Nope")(b"")
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with ThreadPoolExecutor(4) as pool:  # idle sockets held open while others work
        idle = [pool.submit(raw, daemon.address, b"", 2.0) for _ in range(4)]
        assert create(daemon.stub, "still-up").state == pb.WORKER_STATE_ASSIGNED
        for held in idle:
            held.result()
    assert daemon.stop() == 0
