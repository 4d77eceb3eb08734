"""The `workerstate` command line through subprocesses: output, errors and exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest
from conftest import WORKERSTATE
from harness import create, unique, wait_until
from workerstate.v1 import workerstate_pb2 as pb


def test_create_get_move_beat_fail(cli):
    task = unique("cli")
    created = cli(
        "create", task, "--branch", f"feat/{task}", "--worktree", "/w", "--description", "do it"
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"worker {task} created, ASSIGNED (revision {_rev(created)})\n"
    moved = cli("move", task, "assigned", "WORKING", "--reason", "starting")
    assert moved.returncode == 0
    assert f"worker {task} moved ASSIGNED -> WORKING" in moved.stdout
    beat = cli("beat", task, "--activity", "tests")
    assert beat.stdout == f"worker {task} is WORKING\n"
    got = cli("ls", task, server_after=True)  # global option after the command
    header, row = got.stdout.splitlines()
    assert header.split() == ["TASK", "STATE", "STALE", "AGE", "BEAT", "BRANCH", "REVISION"]
    assert row.split()[:3] == [task, "WORKING", "ok"]
    assert row.split()[5] == f"feat/{task}"
    assert header.index("STATE") == row.index("WORKING")  # aligned columns
    failed = cli("fail", task, "--reason", "flaky", "-o", "json")
    assert json.loads(failed.stdout)["state"] == "FAILED"


def _rev(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.rsplit("revision ", 1)[1].rstrip(")\n")


def test_get_describes_every_field_and_the_last_ten_events(cli):
    task = unique("desc")
    cli("create", task, "--branch", f"feat/{task}", "--worktree", "/w/d", "--description", "fix it")
    state = "ASSIGNED"
    for i in range(6):  # 1 + 12 events: the first three fall off
        for to in ("WORKING", "IN_REVIEW"):
            cli("move", task, state, to, "--reason", f"why {i} {to}")
            state = to
    cli("beat", task, "--activity", "reading the diff")
    got = cli("get", task)
    assert got.returncode == 0, got.stderr
    fields = dict(
        line.split(":", 1) for line in got.stdout.split("\n\n")[0].splitlines() if ":" in line
    )
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["Task"] == task and fields["State"] == "IN_REVIEW"
    assert fields["Branch"] == f"feat/{task}" and fields["Worktree"] == "/w/d"
    assert fields["Description"] == "fix it" and fields["Activity"] == "reading the diff"
    for label in ("State since", "Created", "Last heartbeat"):
        assert fields[label].endswith(" ago)"), label
    assert fields["Stale level"] == "ok" and fields["Revision"].isdigit()
    events = got.stdout.split("\n\n")[1].splitlines()
    assert events[0] == "Events (last 10 of 13, oldest first):"
    assert len(events) == 11
    assert events[-1].endswith("WORKING -> IN_REVIEW  why 5 IN_REVIEW")
    assert events[1].endswith("IN_REVIEW -> WORKING  why 1 WORKING")  # the 4th of 13


def test_ls_takes_task_ids(cli):
    one, two, other = unique("pick"), unique("pick"), unique("pick")
    for task in (one, two, other):
        cli("create", task, "--branch", "b", "--worktree", "/w")
    listed = json.loads(cli("ls", one, two, "-o", "json").stdout)
    assert {w["task_id"] for w in listed} == {one, two}
    missing = cli("ls", one, unique("nobody"))
    assert missing.returncode == 3 and "not found" in missing.stderr


def test_ls_filters_and_json(cli):
    task = unique("ls")
    cli("create", task, "--branch", "b", "--worktree", "/w")
    cli("move", task, "ASSIGNED", "WORKING")
    listed = json.loads(cli("ls", "--state", "working", "-o", "json").stdout)
    assert task in {w["task_id"] for w in listed}
    assert all(w["state"] == "WORKING" for w in listed)
    entry = next(w for w in listed if w["task_id"] == task)
    assert entry["stale_level"] == "ok" and entry["created_at"].endswith("Z")
    assert task not in cli("ls", "--state", "FAILED").stdout
    assert task in cli("ls", "--stale", "OK").stdout
    cli("beat", task, "--activity", "running-the-linters")
    wide = cli("ls", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-4:] == ["WORKTREE", "LABELS", "ACTIVITY", "DESCRIPTION"]
    row = next(line for line in wide if line.startswith(task))
    assert row.split()[-1] == "running-the-linters"
    assert json.loads(cli("get", task, "-o", "json").stdout)["last_activity"] == (
        "running-the-linters"
    )


def test_events_table_and_json_lines(cli):
    task = unique("ev")
    cli("create", task, "--branch", "b", "--worktree", "/w")
    cli("move", task, "ASSIGNED", "WORKING", "--reason", "go")
    table = cli("events", task).stdout.splitlines()
    assert table[0].split() == ["REVISION", "TIME", "TYPE", "TASK", "FROM", "TO", "ACTOR", "DETAIL"]
    assert table[2].split()[2:] == ["STATE_CHANGED", task, "ASSIGNED", "WORKING", "-", "go"]
    lines = [json.loads(line) for line in cli("events", task, "-o", "json").stdout.splitlines()]
    assert [e["type"] for e in lines] == ["ASSIGNED", "STATE_CHANGED"]
    after = cli("events", task, "--after", str(lines[0]["revision"]), "-o", "json")
    assert [json.loads(x)["revision"] for x in after.stdout.splitlines()] == [lines[1]["revision"]]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["get", "nobody-here"], 3, "error: worker nobody-here not found"),
        (["events", "nobody-here"], 3, "error: worker nobody-here not found"),
        (["create", "b", "--branch", "feat/has space", "--worktree", "w"], 2, "branch: not a"),
        (["ls", "--timeout", "soon"], 2, "invalid duration 'soon'"),
        (["move", "nobody-here", "ASSIGNED", "WORKING"], 3, "not found"),
        (["move", "x", "COMPLETED", "WORKING"], 2, "invalid transition: COMPLETED -> WORKING"),
        (["move", "x", "ASSIGNED", "COMPLETED"], 2, "allowed from ASSIGNED: WORKING, FAILED"),
        (["move", "x", "WORKING", "LUNCH"], 2, "unknown state 'LUNCH'"),
        (["create", "bad id", "--branch", "b", "--worktree", "w"], 2, "error: task_id:"),
        (["create", "x"], 2, "--branch"),
        (["ls", "--stale", "sleepy"], 2, "unknown stale level"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_errors_are_one_line_with_documented_exit_codes(cli, args, code, message):
    result = cli(*args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_conflict_error_reads_like_a_sentence(cli):
    task = unique("conf")
    cli("create", task, "--branch", "b", "--worktree", "/w")
    rev = _rev(cli("move", task, "ASSIGNED", "WORKING"))
    result = cli("move", task, "ASSIGNED", "WORKING")
    assert result.returncode == 4
    assert result.stderr == f"error: worker {task} is WORKING, not ASSIGNED (revision {rev})\n"
    exists = cli("create", task, "--branch", "b", "--worktree", "/w")
    assert exists.returncode == 4


def test_unreachable_daemon_exits_5_with_advice(tmp_path):
    result = subprocess.run(
        [WORKERSTATE, "get", "t", "--server", f"unix:{tmp_path}/none.sock"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 5
    assert "cannot reach the workerstate daemon" in result.stderr
    assert "workerstate serve" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_server_from_the_environment(shared_daemon):
    env = {**os.environ, "WORKERSTATE_SERVER": shared_daemon.address}
    result = subprocess.run(
        [WORKERSTATE, "ls", "-o", "json"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0
    assert isinstance(json.loads(result.stdout), list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_help_documents_commands_options_and_exit_codes():
    top = subprocess.run([WORKERSTATE, "--help"], capture_output=True, text=True).stdout
    for command in ("serve", "ls", "get", "create", "move", "fail", "beat", "events", "watch"):
        assert command in top
    assert "WORKERSTATE_SERVER" in top and "exit codes" in top
    watch = subprocess.run([WORKERSTATE, "watch", "--help"], capture_output=True, text=True)
    for option in ("--from", "--initial", "--liveness", "--state", "--server", "--timeout", "-o"):
        assert option in watch.stdout


def test_watch_streams_json_lines_and_ctrl_c_exits_zero(shared_daemon, cli):
    task = unique("watch")
    cli("create", task, "--branch", "b", "--worktree", "/w")
    proc = subprocess.Popen(
        [WORKERSTATE, "watch", task, "--initial", "-o", "json", "--server", shared_daemon.address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = json.loads(proc.stdout.readline())
    assert (first["type"], first["task_id"]) == ("SNAPSHOT", task)
    cli("move", task, "ASSIGNED", "WORKING")
    second = json.loads(proc.stdout.readline())
    assert (second["type"], second["from_state"], second["state"]) == (
        "STATE_CHANGED",
        "ASSIGNED",
        "WORKING",
    )
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_watch_table_and_replay_from_a_revision(shared_daemon, cli):
    task = unique("replay")
    rev = _rev(cli("create", task, "--branch", "b", "--worktree", "/w"))
    proc = subprocess.Popen(
        [WORKERSTATE, "watch", task, "--from", rev, "--server", shared_daemon.address],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().split()[0] == "REVISION"
    row = proc.stdout.readline().split()
    assert (row[0], row[2], row[3]) == (rev, "ASSIGNED", task)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0


def test_serve_runs_the_daemon(tmp_path):
    proc = subprocess.Popen(
        [WORKERSTATE, "serve", "--db", str(tmp_path / "w.db"), "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()
    assert "serving workerstate.v1.WorkerService on 127.0.0.1:" in line
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    wait_until(lambda: (tmp_path / "w.db").exists())


def test_watch_filters_by_state(shared_daemon, cli):
    task, quiet = unique("wst"), unique("wst")
    proc = subprocess.Popen(
        [
            *(WORKERSTATE, "watch", "--state", "FAILED", "--state", "in_review", "-o", "json"),
            *("--server", shared_daemon.address),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)  # the watch starts from now
        for t in (task, quiet):
            cli("create", t, "--branch", "b", "--worktree", "/w")
        cli("move", quiet, "ASSIGNED", "WORKING")
        cli("move", task, "ASSIGNED", "WORKING")
        cli("move", task, "WORKING", "IN_REVIEW")
        cli("fail", task)
        seen = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [(e["task_id"], e["state"]) for e in seen] == [
            (task, "IN_REVIEW"),
            (task, "FAILED"),
        ]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


def test_watch_says_when_it_reconnects_and_where_it_resumed(make_daemon):
    port = free_port()
    daemon = make_daemon(listen=f"127.0.0.1:{port}")
    address = f"127.0.0.1:{port}"
    task = unique("away")
    create(daemon.stub, task)
    proc = subprocess.Popen(
        [WORKERSTATE, "watch", task, "-o", "json", "--server", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)
        daemon.stub.FailWorker(pb.FailWorkerRequest(task_id=task, reason="before"))
        last = json.loads(proc.stdout.readline())["revision"]
        daemon.stop()
        assert proc.stderr.readline() == f"reconnecting to {address}…\n"
        daemon.start()
        assert proc.stderr.readline() == f"resumed at revision {last}\n"
        daemon.stub.Transition(
            pb.TransitionRequest(
                task_id=task,
                from_state=pb.WORKER_STATE_FAILED,
                to_state=pb.WORKER_STATE_ASSIGNED,
            )
        )
        after = json.loads(proc.stdout.readline())
        assert (after["revision"], after["state"]) == (last + 1, "ASSIGNED")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


@pytest.fixture
def silent_address():
    """A socket that takes connections and never answers, as a hung daemon."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("args", [["ls"], ["get", "t"], ["watch"]])
def test_a_silent_or_absent_daemon_fails_within_the_timeout(silent_address, tmp_path, args):
    for server, words in (
        (silent_address, "did not answer within 800ms"),
        (f"unix:{tmp_path}/none.sock", "cannot reach the workerstate daemon"),
    ):
        started = time.monotonic()
        result = subprocess.run(
            [WORKERSTATE, "--timeout", "800ms", *args, "--server", server],
            capture_output=True,
            text=True,
            timeout=30,
        )
        # Python's start-up comes on top of the timeout; a retry loop would take 3 s or more.
        assert time.monotonic() - started < 0.8 + 1.0
        assert result.returncode == 5
        (line,) = result.stderr.splitlines()
        assert words in line and server in line
        for internal in ("failed to connect", "DEADLINE_EXCEEDED", "Deadline", "ipv4:", "errno"):
            assert internal not in line
