"""
The HTTP face of ssedemo: Klein routes for the page, the event stream, the
demo's C{/api} and the C{/publish} API.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache, partial
from importlib import metadata
from typing import Any, Protocol
from urllib.parse import parse_qs

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, getChildForRequest
from twisted.web.server import Request, Site
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from sse_twisted.auth.expiry import Expiries
from sse_twisted.auth.gate import OPEN_GATE, Denial, Gate, Grant, Refusal
from sse_twisted.auth.jwt import Verifier
from sse_twisted.auth.publish import PublishGuard
from sse_twisted.event import (
    InvalidEventField,
    encode_event,
    encode_jittered_retry,
    encode_retry,
)
from sse_twisted.hub import DEFAULT_TOPIC, MAX_EVENT_NAME, Hub, Receipt, is_topic_name
from sse_twisted.observer import Observer
from sse_twisted.ops.access_log import access_log_line
from sse_twisted.overload import ClientLimit
from sse_twisted.redis.client import BrokerUnavailable, NotReplicated, RedisError
from sse_twisted.retained import MAX_KEY_LENGTH, TooManyKeys, is_key
from sse_twisted.start import Start, stream_start
from sse_twisted.stream import DEFAULT_MAX_BACKLOG, EventStream
from sse_twisted.transport.http1 import StreamHead
from sse_twisted.transport.http2 import StreamingSite
from sse_twisted.web import (
    FORM_TYPE,
    JSON_TYPE,
    KEEP_OPEN,
    NOT_FOUND,
    BodyLimitedRequest,
    ErrorResource,
    RequestError,
    SelectiveLogSite,
    StaticFiles,
    StreamFirst,
    decode_utf8,
    error_body,
    header_text,
    json_body,
    media_type,
    parse_json,
    refusal_error,
)

GREETING = json.dumps({"message": "Gotcha"})
CHANGED = json.dumps({"message": "Something changed"})

_MAX_TOPICS = 32
_PUBLISH_FIELDS = frozenset({"data", "event", "topic", "key"})

STREAM_HEAD = StreamHead(
    (
        (b"Content-Type", b"text/event-stream; charset=utf-8"),
        (b"Cache-Control", b"no-cache"),
        (b"X-Accel-Buffering", b"no"),
    )
)
"""The headers of an event stream's response."""

INSUFFICIENT_STORAGE = 507
"""The status of a keyed publish refused because too many keys are retained."""

RETRY_AFTER = 1
"""Seconds after which a publisher refused with C{503} may try again."""


