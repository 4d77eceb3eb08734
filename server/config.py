"""The daemon's settings: command-line flags, each also read from a WORKERSTATE_* variable."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workerstate.client.durations import format_duration, parse_duration, positive_duration

from .domain import StaleThresholds

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


# Defaults sized for workers that beat every few seconds: a minute of silence is worth a
# look, five minutes is stuck, a quarter of an hour is gone.
DEFAULT_THRESHOLDS = StaleThresholds(warn_ms=60_000, stale_ms=300_000, dead_ms=900_000)


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


def _octal(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid mode {text!r}: use octal, e.g. 0600") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"invalid mode {text!r}: permission bits only")
    return mode


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


@dataclass(frozen=True)
class Retention:
    """Which events compaction may delete: those both older than `for_ms` and not among
    the newest `events`."""

    events: int = 100_000
    for_ms: int = 24 * 3_600_000
    interval_ms: int = 5 * 60_000


@dataclass(frozen=True)
class Config:
    """Everything `serve` needs; built from flags, or directly by tests."""

    db: str = "workerstate.db"  # a SQLite file's path, or a PostgreSQL URL
    listen: str = "127.0.0.1:50051"
    thresholds: StaleThresholds = DEFAULT_THRESHOLDS
    heartbeat_flush_ms: int = 1000
    group_wait_ms: int = 5
    shutdown_grace_ms: int = 10_000
    log_level: str = "info"
    retention: Retention = Retention()
    progress_interval_ms: int = 5_000
    max_watchers: int = 4096
    metrics_listen: str = ""
    log_format: str = "text"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    token_file: Path | None = None
    socket_mode: int = 0o600
    insecure: bool = False
    board_listen: str = ""
    retain_finished_ms: int = 0  # delete COMPLETED and FAILED workers this old (0: keep)
    fail_after_ms: int = 0  # fail ASSIGNED and WORKING workers silent this long (0: never)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `workerstate serve`; every default may come from the environment."""
    d = Config()

    def option(flag: str, default: str, help_text: str, **kwargs: object) -> None:
        env = "WORKERSTATE_" + flag.lstrip("-").upper().replace("-", "_")
        value = os.environ.get(env, default)
        parser.add_argument(
            flag,
            default=value,
            help=f"{help_text} (env {env}; default: {default})",
            **kwargs,  # type: ignore[arg-type]
        )

    option(
        "--db",
        d.db,
        "where the state lives: a SQLite file the daemon owns (created if missing), or a"
        " PostgreSQL URL that any number of daemons may share, e.g."
        " postgresql://USER:PASSWORD@HOST:5432/DB, postgresql:///DB?host=/run/postgresql, or"
        " postgresql://USER@HOST1,HOST2/DB?target_session_attrs=read-write",
    )
    option(
        "--listen",
        d.listen,
        "address to serve on: HOST:PORT (port 0 picks a free one) or unix:PATH",
    )
    for flag, ms, meaning in (
        ("--warn-after", d.thresholds.warn_ms, "WARN"),
        ("--stale-after", d.thresholds.stale_ms, "STALE"),
        ("--dead-after", d.thresholds.dead_ms, "DEAD"),
    ):
        option(
            flag,
            format_duration(ms),
            f"heartbeat age at which an ASSIGNED or WORKING worker becomes {meaning}",
            type=positive_duration,
        )
    option(
        "--heartbeat-flush",
        format_duration(d.heartbeat_flush_ms),
        "how often heartbeat times are written to the file; a crash loses at most this much",
        type=positive_duration,
    )
    option(
        "--group-wait",
        format_duration(d.group_wait_ms),
        "while writes arrive concurrently, how long a group commit waits for more changes to"
        " share its commit (0ms: never wait); a lone writer never waits",
        type=parse_duration,
    )
    option(
        "--shutdown-grace",
        format_duration(d.shutdown_grace_ms),
        "on SIGTERM/SIGINT, how long in-flight calls may take to finish",
        type=parse_duration,
    )
    option("--log-level", d.log_level, "log verbosity", choices=LOG_LEVELS)
    option(
        "--log-format",
        d.log_format,
        "text for people, json for machines (one object per line)",
        choices=LOG_FORMATS,
    )
    option(
        "--tls-cert",
        "",
        "serve TLS with this certificate chain (PEM); needs --tls-key",
        type=_optional_path,
    )
    option("--tls-key", "", "the private key (PEM) for --tls-cert", type=_optional_path)
    option(
        "--client-ca",
        "",
        "mutual TLS: require client certificates signed by this CA (PEM); needs --tls-cert",
        type=_optional_path,
    )
    option(
        "--token-file",
        "",
        "require `authorization: Bearer TOKEN`; lines NAME:TOKEN or NAME:TOKEN:ro (read-only:"
        " get, list, watch, events), # comments; health checks stay open",
        type=_optional_path,
    )
    option("--socket-mode", "0600", "file mode of a unix: socket, in octal", type=_octal)
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=os.environ.get("WORKERSTATE_INSECURE", "") in ("1", "true", "yes"),
        help="allow a non-loopback address without TLS and without tokens"
        " (env WORKERSTATE_INSECURE=1; default: refuse)",
    )
    option(
        "--metrics-listen",
        d.metrics_listen,
        "serve Prometheus metrics over HTTP on HOST:PORT, e.g. 127.0.0.1:9464 (empty: off)",
    )
    option(
        "--board-listen",
        d.board_listen,
        "serve the board (a live page of the fleet, with a reviewer's actions) over HTTP on"
        " HOST:PORT, e.g. 127.0.0.1:8080; HTTPS with --tls-cert, a login with --token-file,"
        " and the same listen policy as --listen (empty: off)",
    )
    option(
        "--retain-finished",
        "0s",
        "delete each COMPLETED or FAILED worker once it has been in that state this long"
        " (its events stay until compaction; 0s: keep finished workers)",
        type=parse_duration,
    )
    option(
        "--fail-after",
        "0s",
        "fail each ASSIGNED or WORKING worker whose heartbeat age reaches this; at least"
        " --dead-after, and well above --heartbeat-flush when daemons share a database"
        " (0s: never)",
        type=parse_duration,
    )
    option(
        "--retain-events",
        str(d.retention.events),
        "compaction keeps at least this many newest events (at least 1)",
        type=_count(1),
    )
    option(
        "--retain-for",
        format_duration(d.retention.for_ms),
        "compaction keeps every event younger than this (0s: keep only --retain-events)",
        type=parse_duration,
    )
    option(
        "--compact-interval",
        format_duration(d.retention.interval_ms),
        "how often compaction runs; it deletes in small batches between writes",
        type=positive_duration,
    )
    option(
        "--progress-interval",
        format_duration(d.progress_interval_ms),
        "a WatchState stream with progress_notify that sent nothing for this long gets a"
        " progress message with the head revision",
        type=positive_duration,
    )
    option(
        "--max-watchers",
        str(d.max_watchers),
        "most concurrent WatchState streams; more get RESOURCE_EXHAUSTED",
        type=_count(1),
    )


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Config:
    """Check the flags together; a bad combination is a usage error, not a traceback."""
    try:
        thresholds = StaleThresholds(args.warn_after, args.stale_after, args.dead_after)
    except ValueError as e:
        parser.error(str(e))
    if args.fail_after and args.fail_after < args.dead_after:
        parser.error(
            f"--fail-after ({format_duration(args.fail_after)}) must be at least --dead-after"
            f" ({format_duration(args.dead_after)}): a worker is failed only once it is DEAD"
        )
    # argparse checks choices on flags, not on defaults taken from the environment.
    if args.log_level not in LOG_LEVELS:
        parser.error(f"invalid log level {args.log_level!r}: choose from {', '.join(LOG_LEVELS)}")
    if args.log_format not in LOG_FORMATS:
        parser.error(f"invalid log format {args.log_format!r}: choose text or json")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        parser.error("--client-ca needs --tls-cert and --tls-key (mutual TLS is TLS)")
    for flag, value in (
        ("--metrics-listen", args.metrics_listen),
        ("--board-listen", args.board_listen),
    ):
        if value and not re.fullmatch(r".+:\d+", value):
            parser.error(f"invalid {flag} {value!r}: use HOST:PORT")
    return Config(
        db=args.db,
        listen=args.listen,
        thresholds=thresholds,
        heartbeat_flush_ms=args.heartbeat_flush,
        group_wait_ms=args.group_wait,
        shutdown_grace_ms=args.shutdown_grace,
        log_level=args.log_level,
        retention=Retention(args.retain_events, args.retain_for, args.compact_interval),
        progress_interval_ms=args.progress_interval,
        max_watchers=args.max_watchers,
        metrics_listen=args.metrics_listen,
        log_format=args.log_format,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        token_file=args.token_file,
        socket_mode=args.socket_mode,
        insecure=args.insecure,
        board_listen=args.board_listen,
        retain_finished_ms=args.retain_finished,
        fail_after_ms=args.fail_after,
    )
