"""Orchestrator mode: the whole fleet, for an agent that starts other agents and waits on them."""

from __future__ import annotations

import asyncio
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ..render import worker_json
from ..types import Worker, WorkerState
from .tools import Tools, daemon_errors, parse_state, parse_states


class FleetTools(Tools):
    """Every worker's tools, with no limit on moves: the orchestrator stands in for people."""

    def register(self, server: MCPServer) -> None:
        for tool in (
            self.list_workers,
            self.get_worker,
            self.create_worker,
            self.move_worker,
            self.fail_worker,
            self.wait_for,
        ):
            server.add_tool(tool)

    @daemon_errors
    async def list_workers(
        self, states: tuple[str, ...] = (), label_selector: str = ""
    ) -> dict[str, Any]:
        """Every worker, newest change first; only those in `states` when you name some, and
        only those whose labels match `label_selector` (kubectl's syntax: repo=api,!draft)."""
        workers = await self.client.list(states=parse_states(states), label_selector=label_selector)
        return {"workers": [worker_json(w) for w in workers]}

    @daemon_errors
    async def get_worker(self, task_id: str) -> dict[str, Any]:
        """One worker: state, branch, worktree, revision, liveness and last activity."""
        return worker_json(await self.client.get(task_id))

    @daemon_errors
    async def create_worker(
        self,
        task_id: str,
        branch: str,
        worktree: str,
        description: str = "",
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Register a new task (in ASSIGNED) before you start an agent on it; its worktree is
        how that agent's own MCP server finds the task. `labels` tell workers apart (repo,
        agent, epic), for list_workers' label_selector."""
        worker = await self.client.create(
            task_id,
            branch=branch,
            worktree=worktree,
            description=description or None,
            labels=labels or {},
        )
        return worker_json(worker)

    @daemon_errors
    async def move_worker(
        self, task_id: str, from_state: str, to_state: str, reason: str = ""
    ) -> dict[str, Any]:
        """Move a worker from the state you believe it is in (a compare-and-set): refused,
        naming its actual state and revision, if it has moved since you looked."""
        worker = await self.client.transition(
            task_id, parse_state(from_state), parse_state(to_state), reason=reason
        )
        return worker_json(worker)

    @daemon_errors
    async def fail_worker(self, task_id: str, reason: str) -> dict[str, Any]:
        """Give a task up (FAILED), from any state but COMPLETED; it may be ASSIGNED again."""
        return worker_json(await self.client.fail(task_id, reason))

    @daemon_errors
    async def wait_for(
        self, task_ids: list[str], states: list[str], timeout_s: float = 300
    ) -> dict[str, Any]:
        """Wait until every listed task is in one of `states` (e.g. IN_REVIEW, FAILED), or
        `timeout_s` passes; `timed_out` says which. Changes are pushed, so waiting is cheap."""
        wanted = set(parse_states(states))
        ids = list(dict.fromkeys(task_ids))
        if not ids or not wanted:
            raise ToolError("name at least one task id and at least one state to wait for")
        if timeout_s < 0:
            raise ToolError(f"timeout_s is {timeout_s}; use a number of seconds, 0 or more")
        if not _all_in(await self._get_all(ids), wanted):  # an unknown id fails here, at once
            await self._watch_until(ids, wanted, timeout_s)
        workers = await self._get_all(ids)
        return {
            "workers": [worker_json(w) for w in workers],
            "timed_out": not _all_in(workers, wanted),
        }

    async def _get_all(self, task_ids: list[str]) -> list[Worker]:
        return list(await asyncio.gather(*(self.client.get(t) for t in task_ids)))

    async def _watch_until(
        self, task_ids: list[str], wanted: set[WorkerState], timeout_s: float
    ) -> None:
        """Follows WatchState from a snapshot until the tasks all arrive, or the timer closes
        the watch (closing ends the iteration cleanly; cancelling a step would not)."""
        states: dict[str, WorkerState] = {}
        watch = self.client.watch(task_ids, send_initial_state=True)
        timer = asyncio.get_running_loop().call_later(timeout_s, watch.close)
        try:
            async with watch:
                async for event in watch:
                    states[event.worker.task_id] = event.worker.state
                    if len(states) == len(task_ids) and set(states.values()) <= wanted:
                        return
        finally:
            timer.cancel()


def _all_in(workers: list[Worker], wanted: set[WorkerState]) -> bool:
    return all(w.state in wanted for w in workers)
