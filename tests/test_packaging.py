"""What a user installs is what these tests run: the wheel and the sdist of this checkout.

Every other test imports the editable install, which maps whole folders and so hides a package
or a data file that `pip install .` leaves out (that is how a wheel without
`workerstate.server.storage` once shipped). Here the distributions are built from a copy of the
checkout, compared file by file with the tree, installed into fresh venvs, and the installed
console script serves gRPC and the board.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import DaemonProcess
from workerstate.v1 import workerstate_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# Import path -> the folder pyproject's package-dir maps it to.
PACKAGE_DIRS = {
    name.replace(".", "/"): ROOT / folder
    for name, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items()
}
BOARD = re.compile(r"serving the board on (\S+)")
ASSET = re.compile(r'(?:href|src)="(/static/[^"]+)"')


def tree_files() -> dict[str, Path]:
    """Every file an install needs, keyed by its path inside site-packages."""
    files = {}
    for prefix, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                files[f"{prefix}/{path.relative_to(folder).as_posix()}"] = path
    return files


def test_every_folder_under_the_mapped_ones_is_a_listed_package():
    # The wheel checks below would catch it too, but this names the line to add.
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    folders = {
        prefix.replace("/", ".")
        + ("." + ".".join(sub.relative_to(folder).parts) if sub != folder else "")
        for prefix, folder in PACKAGE_DIRS.items()
        for sub in [folder, *folder.rglob("*")]
        if sub.is_dir() and "__pycache__" not in sub.parts
    }
    assert folders - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


@dataclass(frozen=True)
class Dists:
    wheel: Path
    sdist: Path
    log: str


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The wheel and sdist, built from a copy holding what git would check out (no build/ left
    over from an earlier build can fill a gap)."""
    source = tmp_path_factory.mktemp("checkout")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation", "--outdir", out],
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
    )
    return Dists(
        wheel=next(out.glob("*.whl")),
        sdist=next(out.glob("*.tar.gz")),
        log=build.stdout + build.stderr,
    )


def test_the_build_warns_of_nothing(dists):
    # setuptools warns of packaging mistakes (a data folder left out of `packages`, say)
    # and goes on building: a warning here is a defect in pyproject.toml.
    # (`--no-isolation` builds skip byte-compiling and say so; that is no mistake of ours.)
    warnings = [
        line
        for line in dists.log.splitlines()
        if "warning" in line.lower() and "byte-compiling is disabled" not in line
    ]
    assert warnings == []


def test_the_wheel_holds_every_module_and_data_file(dists):
    names = set(zipfile.ZipFile(dists.wheel).namelist())
    missing = sorted(set(tree_files()) - names)
    assert missing == [], f"{dists.wheel.name} lacks {missing}"


def test_the_sdist_holds_every_module_and_data_file(dists):
    with tarfile.open(dists.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    missing = sorted(
        str(path.relative_to(ROOT))
        for path in tree_files().values()
        if str(path.relative_to(ROOT)) not in names
    )
    assert missing == [], f"{dists.sdist.name} lacks {missing}"


def fresh_venv(where: Path, dist: Path) -> Path:
    """A venv holding `dist` and nothing else of workerstate; its dependencies come from the dev
    venv through a .pth line (offline and fast), which runs none of the dev venv's own .pth
    files, so the editable install stays out of sight."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", where], check=True)
    site = Path(
        subprocess.run(
            [
                where / "bin" / "python",
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "dev-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", where / "bin" / "python", "install"]
    offline = ["--quiet", "--no-deps", "--no-index", "--no-build-isolation"]
    subprocess.run([*pip, *offline, dist], capture_output=True, check=True)
    return where


@pytest.fixture(scope="module", params=["wheel", "sdist"])
def installed(request: pytest.FixtureRequest, dists: Dists, tmp_path_factory) -> Iterator[Path]:
    venv = fresh_venv(
        tmp_path_factory.mktemp(f"venv-{request.param}"), getattr(dists, request.param)
    )
    yield venv
    shutil.rmtree(venv)


def test_workerstate_comes_from_the_installed_distribution_only(installed):
    # Every module imports from the fresh venv, storage drivers and board included.
    modules = [
        name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for name in tree_files()
        if name.endswith(".py") and not name.endswith("__main__.py")
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({str(installed)!r}), module.__file__\n"
        "print(len(sys.modules))\n"
    )
    run = subprocess.run(
        [installed / "bin" / "python", "-c", script], capture_output=True, text=True, cwd="/"
    )
    assert run.returncode == 0, run.stderr


def test_the_version_comes_from_the_package_metadata(installed):
    for args in (["--version"], ["serve", "--version"]):
        run = subprocess.run(
            [installed / "bin" / "workerstate", *args], capture_output=True, text=True, cwd="/"
        )
        assert (run.returncode, run.stdout.strip()) == (0, f"workerstate {VERSION}"), run.stderr


def test_the_installed_daemon_serves_grpc_and_the_board(installed, tmp_path):
    cli = installed / "bin" / "workerstate"
    daemon = DaemonProcess(
        tmp_path / "state.db", "--board-listen", "127.0.0.1:0", command=(str(cli), "serve")
    ).start()
    try:
        health = health_pb2_grpc.HealthStub(daemon.channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        for args in (
            ["create", "t-installed", "--branch", "feat/installed", "--worktree", str(tmp_path)],
            ["move", "t-installed", "ASSIGNED", "WORKING"],
        ):
            run = subprocess.run(
                [cli, "--server", daemon.address, *args], capture_output=True, text=True
            )
            assert run.returncode == 0, run.stderr
        worker = daemon.stub.GetWorker(pb.GetWorkerRequest(task_id="t-installed")).worker
        assert worker.state == pb.WORKER_STATE_WORKING

        board = next(m.group(1) for line in daemon.log if (m := BOARD.search(line)))
        with urllib.request.urlopen(board) as page:
            assert page.status == 200
            assets = ASSET.findall(page.read().decode())
        assert assets, "the board's page references no static files"
        for asset in assets:
            with urllib.request.urlopen(board.rstrip("/") + asset) as response:
                assert response.status == 200, asset
                assert response.read(), asset
    finally:
        code = daemon.stop()
    assert code == 0, "".join(daemon.log)
