"""One MCP session over stdio: the tools of one mode, the task's heartbeats, and a clean end.

The session ends when stdin closes or the parent process goes away, whichever comes first,
so an agent that exits or crashes never leaves a server beating for a task nobody works on.
Leaving does not move the task: a silent task is for the stale-level watchdog to judge.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

from mcp.server.mcpserver import MCPServer

from ..client import AsyncHeartbeater, AsyncWorkerClient, Security
from ..errors import Unavailable, WorkerNotFound, WorkerStateError
from ..render import explain
from ..types import WorkerState
from .fleet import FleetTools
from .worker import DEFAULT_MOVES, TaskNotFound, WorkerTools, find_task

logger = logging.getLogger("workerstate.mcp")
PARENT_POLL_S = 0.2

FLEET_INSTRUCTIONS = (
    "Tools for orchestrating workerstate workers (coding agents, one task each). Create a "
    "worker per task with create_worker, start an agent in its worktree, then wait_for the "
    "tasks to reach IN_REVIEW (or FAILED) instead of polling."
)


def _worker_instructions(task_id: str) -> str:
    return (
        f"You work on workerstate task {task_id}. Call my_task first. Move it to WORKING when "
        "you start. Call report_progress with a few words whenever you start something new; "
        "stop if it returns stop=true. Move it to IN_REVIEW when your work is ready, or call "
        "fail with the reason if you cannot finish it."
    )


class Beats:
    """The task's heartbeats, every interval, for as long as the session lives.

    The client's heartbeater stops for good once the task is FAILED or COMPLETED or a beat is
    refused, but the session lives on (the task may be retried, the token fixed), so a new
    heartbeater starts whenever the last one has ended.
    """

    def __init__(self, client: AsyncWorkerClient, task_id: str, interval_s: float) -> None:
        self._client = client
        self._task_id = task_id
        self._interval_s = interval_s
        self._activity = ""
        self._current: AsyncHeartbeater | None = None
        self._ended = asyncio.Event()

    def _on_end(self, state: WorkerState | None) -> None:
        self._ended.set()

    def report(self, activity: str) -> None:
        """The activity every beat from now on carries."""
        self._activity = activity
        if self._current is not None:
            self._current.activity = activity

    async def run(self) -> NoReturn:
        while True:
            self._ended = asyncio.Event()
            self._current = self._client.heartbeater(
                self._task_id, self._interval_s, on_end=self._on_end
            )
            self._current.activity = self._activity
            async with self._current:
                await self._ended.wait()
            if self._current.error is not None:
                logger.warning(
                    "heartbeats for %s refused: %s",
                    self._task_id,
                    explain(self._current.error, self._client.target),
                )
            await asyncio.sleep(self._interval_s)


async def _parent_gone() -> None:
    """Returns once this process has been handed to another parent: its agent is gone."""
    parent = os.getppid()
    # Polled: nothing portable wakes a process when its parent dies.
    while os.getppid() == parent:  # noqa: ASYNC110
        await asyncio.sleep(PARENT_POLL_S)
    logger.info("the parent process is gone; stopping")


async def _until_gone(*jobs: Coroutine[Any, Any, Any]) -> None:
    """Runs `jobs` (the stdio session first) until the session or the parent ends."""
    parent = asyncio.ensure_future(_parent_gone())
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait([parent, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if parent in done:
            # Something else may still hold stdin open, and the SDK's thread blocked reading
            # it cannot be interrupted, so waiting for the session could take forever. Nothing
            # needs saying on the way out (the task is not moved), so leave at once.
            logging.shutdown()
            os._exit(0)
    finally:
        for task in (parent, *tasks):
            task.cancel()
        await asyncio.gather(parent, *tasks, return_exceptions=True)
    for task in done:
        task.result()  # a crash is reported, not swallowed


async def _check_task(client: AsyncWorkerClient, task_id: str) -> bool:
    """False when the task does not exist; a daemon that is down is no reason not to start."""
    try:
        await client.get(task_id)
    except WorkerNotFound:
        return False
    except Unavailable as error:
        logger.warning("%s; serving anyway, retrying", explain(error, client.target))
    return True


async def serve(
    target: str,
    security: Security,
    *,
    orchestrator: bool,
    task_id: str | None,
    allowed_moves: frozenset[WorkerState] | None,
    beat_every_s: float,
) -> int:
    """The `workerstate mcp` command; returns its exit code. `allowed_moves` None: the
    default set (WORKING, IN_REVIEW, CONFLICTED)."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="workerstate mcp: %(levelname)s %(message)s"
    )
    async with AsyncWorkerClient(target, security=security) as client:
        if orchestrator:
            server: MCPServer = MCPServer("workerstate", instructions=FLEET_INSTRUCTIONS)
            FleetTools(client).register(server)
            await _until_gone(server.run_stdio_async())
            return 0
        try:
            task_id = await find_task(client, task_id)
        except TaskNotFound as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except WorkerStateError as error:
            print(
                f"error: {explain(error, target)}; without the daemon, name the task with "
                "--task ID or WORKERSTATE_TASK_ID",
                file=sys.stderr,
            )
            return 1
        if not await _check_task(client, task_id):
            print(f"error: no worker has task id {task_id}; create it first", file=sys.stderr)
            return 1
        beats = Beats(client, task_id, beat_every_s)
        server = MCPServer("workerstate", instructions=_worker_instructions(task_id))
        allowed = DEFAULT_MOVES if allowed_moves is None else allowed_moves
        WorkerTools(client, task_id, allowed, beats.report).register(server)
        await _until_gone(server.run_stdio_async(), beats.run())
        return 0
