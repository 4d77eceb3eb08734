"""What every bench prints and writes: the table, the verdicts, and a note on the machine.

The figures are only worth reading next to the machine's state when they were taken, so each
bench starts by sampling /proc for other CPU-heavy processes (a test suite, a build) and puts
what it found at the top of its results: a noisy run is then recognisable as one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BUSY_PERCENT = 20.0  # of one core, over the sample: above this a process is noted
Row = dict[str, Any]
Target = tuple[str, str, bool | None]  # (what, the figure, met; None: not measured)

COLUMNS = (
    "workload",
    "system",
    "params",
    "ops_per_s",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "errors",
    "server_cpu_ms_per_op",
    "rss_mb",
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def markdown(rows: list[Row], columns: tuple[str, ...] = COLUMNS) -> str:
    """The rows as a table; whatever a row holds beyond `columns` goes to its notes."""
    lines = ["| " + " | ".join(columns) + " | notes |", "|" + "---|" * (len(columns) + 1)]
    for r in rows:
        notes = r.get("skipped") or ", ".join(f"{k}={v}" for k, v in r.items() if k not in columns)
        cells = [
            json.dumps(r[c]) if c == "params" else ("" if r.get(c) is None else str(r[c]))
            for c in columns
        ]
        lines.append("| " + " | ".join(cells) + f" | {notes} |")
    return "\n".join(lines) + "\n"


def verdicts(targets: list[Target]) -> str:
    word = {True: "met", False: "MISSED", None: "NOT MEASURED"}
    return "\n".join(f"- {what}: {ratio} {word[met]}" for what, ratio, met in targets)


# -- other work on the machine ------------------------------------------------------------------


def _cpu_ticks() -> dict[int, tuple[int, str]]:
    """Each process's CPU ticks so far (user + system) and its name."""
    found: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited while we looked
        name = text[text.find("(") + 1 : text.rfind(")")]
        fields = text.rsplit(")", 1)[1].split()
        found[int(stat.parent.name)] = (int(fields[11]) + int(fields[12]), name)
    return found


def _command(pid: int, name: str) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return name
    line = " ".join(a.decode(errors="replace") for a in argv if a)
    return (line or name)[:100]


def busy_processes(sample_s: float = 1.0, threshold: float = BUSY_PERCENT) -> list[Row]:
    """Processes other than this one that used more than `threshold`% of a core over a sample."""
    before = _cpu_ticks()
    time.sleep(sample_s)
    after = _cpu_ticks()
    busy = []
    for pid, (ticks, name) in after.items():
        if pid == os.getpid() or pid not in before:
            continue
        percent = (ticks - before[pid][0]) / CLOCK_TICKS / sample_s * 100
        if percent > threshold:
            busy.append({"pid": pid, "cpu_percent": round(percent), "command": _command(pid, name)})
    return sorted(busy, key=lambda p: -p["cpu_percent"])


def machine_note() -> str:
    """One paragraph on the machine as the bench starts: cores, load, other busy processes."""
    busy = busy_processes()
    note = f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start. "
    if not busy:
        return note + f"No other process above {BUSY_PERCENT:.0f}% of a core at the start."
    listed = "; ".join(f"pid {p['pid']} {p['cpu_percent']}% {p['command']}" for p in busy)
    return note + f"NOISY: other processes above {BUSY_PERCENT:.0f}% of a core: {listed}."


def write(stem: str, rows: list[Row], targets: list[Target], header: str = "") -> str:
    """bench/results/STEM.json (the rows) and STEM.md (header, table, verdicts); returns the md.

    A smoke run names its STEM with `-quick`, which git ignores: it never replaces a full run's.
    """
    text = (header + "\n\n" if header else "") + markdown(rows)
    if targets:
        text += "\n" + verdicts(targets) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(text)
    return text
