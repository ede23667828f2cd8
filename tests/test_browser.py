"""
The demo page in a real browser (headless Chromium through Playwright)
against a real C{twistd ssedemo} process.

The tests use Playwright's sync API and never touch the Twisted reactor, so
they run the same with or without pytest-twisted, which calls every test
function from its reactor greenlet. (They need the default reactor: under
C{--reactor asyncio} the thread already runs an asyncio loop, and Playwright's
sync API cannot run its own.)
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any

import pytest
from browser_proxy import Proxy
from playwright.sync_api import Browser, Locator, Page, Request, expect, sync_playwright
from redis_server import RedisServer
from twistd_process import TwistdServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT = 10_000
"""The longest wait for anything the browser does, in milliseconds."""

GOTCHA = '{"message": "Gotcha"}'
CHANGED = '{"message": "Something changed"}'
SENT = 'sent {"message":"Hey there"}'

# Records every event that any EventSource of the page dispatches, before the
# page's own script runs, without relying on the page's variable names.
RECORDER = """
(() => {
  const Native = window.EventSource;
  window.__events = [];
  window.EventSource = class extends Native {
    constructor(...args) {
      super(...args);
      const record = (event) => window.__events.push({
        type: event.type,
        data: event.data ?? null,
        id: event.lastEventId ?? null,
      });
      for (const type of ["open", "message", "resync"]) {
        this.addEventListener(type, record);
      }
    }
  };
})();
"""

StartServer = Callable[..., TwistdServer]
NewPage = Callable[[str], Page]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """
    Start C{twistd ssedemo} processes; every one is stopped after the test.
    """
    with ExitStack() as stack:

        def start(port: int = 0, args: Sequence[str] = ()) -> TwistdServer:
            server = TwistdServer(port=port, args=args)
            server.start()
            # start() stops the process itself if it fails; stop() again is
            # harmless, so it is stopped after the test whatever happens.
            stack.callback(server.stop)
            return server

        yield start


@pytest.fixture
def start_proxy() -> Iterator[Callable[[int], Proxy]]:
    """
    Start L{Proxy}s; every one is stopped after the test.
    """
    with ExitStack() as stack:

        def start(target_port: int) -> Proxy:
            proxy = Proxy(target_port)
            stack.callback(proxy.stop)
            return proxy.start()

        yield start


@pytest.fixture
def new_page(browser: Browser) -> Iterator[NewPage]:
    """
    Open the demo page at a URL, each in a browser context of its own, with
    L{RECORDER} installed.
    """
    with ExitStack() as stack:

        def new(url: str) -> Page:
            context = browser.new_context()
            stack.callback(context.close)
            context.set_default_timeout(TIMEOUT)
            context.add_init_script(RECORDER)
            page = context.new_page()
            page.goto(url + "/", timeout=TIMEOUT)
            return page

        yield new


def log_entry(page: Page, text: str) -> Locator:
    """
    @return: The log entries that show exactly C{text} after their time stamp.
    """
    return page.locator("#log li").filter(
        has_text=re.compile(" " + re.escape(text) + "$")
    )


def log_texts(page: Page) -> list[str]:
    return page.locator("#log li").all_text_contents()


def expect_open(page: Page) -> None:
    expect(page.locator("#state")).to_have_attribute(
        "data-state", "open", timeout=TIMEOUT
    )
    expect(page.locator("#state")).to_have_text("open", timeout=TIMEOUT)


def recorded(page: Page) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = page.evaluate("window.__events")
    return events


def post_json(url: str, body: object) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, Any] = json.load(response)
        return result


def wait_for_streams(
    page: Page, server: TwistdServer, count: int, timeout: float = 10
) -> None:
    """
    Poll the server's C{/health}, in short bounded steps, until it counts
    C{count} open streams.
    """
    deadline = time.monotonic() + timeout
    while (streams := server.health()["streams"]) != count:
        assert time.monotonic() < deadline, (
            f"the server has {streams} open streams, not {count}"
        )
        page.wait_for_timeout(50)


def test_page_opens_the_stream(start_server: StartServer, new_page: NewPage) -> None:
    """
    On load the page opens the stream, logs C{open} and the greeting, and
    shows the state C{open}.
    """
    server = start_server(args=["--heartbeat", "0"])
    page = new_page(server.url)
    expect_open(page)
    expect(log_entry(page, "open")).to_have_count(1, timeout=TIMEOUT)
    expect(log_entry(page, GOTCHA)).to_have_count(1, timeout=TIMEOUT)
    texts = log_texts(page)
    assert texts[0].endswith(" open"), texts
    assert texts[1].endswith(" " + GOTCHA), texts
    expect(page.locator("#last-id")).to_have_text("none", timeout=TIMEOUT)
    wait_for_streams(page, server, 1)


def test_send_message_reaches_every_page(
    start_server: StartServer, new_page: NewPage
) -> None:
    """
    Send Message on one page makes C{Something changed} appear on both, and
    only the sender logs what it sent.
    """
    server = start_server(args=["--heartbeat", "0"])
    sender = new_page(server.url)
    other = new_page(server.url)
    for page in (sender, other):
        expect_open(page)
        expect(log_entry(page, GOTCHA)).to_have_count(1, timeout=TIMEOUT)
    wait_for_streams(sender, server, 2)

    sender.click("#send")

    expect(log_entry(sender, SENT)).to_have_count(1, timeout=TIMEOUT)
    for page in (sender, other):
        expect(log_entry(page, CHANGED)).to_have_count(1, timeout=TIMEOUT)
    expect(other.locator("#log li").filter(has_text="sent")).to_have_count(
        0, timeout=TIMEOUT
    )
    last_id = server.health()["lastEventId"]
    assert isinstance(last_id, str)
    for page in (sender, other):
        expect(page.locator("#last-id")).to_have_text(last_id, timeout=TIMEOUT)


def test_close_stops_the_stream(start_server: StartServer, new_page: NewPage) -> None:
    """
    Close ends the stream: the page logs C{closed}, shows the state
    C{closed}, and the server forgets the stream.
    """
    server = start_server(args=["--heartbeat", "0"])
    page = new_page(server.url)
    expect_open(page)
    wait_for_streams(page, server, 1)

    page.click("#close")

    expect(log_entry(page, "closed")).to_have_count(1, timeout=TIMEOUT)
    expect(page.locator("#state")).to_have_attribute(
        "data-state", "closed", timeout=TIMEOUT
    )
    expect(page.locator("#state")).to_have_text("closed", timeout=TIMEOUT)
    wait_for_streams(page, server, 0)
    # Nothing published now reaches the page.
    assert post_json(server.url + "/api", {"message": "after close"})["delivered"] == 0


def test_page_reconnects_after_a_restart(
    start_server: StartServer, new_page: NewPage
) -> None:
    """
    When the server stops, the page shows C{reconnecting}; when it starts
    again on the same port, the page reconnects by itself and gets events.
    """
    args = ["--retry", "500", "--heartbeat", "0"]
    first = start_server(args=args)
    page = new_page(first.url)
    expect_open(page)
    expect(log_entry(page, GOTCHA)).to_have_count(1, timeout=TIMEOUT)

    first.stop()

    expect(page.locator("#state")).to_have_attribute(
        "data-state", "reconnecting", timeout=TIMEOUT
    )
    expect(log_entry(page, "error: reconnecting").first).to_be_visible(timeout=TIMEOUT)

    second = start_server(port=first.port, args=args)
    assert second.port == first.port

    expect_open(page)
    expect(log_entry(page, GOTCHA)).to_have_count(2, timeout=TIMEOUT)
    wait_for_streams(page, second, 1)
    receipt = post_json(second.url + "/api", {"message": "after restart"})
    assert receipt["delivered"] == 1
    expect(log_entry(page, CHANGED)).to_have_count(1, timeout=TIMEOUT)
    expect(page.locator("#last-id")).to_have_text(receipt["id"], timeout=TIMEOUT)

    texts = log_texts(page)
    first_error = next(i for i, t in enumerate(texts) if "error: reconnecting" in t)
    reopened = [i for i, t in enumerate(texts) if t.endswith(" open")]
    assert len(reopened) == 2 and reopened[0] < first_error < reopened[1], texts
    assert [e["type"] for e in recorded(page)].count("open") == 2


def test_resume_replays_missed_events_once_in_order(
    start_server: StartServer,
    start_proxy: Callable[[int], Proxy],
    new_page: NewPage,
) -> None:
    """
    When the connection drops while the server runs on, the page reconnects
    with C{Last-Event-ID} and gets every event published meanwhile, exactly
    once and in order, line breaks included.
    """
    server = start_server(args=["--retry", "1000", "--heartbeat", "0"])
    proxy = start_proxy(server.port)
    page = new_page(proxy.url)
    expect_open(page)
    expect(log_entry(page, GOTCHA)).to_have_count(1, timeout=TIMEOUT)
    wait_for_streams(page, server, 1)

    before = post_json(server.url + "/publish", {"data": "before the cut"})
    assert before["delivered"] == 1
    expect(page.locator("#last-id")).to_have_text(before["id"], timeout=TIMEOUT)

    reconnections: list[Request] = []
    page.on("request", lambda r: reconnections.append(r) if "/sse" in r.url else None)
    # Drop the stream, and hold the page's reconnection back until every
    # event is published, so that none of them can reach it live.
    proxy.cut(hold=True)
    expect(page.locator("#state")).to_have_attribute(
        "data-state", "reconnecting", timeout=TIMEOUT
    )
    wait_for_streams(page, server, 0)
    missed = ["missed 1", "line1\nline2", "missed 3: ünïcödé ✓", "missed 4", "missed 5"]
    receipts = [post_json(server.url + "/publish", {"data": d}) for d in missed]
    assert [r["delivered"] for r in receipts] == [0] * len(missed)
    ids = [r["id"] for r in receipts]

    proxy.release()

    expect_open(page)
    expect(page.locator("#last-id")).to_have_text(ids[-1], timeout=TIMEOUT)
    wait_for_streams(page, server, 1)
    page.wait_for_function(
        "id => window.__events.some(e => e.id === id)", arg=ids[-1], timeout=TIMEOUT
    )

    assert [r.header_value("last-event-id") for r in reconnections] == [before["id"]]
    events = recorded(page)
    assert [e["type"] for e in events] == [
        "open",
        "message",
        "message",
        "open",
        "message",
        *["message"] * len(missed),
    ], events
    messages = [(e["data"], e["id"]) for e in events if e["type"] == "message"]
    assert messages == [
        (GOTCHA, ""),
        ("before the cut", before["id"]),
        (GOTCHA, before["id"]),
        *zip(missed, ids, strict=True),
    ]
    # The page's log shows each of them once, the line break kept.
    texts = log_texts(page)
    for data in ["before the cut", *missed]:
        assert sum(t.endswith(" " + data) for t in texts) == 1, (data, texts)


def test_page_resumes_on_another_instance(
    start_server: StartServer,
    start_proxy: Callable[[int], Proxy],
    new_page: NewPage,
    redis_server: RedisServer,
) -> None:
    """
    With C{--redis}, a page whose instance goes away reconnects, through the
    same address, to another instance and gets every event published
    meanwhile there, once and in order, then live ones.
    """
    args = ["--redis", redis_server.url, "--retry", "1000", "--heartbeat", "0"]
    first, second = start_server(args=args), start_server(args=args)
    proxy = start_proxy(first.port)
    page = new_page(proxy.url)
    expect_open(page)
    wait_for_streams(page, first, 1)
    before = post_json(first.url + "/publish", {"data": "before the switch"})
    expect(page.locator("#last-id")).to_have_text(before["id"], timeout=TIMEOUT)

    proxy.cut(hold=True)
    first.stop()
    missed = ["missed 1", "missed 2", "missed 3"]
    ids = [post_json(second.url + "/publish", {"data": d})["id"] for d in missed]
    proxy.retarget(second.port)
    proxy.release()

    expect(page.locator("#last-id")).to_have_text(ids[-1], timeout=TIMEOUT)
    live = post_json(second.url + "/publish", {"data": "live"})
    expect(page.locator("#last-id")).to_have_text(live["id"], timeout=TIMEOUT)
    messages = [
        (e["data"], e["id"])
        for e in recorded(page)
        if e["type"] == "message" and e["data"] != GOTCHA
    ]
    assert messages == [
        ("before the switch", before["id"]),
        *zip(missed, ids, strict=True),
        ("live", live["id"]),
    ]


def value_rows(page: Page) -> Locator:
    return page.locator("#values-body tr")


def expect_values(page: Page, values: dict[str, dict[str, object]]) -> None:
    """
    The page's table of retained values shows exactly C{values}, in order.
    """
    rows = value_rows(page)
    expect(rows).to_have_count(len(values), timeout=TIMEOUT)
    expect(rows.locator("td:first-child")).to_have_text(list(values), timeout=TIMEOUT)
    expect(rows.locator("td:last-child")).to_have_text(
        [json.dumps(v) for v in values.values()], timeout=TIMEOUT
    )


def test_table_of_retained_values_from_the_snapshot_and_live_events(
    start_server: StartServer, new_page: NewPage
) -> None:
    """
    Keyed values published before the page loads fill its table from the
    snapshot; live updates change it, a deletion removes the row (on every
    page), the page's own form publishes, and a reloaded page shows the
    same values at once.
    """
    server = start_server(args=["--heartbeat", "0"])
    publish = f"{server.url}/publish"
    aapl = {"key": "AAPL", "value": 187}
    msft = {"key": "MSFT", "value": 402}
    gone = {"key": "GONE", "value": 0}
    for value in (aapl, msft, gone):
        post_json(publish, {"key": value["key"], "data": value})
    post_json(publish, {"key": "GONE", "data": None})
    page = new_page(server.url)
    other = new_page(server.url)
    for each in (page, other):
        expect_open(each)
        expect_values(each, {"AAPL": aapl, "MSFT": msft})

    newer = {"key": "AAPL", "value": 190}
    post_json(publish, {"key": "AAPL", "data": newer})
    for each in (page, other):
        expect_values(each, {"AAPL": newer, "MSFT": msft})

    post_json(publish, {"key": "MSFT", "data": None})
    for each in (page, other):
        expect_values(each, {"AAPL": newer})

    page.fill("#value-key", "NVDA")
    page.fill("#value-data", "950")
    page.click("#set-value")
    nvda = {"key": "NVDA", "value": "950"}
    for each in (page, other):
        expect_values(each, {"AAPL": newer, "NVDA": nvda})

    other.reload()
    expect_values(other, {"AAPL": newer, "NVDA": nvda})