class Broker(Protocol):
    """
    The connection state of a shared event log.
    """

    @property
    def available(self) -> bool:
        """
        Whether the log can be reached.
        """


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
    @ivar gate: Decides who may open a stream on which topics.
    @ivar verifier: Verifies publishers' JWTs, if they are configured.
    @ivar publish_open: Whether anyone may publish when no token is
        configured; otherwise only clients on this machine may.
    @ivar fanout: Which fan-out runs (L{sse_twisted.fanout}), for C{/health}.
    """

    static: FilePath[str]
    max_body: int = 64 * 1024
    max_backlog: int = DEFAULT_MAX_BACKLOG
    retry: int = 3000
    publish_token: bytes | None = None
    protect_api: bool = False
    cors_origins: tuple[str, ...] = ()
    gate: Gate = OPEN_GATE
    verifier: Verifier | None = None
    publish_open: bool = False
    fanout: str = "python"


class _Site(SelectiveLogSite, StreamingSite):
    """
    The site: its HTTP/2 connections keep event streams (L{StreamingSite}),
    and its access log leaves out refused streams (L{SelectiveLogSite}).
    """


class SSEApp:
    """
    The routes, bound to one L{Hub} and one L{Settings}.
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        hub: Hub,
        settings: Settings,
        *,
        limit: ClientLimit | None = None,
        observer: Observer | None = None,
        broker: Broker | None = None,
    ) -> None:
        """
        @param hub: Where streams subscribe and events are published.
        @param settings: How the routes behave.
        @param limit: Turns streams away when too many are open; by default
            there is no limit.
        @param observer: Told of streams dropped for slow clients.
        @param broker: The shared event log's connection state, reported by
            C{/health}; C{None} without one.
        """
        self.hub = hub
        self.settings = settings
        self.broker = broker
        self._limit = limit
        self._dropped = None if observer is None else observer.dropped_slow
        self._conflated = None if observer is None else observer.conflated
        self._started = hub.clock.seconds()
        self._version = package_version()
        self._opening = encode_retry(settings.retry) + encode_event(GREETING)
        self._expiries = Expiries(hub.clock)
        self._publishers = PublishGuard(
            settings.publish_token, settings.verifier, settings.publish_open
        )

    def site(self) -> Site:
        """
        @return: The web site serving these routes.
        """
        site = _Site(
            StreamFirst(self.open_stream, self.app.resource()),
            requestFactory=partial(BodyLimitedRequest, max_body=self.settings.max_body),
            logFormatter=access_log_line,
        )
        site.displayTracebacks = False
        return site

    @app.handle_errors(NotFound)
    def static(self, request: IRequest, failure: Failure) -> IResource:
        """
        Serve the files of the static directory (the client page) at every
        path that no route claims.
        """
        found = getChildForRequest(StaticFiles(self.settings.static.path), request)
        if found is NOT_FOUND or request.method in (b"GET", b"HEAD"):
            return found
        return ErrorResource(
            RequestError(405, "method not allowed", [("Allow", "GET, HEAD")])
        )

    @app.handle_errors(RequestError)
    def _request_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, RequestError)
        return error.render(request)

    @app.handle_errors(HTTPException)
    def _http_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, HTTPException)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            request.setHeader("Allow", ", ".join(error.valid_methods))
        return error_body(request, error.code or 500, error.name.lower())

    @app.handle_errors(InvalidEventField)
    def _invalid_field(self, request: IRequest, failure: Failure) -> bytes:
        return error_body(request, 400, str(failure.value))

    @app.handle_errors(TooManyKeys)
    def _too_many_keys(self, request: IRequest, failure: Failure) -> bytes:
        return error_body(request, INSUFFICIENT_STORAGE, str(failure.value))

    @app.route("/sse", methods=["GET", "HEAD"])
    def stream(self, request: Request) -> Any:
        """
        Open an event stream: C{retry:}, the greeting, the events missed
        since C{Last-Event-ID} (or C{?lastEventId=}), a rewind
        (C{?rewind=}) or a snapshot (C{?snapshot=1}), then live events.
        (L{sse_twisted.web.StreamFirst} takes C{GET} and C{HEAD} past Klein
        to L{open_stream}.)
        """
        self.open_stream(request)
        return KEEP_OPEN

    def open_stream(self, request: Request) -> None:
        """
        Check the request for a stream and ask the gate; once it allows,
        set the headers and, for C{GET}, open the stream and subscribe it.
        A refusal, or a C{HEAD}, finishes the response. The gate may take
        its time: a client that leaves meanwhile is forgotten. When the
        limit of open streams is reached, a C{GET} is turned away before
        the gate is asked.

        @raise RequestError: If the request asks for bad topics, or a bad
            rewind or snapshot.
        """
        self._allow_cors(request)
        topics = self._topics(request)
        start = stream_start(request)
        if (
            request.method == b"GET"
            and self._limit is not None
            and not self._limit.admits()
        ):
            self._stream_headers(request)
            self._limit.refuse(request)
            return
        try:
            decision = self.settings.gate.authorize(request, topics)
        except Refusal as refusal:
            self._refuse(request, refusal)
            return
        if isinstance(decision, Grant):
            self._open(request, topics, start, decision)
        else:
            self._open_when_decided(request, topics, start, decision)

    def _open_when_decided(
        self,
        request: Request,
        topics: list[str],
        start: Start,
        decision: Deferred[Grant],
    ) -> None:
        """
        Open the stream, or refuse it, once the gate has decided; if the
        client leaves first, withdraw the question and forget the client.
        """
        gone = False

        def left(_: object) -> None:
            nonlocal gone
            gone = True
            decision.cancel()

        def allowed(grant: Grant) -> None:
            if not gone:
                self._open(request, topics, start, grant)

        def refused(failure: Failure) -> None:
            if gone:
                return
            refusal = failure.value
            if not isinstance(refusal, Refusal):
                self.log.failure("authorization failed", failure)
                refusal = Refusal(Denial.UNAVAILABLE, "authorization failed")
            self._refuse(request, refusal)

        request.notifyFinish().addErrback(left)
        decision.addCallbacks(allowed, refused)

    def _open(
        self,
        request: Request,
        topics: list[str],
        start: Start,
        grant: Grant,
    ) -> None:
        if request.method == b"HEAD":
            self._stream_headers(request)
            request.finish()
            return
        stream = EventStream(
            request,
            self._ended,
            self.settings.max_backlog,
            self._dropped,
            self._conflated,
        )
        stream.start(self._opening, STREAM_HEAD)
        self.hub.subscribe(
            stream,
            topics,
            start.last_event_id,
            rewind=start.rewind,
            snapshot=start.snapshot,
        )
        self._expiries.add(stream, grant)

    def _ended(self, stream: EventStream) -> None:
        self.hub.unsubscribe(stream)
        self._expiries.discard(stream)

    def _refuse(self, request: Request, refusal: Refusal) -> None:
        """
        Answer a refused request for a stream. When no decision could be
        had, the answer is a stream that tells the client to come back
        after one to two retry intervals, and ends: an C{EventSource}
        given anything but C{200} gives up for good.
        """
        if refusal.denial is Denial.UNAVAILABLE:
            self._stream_headers(request)
            body = encode_jittered_retry(self.settings.retry)
        else:
            body = refusal_error(refusal).render(request)
        request.setHeader("Content-Length", str(len(body)))
        request.write(body)
        request.finish()

    @staticmethod
    def _stream_headers(request: Request) -> None:
        for name, value in STREAM_HEAD.headers:
            request.setHeader(name, value)

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
    def api(self, request: IRequest) -> bytes | Deferred[bytes]:
        """
        The demo's endpoint: any JSON body broadcasts C{Something changed}.
        """
        if self.settings.protect_api:
            self._authorize(self._publisher(request), DEFAULT_TOPIC)
        body = self._body(request)
        self.log.info("message received: {body}", body=parse_json(body))
        return self._published(request, self.hub.publish(CHANGED), DEFAULT_TOPIC)

    @app.route("/publish", methods=["POST"])
    def publish(self, request: IRequest) -> bytes | Deferred[bytes]:
        """
        Publish one event: C{{"data": …, "event": …, "topic": …, "key": …}}
        as JSON or as a form. Answers with the event's id and how many
        streams got it. With a key, the event becomes the retained value of
        (topic, key), or deletes it if its data is C{null}.
        """
        self._allow_cors(request)
        allowed = self._publisher(request)
        fields = self._publish_fields(request)
        topic = _checked_topic(fields.get("topic", DEFAULT_TOPIC))
        self._authorize(allowed, topic)
        event = fields.get("event")
        if event is not None and (
            not isinstance(event, str) or not 0 < len(event) <= MAX_EVENT_NAME
        ):
            raise RequestError(
                400, f"event must be a string of 1 to {MAX_EVENT_NAME} characters"
            )
        key = fields.get("key")
        if key is not None and not is_key(key):
            raise RequestError(
                400,
                f"key must be a string of 1 to {MAX_KEY_LENGTH} characters"
                " without CR, LF or NUL",
            )
        data = fields["data"]
        text = data if isinstance(data, str) else json.dumps(data)
        published = self.hub.publish(text, event=event, topic=topic, key=key)
        return self._published(request, published, topic)

    def _published(
        self,
        request: IRequest,
        published: Receipt | Deferred[Receipt],
        topic: str,
    ) -> bytes | Deferred[bytes]:
        """
        Answer a publish with its receipt (its id, how many streams got it
        when known, its topic): at once, or, with a shared log, once the log
        has stored the event; if it could not, with C{503}.
        """
        if isinstance(published, Deferred):
            return published.addCallbacks(
                self._receipt,
                self._unavailable,
                callbackArgs=(request, topic),
                errbackArgs=(request,),
            )
        return self._receipt(published, request, topic)

    def _receipt(self, receipt: Receipt, request: IRequest, topic: str) -> bytes:
        answer: dict[str, object] = {"id": receipt.id}
        if receipt.delivered is not None:
            answer["delivered"] = receipt.delivered
        answer["topic"] = topic
        self.log.info(
            "published {id} on {topic} to {delivered} streams",
            id=receipt.id,
            topic=topic,
            delivered="the shared log's"
            if receipt.delivered is None
            else receipt.delivered,
        )
        return json_body(request, answer)

    def _unavailable(self, failure: Failure, request: IRequest) -> bytes:
        if failure.check(TooManyKeys):
            return error_body(request, INSUFFICIENT_STORAGE, failure.getErrorMessage())
        failure.trap(BrokerUnavailable, RedisError)
        if failure.check(NotReplicated):
            why = "the event is not known to be stored (too few replicas have it)"
        else:
            why = "the event log is unavailable"
        self.log.warn(
            "refused a publish: {why} ({error})",
            why=why,
            error=failure.getErrorMessage(),
        )
        return RequestError(
            503,
            f"{why}; try again later",
            [("Retry-After", str(RETRY_AFTER))],
        ).render(request)

    @app.route("/health", methods=["GET", "HEAD"])
    def health(self, request: IRequest) -> bytes:
        """
        Report that the server is up, with its open streams, last event id,
        seconds since it started, ssedemo's version, its process id (which
        tells the workers of C{--workers} apart), which fan-out runs and, with
        a shared event log, whether it is reachable.
        """
        report: dict[str, object] = {
            "status": "ok",
            "streams": len(self.hub),
            "lastEventId": self.hub.last_id,
            "uptime": round(self.hub.clock.seconds() - self._started, 3),
            "version": self._version,
            "pid": os.getpid(),
            "fanout": self.settings.fanout,
        }
        if self.broker is not None:
            report["broker"] = "ok" if self.broker.available else "down"
        return json_body(request, report)

    def _topics(self, request: IRequest) -> list[str]:
        asked = request.args.get(b"topic")
        if not asked:
            return [DEFAULT_TOPIC]
        topics = [t.decode("utf-8", "replace") for t in asked]
        if len(topics) > _MAX_TOPICS:
            raise RequestError(400, f"at most {_MAX_TOPICS} topics per stream")
        return [_checked_topic(topic) for topic in topics]

    def _allow_cors(self, request: IRequest, preflight: bool = False) -> None:
        allowed = self.settings.cors_origins
        if not allowed:
            return
        origin = header_text(request, b"Origin")
        if origin is None:
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

    def _publisher(self, request: IRequest) -> tuple[str, ...]:
        try:
            return self._publishers.topics(request)
        except Refusal as refusal:
            raise refusal_error(refusal) from None

    def _authorize(self, allowed: tuple[str, ...], topic: str) -> None:
        try:
            self._publishers.check(allowed, topic)
        except Refusal as refusal:
            raise refusal_error(refusal) from None

    def _body(self, request: IRequest, form: bool = False) -> bytes:
        kind = media_type(request)
        is_json = kind == JSON_TYPE or kind.endswith("+json")
        if not (is_json or (form and kind == FORM_TYPE)):
            wanted = f"{JSON_TYPE} or {FORM_TYPE}" if form else JSON_TYPE
            raise RequestError(415, f"Content-Type must be {wanted}, not {kind!r}")
        limit = self.settings.max_body
        body: bytes = request.content.read(limit + 1)
        if len(body) > limit:
            raise RequestError(413, f"body larger than {limit} bytes")
        return body

    def _publish_fields(self, request: IRequest) -> dict[str, Any]:
        body = self._body(request, form=True)
        if media_type(request) == FORM_TYPE:
            fields: Any = {
                name: values[-1]
                for name, values in parse_qs(
                    decode_utf8(body), keep_blank_values=True, strict_parsing=False
                ).items()
            }
        else:
            fields = parse_json(body)
        if not isinstance(fields, dict):
            raise RequestError(400, "body must be a JSON object")
        unknown = set(fields) - _PUBLISH_FIELDS
        if unknown:
            raise RequestError(
                400,
                f"unknown fields {sorted(unknown)}; allowed: data, event, topic, key"
                " (ids are assigned by the server)",
            )
        if "data" not in fields:
            raise RequestError(400, "data is required")
        return fields


@cache
def package_version() -> str:
    """
    @return: The installed ssedemo's version, or C{"unknown"} when it runs
        from a source tree that was never installed. Read once per process
        (a search of the installed packages, several milliseconds).
    """
    try:
        return metadata.version("ssedemo")
    except metadata.PackageNotFoundError:
        return "unknown"


def _checked_topic(topic: object) -> str:
    if not isinstance(topic, str) or not is_topic_name(topic):
        raise RequestError(
            400, "topic names are 1 to 64 characters: letters, digits, . _ ~ : -"
        )
    return topic
