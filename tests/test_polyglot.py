"""Clients in other languages: a Node.js client against a real daemon, and buf on the proto."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import google.rpc
import pytest

ROOT = Path(__file__).resolve().parent.parent
POLYGLOT = ROOT / "tests" / "polyglot"
NEEDS_NODE = (
    "the polyglot tests need Node.js 18+ and npm: `apt-get install nodejs npm` "
    "(or any Node.js 18+), then `make test` installs the pinned packages"
)


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(NEEDS_NODE)
    if not (POLYGLOT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(
            f"tests/polyglot/node_modules is missing: run `make test`, which runs "
            f"`npm ci --prefix tests/polyglot` ({NEEDS_NODE})"
        )
    return node


def test_node_client_drives_the_daemon_and_decodes_errors(node, make_daemon):
    daemon = make_daemon()
    includes = [ROOT / "protos", Path(google.rpc.__path__[0]).parent.parent]
    result = subprocess.run(
        [node, "--test", "--test-reporter=spec", str(POLYGLOT / "client.test.mjs")],
        cwd=POLYGLOT,
        env={
            **os.environ,
            "WORKERSTATE_ADDRESS": daemon.address,
            "PROTO_INCLUDES": os.pathsep.join(map(str, includes)),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pass 3" in result.stdout and "fail 0" in result.stdout


def test_buf_lint_passes(node):
    result = subprocess.run(
        [str(POLYGLOT / "node_modules" / ".bin" / "buf"), "lint", "protos"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
