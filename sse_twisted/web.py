"""
twisted.web building blocks for ssedemo's routes: JSON errors, request
bodies, the static files, and the root resource that takes C{GET /sse}
past Klein.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.server import version as server_version
from twisted.web.static import File

from sse_twisted.auth.gate import Denial, Refusal
from sse_twisted.ops.access_log import redact
from sse_twisted.transport.http1 import http_date

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


class RequestError(Exception):
    """
    The request cannot be served; answered with C{code} and a JSON error.
    """

    def __init__(
        self, code: int, message: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """
        @param code: The HTTP status.
        @param message: What is wrong, for the client.
        @param headers: Headers to send with the error.
        """
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers

    def render(self, request: IRequest) -> bytes:
        """
        Answer C{request} with this error.
        """
        for name, value in self.headers:
            request.setHeader(name, value)
        return error_body(request, self.code, self.message)


class ErrorResource(Resource):
    """
    A resource that answers every request with one JSON error.
    """

    isLeaf = True

    def __init__(self, error: RequestError) -> None:
        """
        @param error: The error to answer with.
        """
        super().__init__()
        self._error = error

    def render(self, request: IRequest) -> bytes:
        return self._error.render(request)


NOT_FOUND = ErrorResource(RequestError(404, "not found"))


class _KeepOpen(Resource):
    """
    Leaves the response open: an L{sse_twisted.stream.EventStream} writes it
    and ends it.

    Returning it from a Klein route ends Klein's part in the request, so
    that no Deferred chain lives as long as the stream.
    """

    isLeaf = True

    def render(self, request: IRequest) -> int:
        return NOT_DONE_YET


KEEP_OPEN = _KeepOpen()
"""Return it from a Klein route whose response something else finishes."""


class StreamFirst(Resource):
    """
    The root resource: C{GET /sse}, the one request that every client makes
    and keeps, goes straight to a function that opens the stream (and so
    does C{HEAD /sse}, authorized the same way); everything else to the
    Klein routes. Klein's routing costs about as much
    CPU as the rest of opening a stream.
    """

    isLeaf = True

    def __init__(
        self, open_stream: Callable[[Request], object], routes: IResource
    ) -> None:
        """
        @param open_stream: Opens the stream of a C{GET /sse} (or answers
            a C{HEAD}, or a refusal), or raises L{RequestError}.
        @param routes: Serves every other request.
        """
        super().__init__()
        self._open_stream = open_stream
        self._routes = routes

    def render(self, request: Request) -> bytes | int:
        if request.method not in (b"GET", b"HEAD") or request.path != b"/sse":
            if request.method != request.method.upper():
                # Methods are case-sensitive (RFC 9110): "get" is not GET,
                # though Klein's routing would take it for it.
                return RequestError(501, "method not implemented").render(request)
            if not _unquotes_to_utf8(request.path):
                # Klein answers these too, but in plain text and with a
                # traceback in the log for each.
                return RequestError(400, "the URL's path is not UTF-8").render(request)
            return self._routes.render(request)
        try:
            self._open_stream(request)
        except RequestError as error:
            return error.render(request)
        return NOT_DONE_YET


def _unquotes_to_utf8(path: bytes) -> bool:
    """
    @return: Whether C{path}, once %-unquoted, is UTF-8.
    """
    try:
        unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_UNLOGGED = "_ssedemo_unlogged"


def leave_out_of_access_log(request: IRequest) -> None:
    """
    Keep C{request} out of the access log of a L{SelectiveLogSite}; call it
    before the response is finished.
    """
    setattr(request, _UNLOGGED, True)


class SelectiveLogSite(Site):
    """
    A site whose access log leaves out the requests passed to
    L{leave_out_of_access_log}, such as streams refused in a crowd, which
    are summed up in one line instead.
    """

    def log(self, request: http.Request) -> None:
        if not getattr(request, _UNLOGGED, False):
            super().log(request)


class BodyLimitedRequest(Request):
    """
    A request that keeps no more of its body than one byte over the limit:
    enough for the route to answer 413, while an oversized upload costs
    neither memory nor disk; whose C{Date} header is formatted once a
    second for all requests (L{sse_twisted.transport.http1.HTTPDate}); and
    that tells one listener of its end without a L{twisted.internet.defer.Deferred}
    (L{when_over}).
    """

    _over: Callable[[object], object] | None = None
    _log = Logger()

    def __init__(self, *args: Any, max_body: int, **kwargs: Any) -> None:
        """
        @param max_body: The largest body, in bytes, the route accepts; the
            other arguments are L{Request}'s.
        """
        super().__init__(*args, **kwargs)
        self._room = max_body + 1

    def when_over(self, over: Callable[[object], object]) -> None:
        """
        Have C{over} called once, when the response is over: with C{None}
        once it is finished, or with the reason if the connection is lost
        first. What C{notifyFinish().addBoth(over)} does, at the same
        moments, without a L{twisted.internet.defer.Deferred} per request;
        one listener only.

        @param over: Called with C{None} or a L{Failure}.
        """
        self._over = over

    def _cleanup(self) -> None:
        # Where Twisted fires notifyFinish's Deferreds once finished.
        super()._cleanup()
        self._tell_over(None)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self._tell_over(reason)

    def _tell_over(self, reason: Failure | None) -> None:
        over = self._over
        if over is not None:
            self._over = None
            try:
                over(reason)
            except Exception:
                self._log.failure("the end of a response was not taken")

    def handleContentChunk(self, data: bytes) -> None:
        if self._room > 0:
            kept = data[: self._room]
            self._room -= len(kept)
            super().handleContentChunk(kept)

    def process(self) -> None:
        """
        Find the resource and render it, as Twisted's L{Request.process}
        does for a site whose root is a L{StreamFirst} (a leaf that encodes
        nothing), with the C{Date} of this second; other sites, and the
        path C{*}, go Twisted's way.
        """
        site: Site = self.channel.site  # type: ignore[attr-defined]
        if (
            self.path == b"*"
            or not isinstance(site.resource, StreamFirst)
            or type(site).getResourceFor is not Site.getResourceFor
        ):
            super().process()
            return
        self.site = site
        # Stored as setRawHeaders would store these values, which need no
        # encoding or sanitizing.
        raw = self.responseHeaders._rawHeaders
        raw[b"Server"] = [server_version]
        raw[b"Date"] = [http_date()]
        self.prepath = []
        segments = self.path[1:].split(b"/")
        # Unquoting changes only segments with a %: most paths have none.
        # (find, as in stream_start: a bytes "in" raises a TypeError first.)
        self.postpath = (
            [unquote_to_bytes(s) for s in segments]
            if self.path.find(b"%") >= 0
            else segments
        )
        # Site.getResourceFor, for a root that is a leaf: the root.
        self.sitepath: list[bytes] = []
        try:
            self.render(site.resource)
        except BaseException:
            self.processingFailed(Failure())

    def __repr__(self) -> str:
        # Twisted puts the request's repr in error logs: no query tokens.
        uri = redact(self.uri).decode("latin-1")
        return f"<{type(self).__name__} method={self.method!r} uri={uri}>"


class StaticFiles(File):
    """
    The client page: read-only, without directory listings, JSON errors.
    """

    childNotFound = NOT_FOUND  # type: ignore[assignment]
    _log = Logger()

    def directoryListing(self) -> Resource:
        return NOT_FOUND

    def makeProducer(self, request: Any, file_for_reading: Any) -> Any:
        # Twisted ignores a malformed Range header (the whole file is sent)
        # but, as of 26.10, logs it decoded strictly: one that is not UTF-8
        # failed the request with a 500. A range is ASCII or malformed, so
        # such a header is ignored here, and logged as bytes.
        byte_range = request.getHeader(b"Range")
        if byte_range is not None and not byte_range.isascii():
            self._log.info(
                "Ignoring malformed Range header {range!r}", range=byte_range
            )
            request.requestHeaders.removeHeader(b"Range")
        return super().makeProducer(request, file_for_reading)


def header_text(request: IRequest, name: bytes) -> str | None:
    """
    A request header's value as text. Asking Twisted with a C{str} name
    decodes strictly, so a client sending bytes that are not UTF-8 would
    make the request fail with a 500; here they are replaced, and the value
    is simply not one the server knows.

    @param name: The header's name.
    @return: Its last value, decoded as UTF-8; C{None} if it is not there.
    """
    value = request.getHeader(name)
    return None if value is None else value.decode("utf-8", "replace")


def media_type(request: IRequest) -> str:
    """
    @return: The request's media type, lower case, without parameters.
    """
    header = header_text(request, b"Content-Type") or ""
    return header.partition(";")[0].strip().lower()


def decode_utf8(body: bytes) -> str:
    """
    @raise RequestError: 400, if C{body} is not UTF-8.
    """
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(400, "body is not valid UTF-8") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """
    Parse a JSON body strictly (no C{NaN} or C{Infinity}).

    @raise RequestError: 400, if C{body} is not JSON.
    """
    try:
        return json.loads(decode_utf8(body), parse_constant=_reject_constant)
    except ValueError as e:
        raise RequestError(400, f"body is not valid JSON: {e}") from None


def json_body(request: IRequest, value: object) -> bytes:
    """
    @return: C{value} as the JSON body of the response to C{request}.
    """
    request.setHeader("Content-Type", JSON_TYPE)
    return json.dumps(value).encode("utf-8")


def error_body(request: IRequest, code: int, message: str) -> bytes:
    """
    @return: The JSON body C{{"error": message}}, with C{code} set.
    """
    request.setResponseCode(code)
    return json_body(request, {"error": message})


CHALLENGE = 'Bearer realm="ssedemo"'
"""The C{WWW-Authenticate} challenge of a request that lacks a token."""

_INVALID_TOKEN = 'Bearer error="invalid_token"'


def refusal_error(refusal: Refusal) -> RequestError:
    """
    @return: The HTTP answer to an authorization's refusal: C{401} with a
        C{Bearer} challenge for a missing token, C{401} with
        C{error="invalid_token"} (RFC 6750) for a bad one, C{403} for a
        good one that does not cover what was asked, C{503} when no
        decision could be had.
    """
    if refusal.denial is Denial.MISSING:
        challenge = refusal.challenge or CHALLENGE
    elif refusal.denial is Denial.INVALID:
        challenge = refusal.challenge or _INVALID_TOKEN
    else:
        code = 403 if refusal.denial is Denial.FORBIDDEN else 503
        return RequestError(code, refusal.message)
    return RequestError(401, refusal.message, [("WWW-Authenticate", challenge)])
