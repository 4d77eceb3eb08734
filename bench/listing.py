"""Selectors at scale: ListWorkers by label selector against by state at 100k workers, and W5
with a label selector against a states filter.

    python bench/listing.py            # 100,000 workers, 5 s a row, two rounds; W5 100 x 200/s
    python bench/listing.py --quick    # 10,000 workers, 1 s a row, one round (a smoke run)

ListWorkers: one daemon (SQLite, default settings) holds N workers loaded through Apply,
labelled `repo=r0`..`r19` and `agent=...`; the workers of `repo=r3` (one in 20) are WORKING,
every other one ASSIGNED. So `label_selector="repo=r3"` and `states=[WORKING]` select the very
same workers, and the two listings differ only in how they filter. Each is timed one call at a
time (p50 is the daemon's work, not a queue), as its first page of 100 and as every match in
pages of 1,000, alternating in rounds. Goal: the selector's p50 within 1.5x the state's.

W5: watch_fanout's watchers and writer, each watch filtered either by the states its events
have or by a selector its workers' labels match; every event passes both, so the deliveries
are equal and the daemon's CPU per delivery compares the filters. Goal: no measurable
difference, taken here as the selector within 1.10x of the states filter's CPU per delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bulk import apply_all, create, transition
from report import Row, Target, machine_note, write
from run import Op, S, measured, w5_row
from servers import BenchDaemon
from workerstate.v1 import workerstate_pb2 as pb
from workerstate.v1 import workerstate_pb2_grpc as pb_grpc

LIST = "ListWorkers at scale"
FILTERED_WATCH = "W5 watch filter"
REPOS = 20
AGENTS = ("claude-code", "codex", "gemini-cli")
SELECTED = "r3"  # the repo whose workers are WORKING: both filters pick exactly these
TARGET_LIST = 1.5
TARGET_WATCH = 1.10
# (name, the request, walk every page): the selector and the state select the same workers.
LISTINGS = {
    "state_page": (pb.ListWorkersRequest(states=[S.WORKER_STATE_WORKING], page_size=100), False),
    "selector_page": (
        pb.ListWorkersRequest(label_selector=f"repo={SELECTED}", page_size=100),
        False,
    ),
    "state_all": (pb.ListWorkersRequest(states=[S.WORKER_STATE_WORKING], page_size=1000), True),
    "selector_all": (
        pb.ListWorkersRequest(label_selector=f"repo={SELECTED}", page_size=1000),
        True,
    ),
}


def labels(i: int) -> dict[str, str]:
    return {"repo": f"r{i % REPOS}", "agent": AGENTS[i % len(AGENTS)]}


def populate(address: str, workers: int, prefix: str = "sel") -> None:
    """`workers` labelled workers through Apply; those with `repo=r3` moved on to WORKING."""
    chosen = int(SELECTED[1:])
    asyncio.run(apply_all(address, (create(f"{prefix}-{i}", labels(i)) for i in range(workers))))
    asyncio.run(
        apply_all(
            address,
            (
                transition(f"{prefix}-{i}", S.WORKER_STATE_ASSIGNED, S.WORKER_STATE_WORKING)
                for i in range(chosen, workers, REPOS)
            ),
        )
    )


async def lister(address: str, index: int, name: str) -> Op:
    """One listing per op: a single page, or every page until the last."""
    stub = pb_grpc.WorkerServiceStub(grpc.aio.insecure_channel(address))
    request, walk = LISTINGS[name]

    async def op() -> bool:
        response = await stub.ListWorkers(request)
        while walk and response.next_page_token:
            following = pb.ListWorkersRequest()
            following.CopyFrom(request)
            following.page_token = response.next_page_token
            response = await stub.ListWorkers(following)
        return True

    return op


# run.drive's client processes find a factory by `module:function` (see run.factory_named).
async def state_page(address: str, index: int) -> Op:
    return await lister(address, index, "state_page")


async def selector_page(address: str, index: int) -> Op:
    return await lister(address, index, "selector_page")


async def state_all(address: str, index: int) -> Op:
    return await lister(address, index, "state_all")


async def selector_all(address: str, index: int) -> Op:
    return await lister(address, index, "selector_all")


def list_rows(workers: int, seconds: float, rounds: int) -> list[Row]:
    daemon = BenchDaemon()
    try:
        populate(daemon.address, workers)
        return [
            measured(
                LIST,
                "workerstate",
                daemon,
                f"listing:{name}",
                1,
                seconds,
                workers=workers,
                listing=name,
                round=r + 1,
            )
            for r in range(rounds)
            for name in LISTINGS
        ]
    finally:
        daemon.stop()


def watch_rows(watchers: int, rate: float, seconds: float, rounds: int) -> list[Row]:
    from watch_fanout import run as fanout

    rows = []
    for r in range(rounds):
        for watch_filter in ("states", "selector"):
            row = w5_row(fanout(watchers, rate, seconds, 2, "workerstate", watch_filter))
            row["workload"] = FILTERED_WATCH
            row["params"]["round"] = r + 1
            rows.append(row)
    return rows


def measure(seconds: float, quick: bool, workers: int | None = None) -> list[Row]:
    if quick:
        return [
            *list_rows(workers or 10_000, min(seconds, 1.0), 1),
            *watch_rows(20, 50.0, 2.0, 1),
        ]
    return [*list_rows(workers or 100_000, seconds, 2), *watch_rows(100, 200.0, 10.0, 2)]


def _median(rows: list[Row], workload: str, key: str, value: str, column: str) -> float | None:
    found = [
        r[column]
        for r in rows
        if r["workload"] == workload and r["params"].get(key) == value and r.get(column)
    ]
    return statistics.median(found) if found else None


def targets(rows: list[Row]) -> list[Target]:
    """The selector against the state (ListWorkers) and the states filter (W5), medians over
    the rounds."""
    found: list[Target] = []
    sizes = {r["params"]["workers"] for r in rows if r["workload"] == LIST}
    for page, label in (("page", "first page of 100"), ("all", "every match, pages of 1,000")):
        state = _median(rows, LIST, "listing", f"state_{page}", "p50_ms")
        selector = _median(rows, LIST, "listing", f"selector_{page}", "p50_ms")
        if state and selector:
            ratio = selector / state
            found.append(
                (
                    f"ListWorkers by selector p50 <= {TARGET_LIST}x by state, {label}, "
                    f"{', '.join(f'{n:,}' for n in sorted(sizes))} workers",
                    f"{selector:.2f} ms vs {state:.2f} ms = {ratio:.2f}x",
                    ratio <= TARGET_LIST,
                )
            )
    states = _median(rows, FILTERED_WATCH, "filter", "states", "server_cpu_ms_per_op")
    selector = _median(rows, FILTERED_WATCH, "filter", "selector", "server_cpu_ms_per_op")
    if states and selector:
        ratio = selector / states
        delivered = all(
            r.get("every_event_delivered") for r in rows if r["workload"] == FILTERED_WATCH
        )
        found.append(
            (
                f"W5 selector CPU/delivery <= {TARGET_WATCH:.2f}x states filter, every event "
                "delivered",
                f"{selector:.3f} ms vs {states:.3f} ms = {ratio:.2f}x, delivered={delivered}",
                ratio <= TARGET_WATCH and delivered,
            )
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 workers, short rows")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per list row")
    parser.add_argument("--workers", type=int, default=None, help="workers to list (100,000)")
    args = parser.parse_args()
    header = machine_note()
    print(header, flush=True)
    rows = measure(args.seconds, args.quick, args.workers)
    print(write("listing" + ("-quick" if args.quick else ""), rows, targets(rows), header))
    if any(r.get("every_event_delivered") is False for r in rows):
        sys.exit("FAILED: a watcher missed events (see the W5 rows)")


if __name__ == "__main__":
    main()
