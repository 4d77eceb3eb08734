"""Checks on the code itself: generated bindings fresh, ruff clean, mypy --strict clean."""

from __future__ import annotations

import ast
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


def _imports() -> dict[str, set[str]]:
    """What each module of the server imports: other server modules by dotted name (relative
    imports resolved, e.g. "storage.base"), and outside packages by their top-level name."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "server").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT / "server").with_suffix("").parts)
        package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
        package = "" if package == module and "." not in module else package
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
                if node.module is None:
                    names.update(".".join([*base, a.name]) for a in node.names)
                else:
                    names.add(target)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
        found[module.removesuffix(".__init__")] = names
    return found


# The domain side of the daemon: no wire format, no driver. The storage seam sits below it.
CORE = {"domain", "clock", "view", "liveness", "heartbeats", "writer", "follower"}
WIRE = {"grpc", "workerstate", "google", "grpc_status", "grpc_health", "grpc_reflection"}
DRIVERS = {"sqlite3", "asyncpg"}


def test_core_imports_no_wire_format_and_no_driver():
    imports = _imports()
    for module in CORE:
        names = imports[module]
        assert not names & (WIRE | DRIVERS), (
            f"server/{module}.py imports {names & (WIRE | DRIVERS)}"
        )
        local = {n for n in names if n in imports}
        assert local <= CORE | {"storage.base"}, f"server/{module}.py imports {local - CORE}"


def test_storage_knows_nothing_above_it():
    for module, names in _imports().items():
        if module.startswith("storage"):
            local = {n for n in names if n in _imports()}
            assert local <= {"domain"} | {m for m in _imports() if m.startswith("storage")}, (
                f"server/{module.replace('.', '/')}.py imports {local}"
            )
            assert not names & WIRE, module


def test_only_the_composition_root_picks_a_backend():
    """Everything but `daemon` (and storage itself) sees backends only through the seam."""
    for module, names in _imports().items():
        if not module.startswith("storage") and module != "daemon":
            assert not {n for n in names if n.startswith("storage.") and n != "storage.base"}
            assert "storage" not in names or module == "main", module
            assert not names & DRIVERS, module


def test_the_server_has_no_import_cycle():
    imports = _imports()
    graph = {m: {n for n in names if n in imports} for m, names in imports.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == 2:
            return
        assert state.get(module) != 1, "import cycle: " + " -> ".join([*path, module])
        state[module] = 1
        for name in graph[module]:
            visit(name, [*path, module])
        state[module] = 2

    for module in graph:
        visit(module, [])
