"""The `workerstate` command: kubectl-style commands for people operating the fleet.

`workerstate serve` runs the daemon (it hands over to `python -m workerstate.server`, so the
client never imports the server); every other command talks to a running daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from .batchfile import edited, label_pair, labels_text, operations
from .client import DEFAULT_TARGET, RetryPolicy, Security, WorkerClient
from .describe import age, describe, timestamp
from .durations import positive_duration
from .errors import (
    InvalidArgument,
    InvalidTransition,
    PermissionDenied,
    RequestIdReused,
    RevisionCompacted,
    StaleState,
    Unauthenticated,
    Unavailable,
    WorkerActive,
    WorkerCompleted,
    WorkerExists,
    WorkerNotFound,
    WorkerStateError,
)
from .render import event_json, explain, worker_json
from .targets import split_addresses
from .types import Event, EventType, StaleLevel, Worker, WorkerState

EXIT_OK, EXIT_ERROR, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_UNAVAILABLE = range(6)
EXIT_DENIED = 6
DEFAULT_TIMEOUT = "2s"
EXIT_CODES = """exit codes:
  0  success
  1  any other error
  2  invalid: bad arguments, an invalid transition, a reused request id
  3  not found: no worker has that task id
  4  conflict: the worker is not in the state (or at the revision) you named, already
     exists, is completed, is still active (delete), or the revision you asked for was
     compacted
  5  unavailable: the daemon cannot be reached or is shutting down
  6  denied: a missing or wrong --token, or a read-only token asked to change something"""
_EXIT_BY_ERROR: tuple[tuple[type[WorkerStateError], int], ...] = (
    (InvalidArgument, EXIT_INVALID),
    (Unauthenticated, EXIT_DENIED),
    (PermissionDenied, EXIT_DENIED),
    (InvalidTransition, EXIT_INVALID),
    (RequestIdReused, EXIT_INVALID),
    (WorkerNotFound, EXIT_NOT_FOUND),
    (StaleState, EXIT_CONFLICT),
    (WorkerExists, EXIT_CONFLICT),
    (WorkerCompleted, EXIT_CONFLICT),
    (WorkerActive, EXIT_CONFLICT),
    (RevisionCompacted, EXIT_CONFLICT),
    (Unavailable, EXIT_UNAVAILABLE),
)

_COLOURS = {"WARN": "33", "STALE": "31", "DEAD": "31;1", "FAILED": "31", "COMPLETED": "32"}


class Output:
    """Writes tables, JSON and errors; colour only on a terminal and never with NO_COLOR."""

    def __init__(self, fmt: str, stream: TextIO = sys.stdout) -> None:
        self.format = fmt
        self.stream = stream
        self.colour = stream.isatty() and "NO_COLOR" not in os.environ

    def paint(self, text: str, key: str) -> str:
        code = _COLOURS.get(key)
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text

    def table(self, header: Sequence[str], rows: Iterable[Sequence[str]], keys: int = -1) -> None:
        """Columns aligned like `kubectl get`; cells in column `keys` may be coloured."""
        rows = list(rows)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = []
            for i, cell in enumerate(row):
                padded = cell.ljust(widths[i]) if i < len(row) - 1 else cell
                cells.append(self.paint(padded, cell) if row is not header else padded)
            print("   ".join(cells).rstrip(), file=self.stream)

    def stream_row(self, row: Sequence[str]) -> None:
        """One row of a table whose rows arrive one by one: fixed widths, flushed at once."""
        cells = [self.paint(c.ljust(w), c) for c, w in zip(row, STREAM_WIDTHS, strict=False)]
        print("  ".join(cells).rstrip(), file=self.stream, flush=True)

    def json_line(self, value: Any) -> None:
        print(json.dumps(value), file=self.stream, flush=True)


WORKER_HEADER = ["TASK", "STATE", "STALE", "AGE", "BEAT", "BRANCH", "REVISION"]
WIDE_HEADER = [*WORKER_HEADER, "WORKTREE", "LABELS", "ACTIVITY", "DESCRIPTION"]
EVENT_HEADER = ["REVISION", "TIME", "TYPE", "TASK", "FROM", "TO", "ACTOR", "DETAIL"]
STREAM_WIDTHS = (8, 24, 16, 24, 10, 10, 12, 0)


def worker_row(worker: Worker, now: datetime, wide: bool) -> list[str]:
    row = [
        worker.task_id,
        worker.state.value,
        worker.stale_level.value if worker.stale_level else "-",
        age(worker.state_changed_at, now),
        age(worker.last_heartbeat_at, now),
        worker.branch,
        str(worker.revision),
    ]
    if not wide:
        return row
    return [
        *row,
        worker.worktree,
        labels_text(worker.labels) or "-",
        worker.last_activity or "",
        worker.description or "",
    ]


def event_row(event: Event) -> list[str]:
    detail = event.reason
    if event.from_stale_level is not None and event.worker.stale_level is not None:
        detail = f"{event.from_stale_level.value} -> {event.worker.stale_level.value}"
    elif event.type is EventType.LABELS_CHANGED:
        before, after = labels_text(event.from_labels), labels_text(event.worker.labels)
        detail = f"labels {before or '-'} -> {after or '-'}"
    return [
        str(event.revision),
        timestamp(event.time),
        event.type.value,
        event.worker.task_id,
        event.from_state.value if event.from_state else "-",
        event.worker.state.value,
        event.actor or "-",
        detail,
    ]


def show_workers(out: Output, workers: list[Worker]) -> None:
    if out.format == "json":
        out.json_line(
            [worker_json(w) for w in workers] if len(workers) != 1 else worker_json(workers[0])
        )
        return
    now = datetime.now(UTC)
    wide = out.format == "wide"
    out.table(WIDE_HEADER if wide else WORKER_HEADER, (worker_row(w, now, wide) for w in workers))


# -- commands ----------------------------------------------------------------------------


def cmd_ls(client: WorkerClient, args: argparse.Namespace, out: Output) -> None:
    workers = client.list(
        states=args.state or (), stale_levels=args.stale or (), label_selector=args.selector
    )
    if args.tasks:
        wanted = set(args.tasks)
        workers = [w for w in workers if w.task_id in wanted]
        for task in wanted - {w.task_id for w in workers}:
            client.get(task)  # filtered out, or no such worker (which says so)
    if out.format == "json":
        out.json_line([worker_json(w) for w in workers])
    elif workers:
        show_workers(out, workers)
    else:
        print("No workers found.", file=sys.stderr)


def cmd_get(client: WorkerClient, args: argparse.Namespace, out: Output) -> None:
    worker = client.get(args.task)
    if out.format == "json":
        out.json_line(worker_json(worker))
        return
    for line in describe(worker, client.events(task_id=args.task), datetime.now(UTC)):
        print(line, file=out.stream)


def _changed(out: Output, worker: Worker, verb: str) -> None:
    if out.format == "json":
        out.json_line(worker_json(worker))
    else:
        print(f"worker {worker.task_id} {verb} (revision {worker.revision})", file=out.stream)


def cmd_create(client: WorkerClient, args: argparse.Namespace, out: Output) -> None:
    worker = client.create(
        args.task,
        branch=args.branch,
        worktree=args.worktree,
        description=args.description,
        labels=dict(args.label or ()),
    )
    _changed(out, worker, "created, ASSIGNED")


def cmd_label(client: WorkerClient, args: argparse.Namespace, out: Output) -> None:
    # A compare-and-set on the revision read here: an edit made meanwhile is not overwritten.
    worker = client.get(args.task)
    try:
        labels = edited(worker.labels, args.edits)
    except argparse.ArgumentTypeError as e:
        raise InvalidArgument(str(e), {"labels": str(e)}) from None
    worker = client.set_labels(args.task, labels, expected_revision=worker.revision)
    _changed(out, worker, f"labeled {labels_text(worker.labels) or '(none)'}")


def cmd_delete(client: WorkerClient, args: argparse.Namespace, out: Output) -> None:
    worker = client.delete(args.task, expected_revision=args.revision, reason=args.reason)
    if out.format == "json":
        out.json_line(worker_json(worker))
    else:
        print(f"worker {worker.task_id} deleted (revision {worker.revision})", file=out.stream)


def cmd_apply(client: WorkerClient, args: argparse.Namespace, out: Output) -> None:
    source = "stdin" if args.file == "-" else args.file
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    try:
        batch = operations(text, source)
    except ValueError as e:
        raise InvalidArgument(str(e), {"file": str(e)}) from None
    workers = client.apply(batch)
    if out.format == "json":
        out.json_line([worker_json(w) for w in workers])
        return
    for worker in workers:
        print(f"worker {worker.task_id} {worker.state.value} (revision {worker.revision})")
    print(f"applied {len(workers)} operations", file=sys.stderr)


def cmd_move(client: WorkerClient, args: argparse.Namespace, out: Output) -> None:
    worker = client.transition(
        args.task,
        args.from_state,
        args.to_state,
        reason=args.reason,
        expected_revision=args.revision,
    )
    _changed(out, worker, f"moved {args.from_state} -> {worker.state.value}")


def cmd_fail(client: WorkerClient, args: argparse.Namespace, out: Output) -> None:
    _changed(out, client.fail(args.task, args.reason), "FAILED")


def cmd_beat(client: WorkerClient, args: argparse.Namespace, out: Output) -> None:
    state = client.heartbeat(args.task, args.activity)
    if out.format == "json":
        out.json_line({"task_id": args.task, "state": state.value})
    else:
        print(f"worker {args.task} is {state.value}", file=out.stream)


def cmd_events(client: WorkerClient, args: argparse.Namespace, out: Output) -> None:
    events = client.events(after_revision=args.after, task_id=args.task)
    if args.task and not events:
        client.get(args.task)  # an unknown worker is an error, not an empty log
    if out.format == "json":
        for event in events:
            out.json_line(event_json(event))
    elif events:
        out.table(EVENT_HEADER, (event_row(e) for e in events))
    else:
        print("No events found.", file=sys.stderr)


def cmd_watch(client: WorkerClient, args: argparse.Namespace, out: Output) -> None:
    def connection(back: bool, revision: int) -> None:
        # stderr, so a pipe of events or JSON lines stays clean
        if back:
            print(f"resumed at revision {revision}", file=sys.stderr, flush=True)
        else:
            print(f"reconnecting to {args.server}…", file=sys.stderr, flush=True)

    watch = client.watch(
        args.tasks,
        args.state or (),
        start_revision=args.start,
        send_initial_state=args.initial,
        liveness=args.liveness,
        on_connection=connection,
        label_selector=args.selector,
    )
    if out.format != "json":
        out.stream_row(EVENT_HEADER)
    with watch:
        for event in watch:
            if out.format == "json":
                out.json_line(event_json(event))
            else:
                out.stream_row(event_row(event))


# -- parsing -----------------------------------------------------------------------------


def _state(text: str) -> str:
    try:
        return WorkerState(text.upper()).value
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown state {text!r}; one of {', '.join(s.value for s in WorkerState)}"
        ) from None


def _level(text: str) -> str:
    for level in StaleLevel:
        if level.value.lower() == text.lower():
            return level.value
    raise argparse.ArgumentTypeError(
        f"unknown stale level {text!r}; one of {', '.join(s.value for s in StaleLevel)}"
    )


def _revision(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a revision: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("a revision is not negative")
    return value


def _timeout(text: str) -> float:
    """Seconds, from a duration written like the daemon's flags."""
    return positive_duration(text) / 1000


