"""
Tests for L{sse_twisted.web}'s request and L{sse_twisted.transport.http2}'s
site where they take Twisted's place on the way to a resource: the path
segments a resource sees, and the file a request's body is written to.
"""

from __future__ import annotations

from io import BytesIO
from urllib.parse import unquote_to_bytes

import pytest
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyChannel

from sse_twisted.transport.http2 import BODY_IN_MEMORY, StreamingSite
from sse_twisted.web import BodyLimitedRequest, StreamFirst


class Recorded(Resource):
    """
    Answers every request, noting the path segments it was given.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[list[bytes], list[bytes]]] = []

    def render(self, request: object) -> bytes:
        self.seen.append((request.prepath, request.postpath))  # type: ignore[attr-defined]
        return b"ok"


@pytest.mark.parametrize(
    "target",
    [b"/", b"/health", b"/a/b/", b"/a%2Fb/c?x=%2F", b"/%7Euser", b"/a%zz", b"//x"],
)
def test_path_segments_as_twisted_gives_them(target: bytes) -> None:
    """
    A resource under ssedemo's root sees the segments Twisted's request
    gives it: the path after the first C{/}, split at each C{/}, each
    segment unquoted.
    """
    routes = Recorded()
    channel = DummyChannel()
    channel.site = Site(StreamFirst(lambda request: None, routes))  # type: ignore[attr-defined]
    request = BodyLimitedRequest(channel, max_body=10)
    request.gotLength(0)
    request.requestReceived(b"GET", target, b"HTTP/1.1")
    path = target.split(b"?")[0]
    assert routes.seen == [([], [unquote_to_bytes(s) for s in path[1:].split(b"/")])]


def test_site_chooses_where_a_body_goes() -> None:
    """
    A body announced shorter than L{BODY_IN_MEMORY} is kept in memory, any
    other (a longer one, or one of unknown length, chunked) in a temporary
    file, as Twisted's request chooses alone; and the request takes the
    site's choice.
    """
    site = StreamingSite(Resource())
    assert isinstance(site.getContentFile(0), BytesIO)
    assert isinstance(site.getContentFile(BODY_IN_MEMORY - 1), BytesIO)
    for length in (BODY_IN_MEMORY, None):
        with site.getContentFile(length) as spilled:
            assert not isinstance(spilled, BytesIO)
            spilled.write(b"x")
            spilled.seek(0)
            assert spilled.read() == b"x"
    channel = DummyChannel()
    channel.site = site  # type: ignore[attr-defined]
    chosen = BytesIO()
    site.getContentFile = lambda length: chosen  # type: ignore[method-assign]
    request = BodyLimitedRequest(channel, max_body=10)
    request.gotLength(3)
    assert request.content is chosen
