"""
The point of HTTP/2 for a Server-Sent Events site, in a real browser: one
page opens ten C{EventSource}s over C{https://}, all at once on one
connection (over HTTP/1.1 a browser opens at most six per host), and all of
them get one publish.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from certificate import Certificate
from playwright.sync_api import Browser, Page
from test_browser import TIMEOUT, browser  # noqa: F401 (the fixture)
from twistd_process import TwistdServer

SOURCES = 10

OPEN_SOURCES = """
(count) => {
  window.opened = 0;
  window.received = [];
  window.sources = [];
  for (let i = 0; i < count; i++) {
    const source = new EventSource("/sse?topic=h2");
    source.onopen = () => { window.opened += 1; };
    source.onmessage = (event) => window.received.push([i, event.data]);
    window.sources.push(source);
  }
}
"""

PUBLISH = """
() => fetch("/publish", {
  method: "POST",
  headers: {"Content-Type": "application/json"},
  body: JSON.stringify({data: "to all ten", topic: "h2"}),
}).then((response) => response.json())
"""


@pytest.fixture
def https_page(
    browser: Browser,  # noqa: F811
    certificate: Certificate,
) -> Iterator[tuple[Page, TwistdServer]]:
    """
    A page of C{twistd ssedemo}'s TLS port, its self-signed certificate
    accepted.
    """
    server = TwistdServer(args=["--heartbeat", "0", "--port", certificate.endpoint()])
    server.start()
    context = browser.new_context(ignore_https_errors=True)
    try:
        context.set_default_timeout(TIMEOUT)
        page = context.new_page()
        page.goto(f"https://127.0.0.1:{server.tls_port}/health")
        yield page, server
    finally:
        context.close()
        server.stop()


def test_ten_event_sources_share_one_http2_connection(
    https_page: tuple[Page, TwistdServer],
) -> None:
    """
    Over HTTP/2 the page has ten streams open at once, which HTTP/1.1's six
    connections per host could not carry; one publish reaches all ten, and
    the browser says each went over C{h2}.
    """
    page, server = https_page
    assert (
        page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
        == "h2"
    )
    page.evaluate(OPEN_SOURCES, SOURCES)
    page.wait_for_function(f"window.opened === {SOURCES}")
    assert server.health()["streams"] == SOURCES
    assert page.evaluate(PUBLISH)["delivered"] == SOURCES
    page.wait_for_function(
        "window.received.filter(([, data]) => data === 'to all ten').length"
        f" === {SOURCES}"
    )
    received = page.evaluate("window.received")
    assert sorted(i for i, data in received if data == "to all ten") == list(
        range(SOURCES)
    )
    # A stream's resource timing entry is made once it ends.
    page.evaluate("window.sources.forEach((source) => source.close())")
    page.wait_for_function(
        "performance.getEntriesByType('resource')"
        f".filter((entry) => entry.name.endsWith('/sse?topic=h2')).length === {SOURCES}"
    )
    protocols = page.evaluate(
        "performance.getEntriesByType('resource')"
        ".filter((entry) => entry.name.endsWith('/sse?topic=h2'))"
        ".map((entry) => entry.nextHopProtocol)"
    )
    assert protocols == ["h2"] * SOURCES
