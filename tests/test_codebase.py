"""Checks on the code itself: generated bindings fresh, ruff clean, mypy --strict clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GENERATED = sorted((ROOT / "protos/workerstate/v1").glob("workerstate_pb2*.py*"))


def test_generated_code_is_fresh(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "protos/generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    assert len(GENERATED) == 4
    for committed in GENERATED:
        fresh = tmp_path / "workerstate/v1" / committed.name
        assert fresh.read_text() == committed.read_text(), (
            f"{committed.name} is stale: run `make proto` and commit the result"
        )


def test_ruff_is_clean():
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [str(BIN / "ruff"), *args], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean_on_server_client_and_example(tmp_path):
    # mypy cannot follow setuptools' package-dir mapping, so lay the import names out as
    # symlinks: workerstate/{server,client,v1} -> server/, client/, protos/workerstate/v1/.
    tree = tmp_path / "workerstate"
    tree.mkdir()
    for name, target in (
        ("server", "server"),
        ("client", "client"),
        ("v1", "protos/workerstate/v1"),
    ):
        (tree / name).symlink_to(ROOT / target)
    result = subprocess.run(
        [
            str(BIN / "mypy"),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-p",
            "workerstate.server",
            "-p",
            "workerstate.client",
        ],
        cwd=tmp_path,
        env={"MYPYPATH": str(tmp_path), "PATH": str(BIN)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
