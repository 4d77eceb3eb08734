"""Durations as the daemon's flags and `workerstate mcp --beat-every` take them.

It lives in the client package because the client must never import the daemon, while the
daemon may use the client's small pure helpers; one parser keeps the two spellings equal.
"""

from __future__ import annotations

import argparse
import re

_DURATION = re.compile(r"(\d+)(ms|s|m|h)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def parse_duration(text: str) -> int:
    """`500ms`, `30s`, `5m`, `1h` (or a sum such as `1m30s`) as milliseconds."""
    text = text.strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a number and a unit, e.g. 500ms, 30s, 5m, 1h"
        )
    return sum(int(n) * _UNIT_MS[u] for n, u in parts)


def format_duration(ms: int) -> str:
    for unit in ("h", "m", "s"):
        if ms and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def positive_duration(text: str) -> int:
    ms = parse_duration(text)
    if ms <= 0:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be greater than zero")
    return ms
