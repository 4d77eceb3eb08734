"""Worker mode: one agent's own task, and the tools that let it report and move only that task.

Moves are compare-and-sets from what the agent last saw, so an agent acting on an old picture
is told what changed instead of overwriting someone else's move.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ..client import AsyncWorkerClient
from ..errors import StaleState
from ..render import iso, worker_json
from ..types import Event, Worker, WorkerState
from .tools import Tools, daemon_errors, parse_state

# An agent may say it works, wants review or hit a conflict; approving or completing its own
# card is for people and orchestrators.
DEFAULT_MOVES = frozenset({WorkerState.WORKING, WorkerState.IN_REVIEW, WorkerState.CONFLICTED})
HISTORY = 20
TASK_ENV = "WORKERSTATE_TASK_ID"


class TaskNotFound(Exception):
    """No task for this session; the message says every way to name one."""


async def find_task(client: AsyncWorkerClient, task_id: str | None) -> str:
    """The task from --task, else the environment, else the worker whose worktree is here."""
    task_id = task_id or os.environ.get(TASK_ENV) or None
    if task_id is not None:
        return task_id
    found = _worker_here(await client.list())
    if isinstance(found, str):
        return found
    raise TaskNotFound(
        f"no task for this MCP server: pass --task ID, set {TASK_ENV}, or start it in a "
        f"worker's worktree (no worker's worktree is {found}); or use --orchestrator"
    )


def _worker_here(workers: list[Worker]) -> str | Path:
    """The task id of the worker whose worktree is the current directory, else that
    directory (resolved, as the worktrees are, so a symlinked path still matches)."""
    here = Path.cwd().resolve()
    for worker in workers:
        if worker.worktree and Path(worker.worktree).resolve() == here:
            return worker.task_id
    return here


def history_json(event: Event) -> dict[str, Any]:
    return {
        "revision": event.revision,
        "type": event.type.value,
        "from_state": None if event.from_state is None else event.from_state.value,
        "to_state": event.worker.state.value,
        "reason": event.reason,
        "time": iso(event.time),
    }


class WorkerTools(Tools):
    """The tools of one agent, bound to its task."""

    def __init__(
        self,
        client: AsyncWorkerClient,
        task_id: str,
        allowed: frozenset[WorkerState],
        report: Callable[[str], None],
    ) -> None:
        super().__init__(client)
        self.task_id = task_id
        self.allowed = allowed
        self._report = report
        self._seen: Worker | None = None  # what the agent was last shown: moves start from it

    def register(self, server: MCPServer) -> None:
        for tool in (self.my_task, self.report_progress, self.move, self.fail):
            server.add_tool(tool)

    @daemon_errors
    async def my_task(self) -> dict[str, Any]:
        """Your task: its state, branch, worktree, description, revision, liveness, and its last
        20 events (newest first). Read it before you start and after any refused move."""
        worker, events = await asyncio.gather(
            self.client.get(self.task_id), self.client.events(task_id=self.task_id)
        )
        self._seen = worker
        return {**worker_json(worker), "history": [history_json(e) for e in events[::-1][:HISTORY]]}

    @daemon_errors
    async def report_progress(self, activity: str) -> dict[str, Any]:
        """Say what you are doing now, in a few words; it shows on the board. When `stop` comes
        back true the task is FAILED or COMPLETED: stop working on it."""
        self._report(activity)
        state = await self.client.heartbeat(self.task_id, activity)
        return {"state": state.value, "stop": state in (WorkerState.FAILED, WorkerState.COMPLETED)}

    @daemon_errors
    async def move(self, to_state: str, reason: str = "") -> dict[str, Any]:
        """Move your task to another state, from the state you last saw it in: WORKING when you
        start, IN_REVIEW when your work is ready, CONFLICTED when your branch no longer merges.
        A move to the state it is in already changes nothing."""
        target = parse_state(to_state)
        seen = self._seen or await self.client.get(self.task_id)
        if target == seen.state or target not in self.allowed:
            current = await self._look()
            if current.state == target:
                return {**worker_json(current), "changed": False}
            if target not in self.allowed:
                raise ToolError(self._refusal(target, current))
            raise ToolError(_conflict(current, seen))
        try:
            worker = await self.client.transition(
                self.task_id, seen.state, target, expected_revision=seen.revision, reason=reason
            )
        except StaleState:
            current = await self._look()
            if current.state == target:
                return {**worker_json(current), "changed": False}
            raise ToolError(_conflict(current, seen)) from None
        self._seen = worker
        return {**worker_json(worker), "changed": True}

    @daemon_errors
    async def fail(self, reason: str) -> dict[str, Any]:
        """Give the task up (it becomes FAILED) when you cannot finish it; say why, for the
        person or orchestrator who retries it."""
        self._seen = await self.client.fail(self.task_id, reason)
        return worker_json(self._seen)

    async def _look(self) -> Worker:
        """Reads the task afresh; the agent is told what was read, so it counts as seen."""
        self._seen = await self.client.get(self.task_id)
        return self._seen

    def _refusal(self, target: WorkerState, current: Worker) -> str:
        allowed = ", ".join(s.value for s in WorkerState if s in self.allowed) or "no state"
        return (
            f"refused: this agent may move its task only to {allowed} (the server's "
            f"--allow-moves), not to {target.value}; task {self.task_id} stays "
            f"{current.state.value}. Ask the person or orchestrator in charge for that move"
        )


def _conflict(current: Worker, seen: Worker) -> str:
    return (
        f"conflict: task {current.task_id} is {current.state.value} at revision "
        f"{current.revision}, not {seen.state.value} at revision {seen.revision} as you last saw "
        "it; someone else moved it. Call my_task to see what happened, then move again if it "
        "still makes sense (the next move starts from the state named here)"
    )