def _server(text: str) -> str:
    """Checks a list of addresses when it is given, so a typo is a usage error."""
    if "," in text:
        try:
            split_addresses(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _states(text: str) -> frozenset[WorkerState]:
    """A comma-separated list of states; empty allows no move at all."""
    return frozenset(WorkerState(_state(name)) for name in text.split(",") if name.strip())


MCP_HELP = "serve the daemon's API to a coding agent as MCP tools over stdio"
MCP_DESCRIPTION = f"""{MCP_HELP}.

By default (worker mode) it serves one task: the one named by --task, else by
WORKERSTATE_TASK_ID, else the worker whose worktree is the current directory. It beats
for that task every --beat-every while the session lives, and stops when stdin closes or
the agent goes away. The agent's tools: my_task, report_progress, move, fail.

With --orchestrator it serves the whole fleet instead: list_workers, get_worker,
create_worker, move_worker, fail_worker, wait_for.

Needs the MCP SDK: pip install 'workerstate[mcp]'."""


def selector_option(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument(
        "-l",
        "--selector",
        default="",
        metavar="SELECTOR",
        help=f"{text} this label selector: repo=api,tier in (1,2),!draft (kubectl's syntax)",
    )


def build_parser() -> argparse.ArgumentParser:
    def global_options(
        parser: argparse.ArgumentParser, defaults: bool, output: bool = True
    ) -> None:
        # On the top parser with defaults; on each command with SUPPRESS, so an option given
        # after the command wins and one given before it is not overwritten.
        parser.add_argument(
            "--server",
            default=os.environ.get("WORKERSTATE_SERVER", DEFAULT_TARGET)
            if defaults
            else argparse.SUPPRESS,
            type=_server,
            help="daemon address, HOST:PORT or unix:PATH; several, separated by commas "
            "(a:5001,b:5001), are tried in order and a call moves to the next when one is "
            f"unreachable (env WORKERSTATE_SERVER; default: {DEFAULT_TARGET})",
        )
        parser.add_argument(
            "--timeout",
            type=_timeout,
            default=os.environ.get("WORKERSTATE_TIMEOUT", DEFAULT_TIMEOUT)
            if defaults
            else argparse.SUPPRESS,
            metavar="DURATION",
            help="give up on a daemon that cannot be reached or does not answer after this "
            "long, retries included (a watch: until it first connects); 500ms, 2s, 1m "
            f"(env WORKERSTATE_TIMEOUT; default: {DEFAULT_TIMEOUT})",
        )
        parser.add_argument(
            "--tls",
            action="store_true",
            default=os.environ.get("WORKERSTATE_TLS", "") in ("1", "true", "yes")
            if defaults
            else argparse.SUPPRESS,
            help="use TLS with the system's root certificates (implied by --tls-ca)"
            " (env WORKERSTATE_TLS=1)",
        )
        for flag, env, text in (
            ("--token", "WORKERSTATE_TOKEN", "bearer token for a daemon run with --token-file"),
            ("--tls-ca", "WORKERSTATE_TLS_CA", "CA certificate (PEM) that signed the daemon's"),
            ("--tls-cert", "WORKERSTATE_TLS_CERT", "client certificate (PEM), for mutual TLS"),
            ("--tls-key", "WORKERSTATE_TLS_KEY", "client private key (PEM), for mutual TLS"),
        ):
            parser.add_argument(
                flag,
                default=os.environ.get(env) if defaults else argparse.SUPPRESS,
                help=f"{text} (env {env})",
            )
        if not output:
            return  # an MCP server speaks JSON-RPC on stdout, whatever -o would say
        parser.add_argument(
            "-o",
            "--output",
            choices=("table", "wide", "json"),
            default="table" if defaults else argparse.SUPPRESS,
            help="output format (default: table; json: one object per line for events/watch)",
        )

    parser = argparse.ArgumentParser(
        prog="workerstate",
        description="Operate a workerstate fleet, or run the daemon (`workerstate serve`).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"workerstate {metadata.version('workerstate')}"
    )
    global_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[..., None], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        global_options(sub, defaults=False)
        sub.set_defaults(run=run)
        return sub

    commands.add_parser("serve", help="run the daemon (see `workerstate serve --help`)")
    ls = command("ls", cmd_ls, "list workers, newest change first")
    ls.add_argument("tasks", metavar="TASK", nargs="*", help="only these workers")
    ls.add_argument(
        "--state",
        action="append",
        type=_state,
        metavar="S",
        help="only workers in this state (repeatable)",
    )
    ls.add_argument(
        "--stale",
        action="append",
        type=_level,
        metavar="LEVEL",
        help="only workers at this stale level: ok, WARN, STALE, DEAD (repeatable)",
    )
    selector_option(ls, "only workers whose labels match")
    get = command(
        "get",
        cmd_get,
        "describe one worker: every field, and its last 10 events with their reasons "
        "(-o json: the worker alone)",
    )
    get.add_argument("task", metavar="TASK")
    create = command("create", cmd_create, "create a worker in ASSIGNED")
    create.add_argument("task", metavar="TASK")
    create.add_argument("--branch", required=True, help="the worker's git branch")
    create.add_argument("--worktree", required=True, help="the worker's worktree path")
    create.add_argument("--description", help="what the task is")
    create.add_argument(
        "--label",
        action="append",
        type=label_pair,
        metavar="KEY=VALUE",
        help="a label, such as repo=api (repeatable)",
    )
    label = command(
        "label",
        cmd_label,
        "set (KEY=VALUE) and remove (KEY-) a worker's labels, compare-and-set on the "
        "revision it reads",
    )
    label.add_argument("task", metavar="TASK")
    label.add_argument("edits", metavar="KEY=VALUE|KEY-", nargs="+", help="the label edits")
    delete = command("delete", cmd_delete, "delete a COMPLETED or FAILED worker")
    delete.add_argument("task", metavar="TASK")
    delete.add_argument("--reason", default="", help="why (stored in the DELETED event)")
    delete.add_argument(
        "--revision",
        type=_revision,
        default=None,
        help="only if the worker is at this revision",
    )
    apply = command(
        "apply",
        cmd_apply,
        "apply a batch of operations all or nothing: a JSON array in proto3 JSON form, e.g. "
        '[{"create": {"taskId": "t-1", "branch": "b", "worktree": "/w"}}, {"transition": '
        '{"taskId": "t-1", "fromState": "WORKER_STATE_ASSIGNED", "toState": '
        '"WORKER_STATE_WORKING"}}]',
    )
    apply.add_argument(
        "-f", "--file", required=True, metavar="FILE", help="the batch file, or - for stdin"
    )
    move = command("move", cmd_move, "move a worker from one state to another (compare-and-set)")
    move.add_argument("task", metavar="TASK")
    move.add_argument("from_state", metavar="FROM", type=_state, help="the state it is in now")
    move.add_argument("to_state", metavar="TO", type=_state, help="the state to move it to")
    move.add_argument("--reason", default="", help="why (stored in the event)")
    move.add_argument(
        "--revision",
        type=_revision,
        default=None,
        help="also require the worker to be at this revision",
    )
    fail = command("fail", cmd_fail, "move a worker to FAILED")
    fail.add_argument("task", metavar="TASK")
    fail.add_argument("--reason", default="", help="why (stored in the event)")
    beat = command("beat", cmd_beat, "send one heartbeat for a worker")
    beat.add_argument("task", metavar="TASK")
    beat.add_argument("--activity", default="", help="what the worker is doing")
    events = command("events", cmd_events, "show the event log")
    events.add_argument("task", metavar="TASK", nargs="?", help="only this worker's events")
    events.add_argument(
        "--after", type=_revision, default=0, metavar="REV", help="only events after this revision"
    )
    watch = command(
        "watch",
        cmd_watch,
        "stream changes until interrupted (Ctrl-C); while the daemon is away it says "
        "`reconnecting to ADDRESS…` on stderr, then `resumed at revision N`",
    )
    watch.add_argument("tasks", metavar="TASK", nargs="*", help="only these workers")
    watch.add_argument(
        "--state",
        action="append",
        type=_state,
        metavar="S",
        help="only events that leave a worker in this state (repeatable)",
    )
    watch.add_argument(
        "--from",
        dest="start",
        type=_revision,
        default=0,
        metavar="REV",
        help="replay the log from this revision first",
    )
    watch.add_argument(
        "--initial", action="store_true", help="start with a snapshot of every matching worker"
    )
    watch.add_argument(
        "--liveness",
        action="store_true",
        help="also show stale-level changes (WARN, STALE, DEAD, back to ok)",
    )
    selector_option(watch, "only events whose worker's labels match (or matched, as it left)")
    mcp = commands.add_parser(
        "mcp",
        help=MCP_HELP,
        description=MCP_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    global_options(mcp, defaults=False, output=False)
    mcp.add_argument(
        "--task",
        metavar="ID",
        help="the task this agent works on (env WORKERSTATE_TASK_ID; default: the worker "
        "whose worktree is the current directory)",
    )
    mcp.add_argument(
        "--allow-moves",
        type=_states,
        default=None,
        metavar="LIST",
        help="comma-separated states the agent may move its task to (default: "
        "WORKING,IN_REVIEW,CONFLICTED)",
    )
    mcp.add_argument(
        "--beat-every",
        type=positive_duration,
        default=10_000,
        metavar="DURATION",
        help="heartbeat interval, e.g. 500ms, 10s, 1m (default: 10s)",
    )
    mcp.add_argument(
        "--orchestrator",
        action="store_true",
        help="serve the whole fleet (create, move, wait for workers) instead of one task",
    )
    return parser


def _mcp(args: argparse.Namespace, security: Security) -> int:
    """Imports the MCP side only now: the SDK is an optional extra."""
    if args.orchestrator and (args.task or args.allow_moves is not None):
        print(
            "error: --task and --allow-moves are for worker mode, not --orchestrator",
            file=sys.stderr,
        )
        return EXIT_INVALID
    try:
        from .mcp import serve
    except ImportError as error:
        print(
            f"error: `workerstate mcp` needs the MCP SDK ({error}); install it with:\n"
            "  pip install 'workerstate[mcp]'",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return asyncio.run(
        serve(
            args.server,
            security,
            orchestrator=args.orchestrator,
            task_id=args.task,
            allowed_moves=args.allow_moves,
            beat_every_s=args.beat_every / 1000,
        )
    )


def _serve(argv: list[str]) -> int:
    """Hand over to the daemon in this process, so signals reach it directly."""
    os.execv(sys.executable, [sys.executable, "-m", "workerstate.server", *argv])
    return EXIT_ERROR  # not reached: execv does not return


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        return _serve(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(args.output)
    security = Security(
        token=args.token,
        tls=args.tls,
        tls_ca=Path(args.tls_ca) if args.tls_ca else None,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
    )
    try:
        if args.command == "mcp":
            return _mcp(args, security)
        retry = RetryPolicy(give_up_after_s=args.timeout)
        with WorkerClient(
            args.server, timeout=args.timeout, retry=retry, security=security
        ) as client:
            args.run(client, args, out)
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C ends a watch; that is how it is meant to stop
    except WorkerStateError as error:
        print(f"error: {explain(error, args.server, args.timeout)}", file=sys.stderr)
        return next((code for cls, code in _EXIT_BY_ERROR if isinstance(error, cls)), EXIT_ERROR)
    except BrokenPipeError:
        return EXIT_OK  # piped into `head`
    except OSError as error:
        if error.filename is None:
            raise
        # a --tls-* file that cannot be read
        print(f"error: cannot read {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
