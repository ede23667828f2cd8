"""
The C{ssedemo} command as a user runs it: the installed console script in
a subprocess (spawned on the reactor, so that servers in this process keep
serving), its exit status, standard output and standard error.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_twisted
from awkward_server import AwkwardServer, Seen, _Connection, head
from test_client_awkward import TIMEOUT, reactor, until
from test_client_ssedemo import Ssedemo
from tokens import SECRET
from twistd_process import TwistdServer
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

SSEDEMO = str(Path(sys.executable).with_name("ssedemo"))


class Run(ProcessProtocol):
    """
    One C{ssedemo} process: its output as it comes, and its exit status.
    """

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[int] = Deferred()
        self.out_closed = False

    def outConnectionLost(self) -> None:
        self.out_closed = True

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(reason.value.exitCode)

    def lines(self) -> list[str]:
        return self.out.decode().splitlines()

    async def status(self) -> int:
        """
        The exit status (the process is killed after TIMEOUT).
        """
        timer = reactor().callLater(TIMEOUT, self.transport.signalProcess, "KILL")
        code = await self.ended
        if timer.active():
            timer.cancel()
        return code


def start(*args: str) -> Run:
    run = Run()
    reactor().spawnProcess(
        run, SSEDEMO, [SSEDEMO, *args], env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    return run


async def ssedemo(*args: str) -> tuple[int, str, str]:
    run = start(*args)
    code = await run.status()
    return code, run.out.decode(), run.err.decode()


async def waiting(condition: Callable[[], bool]) -> None:
    await until(condition)


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[Ssedemo]:
    started = Ssedemo()
    started.start()
    yield started
    await started.stop()


@pytest_twisted.async_yield_fixture
async def awkward() -> AsyncIterator[AwkwardServer]:
    started = await AwkwardServer(reactor()).start()
    yield started
    await started.stop()


@pytest_twisted.ensureDeferred
async def test_tail_json_prints_every_event_then_ctrl_c_exits_0(
    server: Ssedemo,
) -> None:
    """
    Each event is one JSON line (event, last id, data as a string), flushed
    into the pipe as it comes, whatever its type; Ctrl-C ends with 0.
    """
    tail = start("tail", f"{server.url}/sse", "--topic", "news", "--json")
    await waiting(lambda: len(tail.lines()) == 1)
    receipt = server.hub.publish('{"n": 1}', event="resync", topic="news")
    server.hub.publish("not mine", topic="other")
    await waiting(lambda: len(tail.lines()) == 2)
    tail.transport.signalProcess("INT")
    assert await tail.status() == 0
    assert [json.loads(line) for line in tail.lines()] == [
        {"event": "message", "id": "", "data": '{"message": "Gotcha"}'},
        {"event": "resync", "id": receipt.id, "data": '{"n": 1}'},  # type: ignore[union-attr]
    ]
    assert tail.err == b""


@pytest_twisted.ensureDeferred
async def test_tail_is_readable_by_default(server: Ssedemo) -> None:
    tail = start("tail", f"{server.url}/sse", "--last-event-id", "gone")
    await waiting(lambda: b"event: resync" in tail.out)
    tail.transport.signalProcess("INT")
    assert await tail.status() == 0
    assert tail.out.decode() == (
        "event: message\n"
        "id: gone\n"
        'data: {"message": "Gotcha"}\n'
        "\n"
        "event: resync\n"
        'data: {"lastEventId": "gone"}\n'
        "\n"
    )


@pytest_twisted.ensureDeferred
async def test_tail_ends_quietly_when_stdout_is_closed(server: Ssedemo) -> None:
    """
    As in C{ssedemo tail URL | head -1}: the reader goes, the next event
    ends C{tail} with status 0 and nothing on standard error.
    """
    tail = start("tail", f"{server.url}/sse", "--json")
    await waiting(lambda: len(tail.lines()) == 1)
    tail.transport.closeStdout()
    await waiting(lambda: tail.out_closed)  # closed on the reactor's next turn
    server.hub.publish("one more")
    assert await tail.status() == 0
    assert tail.err == b""


@pytest_twisted.ensureDeferred
async def test_tail_says_when_it_reconnects_and_resumes(awkward: AwkwardServer) -> None:
    def first(connection: _Connection, seen: Seen) -> None:
        connection.write(head("200 OK") + b"retry: 20\nid: 1\ndata: a\n\n")
        connection.end()
        awkward.scenes["/sse"] = again

    def again(connection: _Connection, seen: Seen) -> None:
        connection.write(head("200 OK") + b"id: 2\ndata: b\n\n")

    awkward.scenes["/sse"] = first
    tail = start("tail", f"{awkward.url}/sse", "--json")
    await waiting(lambda: len(tail.lines()) == 2)
    tail.transport.signalProcess("INT")
    assert await tail.status() == 0
    assert [json.loads(line)["data"] for line in tail.lines()] == ["a", "b"]
    assert awkward.seen[1].headers["last-event-id"] == "1"
    err = tail.err.decode()
    assert "the server ended the stream; reconnecting in" in err
    assert "reconnected to" in err


@pytest_twisted.ensureDeferred
async def test_tail_keeps_trying_a_refused_connection(awkward: AwkwardServer) -> None:
    url = f"{awkward.url}/sse"
    await awkward.stop()
    tail = start("tail", url)
    await waiting(lambda: b"connection refused" in tail.err)
    tail.transport.signalProcess("INT")
    assert await tail.status() == 0
    assert "connection refused; reconnecting in" in tail.err.decode()


@pytest_twisted.ensureDeferred
async def test_tail_exits_0_on_204_with_a_note(awkward: AwkwardServer) -> None:
    def no_content(connection: _Connection, seen: Seen) -> None:
        connection.write(head("204 No Content", None, Content_Length="0"))
        connection.end()

    awkward.scenes["/sse"] = no_content
    code, out, err = await ssedemo("tail", f"{awkward.url}/sse")
    assert (code, out) == (0, "")
    assert "204 No Content" in err


@pytest_twisted.ensureDeferred
async def test_tail_exits_1_on_500_with_the_reason(awkward: AwkwardServer) -> None:
    def broken(connection: _Connection, seen: Seen) -> None:
        connection.write(head("500 Internal Server Error", "application/json"))
        connection.write(b'{"error": "the log is down"}')
        connection.end()

    awkward.scenes["/sse"] = broken
    code, out, err = await ssedemo("tail", f"{awkward.url}/sse")
    assert (code, out) == (1, "")
    assert "500 Internal Server Error: the log is down" in err


@pytest_twisted.ensureDeferred
async def test_tail_exits_1_on_another_content_type(awkward: AwkwardServer) -> None:
    def page(connection: _Connection, seen: Seen) -> None:
        connection.write(head("200 OK", "text/html") + b"<p>hi</p>")
        connection.end()

    awkward.scenes["/sse"] = page
    code, _, err = await ssedemo("tail", f"{awkward.url}/sse")
    assert code == 1 and "not an event stream: Content-Type text/html" in err


@pytest_twisted.ensureDeferred
async def test_publish_prints_the_receipt_on_one_line(server: Ssedemo) -> None:
    code, out, err = await ssedemo(
        "publish", f"{server.url}/publish", '{"a": 1}', "--event", "e", "--topic", "t"
    )
    assert (code, err) == (0, "")
    [line] = out.splitlines()
    receipt = json.loads(line)
    assert receipt == {"id": receipt["id"], "delivered": 0, "topic": "t"}
    assert server.hub.last_id == receipt["id"]


@pytest_twisted.ensureDeferred
async def test_publish_shows_the_servers_error(server: Ssedemo) -> None:
    code, out, err = await ssedemo(
        "publish", f"{server.url}/publish", "x", "--key", "a\nb"
    )
    assert (code, out) == (1, "")
    assert err.startswith("ssedemo publish: 400: key must be a string")


@pytest_twisted.ensureDeferred
async def test_publish_shows_retry_after_of_a_503(awkward: AwkwardServer) -> None:
    def busy(connection: _Connection, seen: Seen) -> None:
        body = b'{"error": "the event log is unavailable; try again later"}'
        connection.write(
            head(
                "503 Service Unavailable",
                "application/json",
                Retry_After="1",
                Content_Length=str(len(body)),
            )
            + body
        )
        connection.end()

    awkward.scenes["/publish"] = busy
    code, _, err = await ssedemo("publish", f"{awkward.url}/publish", "x")
    assert code == 1
    assert err == (
        "ssedemo publish: 503: the event log is unavailable; try again later"
        " (retry after 1 s)\n"
    )


@pytest_twisted.ensureDeferred
async def test_publish_says_when_no_answer_came(awkward: AwkwardServer) -> None:
    """
    A server that takes the request and never answers is named as such
    once C{--timeout} has passed: status 1, the reason on stderr.
    """
    awkward.scenes["/publish"] = lambda connection, seen: None
    code, out, err = await ssedemo(
        "publish", f"{awkward.url}/publish", "x", "--timeout", "0.5"
    )
    assert (code, out) == (1, "")
    assert err == (
        f"ssedemo publish: cannot publish to {awkward.url}/publish:"
        " no answer within 0.5 s (or interrupted)\n"
    )


@pytest_twisted.ensureDeferred
async def test_publish_says_a_200_without_a_receipt_is_not_one(
    awkward: AwkwardServer,
) -> None:
    """
    A C{200} whose body is not a receipt fails (status 1), saying so.
    """

    def not_a_receipt(connection: _Connection, seen: Seen) -> None:
        connection.write(head("200 OK", "text/plain", Content_Length="2") + b"hi")
        connection.end()

    awkward.scenes["/publish"] = not_a_receipt
    code, out, err = await ssedemo("publish", f"{awkward.url}/publish", "x")
    assert (code, out) == (1, "")
    assert err == "ssedemo publish: 200, but not a receipt: hi\n"


@pytest_twisted.ensureDeferred
async def test_publish_to_nowhere_fails(awkward: AwkwardServer) -> None:
    url = f"{awkward.url}/publish"
    await awkward.stop()
    code, _, err = await ssedemo("publish", url, "x")
    assert code == 1 and "connection refused" in err.lower()


@pytest.mark.parametrize(
    "args, message",
    [
        (["tail"], "Wrong number of arguments"),
        (["tail", "ftp://x/sse"], "not an http:// or https:// URL"),
        (["tail", "http://x/sse", "--token", "a", "--token-file", "b"], "not both"),
        (["publish", "http://x/publish"], "Wrong number of arguments"),
        (["token", "--subscribe", "a"], "--key-file is required"),
        (["token", "--key-file", "k"], "--subscribe PATTERN, --publish PATTERN"),
        (["frobnicate"], "Unknown command: frobnicate"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_bad_command_line_exits_2(args: list[str], message: str) -> None:
    code, out, err = await ssedemo(*args)
    assert (code, out) == (2, "")
    assert message in err


@pytest.mark.parametrize("verb", ["tail", "publish", "token"])
@pytest_twisted.ensureDeferred
async def test_help_on_each_verb(verb: str) -> None:
    code, out, _ = await ssedemo(verb, "--help")
    assert code == 0
    assert out.startswith(f"Usage: ssedemo {verb}")
    assert "[default:" in out or verb == "tail"


@pytest_twisted.ensureDeferred
async def test_a_token_is_accepted_by_twistd_with_the_same_key(
    tmp_path: Path,
) -> None:
    """
    A real C{twistd ssedemo --jwt-key} accepts what C{ssedemo token} mints
    from the same file: C{tail} with it reads the topic, C{publish} with it
    publishes; without it, C{publish} is refused with 401.
    """
    key = tmp_path / "jwt.key"
    key.write_bytes(SECRET + b"\r\n")
    twistd = TwistdServer(args=["--jwt-key", str(key), "--heartbeat", "0"]).start()
    try:
        code, token, err = await ssedemo(
            "token", "--key-file", str(key), "--subscribe", "news", "--publish", "news"
        )
        assert (code, err) == (0, "")
        token_file = tmp_path / "token"
        token_file.write_text(token)
        tail = start(
            "tail", f"{twistd.url}/sse", "--topic", "news", "--json",
            "--token-file", str(token_file),
        )  # fmt: skip
        await waiting(lambda: len(tail.lines()) == 1)
        code, out, err = await ssedemo(
            "publish", f"{twistd.url}/publish", "hi", "--topic", "news",
            "--token", token.strip(),
        )  # fmt: skip
        assert (code, err) == (0, "")
        assert json.loads(out)["topic"] == "news"
        await waiting(lambda: len(tail.lines()) == 2)
        tail.transport.signalProcess("INT")
        assert await tail.status() == 0
        assert json.loads(tail.lines()[1])["data"] == "hi"
        code, _, err = await ssedemo("publish", f"{twistd.url}/publish", "hi")
        assert code == 1 and err.startswith("ssedemo publish: 401: ")
    finally:
        twistd.stop()
