"""What both modes' tools share: reaching the daemon, and turning its refusals into advice.

Only a ToolError reaches the model with its message (anything else becomes a bare "Error
executing tool"), so every daemon error is turned into one that says what to do next.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Concatenate, ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from ..client import AsyncWorkerClient
from ..errors import (
    InvalidTransition,
    PermissionDenied,
    StaleState,
    Unauthenticated,
    Unavailable,
    WorkerCompleted,
    WorkerExists,
    WorkerNotFound,
    WorkerStateError,
)
from ..render import explain
from ..types import WorkerState

P = ParamSpec("P")
R = TypeVar("R")

_WHAT_TO_DO: tuple[tuple[type[WorkerStateError], str], ...] = (
    (StaleState, "read the task again and move from the state it is in, if that still makes sense"),
    (InvalidTransition, "the state machine has no such move; pick another target state"),
    (WorkerNotFound, "check the task id (list_workers shows them all)"),
    (WorkerExists, "pick another task id, or use the existing worker (get_worker)"),
    (WorkerCompleted, "COMPLETED is final; nothing more can happen to this task"),
    (Unauthenticated, "the daemon wants a valid token: set --token or WORKERSTATE_TOKEN"),
    (PermissionDenied, "this token is read-only; configure one that may write"),
    (Unavailable, "tell the user; call again once the daemon is back"),
)


def tool_error(error: WorkerStateError, target: str) -> ToolError:
    """The daemon's refusal, explained as the CLI explains it, plus what the agent should do."""
    advice = next((text for cls, text in _WHAT_TO_DO if isinstance(error, cls)), "")
    return ToolError(f"{explain(error, target)}: {advice}" if advice else explain(error, target))


class Tools:
    """Base of each mode's tool set: the client its tools reach the daemon through."""

    def __init__(self, client: AsyncWorkerClient) -> None:
        self.client = client


ToolsT = TypeVar("ToolsT", bound=Tools)


def daemon_errors(
    method: Callable[Concatenate[ToolsT, P], Awaitable[R]],
) -> Callable[Concatenate[ToolsT, P], Awaitable[R]]:
    """Wraps a tool so a daemon error reaches the model as advice, not as a crash."""

    @functools.wraps(method)
    async def call(self: ToolsT, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        except WorkerStateError as error:
            raise tool_error(error, self.client.target) from None

    return call


def parse_state(name: str) -> WorkerState:
    """A state named in any case; a model that misspells one learns the right names."""
    try:
        return WorkerState(name.strip().upper())
    except ValueError:
        names = ", ".join(s.value for s in WorkerState)
        raise ToolError(f"unknown state {name!r}: use one of {names}") from None


def parse_states(names: Iterable[str]) -> list[WorkerState]:
    return [parse_state(name) for name in names]
