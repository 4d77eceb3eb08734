"""Durations as the daemon's flags and the `workerstate` command write them: `500ms`, `2s`.

Here, in the client package, so the command line parses them without importing the server;
the daemon's flags use the same functions, so both accept exactly the same spellings.
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
