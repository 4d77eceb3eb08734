"""Labels, selectors, deletion and actors on the board (issues 19 and 20), in a real Chromium.

Cards carry their labels; a label selector typed in the header (and kept in the URL) narrows
the board through the daemon's own watch filter and stays live; an invalid one shows the
daemon's explanation; a deleted worker's card leaves within a second; the history says who
made each change, among them the daemon's heartbeat timeout. Screenshots land in
build/test-artifacts/.
"""

from __future__ import annotations

import json
import urllib.parse

import pytest
from harness import create
from playwright.sync_api import Page, expect
from test_board import (
    ARTIFACTS,
    WRITER,
    board_url,
    browser,
    card,
    log_in,
    move,
    page,
    plain,
    token_daemon,
)
from workerstate.server.labels import SelectorError, parse_selector
from workerstate.v1 import workerstate_pb2 as pb

__all__ = ["browser", "page", "token_daemon"]  # fixtures of the board tests

# Short thresholds: a silent worker is DEAD after 300 ms and failed by the daemon after 1 s.
FAIL_AFTER = (
    *("--warn-after", "100ms", "--stale-after", "200ms", "--dead-after", "300ms"),
    *("--fail-after", "1s"),
)


@pytest.fixture
def board(make_daemon):
    return make_daemon("--board-listen", "127.0.0.1:0")


def labelled(stub, task_id: str, **labels: str) -> pb.Worker:
    return create(stub, task_id, labels=labels)


def set_labels(stub, task_id: str, **labels: str) -> pb.Worker:
    return stub.SetLabels(pb.SetLabelsRequest(task_id=task_id, labels=labels)).worker


def column_count(page: Page, state: str):
    return page.locator(f'[data-column="{state}"]')


def filter_by(page: Page, selector: str) -> None:
    box = page.locator('input[name="selector"]')
    box.fill(selector)
    box.press("Enter")


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"board-labels-{name}.png"))


def test_cards_carry_their_labels_sorted_by_key(board, page):
    stub = board.stub
    labelled(stub, "lab/1", tier="2", repo="api", **{"example.com/team": "core"})
    create(stub, "lab/none")
    page.goto(board_url(board))
    one = card(page, "lab/1")
    expect(one).to_have_attribute("data-labels", "example.com/team=core,repo=api,tier=2")
    expect(one).to_contain_text("repo=api")
    expect(card(page, "lab/none")).to_have_attribute("data-labels", "")
    # Live: a change of labels reaches the card.
    set_labels(stub, "lab/none", repo="web")
    expect(card(page, "lab/none")).to_have_attribute("data-labels", "repo=web", timeout=1000)
    # The describe panel shows them too.
    one.locator("[data-open-history]").click()
    expect(page.locator('[data-fact="labels"]')).to_contain_text("example.com/team=core")
    shot(page, "cards")


def test_a_selector_filters_counts_and_stays_live(board, page):
    stub = board.stub
    labelled(stub, "api/1", repo="api")
    move(stub, labelled(stub, "api/2", repo="api", tier="1"), "WORKING")
    labelled(stub, "web/1", repo="web")
    create(stub, "bare/1")
    page.goto(board_url(board))
    expect(column_count(page, "ASSIGNED")).to_have_attribute("data-count", "3")
    filter_by(page, "repo=api")
    expect(card(page, "web/1")).to_have_count(0)
    expect(card(page, "bare/1")).to_have_count(0)
    expect(card(page, "api/1")).to_have_count(1)
    expect(column_count(page, "ASSIGNED")).to_have_attribute("data-count", "1")
    expect(column_count(page, "WORKING")).to_have_attribute("data-count", "1")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query) == {
        "selector": ["repo=api"]
    }
    # A new matching worker appears; a non-matching one does not.
    labelled(stub, "api/3", repo="api")
    labelled(stub, "web/2", repo="web")
    expect(card(page, "api/3")).to_have_count(1, timeout=1000)
    expect(column_count(page, "ASSIGNED")).to_have_attribute("data-count", "2")
    # A worker whose labels stop matching leaves; one that starts matching comes.
    set_labels(stub, "api/1", repo="web")
    set_labels(stub, "bare/1", repo="api")
    expect(card(page, "api/1")).to_have_count(0, timeout=1000)
    expect(card(page, "bare/1")).to_have_count(1, timeout=1000)
    expect(column_count(page, "ASSIGNED")).to_have_attribute("data-count", "2")
    assert page.locator('[data-task-id^="web/"]').count() == 0
    shot(page, "filtered")
    # Other selector forms, then an empty one shows everything again.
    filter_by(page, "tier in (1,2),repo")
    expect(page.locator(".card")).to_have_count(1)
    expect(card(page, "api/2")).to_have_count(1)
    filter_by(page, "")
    expect(page.locator(".card")).to_have_count(6)
    assert "selector" not in page.url


def test_a_bookmarked_selector_starts_the_board_filtered(board, page):
    stub = board.stub
    labelled(stub, "mark/api", repo="api")
    labelled(stub, "mark/web", repo="web")
    page.goto(board_url(board) + "?selector=repo%3Dapi")
    expect(page.locator('input[name="selector"]')).to_have_value("repo=api")
    expect(card(page, "mark/api")).to_have_count(1)
    expect(column_count(page, "ASSIGNED")).to_have_attribute("data-count", "1")
    expect(card(page, "mark/web")).to_have_count(0)


