"""Labels, selectors, Apply and delete through the typed client and the `workerstate` command."""

from __future__ import annotations

import json

import pytest
from harness import unique
from workerstate.client import (
    InvalidArgument,
    StaleState,
    WorkerActive,
    WorkerClient,
    WorkerExists,
    WorkerNotFound,
    operations,
)


@pytest.fixture
def client(shared_daemon):
    with WorkerClient(shared_daemon.address) as client:
        yield client


def test_the_client_carries_labels_selectors_and_batches(client):
    epic = unique("epic")
    a, b = unique(), unique()
    workers = client.apply(
        [
            operations.create(a, branch="b", worktree="/w", labels={"epic": epic, "repo": "api"}),
            operations.transition(a, "ASSIGNED", "WORKING"),
            operations.create(b, branch="b", worktree="/w", labels={"epic": epic}),
        ]
    )
    assert [w.task_id for w in workers] == [a, a, b]
    assert workers[1].revision == workers[0].revision + 1
    assert {w.task_id for w in client.list(label_selector=f"epic={epic},repo")} == {a}
    labeled = client.set_labels(b, {"epic": epic, "repo": "web"})
    assert labeled.labels == {"epic": epic, "repo": "web"}
    events = client.events(task_id=b)
    assert events[-1].type == "LABELS_CHANGED" and events[-1].from_labels == {"epic": epic}

    with pytest.raises(WorkerExists) as exists:
        client.apply(
            [
                operations.create(unique(), branch="b", worktree="/w"),
                operations.create(a, branch="b", worktree="/w"),
            ]
        )
    assert exists.value.operation_index == 1
    with pytest.raises(InvalidArgument) as bad:
        client.apply(
            [operations.create(unique(), branch="b", worktree="/w"), operations.fail("bad id")]
        )
    assert bad.value.operation_index == 1
    assert "operations[1].fail.task_id" in bad.value.violations

    with pytest.raises(WorkerActive):
        client.delete(a)
    client.fail(a, "not needed")
    gone = client.delete(a, reason="cleanup")
    assert gone.task_id == a
    with pytest.raises(WorkerNotFound):
        client.get(a)


def test_watch_takes_a_selector(client):
    epic = unique("epic")
    watch = client.watch(send_initial_state=True, label_selector=f"epic={epic}")
    client.create(unique(), branch="b", worktree="/w", labels={"epic": "other"})
    inside = client.create(unique(), branch="b", worktree="/w", labels={"epic": epic})
    with watch:
        # A SNAPSHOT or its ASSIGNED event, by when the watch began; never the other worker.
        seen = next(iter(watch))
    assert seen.worker.task_id == inside.task_id


def test_cli_labels_create_label_ls_and_watch(cli):
    task, epic = unique("cli"), unique("e")
    created = cli(
        "create",
        task,
        "--branch",
        "b",
        "--worktree",
        "/w",
        "--label",
        f"epic={epic}",
        "--label",
        "repo=api",
    )
    assert created.returncode == 0, created.stderr
    listed = cli("ls", "-l", f"epic={epic}", "-o", "wide")
    header, row = listed.stdout.splitlines()
    assert "LABELS" in header.split()
    assert f"epic={epic},repo=api" in row.split()
    labeled = cli("label", task, "tier=1", "repo-")
    assert labeled.returncode == 0, labeled.stderr
    assert f"labeled epic={epic},tier=1" in labeled.stdout
    shown = json.loads(cli("get", task, "-o", "json").stdout)
    assert shown["labels"] == {"epic": epic, "tier": "1"}
    assert cli("ls", "-l", f"epic={epic},repo", "-o", "json").stdout.strip() == "[]"
    described = cli("get", task).stdout
    assert f"epic={epic}, tier=1" in described and "LABELS_CHANGED" in described
    events = cli("events", task).stdout.splitlines()
    assert events[0].split() == [
        "REVISION",
        "TIME",
        "TYPE",
        "TASK",
        "FROM",
        "TO",
        "ACTOR",
        "DETAIL",
    ]
    assert f"labels epic={epic},repo=api -> epic={epic},tier=1" in events[-1]

    bad = cli("ls", "-l", "repo in api")
    assert bad.returncode == 2
    assert "label_selector" in bad.stderr and "Traceback" not in bad.stderr
    assert cli("label", task, "Bad Key=1").returncode == 2
    assert cli("label", task, "justakey").returncode == 2
    assert cli("label", unique(), "a=1").returncode == 3


def test_cli_apply_and_delete(cli, tmp_path):
    task = unique("cli")
    batch = tmp_path / "batch.json"
    batch.write_text(
        json.dumps(
            [
                {"create": {"taskId": task, "branch": "b", "worktree": "/w", "labels": {"a": "1"}}},
                {
                    "transition": {
                        "taskId": task,
                        "fromState": "WORKER_STATE_ASSIGNED",
                        "toState": "WORKER_STATE_WORKING",
                    }
                },
            ]
        )
    )
    applied = cli("apply", "-f", str(batch))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines()[-1].startswith(f"worker {task} WORKING (revision ")
    again = cli("apply", "-f", "-", input=batch.read_text())
    assert again.returncode == 4  # the create is refused: the worker exists
    assert "operations[0]" in again.stderr
    assert cli("apply", "-f", "-", input="{not json").returncode == 2
    assert cli("apply", "-f", "-", input='[{"create": {"nope": 1}}]').returncode == 2
    assert cli("apply", "-f", str(tmp_path / "missing.json")).returncode == 2

    active = cli("delete", task)
    assert active.returncode == 4 and "fail it first" in active.stderr
    cli("fail", task, "--reason", "done")
    stale = cli("delete", task, "--revision", "1")
    assert stale.returncode == 4
    deleted = cli("delete", task, "--reason", "cleanup")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.startswith(f"worker {task} deleted (revision ")
    assert cli("get", task).returncode == 3
    assert "DELETED" in cli("events", task).stdout


def test_stale_label_edit_is_a_conflict(client):
    task = client.create(unique(), branch="b", worktree="/w").task_id
    worker = client.get(task)
    client.set_labels(task, {"x": "1"})
    with pytest.raises(StaleState):
        client.set_labels(task, {"x": "2"}, expected_revision=worker.revision)
