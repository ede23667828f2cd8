"""
Expiring tokens in a real browser: a page whose backend refreshes the
C{sse_token} cookie on C{token-expiring} resumes with nothing lost when the
server ends the stream; a page that does not gets C{401} and its
C{EventSource} stops for good.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_proxy import Proxy
from playwright.sync_api import Browser, BrowserContext, Page, Route
from test_browser import (  # noqa: F401 (fixtures)
    TIMEOUT,
    StartServer,
    browser,
    start_proxy,
    start_server,
    wait_for_streams,
)
from tokens import SECRET, grants
from twistd_process import TwistdServer

# The page of docs/authorization.md's token-expiry example, with a log for the test.
PAGE = """<!doctype html>
<title>orders</title>
<script>
window.seen = [];
const source = new EventSource("/sse?topic=orders", {withCredentials: true});
source.addEventListener("token-expiring", () => {
  // Your backend answers with Set-Cookie: sse_token=<a fresh token>; Path=/
  fetch("/refresh-sse-token", {method: "POST", credentials: "include"});
});
window.source = source;
for (const type of ["open", "message", "token-expiring", "error"]) {
  source.addEventListener(type, (event) => window.seen.push({
    type, data: event.data ?? null, id: event.lastEventId ?? null,
    state: source.readyState,
  }));
}
</script>
"""
PUBLISHER = grants(publish=["orders"])


def serve(start: StartServer, tmp_path: Path, *args: str) -> TwistdServer:
    (tmp_path / "index.html").write_text(PAGE)
    key = tmp_path / "jwt.key"
    key.write_bytes(SECRET + b"\n")
    return start(
        args=[
            "--jwt-key",
            str(key),
            "--static",
            str(tmp_path),
            "--heartbeat",
            "0",
            *args,
        ]
    )


def publish(server: TwistdServer, data: str) -> dict[str, Any]:
    call = urllib.request.Request(
        server.url + "/publish",
        data=json.dumps({"data": data, "topic": "orders"}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {PUBLISHER}",
        },
    )
    with urllib.request.urlopen(call, timeout=5) as response:
        receipt: dict[str, Any] = json.load(response)
        return receipt


def reader_token(lifetime: int) -> tuple[str, int]:
    """
    @return: A token to read C{orders} for C{lifetime} seconds from now,
        and its C{exp}.
    """
    now = int(time.time())
    return grants(["orders"], iat=now, exp=now + lifetime), now + lifetime


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:  # noqa: F811
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT)
    yield context
    context.close()


def open_page(
    context: BrowserContext,
    url: str,
    token: str,
    refresh: Callable[[Route], None],
) -> tuple[Page, list[int]]:
    """
    Open the page at C{url} with C{token} in its cookie, and C{refresh} as
    its backend's C{/refresh-sse-token}.

    @return: The page, and the statuses its streams get.
    """
    context.add_cookies([{"name": "sse_token", "value": token, "url": url}])
    context.route("**/refresh-sse-token", refresh)
    statuses: list[int] = []
    context.on(
        "response", lambda r: statuses.append(r.status) if "/sse" in r.url else None
    )
    page = context.new_page()
    page.goto(url + "/", timeout=TIMEOUT)
    return page, statuses


def test_refreshed_cookie_resumes_with_nothing_lost(
    context: BrowserContext,
    start_server: StartServer,  # noqa: F811
    start_proxy: Callable[[int], Proxy],  # noqa: F811
    tmp_path: Path,
) -> None:
    """
    The stream warns the page half-way through its token's six seconds;
    the page's backend sets a fresh cookie; at C{exp} the server ends the
    stream, and C{EventSource} reconnects with the new cookie and
    C{Last-Event-ID}, getting the events published meanwhile, once each.
    """
    server = serve(start_server, tmp_path, "--retry", "500")
    proxy = start_proxy(server.port)
    first, exp = reader_token(6)
    fresh = grants(["orders"], exp=int(time.time()) + 120)
    refreshed: list[str] = []

    def refresh(route: Route) -> None:
        refreshed.append(route.request.method)
        route.fulfill(status=204, headers={"Set-Cookie": f"sse_token={fresh}; Path=/"})

    page, statuses = open_page(context, proxy.url, first, refresh)
    page.wait_for_function("window.seen.some(e => e.type === 'message')")
    wait_for_streams(page, server, 1)
    before = publish(server, "before")

    page.wait_for_function("window.seen.some(e => e.type === 'token-expiring')")
    deadline = time.monotonic() + 10
    while not any(c["value"] == fresh for c in context.cookies(proxy.url)):
        assert time.monotonic() < deadline, "the cookie was not refreshed"
        page.wait_for_timeout(50)
    assert refreshed == ["POST"]
    # Hold the reconnection back until the missed events are published.
    proxy.hold()
    wait_for_streams(page, server, 0)
    missed = [publish(server, f"missed {n}") for n in range(3)]
    assert [m["delivered"] for m in missed] == [0, 0, 0]
    proxy.release()

    page.wait_for_function(
        "id => window.seen.some(e => e.id === id)", arg=missed[-1]["id"]
    )
    seen = page.evaluate("window.seen")
    warning = next(e for e in seen if e["type"] == "token-expiring")
    assert json.loads(warning["data"]) == {"exp": exp}
    messages = [(e["data"], e["id"]) for e in seen if e["type"] == "message"]
    gotcha = '{"message": "Gotcha"}'
    assert messages == [
        (gotcha, ""),
        ("before", before["id"]),
        (gotcha, before["id"]),
        *[(f"missed {n}", m["id"]) for n, m in enumerate(missed)],
    ]
    # The first token had expired: the reconnection was let in with the
    # fresh cookie, and the missed events came from Last-Event-ID.
    assert [e["type"] for e in seen].count("open") == 2
    assert statuses == [200, 200]


def test_page_that_does_not_refresh_gets_401_and_stops(
    context: BrowserContext,
    start_server: StartServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = serve(start_server, tmp_path, "--retry", "200")
    token = reader_token(3)[0]
    page, statuses = open_page(
        context, server.url, token, lambda route: route.fulfill(status=500)
    )
    page.wait_for_function("window.source.readyState === EventSource.CLOSED")
    seen = page.evaluate("window.seen")
    # The end of the stream, then the 401 that closes the EventSource.
    assert [(e["type"], e["state"]) for e in seen] == [
        ("open", 1),
        ("message", 1),
        ("token-expiring", 1),
        ("error", 0),
        ("error", 2),
    ]
    assert statuses == [200, 401]
    wait_for_streams(page, server, 0)