def test_an_invalid_selector_shows_the_daemons_explanation(board, page):
    stub = board.stub
    labelled(stub, "bad/api", repo="api")
    labelled(stub, "bad/web", repo="web")
    bad = "repo in (api"
    with pytest.raises(SelectorError) as explained:
        parse_selector(bad)
    page.goto(board_url(board))
    filter_by(page, "repo=api")
    expect(page.locator(".card")).to_have_count(1)
    filter_by(page, bad)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(str(explained.value))
    expect(alert).to_contain_text("label_selector")
    # The previous (valid) view and URL stay.
    expect(page.locator(".card")).to_have_count(1)
    assert "selector=repo%3Dapi" in page.url
    shot(page, "invalid-selector")
    # A good one clears the alert.
    filter_by(page, "repo=web")
    expect(alert).to_have_count(0)
    expect(card(page, "bad/web")).to_have_count(1)
    # The feed itself refuses it with the same words, as JSON.
    quoted = urllib.parse.quote(bad)
    status, body = plain(board_url(board) + "api/events?selector=" + quoted)
    assert status == 400
    assert str(explained.value) in json.loads(body)["message"]


def test_a_deleted_card_leaves_within_a_second(board, page):
    stub = board.stub
    create(stub, "del/1")
    create(stub, "del/2")
    stub.FailWorker(pb.FailWorkerRequest(task_id="del/1", reason="abandoned"))
    page.goto(board_url(board))
    expect(column_count(page, "FAILED")).to_have_attribute("data-count", "1")
    card(page, "del/1").locator("[data-open-history]").click()
    stub.DeleteWorker(pb.DeleteWorkerRequest(task_id="del/1", reason="cleanup"))
    expect(card(page, "del/1")).to_have_count(0, timeout=1000)
    expect(column_count(page, "FAILED")).to_have_attribute("data-count", "0")
    expect(page.locator("#detail")).to_be_hidden()
    expect(card(page, "del/2")).to_have_count(1)
    assert page.get_by_role("alert").count() == 0
    # A page opened afterwards never sees it either.
    page.reload()
    expect(card(page, "del/2")).to_have_count(1)
    expect(card(page, "del/1")).to_have_count(0)


def test_the_heartbeat_timeout_shows_in_the_history_by_daemon(make_daemon, page):
    daemon = make_daemon("--board-listen", "127.0.0.1:0", *FAIL_AFTER)
    stub = daemon.stub
    page.goto(board_url(daemon))
    worker = move(stub, labelled(stub, "silent/1", repo="api"), "WORKING", "picked up")
    failed = card(page, "silent/1")
    expect(failed).to_have_attribute("data-state", "FAILED", timeout=10_000)
    expect(failed.locator("[data-reason]")).to_contain_text("no heartbeat for")
    failed.locator("[data-open-history]").click()
    history = page.locator('[data-history="silent/1"] [data-revision]')
    expect(history).to_have_count(3)
    newest = history.first
    expect(newest).to_contain_text("WORKING → FAILED")
    expect(newest).to_contain_text("no heartbeat for")
    expect(newest.locator("[data-actor]")).to_have_text("by daemon")
    # Changes through the API without a token name no one.
    assert worker.revision == int(history.nth(1).get_attribute("data-revision"))
    expect(history.nth(1).locator("[data-actor]")).to_have_count(0)
    shot(page, "timeout-history")


def test_a_relabelled_failed_card_keeps_its_reason(board, page):
    stub = board.stub
    for task_id in ("why/before", "why/live"):
        create(stub, task_id)
        stub.FailWorker(pb.FailWorkerRequest(task_id=task_id, reason="out of disk"))
    # Relabelled before any page saw it: the reason is looked up behind the labels change.
    set_labels(stub, "why/before", repo="api")
    page.goto(board_url(board))
    expect(card(page, "why/before").locator("[data-reason]")).to_have_text("out of disk")
    reason = card(page, "why/live").locator("[data-reason]")
    expect(reason).to_have_text("out of disk")
    set_labels(stub, "why/live", repo="api")
    expect(card(page, "why/live")).to_have_attribute("data-labels", "repo=api", timeout=1000)
    expect(reason).to_have_text("out of disk")


def test_the_history_names_the_token_behind_each_change(token_daemon, page):
    daemon, _ = token_daemon  # secret-task went to IN_REVIEW with the reviewer's token
    log_in(page, board_url(daemon), WRITER)
    task = card(page, "secret-task")
    task.locator('[data-action="APPROVED"]').click()
    expect(task).to_have_attribute("data-state", "APPROVED")
    task.locator("[data-open-history]").click()
    actors = page.locator('[data-history="secret-task"] [data-actor]')
    expect(actors).to_have_count(4)  # created, WORKING, IN_REVIEW by gRPC; APPROVED here
    assert {a.text_content() for a in actors.all()} == {"by reviewer"}
