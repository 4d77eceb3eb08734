"""Who may talk to the daemon: TLS and mutual TLS, bearer tokens, and the listen policy.

Defaults are safe: loopback or a unix socket (mode 0600). Listening elsewhere without TLS
and without tokens is refused unless --insecure says so. Tokens are compared in constant
time and never logged; health checks stay open so probes need no secret.
"""

from __future__ import annotations

import contextvars
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from .domain import PermissionDenied, Unauthenticated, WorkerStateError
from .errors import to_status
from .handlers import handler_like

# Calls a read-only token may make; everything else changes state.
READ_ONLY_METHODS = frozenset({"GetWorker", "ListWorkers", "WatchState", "ListEvents"})
OPEN_SERVICES = ("/grpc.health.v1.Health/",)


class SecurityError(Exception):
    """A security setting cannot be used as given (bad token file, unsafe listen address)."""


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    secret: bytes
    read_only: bool


def load_tokens(path: Path) -> list[Token]:
    """Parse `NAME:TOKEN` or `NAME:TOKEN:ro` lines; `#` starts a comment."""
    try:
        text = path.read_text()
    except OSError as e:
        raise SecurityError(f"cannot read token file {path}: {e.strerror}") from None
    tokens: list[Token] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(":")
        if (
            len(parts) not in (2, 3)
            or not parts[0]
            or not parts[1]
            or (len(parts) == 3 and parts[2] != "ro")
        ):
            # The line itself may hold a secret: name only its number.
            raise SecurityError(f"{path} line {number}: expected NAME:TOKEN or NAME:TOKEN:ro")
        if any(t.name == parts[0] for t in tokens):
            raise SecurityError(f"{path} line {number}: token name {parts[0]!r} repeated")
        tokens.append(Token(parts[0], parts[1].encode(), len(parts) == 3))
    if not tokens:
        raise SecurityError(f"{path} holds no tokens; every call would be refused")
    return tokens


def find_token(tokens: list[Token], offered: bytes) -> Token | None:
    """The token whose secret is `offered`; every token is compared, so timing says nothing."""
    found = None
    for token in tokens:
        if hmac.compare_digest(token.secret, offered):
            found = token
    return found


def is_loopback(listen: str) -> bool:
    """Unix sockets and loopback addresses are reachable only from this machine."""
    if listen.startswith("unix:"):
        return True
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_listen(listen: str, *, tls: bool, tokens: bool, insecure: bool) -> None:
    if not (is_loopback(listen) or tls or tokens or insecure):
        raise SecurityError(
            f"refusing to listen on {listen} without TLS and without tokens: anyone who can "
            "reach it could move workers. Add --tls-cert/--tls-key and/or --token-file, "
            "listen on 127.0.0.1 or unix:PATH, or pass --insecure if the network is trusted"
        )


def server_credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    try:
        pair = (key.read_bytes(), cert.read_bytes())
        ca = client_ca.read_bytes() if client_ca else None
    except OSError as e:
        raise SecurityError(f"cannot read {e.filename}: {e.strerror}") from None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=ca, require_client_auth=ca is not None
    )


# The name of the token that made the current call: the actor of the events it stores.
_CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("workerstate_caller", default="")


def caller() -> str:
    """The current call's token name; "" without token authentication."""
    return _CALLER.get()


def _as(name: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler`, run with `name` as the caller. Only changes are stamped, and those are all
    unary calls; streams are served as they are."""
    if not handler.unary_unary:
        return handler
    served = handler.unary_unary

    async def as_caller(request: Any, context: grpc.aio.ServicerContext) -> Any:
        _CALLER.set(name)
        return await served(request, context)

    return handler_like(handler, as_caller)


class TokenAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Requires `authorization: Bearer TOKEN` on every call but health checks."""

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens

    def _who(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> Token | None:
        header = next((v for k, v in metadata or () if k == "authorization"), "")
        text = header.decode(errors="replace") if isinstance(header, bytes) else header
        if not text.startswith("Bearer "):
            return None
        return find_token(self._tokens, text.removeprefix("Bearer ").encode())

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_SERVICES):
            return handler
        token = self._who(details.invocation_metadata)
        if token is None:
            return _refusal(handler, Unauthenticated())
        if token.read_only and details.method.rsplit("/", 1)[-1] not in READ_ONLY_METHODS:
            return _refusal(handler, PermissionDenied(token.name))
        return _as(token.name, handler)


def _refusal(handler: grpc.RpcMethodHandler, error: WorkerStateError) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that only reports `error`."""
    status = to_status(error)

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort_with_status(status)

    return handler_like(handler, refuse)
