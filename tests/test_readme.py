"""The README's "Call it" example runs as written against a real daemon."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_call_it_example_runs(make_daemon):
    daemon = make_daemon()
    section = README.read_text().split("## Call it", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "127.0.0.1:50051" in code
    result = subprocess.run(
        [sys.executable, "-c", code.replace("127.0.0.1:50051", daemon.address)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert 'task_id: "t-17"' in result.stdout
    assert "state: WORKER_STATE_WORKING" in result.stdout


def test_write_a_worker_shows_the_example_as_it_is():
    section = README.read_text().split("## Write a worker", 1)[1]
    shown = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    example = (README.parent / "examples" / "worker.py").read_text()
    assert "def run(" in shown
    assert shown.strip() in example
