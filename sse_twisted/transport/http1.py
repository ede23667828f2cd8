"""
HTTP/1.1 request heads taken whole, the C{Date} header formatted once a
second, and the head of an event stream's response formatted in advance.

Twisted's L{HTTPChannel} is a line receiver: each line of a request head
costs a split of the buffer, a call, and checks of its own. Nearly every
client sends its whole head in one segment, so L{HeadChannel} looks for the
blank line that ends it in the bytes just received and, for a request
without a body, gives Twisted's request its method, target, version and
headers in one step. It stores exactly what Twisted's parser stores (each
line is checked by Twisted's own functions); anything else (a head split
across reads, a body, a folded or refused line, a limit exceeded, a request
while another is handled) goes down Twisted's path unchanged, refusals
included. The compiled C{sse_twisted.transport._head} parses as
L{parse_head} does, where it was built (L{sse_twisted.transport.compiled}).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

from twisted.protocols.basic import LineReceiver
from twisted.web.http import (
    HTTPChannel,
    _parseRequestLine,  # Twisted's own check of a request line
    datetimeToString,
)
from twisted.web.http_headers import (
    InvalidHeaderName,
    _nameEncoder,  # Twisted's own header-name check and canonical case
)
from twisted.web.iweb import INonQueuedRequestFactory

from sse_twisted.transport.compiled import pure_python
from sse_twisted.transport.eager import EagerServer
from sse_twisted.transport.idle import IdleTimeout

_END_OF_HEAD = b"\r\n\r\n"
_FOLDED = (b" ", b"\t")
_BODY_HEADERS = frozenset({b"Content-Length", b"Transfer-Encoding"})
_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_HEADERS_ACTED_ON = frozenset({b"Cookie", b"Connection", b"Expect"})
"""What Twisted's channel looks for once a request's headers are in."""


class Head(NamedTuple):
    """
    A request head without a body, parsed as Twisted's L{HTTPChannel}
    would.

    @ivar method: The method, such as C{b"GET"}.
    @ivar target: The request target, such as C{b"/sse?topic=a"}.
    @ivar version: C{b"HTTP/1.1"} or C{b"HTTP/1.0"}.
    @ivar headers: The headers as Twisted's
        L{twisted.web.http_headers.Headers} stores them: each name, in
        Twisted's canonical case and in the order first seen, to its values
        in order, stripped of surrounding blanks.
    @ivar rest: The bytes after the head (a pipelined request, or part of
        one).
    """

    method: bytes
    target: bytes
    version: bytes
    headers: dict[bytes, list[bytes]]
    rest: bytes


def parse_head(
    data: bytes, max_line: int, max_size: int, max_headers: int
) -> Head | None:
    """
    Parse the request head at the start of C{data}, if it is whole there,
    has no body, and Twisted's parser would take it line by line without
    refusing it or needing more than it shows.

    @param data: Bytes received at the start of a request.
    @param max_line: The longest line Twisted's channel takes.
    @param max_size: The most bytes of request line and headers it takes.
    @param max_headers: The most headers it takes.
    @return: The head; C{None} when Twisted's own parser must handle the
        bytes: the head is not whole, announces a body, folds a header, is
        over a limit, or would be refused.
    """
    end = data.find(_END_OF_HEAD)
    if end <= 0:
        return None
    head = data[:end]
    lines = head.split(b"\r\n")
    # Lone CR or LF, and NUL, are refused or handled apart by Twisted.
    if (
        len(head.translate(None, b"\r\n\x00")) + 2 * (len(lines) - 1) != len(head)
        or len(head) - 2 * (len(lines) - 1) > max_size
        or len(lines) - 1 > max_headers
        or (len(head) > max_line and max(map(len, lines)) > max_line)
    ):
        return None
    try:
        method, target, version = _parseRequestLine(lines[0])
    except ValueError:
        return None
    headers: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        if line.startswith(_FOLDED):
            return None
        raw_name, colon, value = line.partition(b":")
        if not colon:
            return None
        try:
            name = _nameEncoder.encode(raw_name)
        except InvalidHeaderName:
            return None
        if name in _BODY_HEADERS:
            return None
        value = value.strip(b" \t")
        values = headers.get(name)
        if values is None:
            headers[name] = [value]
        else:
            values.append(value)
    return Head(method, target, version, headers, data[end + 4 :])


def _fastest_parser() -> Callable[[bytes, int, int, int], tuple[Any, ...] | None]:
    """
    @return: The compiled L{parse_head}, given the cache of Twisted's
        header-name encoder (a name it has not checked yet leaves the head
        to Twisted's parser, which checks and caches it); L{parse_head}
        where it was not built or is turned off.
    """
    if pure_python():
        return parse_head
    try:
        from sse_twisted.transport._head import parse_head as compiled
    except ImportError:
        return parse_head
    return partial(compiled, _nameEncoder._canonicalHeaderCache)


_NON_QUEUED: dict[object, bool] = {}


def _non_queued(factory: object) -> bool:
    """
    @return: Whether C{factory} provides L{INonQueuedRequestFactory}, as
        Twisted's channel asks for every request; asked once per factory
        (a site's is a C{functools.partial}, slow for zope to look into).
    """
    try:
        answer = _NON_QUEUED.get(factory)
    except TypeError:  # unhashable: asked every time
        return bool(INonQueuedRequestFactory.providedBy(factory))
    if answer is None:
        answer = _NON_QUEUED[factory] = INonQueuedRequestFactory.providedBy(factory)
    return answer


class HeadChannel(IdleTimeout, HTTPChannel):
    """
    Twisted's HTTP/1.x channel, taking a request head in one step when it
    arrives whole in one read and announces no body (L{parse_head}); given
    L{idle_timers<IdleTimeout.idle_timers>}, it arms its idle timer only if
    no request has come by the end of the turn.
    """

    _parse = staticmethod(_fastest_parser())

    def connectionMade(self) -> None:
        transport = self.transport
        if not isinstance(transport, EagerServer):
            super().connectionMade()
            return
        # HTTPChannel.connectionMade for a transport known to be TCP and its
        # own push producer, without asking zope so (a few percent of the
        # cost of opening a stream).
        transport.setTcpNoDelay(True)
        self.setTimeout(self.timeOut)
        self._networkProducer = transport
        transport.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:
        if self._at_request_start():
            head = self._parse(
                data, self.MAX_LENGTH, self.totalHeadersSize, self.maxHeaders
            )
            if head is not None:
                # No resetTimeout: handling a whole request stops the idle
                # timeout at once (allContentReceived).
                self._take(head)
                return
        super().dataReceived(data)

    def _at_request_start(self) -> bool:
        """
        @return: Whether Twisted's parser waits for the first line of a new
            request, with nothing buffered, on a connection that goes on.
        """
        transport = self.transport
        return bool(
            self.line_mode
            and not self._buffer
            and not self._busyReceiving
            and not self.paused
            and self.persistent
            and self._HTTPChannel__first_line == 1  # type: ignore[attr-defined]
            and transport is not None
            and not transport.disconnecting  # type: ignore[attr-defined]
        )

    def _take(self, head: tuple[Any, ...]) -> None:
        """
        Do what Twisted's channel does line by line for C{head}: make the
        request, store its headers, then handle it; then go on with the
        bytes after it, as Twisted's line receiver would.
        """
        method, target, version, headers, self._buffer = head
        self._busyReceiving = True
        try:
            factory = self.requestFactory
            if _non_queued(factory):
                request = factory(self)
            else:
                request = factory(self, len(self.requests))
            self.requests.append(request)
            # Names are canonical and values hold no line break already
            # (parse_head): stored as Headers.addRawHeader would store them.
            request.requestHeaders._rawHeaders = headers
            if _HEADERS_ACTED_ON.isdisjoint(headers):
                # HTTPChannel.allHeadersReceived where it finds none of
                # them: no cookie to parse, no 100 Continue to send, and
                # the connection goes on after an HTTP/1.1 request only.
                self.persistent = version == b"HTTP/1.1"
                request.gotLength(self.length)
            else:
                # It reads the request line where its parser stored it.
                self._command, self._path, self._version = method, target, version
                self.allHeadersReceived()
                del self._command, self._path, self._version
            # HTTPChannel.allContentReceived, less its resets of the state
            # that its parser keeps per request, which a head taken whole
            # leaves as they were at the request's start.
            if self.timeOut:
                self._savedTimeOut = self.setTimeout(None)
            self._handlingRequest = True
            self.setRawMode()
            request.requestReceived(method, target, version)
        finally:
            self._busyReceiving = False
        transport = self.transport
        if self._buffer and not (transport is None or transport.disconnecting):  # type: ignore[attr-defined]
            LineReceiver.dataReceived(self, b"")


class HTTPDate:
    """
    The value of the C{Date} response header, formatted again only when the
    second changes: a burst of thousands of responses formats it once.
    """

    __slots__ = ("_now", "_second", "_value")

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        """
        @param now: The wall-clock time, in seconds since the epoch.
        """
        self._now = now
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        """
        @return: The current time as an HTTP date (RFC 9110, IMF-fixdate).
        """
        second = int(self._now())
        if second != self._second:
            self._value = datetimeToString(second)
            self._second = second
        return self._value


http_date = HTTPDate()
"""The process's one L{HTTPDate}."""


class StreamHead:
    """
    The headers of a response that streams (C{200}, chunked on HTTP/1.1),
    known in advance and formatted once: on a plain HTTP/1.1 request, the
    response head (status line, the headers set so far, these ones,
    C{Transfer-Encoding: chunked}) and the first chunk go out in one write,
    without Twisted's per-header work. Anywhere else (HTTP/2, HTTP/1.0, a
    request that set cookies, a length or one of these headers itself),
    the headers are set and the first bytes written Twisted's way.

    @ivar headers: The headers, names in Twisted's canonical case.
    """

    __slots__ = ("_block", "_taken", "headers")

    def __init__(self, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """
        @param headers: Header names (in canonical case) and values, without
            CR or LF.
        """
        self.headers = tuple(headers)
        self._taken = frozenset(name for name, _ in self.headers) | _BODY_HEADERS
        self._block = (
            b"".join(name + b": " + value + b"\r\n" for name, value in self.headers)
            + _CHUNKED
            + b"\r\n"
        )

    def start(self, request: Any, first: bytes) -> None:
        """
        Set the headers on C{request} and write C{first}, the response's
        first bytes, as C{setHeader} for each header and C{write(first)}
        would.

        @param request: A L{twisted.web.http.Request}.
        """
        if not self._write(request, first):
            for name, value in self.headers:
                request.setHeader(name, value)
            request.write(first)

    def _write(self, request: Any, first: bytes) -> bool:
        """
        Do what Twisted's first C{Request.write} does, in one write, when
        it would send this head: a C{200} to a C{GET} over HTTP/1.1, chunked.

        @return: Whether it did; if not, nothing is changed.
        """
        channel = request.channel
        if (
            not isinstance(channel, HTTPChannel)
            or request.startedWriting
            or request.finished
            or request._disconnected
            or request.clientproto != b"HTTP/1.1"
            or request.method != b"GET"
            or request.code != 200
            or request.lastModified is not None
            or request.etag is not None
            or request.cookies
            or getattr(request, "_encoder", None) is not None
            or getattr(request, "_inFakeHead", False)
        ):
            return False
        parts = [b"HTTP/1.1 200 ", request.code_message, b"\r\n"]
        taken = self._taken
        for name, values in request.responseHeaders.getAllRawHeaders():
            if name in taken:
                return False
            for value in values:
                parts += (name, b": ", value, b"\r\n")
        parts.append(self._block)
        if first:
            parts += (b"%x\r\n" % len(first), first, b"\r\n")
        request.startedWriting = 1
        request.chunked = 1
        request.sentLength += len(first)
        channel.write(b"".join(parts))
        return True
