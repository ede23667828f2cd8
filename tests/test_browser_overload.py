"""
C{--max-clients} in a real browser: a refused C{EventSource} keeps coming
back by itself, and gets its stream once there is room.
"""

from __future__ import annotations

import re
import time
import urllib.request

from playwright.sync_api import Page, expect
from test_browser import (  # noqa: F401 (fixtures)
    GOTCHA,
    TIMEOUT,
    NewPage,
    StartServer,
    browser,
    expect_open,
    log_entry,
    new_page,
    start_server,
    wait_for_streams,
)
from test_metrics import site_ports
from twistd_process import TwistdServer


def refused(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^ssedemo_streams_refused_total (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def wait_for_refusals(page: Page, metrics_url: str, count: int) -> None:
    """
    Poll the metrics, in short bounded steps, until C{count} refusals.
    """
    deadline = time.monotonic() + 10
    while refused(metrics_url) < count:
        assert time.monotonic() < deadline, "the browser did not come back"
        page.wait_for_timeout(50)


def test_refused_page_keeps_retrying_until_there_is_room(
    start_server: StartServer,  # noqa: F811 (the fixture)
    new_page: NewPage,  # noqa: F811 (the fixture)
) -> None:
    """
    With room for one stream, a second page is refused again and again:
    each time its C{EventSource} opens (the answer is a C{200} event
    stream), gets no event, and reconnects, never giving up. Once the first
    page closes its stream, the second one gets its stream and the greeting.
    """
    server: TwistdServer = start_server(
        args=[
            "--heartbeat",
            "0",
            "--max-clients",
            "1",
            "--retry",
            "200",
            "--metrics",
            "tcp:0:interface=127.0.0.1",
        ]
    )
    metrics_url = f"http://127.0.0.1:{site_ports(server)[1]}/metrics"
    first = new_page(server.url)
    expect_open(first)
    wait_for_streams(first, server, 1)

    second = new_page(server.url)
    wait_for_refusals(second, metrics_url, 3)
    events = second.evaluate("window.__events")
    assert {event["type"] for event in events} == {"open"}
    expect(log_entry(second, "error: reconnecting")).not_to_have_count(0)
    expect(log_entry(second, "error: stream closed")).to_have_count(0)

    first.click("#close")
    expect(log_entry(second, GOTCHA)).to_have_count(1, timeout=TIMEOUT)
    expect_open(second)
    wait_for_streams(second, server, 1)
