"""The board's HTTP face: the page, its live feed, the history of a card, and its actions.

It runs on the daemon's own event loop (aiohttp), so it reads the in-memory view and hub with
no locks and no copies. Every write is a compare-and-set through the same validation, writer
and error table as the gRPC API; an error reaches the page as JSON naming the same reason.

Writes are POSTs with a JSON body and an `Origin` equal to the board's own, so another site
cannot make a reviewer's browser move workers (a cross-site form can send neither). With
tokens, `GET /` is a login form; a signed, HttpOnly, SameSite=Strict cookie then stands for
the token, which never appears in a URL, a page or a log line.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format
from workerstate.v1 import workerstate_pb2 as pb

from .. import domain, validate
from ..domain import (
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    WorkerStateError,
)
from ..errors import ERRORS
from ..security import Token, is_loopback
from .feed import Feed, watch_query
from .fleet import Fleet
from .sessions import COOKIE, SESSION_S, Sessions

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_ALERT_MARK = "<!-- alert -->"
_LOGIN_REFUSED = '<p role="alert" class="alert">That token was not accepted.</p>'

# The gRPC code of each domain error (from the one error table) as an HTTP status.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
}
# The page, its script and its style: no inline code, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: WorkerStateError) -> web.Response:
    """A domain error as JSON: the same reason and metadata a gRPC caller gets."""
    if isinstance(error, InvalidArgument):
        body: dict[str, Any] = {
            "reason": "INVALID_ARGUMENT",
            "message": str(error),
            "violations": [
                {"field": v.field, "description": v.description} for v in error.violations
            ],
        }
        return web.json_response(body, status=400)
    code, reason, metadata = ERRORS[type(error)]
    body = {"reason": reason, "message": str(error), "metadata": metadata(error)}
    return web.json_response(body, status=HTTP_STATUS.get(code, 500))


def bad_request(message: str) -> web.Response:
    return web.json_response({"reason": "BAD_REQUEST", "message": message}, status=400)


def ssl_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """The gRPC listener's certificate (and client CA, for mutual TLS) for HTTPS."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass(frozen=True, slots=True)
class Access:
    """Who is looking: a token's name (None without --token-file), and whether it may write."""

    name: str | None
    can_write: bool


