"""
Tests for L{sse_twisted.transport.http1}: a request head taken whole gives
exactly what Twisted's line-by-line parser gives, for any request cut
anywhere, refusals included; the C{Date} is formatted once a second; and
a stream's head formatted in advance is what Twisted would have sent.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet.protocol import Factory
from twisted.internet.testing import StringTransport
from twisted.web.http import HTTPChannel, Request
from twisted.web.http_headers import _nameEncoder
from twisted.web.iweb import INonQueuedRequestFactory
from zope.interface import provider

from sse_twisted.transport._head import parse_head as compiled_parse_head
from sse_twisted.transport.eager import EagerPort, EagerServer
from sse_twisted.transport.http1 import HeadChannel, HTTPDate, StreamHead, parse_head

Headers = list[tuple[bytes, list[bytes]]]
Seen = tuple[bytes, bytes, bytes, Headers, bytes, dict[bytes, bytes], bool]


class Recorder(Request):
    """
    A request that notes what the channel made of it, and answers C{ok}.
    """

    def process(self) -> None:
        seen: list[Seen] = self.channel.seen  # type: ignore[attr-defined]
        assert self.content is not None
        seen.append(
            (
                self.method,
                self.uri,
                self.clientproto,
                list(self.requestHeaders.getAllRawHeaders()),
                self.content.read(),
                self.received_cookies,
                bool(self.channel.persistent),
            )
        )
        self.setHeader(b"Content-Length", b"2")
        self.write(b"ok")
        self.finish()


def run(
    channel: HTTPChannel, pieces: list[bytes], limits: tuple[int, int, int]
) -> tuple[list[Seen], bytes, bool]:
    """
    Feed C{pieces} to C{channel}, one read each.

    @return: The requests it handled, the bytes it wrote, and whether it
        closed the connection.
    """
    channel.requestFactory = Recorder  # type: ignore[assignment]
    channel.seen = []  # type: ignore[attr-defined]
    channel.MAX_LENGTH, channel.totalHeadersSize, channel.maxHeaders = limits
    transport = StringTransport()
    channel.makeConnection(transport)
    for piece in pieces:
        if transport.disconnecting:
            break
        channel.dataReceived(piece)
    return channel.seen, transport.value(), transport.disconnecting  # type: ignore[attr-defined]


GOOD_NAMES = [
    b"Host",
    b"Accept",
    b"x-a",
    b"X-A",
    b"Expect",
    b"Connection",
    b"Te",
    b"Cookie",
]
ODD_NAMES = [b"Bad Name", b"", b"Content-Length", b"Transfer-Encoding", b"A\x00"]
GOOD_VALUES = [
    b"v",
    b" v \t",
    b"",
    b"close",
    b"100-continue",
    b"3",
    b"a:b",
    b"a=1; b=2",
    b"keep-alive",
]
ODD_VALUES = [b"a\nb", b"a\rb", b"\x00"]
ODD_LINES = [b" folded", b"\tfold: ed", b"no colon", b"\r"]


def mostly(draw: Any, good: list[bytes], odd: list[bytes]) -> bytes:
    """
    @return: One of C{good}, or one time in sixteen one of C{odd}.
    """
    choices = odd if draw(st.integers(0, 15)) == 0 else good
    return bytes(draw(st.sampled_from(choices)))


@st.composite
def requests(draw: Any) -> bytes:
    """
    One request: mostly well-formed, sometimes odd in any part.
    """
    method = mostly(draw, [b"GET", b"HEAD", b"POST"], [b"G T", b"G\x00T", b""])
    target = mostly(draw, [b"/sse", b"/sse?topic=a&x=%20"], [b"", b"/\x7f", b"/ /"])
    version = mostly(draw, [b"HTTP/1.1", b"HTTP/1.0"], [b"HTTP/2", b"http/1.1"])
    blank = mostly(draw, [b""], [b"\r\n"])
    lines = [blank + b" ".join((method, target, version))]
    for _ in range(draw(st.integers(0, 6))):
        name = mostly(draw, GOOD_NAMES, ODD_NAMES)
        colon = mostly(draw, [b":", b": "], [b"", b" :"])
        lines.append(name + colon + mostly(draw, GOOD_VALUES, ODD_VALUES))
        if draw(st.integers(0, 23)) == 0:
            lines.append(bytes(draw(st.sampled_from(ODD_LINES))))
    body = b""
    kind = draw(st.sampled_from(["none"] * 4 + ["length", "chunked"]))
    if kind == "length":
        body = draw(st.binary(max_size=8))
        lines.append(b"Content-Length: %d" % len(body))
    elif kind == "chunked":
        data = draw(st.binary(min_size=1, max_size=8))
        lines.append(b"Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@st.composite
def cut(draw: Any) -> tuple[list[bytes], tuple[int, int, int]]:
    """
    One to three requests (pipelined), perhaps with noise after them, cut
    into reads at random places; and the channel's limits.
    """
    data = b"".join(draw(st.lists(requests(), min_size=1, max_size=3)))
    data += draw(st.sampled_from([b"", b"", b"\r\n", b"garbage"]))
    reads = draw(st.sampled_from([0, 0, 1, 2, 4]))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=reads)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    limits = draw(
        st.sampled_from(
            [(16384, 16384, 500), (16384, 16384, 500), (40, 80, 3), (24, 200, 2)]
        )
    )
    return [piece for piece in pieces if piece], limits


@settings(max_examples=600, deadline=None)
@given(cut())
@example(([b"GET / HTTP/1.1\r\nA: 1\r\n\tB: 2\r\n\r\n"], (16384, 16384, 500)))
@example(([b"GET / HTTP/1.1\r\nCookie: a=1; b=2\r\n\r\n"], (16384, 16384, 500)))
@example(([b"GET / HTTP/1.0\r\nHost: h\r\n\r\n"], (16384, 16384, 500)))
def test_same_as_twisted(case: tuple[list[bytes], tuple[int, int, int]]) -> None:
    """
    The same bytes, in the same reads, give the same requests (method,
    target, version, headers with duplicates and order, body, cookies,
    whether the connection goes on), the same
    bytes written back (answers, C{100 Continue}, refusals) and the same
    closing as with Twisted's own channel.
    """
    pieces, limits = case
    assert run(HeadChannel(), pieces, limits) == run(HTTPChannel(), pieces, limits)


@settings(max_examples=1500, deadline=None)
@given(cut())
@example(([b"GET /sse HTTP/1.1\r\nA: 1\r\nB:\r\na: 2\r\n\r\nx"], (16384, 16384, 500)))
@example(([b"GET /\xb0 HTTP/1.0\r\n\r\n"], (16384, 16384, 500)))
@example(([b"GET /\xb1 HTTP/1.0\r\n\r\n"], (16384, 16384, 500)))
@example(([b"\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"], (16384, 16384, 500)))
def test_compiled_parser_is_the_same(
    case: tuple[list[bytes], tuple[int, int, int]],
) -> None:
    """
    The compiled parser gives what L{parse_head} gives, for the first read
    of any request cut anywhere, once the names are in the cache of
    Twisted's name encoder (which L{parse_head} fills).
    """
    pieces, limits = case
    data = pieces[0]
    expected = parse_head(data, *limits)
    names = _nameEncoder._canonicalHeaderCache
    got = compiled_parse_head(names, data, *limits)
    assert got == (None if expected is None else tuple(expected))
    if expected is not None:
        assert got is not None
        assert list(got[3]) == list(expected.headers)


def test_compiled_parser_leaves_unknown_names_to_twisted() -> None:
    """
    A name that Twisted's encoder has not checked yet (so not cached) makes
    the compiled parser leave the head to Twisted's parser; a cached name
    is given in its canonical case.
    """
    data = b"GET / HTTP/1.1\r\nx-never-seen: 1\r\n\r\n"
    assert compiled_parse_head({}, data, 16384, 16384, 500) is None
    names: dict[bytes | str, bytes] = {b"x-never-seen": b"X-Never-Seen"}
    assert compiled_parse_head(names, data, 16384, 16384, 500) == (
        b"GET",
        b"/",
        b"HTTP/1.1",
        {b"X-Never-Seen": [b"1"]},
        b"",
    )


def test_whole_head_parsed_at_once() -> None:
    """
    A whole head without a body is parsed in one step, duplicates and order
    kept; a head cut short, a body, or a folded line is left to Twisted.
    """
    head = parse_head(
        b"GET /sse HTTP/1.1\r\nX-A: 1\r\nhost: h\r\nx-a:  2 \r\n\r\nGET /",
        16384,
        16384,
        500,
    )
    assert head is not None
    assert head.method == b"GET" and head.target == b"/sse"
    assert head.headers == {b"X-A": [b"1", b"2"], b"Host": [b"h"]}
    assert list(head.headers) == [b"X-A", b"Host"]
    assert head.rest == b"GET /"
    for data in (
        b"GET /sse HTTP/1.1\r\nHost: h\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
        b"GET / HTTP/1.1\r\nA: 1\r\n  2\r\n\r\n",
    ):
        assert parse_head(data, 16384, 16384, 500) is None


def test_date_formatted_once_a_second() -> None:
    """
    The C{Date} value changes with the second, and only then is it made.
    """
    now = [784111777.2]
    date = HTTPDate(lambda: now[0])
    first = date()
    assert first == b"Sun, 06 Nov 1994 08:49:37 GMT"
    now[0] = 784111777.9
    assert date() is first
    now[0] = 784111778.0
    assert date() == b"Sun, 06 Nov 1994 08:49:38 GMT"


HEAD = StreamHead(
    ((b"Content-Type", b"text/event-stream"), (b"Cache-Control", b"no-cache"))
)


def started(
    version: bytes, method: bytes, preset: list[tuple[bytes, bytes]], twisted: bool
) -> tuple[bytes, Request]:
    """
    Start a response with L{HEAD} and C{b"hi"}, by L{StreamHead.start} or
    by Twisted's C{setHeader} and C{write}.

    @return: The bytes written, and the request.
    """
    channel = HTTPChannel()
    transport = StringTransport()
    channel.makeConnection(transport)
    request = Request(channel)
    request.method, request.clientproto = method, version
    for name, value in preset:
        if name == b"Set-Cookie":
            request.addCookie(b"a", value)
        else:
            request.setHeader(name, value)
    if twisted:
        for name, value in HEAD.headers:
            request.setHeader(name, value)
        request.write(b"hi")
    else:
        HEAD.start(request, b"hi")
    request.write(b"more")
    return transport.value(), request


@given(
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]),
    method=st.sampled_from([b"GET", b"HEAD"]),
    preset=st.lists(
        st.tuples(
            st.sampled_from(
                [b"Vary", b"Content-Length", b"Cache-Control", b"Set-Cookie", b"X-A"]
            ),
            st.sampled_from([b"1", b"Origin", b"a b"]),
        ),
        max_size=3,
    ),
)
def test_stream_head_as_twisted_writes_it(
    version: bytes, method: bytes, preset: list[tuple[bytes, bytes]]
) -> None:
    """
    L{StreamHead.start} sends what Twisted's C{setHeader} and C{write}
    send, and leaves the request in the same state for later writes, on
    every path: its own (a C{GET} over HTTP/1.1) and Twisted's.
    """
    ours, request = started(version, method, preset, twisted=False)
    theirs, reference = started(version, method, preset, twisted=True)
    assert ours == theirs
    assert (request.chunked, request.sentLength, request.startedWriting) == (
        reference.chunked,
        reference.sentLength,
        reference.startedWriting,
    )


class Unhashable:
    """
    A request factory that cannot be a dictionary key, taking the queue
    position as Twisted passes it to factories that are not
    L{INonQueuedRequestFactory}.
    """

    __hash__ = None  # type: ignore[assignment]

    def __init__(self) -> None:
        self.made: list[tuple[object, ...]] = []

    def __call__(self, *args: object) -> Request:
        self.made.append(args)
        return Recorder(args[0])  # type: ignore[arg-type]


@provider(INonQueuedRequestFactory)
def non_queued(channel: HTTPChannel) -> Request:
    """
    A request factory that takes the channel alone.
    """
    return Recorder(channel)


def test_request_factories_called_as_twisted_calls_them() -> None:
    """
    A factory that provides L{INonQueuedRequestFactory} gets the channel
    alone, any other the channel and the queue position too, whether or not
    it can be a dictionary key; each request is handled.
    """
    unhashable = Unhashable()
    for factory in (non_queued, unhashable, non_queued, unhashable):
        channel = HeadChannel()
        channel.requestFactory = factory  # type: ignore[assignment]
        channel.seen = []  # type: ignore[attr-defined]
        channel.makeConnection(StringTransport())
        channel.dataReceived(b"GET /sse HTTP/1.1\r\nHost: h\r\n\r\n")
        assert len(channel.seen) == 1  # type: ignore[attr-defined]
    assert [len(args) for args in unhashable.made] == [2, 2]


@pytest.mark.parametrize("kind", [HeadChannel, HTTPChannel])
def test_connection_made_on_an_eager_port(reactor: Any, kind: type) -> None:
    """
    On an eager TCP connection, a L{HeadChannel} sets up what Twisted's
    channel sets up: C{TCP_NODELAY}, the transport as its network producer,
    itself as the transport's streaming producer.
    """
    made: list[HTTPChannel] = []

    def build() -> HTTPChannel:
        made.append(kind())
        made[-1].timeOut = None
        return made[-1]

    port = EagerPort(
        0, Factory.forProtocol(build), interface="127.0.0.1", reactor=reactor
    )
    port.startListening()
    port.stopReading()
    with socket.create_connection(("127.0.0.1", port.getHost().port)):
        for _ in range(100):
            port.doRead()
            if made:
                break
        [channel] = made
        transport = channel.transport
        assert isinstance(transport, EagerServer)
        assert transport.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert channel._networkProducer is transport  # type: ignore[attr-defined]
        assert transport.producer is channel
        assert transport.streamingProducer
        transport.abortConnection()
    port.stopListening()


class Holder(Request):
    """
    A request that is answered later, by the test: its method and target
    are noted when it is handled.
    """

    def process(self) -> None:
        self.channel.held.append(self)  # type: ignore[attr-defined]


def held_then_answered(channel: HTTPChannel) -> tuple[int, list[bytes], bytes]:
    """
    Send two requests in two reads while the first is being answered, then
    answer each request handled, in turn.

    @return: How many requests were handled before the first was answered,
        the targets in the order handled, and the bytes written.
    """
    channel.requestFactory = Holder  # type: ignore[assignment]
    channel.held = []  # type: ignore[attr-defined]
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
    channel.dataReceived(b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n")
    before = len(channel.held)  # type: ignore[attr-defined]
    handled: list[bytes] = []
    for _ in range(3):
        if len(channel.held) == len(handled):  # type: ignore[attr-defined]
            break
        request = channel.held[len(handled)]  # type: ignore[attr-defined]
        handled.append(request.uri)
        request.setHeader(b"Content-Length", b"2")
        request.write(b"ok")
        request.finish()
    return before, handled, transport.value()


def test_request_arriving_while_one_is_answered_waits() -> None:
    """
    A request that arrives while the one before is still being answered is
    handled once that one is finished, as by Twisted's channel.
    """
    _nameEncoder.encode(b"Host")  # known to the compiled parser too
    before, handled, written = held_then_answered(HeadChannel())
    assert before == 1
    assert handled == [b"/first", b"/second"]
    assert written.count(b"HTTP/1.1 200 OK") == 2
    assert (before, handled, written) == held_then_answered(HTTPChannel())
