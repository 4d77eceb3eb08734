"""`workerstate mcp` driven as an agent host drives it: the official SDK's client over stdio,
against a real daemon. The server's environment is passed explicitly, as hosts do (a stdio
child inherits only an allow-list of variables)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import DaemonProcess, unique, wait_until
from mcp.client import Client, ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from workerstate.client import WorkerClient

WORKERSTATE = str(Path(sys.executable).parent / "workerstate")
WORKER_TOOLS = {"my_task", "report_progress", "move", "fail"}
FLEET_TOOLS = {
    "list_workers",
    "get_worker",
    "create_worker",
    "move_worker",
    "fail_worker",
    "wait_for",
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for the module, quick to call a silent worker DEAD (1500 ms)."""
    db = tmp_path_factory.mktemp("mcp") / "workerstate.db"
    daemon = DaemonProcess(
        db, "--warn-after", "500ms", "--stale-after", "1s", "--dead-after", "1500ms"
    ).start()
    yield daemon
    assert daemon.stop() == 0, "".join(daemon.log)


@pytest.fixture(scope="module")
def fleet(daemon: DaemonProcess) -> Iterator[WorkerClient]:
    with WorkerClient(daemon.address) as client:
        yield client


def make_task(fleet: WorkerClient, worktree: Path | str = "/tmp/none") -> str:
    task_id = unique("mcp")
    fleet.create(task_id, branch=f"work/{task_id}", worktree=str(worktree), description="do it")
    return task_id


def server(
    daemon: DaemonProcess | str, *args: str, cwd: Path | None = None, **env: str
) -> StdioServerParameters:
    """`workerstate mcp ARGS`, reaching the daemon through WORKERSTATE_SERVER."""
    address = daemon if isinstance(daemon, str) else daemon.address
    return StdioServerParameters(
        command=WORKERSTATE,
        args=["mcp", *args],
        env={"WORKERSTATE_SERVER": address, **env},
        cwd=cwd,
    )


