"""
Authorization in a real C{twistd ssedemo} process, as a user runs it: the
access log never shows a query token, refusals are JSON, and the warning
for an open publish API.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tokens import SECRET, grants
from twistd_process import DEADLINE, TwistdServer


def request(
    url: str, data: bytes | None = None, **headers: str
) -> tuple[int, Any, bytes]:
    """
    @return: The status, headers and body, or as much of the body as a
        short read gets for a stream.
    """
    call = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(call, timeout=DEADLINE) as response:
            return response.status, response.headers, response.read1(4096)
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def stop_and_read(server: TwistdServer) -> str:
    server.stop()
    return server.output.decode()


@pytest.fixture
def secret(tmp_path: Path) -> str:
    path = tmp_path / "jwt.key"
    path.write_bytes(SECRET + b"\n")
    return str(path)


def test_query_tokens_never_reach_the_log(secret: str) -> None:
    """
    Tokens given as C{?access_token=} (good, bad, to C{/sse} and to
    C{/publish}) appear in no log line; the requests are logged redacted.
    """
    json_log = Path(secret).with_name("log.json")
    server = TwistdServer(
        args=[
            "--jwt-key",
            secret,
            "--public-topic",
            "default",
            "--log-json",
            str(json_log),
        ]
    ).start()
    good = grants(["news"], publish=["news"], exp=time.time() + 60)
    bad = "not.a-valid.token-" + "x" * 40
    status, headers, body = request(f"{server.url}/sse?topic=news&access_token={good}")
    assert status == 200 and b"Gotcha" in body
    status, headers, body = request(f"{server.url}/sse?topic=news&access_token={bad}")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert "error" in json.loads(body)
    status, _, body = request(
        f"{server.url}/publish?access_token={good}",
        json.dumps({"data": "hi", "topic": "news"}).encode(),
        **{"Content-Type": "application/json"},
    )
    assert status == 200, body
    status, _, _ = request(f"{server.url}/sse?topic=news")
    assert status == 401
    text_log = stop_and_read(server)
    log = text_log + json_log.read_text()
    assert "access_token=[redacted]" in text_log
    assert "access_token=[redacted]" in json_log.read_text()
    for secret_text in (good, bad, good.split(".")[2], bad[-40:]):
        assert secret_text not in log


def test_publish_open_is_warned_about() -> None:
    server = TwistdServer(args=["--publish-open"]).start()
    log = stop_and_read(server)
    assert "--publish-open: anyone who can reach this server may publish" in log


class _AuthApp(http.server.BaseHTTPRequestHandler):
    """
    The application's auth endpoint: allows C{orders}, hangs on C{slow}.
    """

    seen: list[dict[str, str]] = []
    release = threading.Event()

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        if self.headers["X-SSE-Topics"] == "slow":
            self.release.wait(DEADLINE)  # until the test is over
            return
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.send_header("X-SSE-Topics", "orders")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def auth_app() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthApp)
    server.daemon_threads = True
    _AuthApp.seen = []
    _AuthApp.release.clear()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/auth"
    _AuthApp.release.set()
    server.shutdown()
    server.server_close()
    thread.join(DEADLINE)


def test_forward_auth_in_twistd(auth_app: str) -> None:
    """
    A real twistd asks the application, passes on its limits, and tells
    the client to come back later when it does not answer in time.
    """
    server = TwistdServer(
        args=["--auth-url", auth_app, "--auth-timeout", "0.5", "--retry", "1000"]
    ).start()
    try:
        status, headers, body = request(
            f"{server.url}/sse?topic=orders",
            Cookie="session=1",
            **{"X-Forwarded-For": "6.6.6.6"},
        )
        assert status == 200 and b"Gotcha" in body
        asked = _AuthApp.seen[0]
        assert (asked["Cookie"], asked["X-Forwarded-For"]) == ("session=1", "127.0.0.1")
        status, _, body = request(f"{server.url}/sse?topic=orders&topic=other")
        assert status == 403
        started = time.monotonic()
        status, headers, body = request(f"{server.url}/sse?topic=slow")
        assert time.monotonic() - started < DEADLINE / 2
        assert status == 200
        assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
        retry = int(body.decode().removeprefix("retry: ").strip())
        assert 1000 <= retry <= 2000
    finally:
        server.stop()
