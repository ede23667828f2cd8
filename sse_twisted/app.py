"""
The HTTP face of ssedemo: Klein routes for the page, the event stream, the
demo's C{/api} and the C{/publish} API.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.static import File
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from sse_twisted.event import InvalidEventField, encode_event, encode_retry
from sse_twisted.hub import DEFAULT_TOPIC, Hub
from sse_twisted.stream import DEFAULT_MAX_BACKLOG, EventStream

GREETING = json.dumps({"message": "Gotcha"})
CHANGED = json.dumps({"message": "Something changed"})

_TOPIC = re.compile(r"[A-Za-z0-9._~:-]{1,64}")
_MAX_TOPICS = 32
_MAX_EVENT_NAME = 128
_MAX_LAST_EVENT_ID = 256
_JSON_TYPE = "application/json"
_FORM_TYPE = "application/x-www-form-urlencoded"
_PUBLISH_FIELDS = frozenset({"data", "event", "topic"})


@dataclass(frozen=True)
class Settings:
    """
    How the routes behave; filled from the command line by L{sse_twisted.tap}.

    @ivar static: The directory served at C{/}.
    @ivar max_body: The largest request body accepted, in bytes.
    @ivar max_backlog: How far, in bytes, a stream may fall behind (beyond
        its connection's own buffer) before it is dropped.
    @ivar retry: The reconnection delay sent to clients, in milliseconds.
    @ivar publish_token: The bearer token C{/publish} requires, if any.
    @ivar protect_api: Whether C{/api} requires the token too.
    @ivar cors_origins: Origins allowed to use C{/sse} and C{/publish} from
        a browser; C{"*"} allows any, without credentials.
    """

    static: FilePath[str]
    max_body: int = 64 * 1024
    max_backlog: int = DEFAULT_MAX_BACKLOG
    retry: int = 3000
    publish_token: bytes | None = None
    protect_api: bool = False
    cors_origins: tuple[str, ...] = ()


class _RequestError(Exception):
    """
    The request cannot be served; answered with C{code} and a JSON error.
    """

    def __init__(
        self, code: int, message: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
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
        return _error_body(request, self.code, self.message)


class _ErrorResource(Resource):
    """
    A resource that answers every request with one JSON error.
    """

    isLeaf = True

    def __init__(self, error: _RequestError) -> None:
        super().__init__()
        self._error = error

    def render(self, request: IRequest) -> bytes:
        return self._error.render(request)


_NOT_FOUND = _ErrorResource(_RequestError(404, "not found"))


class _KeepOpen(Resource):
    """
    Leaves the response open: an L{EventStream} writes it and ends it.

    Returning it from a Klein route ends Klein's part in the request, so
    that no Deferred chain lives as long as the stream.
    """

    isLeaf = True

    def render(self, request: IRequest) -> int:
        return NOT_DONE_YET


_KEEP_OPEN = _KeepOpen()


class _StreamFirst(Resource):
    """
    The root resource: C{GET /sse}, the one request that every client makes
    and keeps, goes straight to L{SSEApp.open_stream}; everything else to
    the Klein routes. Klein's routing costs about as much CPU as the rest of
    opening a stream.
    """

    isLeaf = True

    def __init__(self, app: SSEApp, routes: IResource) -> None:
        super().__init__()
        self._app = app
        self._routes = routes

    def render(self, request: Request) -> bytes | int:
        if request.method != b"GET" or request.path != b"/sse":
            return self._routes.render(request)
        try:
            self._app.open_stream(request)
        except _RequestError as error:
            return error.render(request)
        return NOT_DONE_YET


class _BodyLimitedRequest(Request):
    """
    A request that keeps no more of its body than one byte over the limit:
    enough for the route to answer 413, while an oversized upload costs
    neither memory nor disk.
    """

    def __init__(self, *args: Any, max_body: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._room = max_body + 1

    def handleContentChunk(self, data: bytes) -> None:
        if self._room > 0:
            kept = data[: self._room]
            self._room -= len(kept)
            super().handleContentChunk(kept)


class _StaticFiles(File):
    """
    The client page: read-only, without directory listings, JSON errors.
    """

    childNotFound = _NOT_FOUND  # type: ignore[assignment]

    def directoryListing(self) -> Resource:
        return _NOT_FOUND


class SSEApp:
    """
    The routes, bound to one L{Hub} and one L{Settings}.
    """

    app = Klein()
    log = Logger()

    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.settings = settings
        self._opening = encode_retry(settings.retry) + encode_event(GREETING)

    def site(self) -> Site:
        """
        @return: The web site serving these routes.
        """
        site = Site(
            _StreamFirst(self, self.app.resource()),
            requestFactory=partial(
                _BodyLimitedRequest, max_body=self.settings.max_body
            ),
        )
        site.displayTracebacks = False
        return site

    @app.handle_errors(NotFound)
    def static(self, request: IRequest, failure: Failure) -> IResource:
        """
        Serve the files of the static directory (the client page) at every
        path that no route claims.
        """
        found = getChildForRequest(_StaticFiles(self.settings.static.path), request)
        if found is _NOT_FOUND or request.method in (b"GET", b"HEAD"):
            return found
        return _ErrorResource(
            _RequestError(405, "method not allowed", [("Allow", "GET, HEAD")])
        )

    @app.handle_errors(_RequestError)
    def _request_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, _RequestError)
        return error.render(request)

    @app.handle_errors(HTTPException)
    def _http_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, HTTPException)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            request.setHeader("Allow", ", ".join(error.valid_methods))
        return _error_body(request, error.code or 500, error.name.lower())

    @app.handle_errors(InvalidEventField)
    def _invalid_field(self, request: IRequest, failure: Failure) -> bytes:
        return _error_body(request, 400, str(failure.value))

    @app.route("/sse", methods=["GET", "HEAD"])
    def stream(self, request: Request) -> Any:
        """
        Open an event stream: C{retry:}, the greeting, the events missed
        since C{Last-Event-ID} (or C{?lastEventId=}), then live events.
        (L{_StreamFirst} takes C{GET} past Klein to L{open_stream}.)
        """
        if self.open_stream(request):
            return _KEEP_OPEN
        return b""

    def open_stream(self, request: Request) -> bool:
        """
        Check the request for a stream and set its headers; for C{GET}, open
        the stream and subscribe it.

        @return: Whether a stream was opened (not for C{HEAD}).
        @raise _RequestError: If the request asks for bad topics.
        """
        self._allow_cors(request)
        topics = self._topics(request)
        last_event_id = _last_event_id(request)
        request.setHeader("Content-Type", "text/event-stream; charset=utf-8")
        request.setHeader("Cache-Control", "no-cache")
        request.setHeader("X-Accel-Buffering", "no")
        if request.method == b"HEAD":
            return False
        stream = EventStream(request, self.hub.unsubscribe, self.settings.max_backlog)
        stream.start(self._opening)
        self.hub.subscribe(stream, topics, last_event_id)
        return True

    @app.route("/sse", methods=["OPTIONS"])
    @app.route("/publish", methods=["OPTIONS"])
    def preflight(self, request: IRequest) -> bytes:
        """
        Answer a CORS preflight.
        """
        self._allow_cors(request, preflight=True)
        request.setResponseCode(204)
        return b""

    @app.route("/api", methods=["POST"])
    def api(self, request: IRequest) -> bytes:
        """
        The demo's endpoint: any JSON body broadcasts C{Something changed}.
        """
        if self.settings.protect_api:
            self._authorize(request)
        body = self._body(request)
        self.log.info("message received: {body}", body=_parse_json(body))
        receipt = self.hub.publish(CHANGED)
        return _json(request, {"id": receipt.id, "delivered": receipt.delivered})

    @app.route("/publish", methods=["POST"])
    def publish(self, request: IRequest) -> bytes:
        """
        Publish one event: C{{"data": …, "event": …, "topic": …}} as JSON or
        as a form. Answers with the event's id and how many streams got it.
        """
        self._allow_cors(request)
        self._authorize(request)
        fields = self._publish_fields(request)
        topic = fields.get("topic", DEFAULT_TOPIC)
        event = fields.get("event")
        if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
            raise _RequestError(400, _TOPIC_RULE)
        if event is not None and (
            not isinstance(event, str) or not 0 < len(event) <= _MAX_EVENT_NAME
        ):
            raise _RequestError(
                400, f"event must be a string of 1 to {_MAX_EVENT_NAME} characters"
            )
        data = fields["data"]
        text = data if isinstance(data, str) else json.dumps(data)
        receipt = self.hub.publish(text, event=event, topic=topic)
        self.log.info(
            "published {id} on {topic} to {delivered} streams",
            id=receipt.id,
            topic=topic,
            delivered=receipt.delivered,
        )
        return _json(
            request, {"id": receipt.id, "delivered": receipt.delivered, "topic": topic}
        )

    @app.route("/health", methods=["GET", "HEAD"])
    def health(self, request: IRequest) -> bytes:
        """
        Report that the server is up, with its open streams and last event id.
        """
        return _json(
            request,
            {"status": "ok", "streams": len(self.hub), "lastEventId": self.hub.last_id},
        )

    def _topics(self, request: IRequest) -> list[str]:
        topics = [t.decode("utf-8", "replace") for t in request.args.get(b"topic", [])]
        if len(topics) > _MAX_TOPICS:
            raise _RequestError(400, f"at most {_MAX_TOPICS} topics per stream")
        for topic in topics:
            if not _TOPIC.fullmatch(topic):
                raise _RequestError(400, _TOPIC_RULE)
        return topics or [DEFAULT_TOPIC]

    def _allow_cors(self, request: IRequest, preflight: bool = False) -> None:
        allowed = self.settings.cors_origins
        origin = request.getHeader("Origin")
        if not allowed or origin is None:
            return
        request.setHeader("Vary", "Origin")
        if "*" in allowed:
            request.setHeader("Access-Control-Allow-Origin", "*")
        elif origin in allowed:
            request.setHeader("Access-Control-Allow-Origin", origin)
            request.setHeader("Access-Control-Allow-Credentials", "true")
        else:
            return
        if preflight:
            request.setHeader("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            request.setHeader(
                "Access-Control-Allow-Headers",
                "Authorization, Content-Type, Last-Event-ID, Cache-Control",
            )
            request.setHeader("Access-Control-Max-Age", "600")

    def _authorize(self, request: IRequest) -> None:
        token = self.settings.publish_token
        if token is None:
            return
        scheme, _, offered = (request.getHeader("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            offered.strip().encode("utf-8"), token
        ):
            raise _RequestError(
                401,
                "a valid bearer token is required",
                [("WWW-Authenticate", 'Bearer realm="ssedemo"')],
            )

    def _body(self, request: IRequest, form: bool = False) -> bytes:
        media_type = _media_type(request)
        is_json = media_type == _JSON_TYPE or media_type.endswith("+json")
        if not (is_json or (form and media_type == _FORM_TYPE)):
            wanted = f"{_JSON_TYPE} or {_FORM_TYPE}" if form else _JSON_TYPE
            raise _RequestError(
                415, f"Content-Type must be {wanted}, not {media_type!r}"
            )
        limit = self.settings.max_body
        body: bytes = request.content.read(limit + 1)
        if len(body) > limit:
            raise _RequestError(413, f"body larger than {limit} bytes")
        return body

    def _publish_fields(self, request: IRequest) -> dict[str, Any]:
        body = self._body(request, form=True)
        if _media_type(request) == _FORM_TYPE:
            fields: Any = {
                name: values[-1]
                for name, values in parse_qs(
                    _decode(body), keep_blank_values=True, strict_parsing=False
                ).items()
            }
        else:
            fields = _parse_json(body)
        if not isinstance(fields, dict):
            raise _RequestError(400, "body must be a JSON object")
        unknown = set(fields) - _PUBLISH_FIELDS
        if unknown:
            raise _RequestError(
                400,
                f"unknown fields {sorted(unknown)}; allowed: data, event, topic"
                " (ids are assigned by the server)",
            )
        if "data" not in fields:
            raise _RequestError(400, "data is required")
        return fields


_TOPIC_RULE = "topic names are 1 to 64 characters: letters, digits, . _ ~ : -"


def _media_type(request: IRequest) -> str:
    header = request.getHeader("Content-Type") or ""
    return header.partition(";")[0].strip().lower()


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise _RequestError(400, "body is not valid UTF-8") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(_decode(body), parse_constant=_reject_constant)
    except ValueError as e:
        raise _RequestError(400, f"body is not valid JSON: {e}") from None


def _last_event_id(request: IRequest) -> str | None:
    header = request.getHeader("Last-Event-ID")
    if header is None:
        values = request.args.get(b"lastEventId")
        header = values[-1].decode("utf-8", "replace") if values else None
    return None if header is None else header[:_MAX_LAST_EVENT_ID]


def _json(request: IRequest, value: object) -> bytes:
    request.setHeader("Content-Type", "application/json")
    return json.dumps(value).encode("utf-8")


def _error_body(request: IRequest, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    return _json(request, {"error": message})