def data(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return result.structured_content


def error(result: Any) -> str:
    assert result.is_error, result.structured_content
    return result.content[0].text


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- worker mode ---------------------------------------------------------------------------


def test_worker_tools_over_the_default_handshake(daemon, fleet):
    task_id = make_task(fleet)

    async def session() -> None:
        async with Client(server(daemon, "--task", task_id)) as client:
            assert {t.name for t in (await client.list_tools()).tools} == WORKER_TOOLS
            mine = data(await client.call_tool("my_task", {}))
            assert mine["task_id"] == task_id
            assert (mine["state"], mine["branch"]) == ("ASSIGNED", f"work/{task_id}")
            assert (mine["worktree"], mine["description"]) == ("/tmp/none", "do it")
            assert mine["stale_level"] == "ok"
            created = mine["revision"]  # revisions are the log's, shared by all workers
            assert [e["type"] for e in mine["history"]] == ["ASSIGNED"]

            moved = data(await client.call_tool("move", {"to_state": "working"}))
            assert (moved["state"], moved["changed"]) == ("WORKING", True)
            assert moved["revision"] > created
            again = data(await client.call_tool("move", {"to_state": "Working"}))
            assert (again["state"], again["changed"]) == ("WORKING", False)
            assert again["revision"] == moved["revision"]

            progress = await client.call_tool("report_progress", {"activity": "writing tests"})
            assert data(progress) == {"state": "WORKING", "stop": False}
            assert fleet.get(task_id).last_activity == "writing tests"

            review = {"to_state": "IN_REVIEW", "reason": "ready"}
            assert data(await client.call_tool("move", review))["state"] == "IN_REVIEW"
            history = data(await client.call_tool("my_task", {}))["history"]
            revisions = [e["revision"] for e in history]
            assert revisions == sorted(revisions, reverse=True) and revisions[-1] == created
            assert history[0] == {
                "revision": revisions[0],
                "type": "STATE_CHANGED",
                "from_state": "WORKING",
                "to_state": "IN_REVIEW",
                "reason": "ready",
                "time": history[0]["time"],
            }

            failed = data(await client.call_tool("fail", {"reason": "gave up"}))
            assert failed["state"] == "FAILED"
            progress = await client.call_tool("report_progress", {"activity": "still here"})
            assert data(progress) == {"state": "FAILED", "stop": True}

    run(session())
    assert fleet.get(task_id).state == "FAILED"


def test_worker_tools_over_the_legacy_handshake(daemon, fleet):
    task_id = make_task(fleet)

    async def session() -> None:
        async with (
            stdio_client(server(daemon, "--task", task_id)) as (read, write),
            ClientSession(read, write) as client,
        ):
            init = await client.initialize()
            assert init.server_info.name == "workerstate"
            assert task_id in (init.instructions or "")
            assert data(await client.call_tool("my_task", {}))["task_id"] == task_id
            moved = await client.call_tool("move", {"to_state": "WORKING"})
            assert data(moved)["state"] == "WORKING"

    run(session())
    assert fleet.get(task_id).state == "WORKING"


def test_refused_moves_name_the_rule_and_change_nothing(daemon, fleet):
    task_id = make_task(fleet)

    async def session() -> None:
        async with Client(server(daemon, "--task", task_id)) as client:
            text = error(await client.call_tool("move", {"to_state": "APPROVED"}))
            assert "WORKING, IN_REVIEW, CONFLICTED" in text and "--allow-moves" in text
            text = error(await client.call_tool("move", {"to_state": "DONE"}))
            assert "unknown state 'DONE'" in text and "IN_REVIEW" in text
            # Bad arguments are tool errors too; the server lives on.
            assert error(await client.call_tool("move", {}))
            assert error(await client.call_tool("move", {"to_state": ["WORKING"]}))
            assert error(await client.call_tool("no_such_tool", {}))
            assert data(await client.call_tool("my_task", {}))["state"] == "ASSIGNED"

        async with Client(server(daemon, "--task", task_id, "--allow-moves", "in_review")) as c:
            text = error(await c.call_tool("move", {"to_state": "WORKING"}))
            assert "only to IN_REVIEW" in text
            # The state it is in already: a success that changes nothing, allowed or not.
            same = data(await c.call_tool("move", {"to_state": "ASSIGNED"}))
            assert (same["state"], same["changed"], same["revision"]) == ("ASSIGNED", False, rev)

    rev = fleet.get(task_id).revision
    run(session())
    assert fleet.get(task_id).revision == rev


def test_a_conflict_names_the_actual_state_and_revision(daemon, fleet):
    task_id = make_task(fleet)

    async def session() -> None:
        async with Client(server(daemon, "--task", task_id)) as client:
            seen = data(await client.call_tool("my_task", {}))
            await asyncio.to_thread(fleet.transition, task_id, "ASSIGNED", "WORKING")
            await asyncio.to_thread(fleet.transition, task_id, "WORKING", "IN_REVIEW")
            actual = (await asyncio.to_thread(fleet.get, task_id)).revision
            text = error(await client.call_tool("move", {"to_state": "WORKING"}))
            assert "conflict" in text and f"IN_REVIEW at revision {actual}" in text
            assert f"ASSIGNED at revision {seen['revision']}" in text  # what the agent last saw
            # Told the actual state, the agent can correct itself: the next move starts there.
            moved = data(await client.call_tool("move", {"to_state": "WORKING"}))
            assert moved["state"] == "WORKING" and moved["revision"] > actual

    run(session())


def test_heartbeats_keep_an_idle_worker_alive_and_stop_with_the_session(daemon, fleet):
    task_id = make_task(fleet)

    async def session() -> None:
        async with Client(server(daemon, "--task", task_id, "--beat-every", "200ms")) as c:
            await c.call_tool("report_progress", {"activity": "thinking"})
            await asyncio.sleep(3.0)  # twice --dead-after without a tool call
            worker = await asyncio.to_thread(fleet.get, task_id)
            assert worker.stale_level == "ok"
            assert worker.last_activity == "thinking"

    run(session())
    # Without the server the same silence makes it DEAD; and leaving did not move it.
    wait_until(lambda: fleet.get(task_id).stale_level == "DEAD", timeout=10)
    assert fleet.get(task_id).state == "ASSIGNED"


def _handshake(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    proc.stdin.write(json.dumps(hello) + "\n")
    proc.stdin.flush()
    assert json.loads(proc.stdout.readline())["id"] == 1


def test_exits_when_stdin_closes_and_leaves_the_task_as_it_was(daemon, fleet):
    task_id = make_task(fleet)
    proc = subprocess.Popen(
        [WORKERSTATE, "mcp", "--server", daemon.address, "--task", task_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _handshake(proc)
        proc.stdin.close()
        assert proc.wait(timeout=5) == 0
        assert proc.stdout.read() == ""  # nothing but JSON-RPC on stdout, logs go to stderr
    finally:
        if proc.poll() is None:
            proc.kill()
    assert fleet.get(task_id).state == "ASSIGNED"


def test_exits_when_its_parent_is_gone_though_stdin_stays_open(daemon, fleet, tmp_path):
    task_id = make_task(fleet)
    child_stdin, keep_open = os.pipe()
    # A shell starts the server in the background (stdin handed over on fd 3) and is killed,
    # while this test still holds the other end of the server's stdin open.
    script = (
        f"exec 3<&0; {WORKERSTATE} mcp --server {daemon.address} --task {task_id} "
        f"<&3 3<&- >/dev/null 2>{tmp_path / 'err'} & echo $!; exec sleep 60"
    )
    shell = subprocess.Popen(["sh", "-c", script], stdin=child_stdin, stdout=subprocess.PIPE)
    os.close(child_stdin)
    pid = int(shell.stdout.readline())
    try:
        wait_until(lambda: fleet.get(task_id).last_heartbeat_at is not None, timeout=10)
        shell.kill()
        shell.wait(10)
        wait_until(lambda: _gone(pid), timeout=5)
    finally:
        os.close(keep_open)
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)
    assert "parent process is gone" in (tmp_path / "err").read_text()


def _gone(pid: int) -> bool:
    """Exited (a zombie, as an orphan waits for init to reap it) or reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_finds_its_task_by_the_worktree_it_runs_in(daemon, fleet, tmp_path):
    worktree = tmp_path / "wt"
    worktree.mkdir()
    (tmp_path / "link").symlink_to(worktree)
    task_id = make_task(fleet, worktree=tmp_path / "link")  # matched by resolved path

    async def session() -> None:
        async with Client(server(daemon, cwd=worktree)) as client:
            assert data(await client.call_tool("my_task", {}))["task_id"] == task_id

    run(session())


def test_finds_its_task_in_the_environment(daemon, fleet):
    task_id = make_task(fleet)

    async def session() -> None:
        async with Client(server(daemon, WORKERSTATE_TASK_ID=task_id)) as client:
            assert data(await client.call_tool("my_task", {}))["task_id"] == task_id

    run(session())


def _mcp(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WORKERSTATE, "mcp", *args],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_without_a_task_it_exits_naming_the_three_ways(daemon, tmp_path):
    result = _mcp(cwd=tmp_path, env={"WORKERSTATE_SERVER": daemon.address})
    assert result.returncode != 0
    for way in ("--task", "WORKERSTATE_TASK_ID", "worktree"):
        assert way in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""

    result = _mcp(
        "--task", "no-such-task", cwd=tmp_path, env={"WORKERSTATE_SERVER": daemon.address}
    )
    assert result.returncode != 0 and "no worker has task id no-such-task" in result.stderr


def test_without_the_sdk_it_exits_with_the_pip_command(tmp_path):
    fake = tmp_path / "mcp"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no MCP SDK here')\n")
    result = _mcp("--task", "t", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0
    assert "pip install 'workerstate[mcp]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_daemon_is_a_tool_error_naming_the_address(tmp_path):
    address = f"127.0.0.1:{free_port()}"

    async def session() -> None:
        async with Client(server(address, "--orchestrator")) as client:
            text = error(await client.call_tool("list_workers", {}))
            assert f"cannot reach the workerstate daemon at {address}" in text
        # Worker mode starts anyway, keeps trying to beat, and says so on stderr.
        with (tmp_path / "stderr").open("w") as errlog:
            params = server(address, "--task", "t-1", "--beat-every", "200ms")
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as client,
            ):
                await client.initialize()
                text = error(await client.call_tool("report_progress", {"activity": "x"}))
                assert address in text

    run(session())
    assert f"cannot reach the daemon at {address}" in (tmp_path / "stderr").read_text()


# -- orchestrator mode ---------------------------------------------------------------------


def test_orchestrator_tools(daemon, fleet):
    ids = [unique("orch") for _ in range(2)]
    # A dead address first: the list fails over to the daemon that answers.
    target = f"127.0.0.1:{free_port()},{daemon.address}"

    async def session() -> None:
        async with Client(server(target, "--orchestrator")) as client:
            assert {t.name for t in (await client.list_tools()).tools} == FLEET_TOOLS
            for task_id in ids:
                args = {"task_id": task_id, "branch": f"b/{task_id}", "worktree": "/w"}
                if task_id == ids[0]:
                    args["labels"] = {"epic": ids[0]}
                created = data(await client.call_tool("create_worker", args))
                assert (created["state"], created["description"]) == ("ASSIGNED", None)
            assert data(await client.call_tool("get_worker", {"task_id": ids[0]}))["labels"] == {
                "epic": ids[0]
            }
            selected = await client.call_tool("list_workers", {"label_selector": f"epic={ids[0]}"})
            assert [w["task_id"] for w in data(selected)["workers"]] == [ids[0]]
            bad_selector = {"label_selector": "epic in x"}
            assert "label_selector" in error(await client.call_tool("list_workers", bad_selector))
            args = {"task_id": ids[0], "branch": "b", "worktree": "/w"}
            assert "already exists" in error(await client.call_tool("create_worker", args))

            got = data(await client.call_tool("get_worker", {"task_id": ids[0]}))
            assert got["branch"] == f"b/{ids[0]}"
            assert "not found" in error(await client.call_tool("get_worker", {"task_id": "nope"}))

            move = {"task_id": ids[0], "from_state": "assigned", "to_state": "WORKING"}
            assert data(await client.call_tool("move_worker", move))["state"] == "WORKING"
            revision = (await asyncio.to_thread(fleet.get, ids[0])).revision
            text = error(await client.call_tool("move_worker", move))
            assert f"is WORKING, not ASSIGNED (revision {revision})" in text
            bad = {"task_id": ids[0], "from_state": "WORKING", "to_state": "COMPLETED"}
            assert "invalid transition" in error(await client.call_tool("move_worker", bad))

            listed = data(await client.call_tool("list_workers", {"states": ["working"]}))
            names = {w["task_id"] for w in listed["workers"]}
            assert ids[0] in names and ids[1] not in names
            everyone = data(await client.call_tool("list_workers", {}))["workers"]
            assert set(ids) <= {w["task_id"] for w in everyone}

            failed = await client.call_tool("fail_worker", {"task_id": ids[1], "reason": "x"})
            assert data(failed)["state"] == "FAILED"

    run(session())
    assert [fleet.get(t).state for t in ids] == ["WORKING", "FAILED"]


def test_wait_for_returns_once_every_task_arrives(daemon, fleet):
    ids = [make_task(fleet) for _ in range(3)]
    fleet.fail(ids[0])  # there already

    async def session() -> None:
        async with Client(server(daemon, "--orchestrator")) as client:
            waiting = asyncio.create_task(
                client.call_tool(
                    "wait_for",
                    {"task_ids": ids, "states": ["in_review", "FAILED"], "timeout_s": 60},
                )
            )
            await asyncio.sleep(0.5)
            assert not waiting.done()
            for task_id in ids[1:]:
                await asyncio.to_thread(fleet.transition, task_id, "ASSIGNED", "WORKING")
                await asyncio.sleep(0.2)
                assert not waiting.done()
                await asyncio.to_thread(fleet.transition, task_id, "WORKING", "IN_REVIEW")
            result = data(await asyncio.wait_for(waiting, 30))
            assert result["timed_out"] is False
            states = [w["state"] for w in result["workers"]]
            assert [w["task_id"] for w in result["workers"]] == ids
            assert states == ["FAILED", "IN_REVIEW", "IN_REVIEW"]

    run(session())


def test_wait_for_times_out(daemon, fleet):
    task_id = make_task(fleet)

    async def session() -> None:
        async with Client(server(daemon, "--orchestrator")) as client:
            args = {"task_ids": [task_id], "states": ["COMPLETED"], "timeout_s": 0.5}
            result = data(await client.call_tool("wait_for", args))
            assert result["timed_out"] is True
            assert [w["state"] for w in result["workers"]] == ["ASSIGNED"]
            unknown = {"task_ids": ["no-such-task"], "states": ["COMPLETED"]}
            assert "not found" in error(await client.call_tool("wait_for", unknown))
            assert error(await client.call_tool("wait_for", {"task_ids": [task_id]}))

    run(session())
