"""Board sessions: a signed cookie stands for a token, so the token is typed once and never
travels again.

A session is `NAME.EXPIRES.MAC`, where MAC is an HMAC keyed by the token's own secret. Nothing
is kept in memory, so a session outlives a daemon restart (the page reconnects without a new
login), and removing a token from the file ends its sessions at the next restart. The cookie
holds the token's name, never its secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from ..clock import Clock
from ..security import Token, find_token

COOKIE = "workerstate_board"
# A working day and then some: a reviewer logs in once a day, and a leaked cookie dies soon.
SESSION_S = 16 * 3600
_CONTEXT = b"workerstate board session\0"


def _mac(token: Token, name: str, expires_s: int) -> str:
    message = _CONTEXT + name.encode() + b"\0" + str(expires_s).encode()
    return hmac.new(token.secret, message, hashlib.sha256).hexdigest()


class Sessions:
    """Issues and checks session cookies for the daemon's tokens."""

    def __init__(self, tokens: list[Token], clock: Clock) -> None:
        self._tokens = tokens
        self._by_name = {t.name: t for t in tokens}
        self._clock = clock

    def login(self, offered: str) -> tuple[Token, str] | None:
        """The token whose secret was typed and a cookie value for it; None if none matches."""
        token = find_token(self._tokens, offered.encode())
        if token is None:
            return None
        expires_s = self._clock.now_ms() // 1000 + SESSION_S
        name = base64.urlsafe_b64encode(token.name.encode()).decode()
        return token, f"{name}.{expires_s}.{_mac(token, token.name, expires_s)}"

    def check(self, cookie: str | None) -> Token | None:
        """The token a cookie stands for, if it is genuine and not expired."""
        if not cookie or cookie.count(".") != 2:
            return None
        encoded, expires, mac = cookie.split(".")
        try:
            name = base64.urlsafe_b64decode(encoded.encode()).decode()
            expires_s = int(expires)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        token = self._by_name.get(name)
        if token is None or expires_s <= self._clock.now_ms() // 1000:
            return None
        return token if hmac.compare_digest(mac, _mac(token, name, expires_s)) else None
