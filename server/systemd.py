"""systemd readiness (Type=notify): tell the service manager when serving starts and stops.

A no-op unless systemd set NOTIFY_SOCKET; the protocol is one datagram per state change.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> None:
    """Send e.g. "READY=1" or "STOPPING=1" to systemd, if it is listening."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(state.encode(), address)