class Board:
    """The board's web application and its listener."""

    def __init__(
        self,
        fleet: Fleet,
        tokens: list[Token] | None,
        tls: ssl.SSLContext | None,
        loopback: bool,
    ) -> None:
        self._fleet = fleet
        self._sessions = Sessions(tokens, fleet.clock) if tokens else None
        self._tls = tls
        self._loopback = loopback
        self._page = (STATIC / "index.html").read_bytes()
        self._login = (STATIC / "login.html").read_text()
        self._socket: socket.socket | None = None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_post("/login", self._log_in)
        app.router.add_post("/logout", self._log_out)
        app.router.add_get("/api/session", self._session)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/selector", self._selector)
        app.router.add_get("/api/history", self._history)
        app.router.add_post("/api/transition", self._transition)
        app.router.add_static("/static", STATIC)
        return app

    def bind(self, listen: str) -> str:
        """Take the address (HOST:PORT; port 0 picks one) now, so a bad one stops the daemon
        before it serves anything; returns the board's URL."""
        host, port = listen.rsplit(":", 1)
        host = host.strip("[]")
        family, kind, proto, _, address = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebind at restart
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self._tls else 'http'}://{shown}:{sock.getsockname()[1]}/"

    async def start(self) -> None:
        """Serve on the bound address."""
        assert self._socket is not None, "bind() first"
        # No access log: the daemon logs changes already, and a line per feed would be noise.
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket, ssl_context=self._tls).start()

    async def stop(self) -> None:
        """Stop listening and end open pages (their feeds end once the hub closes)."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._socket is not None:
            self._socket.close()

    # -- guards ---------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Headers for every answer, and (on loopback) a Host check: a site whose name was
        made to resolve to 127.0.0.1 (DNS rebinding) would otherwise count as same-origin."""
        if self._loopback and not self._loopback_host(request.host):
            return web.Response(status=421, text="misdirected request\n")
        response = await handler(request)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    @staticmethod
    def _loopback_host(host: str) -> bool:
        name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        return is_loopback(f"{name}:0")

    def _access(self, request: web.Request) -> Access | None:
        if self._sessions is None:
            return Access(None, can_write=True)
        token = self._sessions.check(request.cookies.get(COOKIE))
        return None if token is None else Access(token.name, not token.read_only)

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        # Browsers send Origin with every POST; a request without one is not from this page.
        return request.headers.get("Origin") == f"{request.scheme}://{request.host}"

    # -- the page -------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        if self._access(request) is None:
            return self._login_page(refused=False)
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    def _login_page(self, refused: bool) -> web.Response:
        text = self._login.replace(_ALERT_MARK, _LOGIN_REFUSED if refused else "")
        return web.Response(
            text=text, content_type="text/html", charset="utf-8", status=401 if refused else 200
        )

    async def _log_in(self, request: web.Request) -> web.StreamResponse:
        if not self._same_origin(request):
            return web.Response(status=403, text="cross-origin request refused\n")
        if self._sessions is None:
            raise web.HTTPSeeOther("/")
        form = await request.post()
        offered = form.get("token")
        session = self._sessions.login(offered) if isinstance(offered, str) else None
        if session is None:
            log.warning("board: a login was refused (no token matches)")
            return self._login_page(refused=True)
        token, cookie = session
        log.info("board: token %r logged in", token.name)
        response = web.HTTPSeeOther("/")
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=SESSION_S,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self._tls is not None,
        )
        return response

    async def _log_out(self, request: web.Request) -> web.StreamResponse:
        if not self._same_origin(request):
            return web.Response(status=403, text="cross-origin request refused\n")
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE, path="/")
        return response

    # -- reads ----------------------------------------------------------------------------

    async def _session(self, request: web.Request) -> web.StreamResponse:
        """Who the page is signed in as; 401 tells a page whose session ended to log in."""
        access = self._access(request)
        if access is None:
            return error_response(Unauthenticated())
        return web.json_response({"user": access.name, "can_write": access.can_write})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        access = self._access(request)
        if access is None:
            return error_response(Unauthenticated())
        # EventSource sends Last-Event-ID itself when it reconnects; a page that had to open
        # a new EventSource passes it as `after` (a revision, no secret).
        last = request.headers.get("Last-Event-ID") or request.query.get("after")
        resume = Feed.resumable(self._fleet, last)
        try:
            query = watch_query(request.query.get("selector", ""), resume)
        except WorkerStateError as e:
            return error_response(e)
        feed = Feed(self._fleet, access.name, access.can_write, query)
        response = web.StreamResponse(
            headers={
                **SECURITY_HEADERS,
                "Content-Type": "text/event-stream",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        try:
            async for chunk in feed.events():
                await response.write(chunk)
        except ConnectionError:
            pass  # the page went away
        return response

    async def _selector(self, request: web.Request) -> web.StreamResponse:
        """Checks a label selector before the page reconnects its feed with it: EventSource
        cannot read why a feed was refused, and the page shows the daemon's explanation."""
        if self._access(request) is None:
            return error_response(Unauthenticated())
        selector = request.query.get("selector", "")
        try:
            watch_query(selector, None)
        except WorkerStateError as e:
            return error_response(e)
        return web.json_response({"selector": selector})

    async def _history(self, request: web.Request) -> web.StreamResponse:
        if self._access(request) is None:
            return error_response(Unauthenticated())
        try:
            task_id = validate.task_id(request.query.get("task_id", ""))
            events = await self._fleet.history(task_id)
        except WorkerStateError as e:
            return error_response(e)
        return web.json_response(
            {
                "task_id": task_id,
                "events": [
                    {
                        "revision": e.revision,
                        "type": e.type.value,
                        "time_ms": e.time_ms,
                        "from_state": e.from_state.value if e.from_state else None,
                        "to_state": e.worker.state.value,
                        "reason": e.reason,
                        "actor": e.actor,
                        "labels": [list(pair) for pair in e.worker.labels],
                    }
                    for e in events
                ],
            }
        )

    # -- writes ---------------------------------------------------------------------------

    async def _transition(self, request: web.Request) -> web.StreamResponse:
        """A compare-and-set Transition: the body is a TransitionRequest in protobuf JSON."""
        access = self._access(request)
        if access is None:
            return error_response(Unauthenticated())
        if not self._same_origin(request):
            return web.json_response(
                {"reason": "CROSS_ORIGIN", "message": "cross-origin request refused"}, status=403
            )
        if not access.can_write:
            return error_response(PermissionDenied(access.name or ""))
        if request.content_type != "application/json":
            return bad_request("send the transition as application/json")
        try:
            body = await request.json()
            if not isinstance(body, dict):
                return bad_request("the body must be a JSON object")
            message = json_format.ParseDict(body, pb.TransitionRequest())
        except (ValueError, json_format.ParseError) as e:
            return bad_request(f"not a TransitionRequest: {e}")
        try:
            command = validate.transition(message)
            if access.name:  # stamped as the gRPC API stamps a token's calls
                command = dataclasses.replace(command, actor=access.name)
            domain.check_transition(command.from_state, command.to_state)
            worker = await self._fleet.execute(command)
        except WorkerStateError as e:
            return error_response(e)
        self._fleet.reasons.learn(worker.task_id, worker.state, worker.revision, command.reason)
        return web.json_response({"card": self._fleet.worker_card(worker)})
