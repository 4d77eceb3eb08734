"""A throwaway PostgreSQL cluster for the test suite: one per session, a fresh database per test.

The tests run the daemon against a real server, not a mock, because what the PostgreSQL backend
must get right (row locks across daemons, LISTEN/NOTIFY, reconnects after a restart) only exists
in a real one. One cluster serves the whole session, since initdb and the first start take
seconds; each test gets its own empty database, so no test sees another's tables.

postgres refuses to run as root, so when the suite runs as root the cluster belongs to the
`postgres` user; otherwise it belongs to whoever runs the tests. The server is stopped by its
data directory (pg_ctl) or by the postmaster's pid, never by name, so other clusters on the
machine are never touched.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import quote

NEEDED = ("initdb", "pg_ctl", "postgres", "psql")
APP_USER = "workerstate"
SUPERUSER = "postgres"
# Several daemons per test, each with a small pool and a listener, plus the suite's own clients.
MAX_CONNECTIONS = 200
START_TIMEOUT = 30
StopMode = Literal["smart", "fast", "immediate"]


class PostgresUnavailable(Exception):
    """The server binaries (or the unprivileged user to run them) are not on this machine."""


def _version_key(bindir: str) -> tuple[int, ...]:
    """`/usr/lib/postgresql/15/bin` -> (15,), so 15 sorts after 9.6 and before 16."""
    version = Path(bindir).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _complete(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in NEEDED)


def find_bindir() -> Path:
    """Where initdb, pg_ctl and postgres live: Debian's versioned dirs, pg_config, then PATH.

    Debian installs `pg_config` with the client library alone, and its `--bindir` then holds no
    server; so every candidate must have all the binaries, not just exist.
    """
    candidates = [
        Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key)[::-1]
    ]
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            ).stdout
            candidates.append(Path(out.strip()))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if _complete(bindir):
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in "
        "/usr/lib/postgresql/*/bin, `pg_config --bindir` or PATH: "
        "apt-get install postgresql"
    )


def _free_port() -> int:
    """A port nothing listens on now; start() retries on the small chance someone takes it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    """Whether the process runs; a zombie does not count (pg_ctl's child waits to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, but owned by another user
    with contextlib.suppress(OSError):
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may hold spaces, so split after ')'.
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True


@dataclass(frozen=True)
class PostgresDatabase:
    """One test's empty database on the session's server; `server` restarts and stops it."""

    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        """`postgresql://user:password@127.0.0.1:port/name`."""
        return self.server.url(self.name)

    @property
    def socket_url(self) -> str:
        """The same database through the unix socket: `...@/name?host=/dir&port=N`."""
        return self.server.socket_url(self.name)


class PostgresServer:
    """A cluster in a temp dir, on 127.0.0.1 and a unix socket there; see the module docstring.

    Tests connect as `user` with `password` (scram-sha-256 on both TCP and the socket), so the
    URL carries a real secret to check redaction with. Administration (creating databases,
    terminating backends) goes over the socket as the superuser, which alone is trusted.
    """

    def __init__(self, bindir: Path) -> None:
        self._owner = self._cluster_owner()  # first: it may refuse before any dir exists
        self.bindir = bindir
        self.user = APP_USER
        # Random per session: a redaction test can grep any output for it and find nothing.
        self.password = "pw-" + secrets.token_hex(8)
        self.host = "127.0.0.1"
        self.port = 0
        # Short and under /tmp: a socket path must fit in 107 bytes, and the owner of the
        # cluster must be able to reach it (pytest's own tmp dirs are private to root).
        self.base = Path(tempfile.mkdtemp(prefix="workerstate-pg-"))
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "sock"
        self.log_path = self.base / "postgres.log"
        self._names = itertools.count(1)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        try:
            self._initdb()
            self._first_start()
            self._create_app_user()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server however it was left (even by a failed test), then delete the dir."""
        with contextlib.suppress(Exception):
            if self.pid() is not None:
                self.stop()
        if (pid := self.pid()) is not None:
            # pg_ctl could not stop it: immediate shutdown of this postmaster alone.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        shutil.rmtree(self.base, ignore_errors=True)

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        self._pg_ctl("start", "-w", "-t", str(START_TIMEOUT), "-l", str(self.log_path))

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server: `fast` cuts sessions and checkpoints; `immediate` is a crash."""
        self._pg_ctl("stop", "-w", "-t", str(START_TIMEOUT), "-m", mode)

    def restart(self, mode: StopMode = "fast") -> None:
        """`pg_ctl restart`: every session is cut, and the server is back on the same port."""
        self._pg_ctl(
            "restart", "-w", "-t", str(START_TIMEOUT), "-m", mode, "-l", str(self.log_path)
        )

    def pid(self) -> int | None:
        """The postmaster's pid while it runs (from postmaster.pid), else None."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid() is not None

    # -- databases and URLs ------------------------------------------------------------------

    def create_database(self) -> PostgresDatabase:
        """A new, empty database owned by `user`, so the daemon can create its own schema."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.admin(f'CREATE DATABASE "{name}" OWNER "{self.user}"')
        return PostgresDatabase(self, name)

    def drop_database(self, name: str) -> None:
        """Drop a test's database, ending any session a daemon still holds on it."""
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url(self, dbname: str, *, password: bool = True) -> str:
        """`postgresql://user:password@127.0.0.1:port/dbname` (TCP)."""
        auth = quote(self.user) + (":" + quote(self.password) if password else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname)}"

    def socket_url(self, dbname: str) -> str:
        """libpq's unix-socket form: `postgresql://user:password@/dbname?host=/dir&port=N`."""
        auth = quote(self.user) + ":" + quote(self.password)
        return f"postgresql://{auth}@/{quote(dbname)}?host={self.socket_dir}&port={self.port}"

    def admin(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the superuser over the socket (psql, so no driver is needed); returns rows."""
        return subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                dbname,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout

    # -- setup -------------------------------------------------------------------------------

    @staticmethod
    def _cluster_owner() -> pwd.struct_passwd | None:
        """The user to run the server as: `postgres` when we are root, else ourselves (None)."""
        if os.geteuid() != 0:
            return None
        if shutil.which("setpriv") is None:
            raise PostgresUnavailable("running as root, and setpriv (util-linux) is not installed")
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "running as root, and there is no `postgres` user to run the server as"
            ) from None

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        """Run a server binary as the cluster's owner; a failure carries its output and log."""
        owner = self._owner
        # setpriv drops to the owner after exec. Asking subprocess for user= instead makes the
        # forked child call setuid itself, which in a copy of a process with gRPC threads
        # running crashes it now and then (SIGSEGV before exec).
        drop = (
            ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups"]
            if owner
            else []
        )
        result = subprocess.run(
            [*drop, *cmd],
            cwd=self.base,  # the owner's cwd must be readable by it
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            raise RuntimeError(
                f"{' '.join(cmd)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{log[-4000:]}"
            )

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args)

    def _initdb(self) -> None:
        self.socket_dir.mkdir()
        if self._owner:
            for path in (self.base, self.socket_dir):
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        # --no-sync only skips flushing initdb's own files: this cluster dies with the session.
        # The running server keeps fsync on, so the durability tests mean what they say.
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        (self.data_dir / "pg_hba.conf").write_text(
            f"local all {SUPERUSER} trust\n"
            "local all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# workerstate tests\n"
                f"listen_addresses = '{self.host}'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                f"max_connections = {MAX_CONNECTIONS}\n"
                "shared_buffers = 32MB\n"
                "fsync = on\n"
                "synchronous_commit = on\n"
                "timezone = 'UTC'\n"
                "log_timezone = 'UTC'\n"
                "include_if_exists = 'port.conf'\n"
            )

    def _first_start(self, attempts: int = 5) -> None:
        """Start on a free port; another process may grab it in between, so try a few."""
        for attempt in range(attempts):
            self.port = _free_port()
            (self.data_dir / "port.conf").write_text(f"port = {self.port}\n")
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == attempts - 1:
                    raise

    def _create_app_user(self) -> None:
        self.admin(f"CREATE ROLE \"{self.user}\" LOGIN CREATEDB PASSWORD '{self.password}'")
