"""
An in-memory agent for the EventSource's logic: each request waits until
the test answers it, and each answer's body is fed by the test, so that
with a L{twisted.internet.task.Clock} every wait is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IResponse
from zope.interface import implementer


@dataclass
class _ClientRequest:
    absoluteURI: bytes
    method: bytes = b"GET"
    headers: Headers = field(default_factory=Headers)


class _BodyTransport:
    """
    What a response's body protocol sees as its transport.
    """

    def __init__(self, response: FakeResponse) -> None:
        self._response = response
        self.paused = False

    def stopProducing(self) -> None:
        self._response.end(Failure(ResponseFailed([Failure(ConnectionDone())])))

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False


@implementer(IResponse)
class FakeResponse:
    """
    A response whose body the test writes with L{send} and ends with
    L{end}.
    """

    version = (b"HTTP", 1, 1)
    length = UNKNOWN_LENGTH
    previousResponse = None

    def __init__(
        self,
        url: str,
        code: int = 200,
        content_type: str | None = "text/event-stream",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.phrase = {
            200: b"OK",
            204: b"No Content",
            500: b"Internal Server Error",
        }.get(code, b"Status")
        self.headers = Headers()
        if content_type is not None:
            self.headers.setRawHeaders(b"Content-Type", [content_type.encode()])
        for name, value in (headers or {}).items():
            self.headers.setRawHeaders(name.encode(), [value.encode()])
        self.request = _ClientRequest(url.encode())
        self.protocol: IProtocol | None = None
        self.transport = _BodyTransport(self)
        self._ended = False

    def deliverBody(self, protocol: IProtocol) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.transport)  # type: ignore[arg-type]

    def setPreviousResponse(self, response: IResponse) -> None:
        pass

    def send(self, data: bytes) -> None:
        assert self.protocol is not None and not self._ended
        self.protocol.dataReceived(data)

    def end(self, reason: Failure | None = None) -> None:
        if self._ended or self.protocol is None:
            return
        self._ended = True
        self.protocol.connectionLost(reason or Failure(ResponseDone()))


@dataclass
class Sent:
    """
    One request the agent was asked to make.
    """

    url: str
    headers: Headers
    answer: Deferred[IResponse]

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name.encode())
        return values[-1].decode() if values else None

    def respond(self, response: FakeResponse) -> FakeResponse:
        self.answer.callback(response)
        return response


@implementer(IAgent)
class FakeAgent:
    """
    Records each request; the test answers it through L{Sent}.
    """

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.cancelled = 0

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: object = None,  # noqa: N803 (IAgent's name)
    ) -> Deferred[IResponse]:
        def cancel(d: Deferred[IResponse]) -> None:
            self.cancelled += 1

        answer: Deferred[IResponse] = Deferred(cancel)
        self.sent.append(Sent(uri.decode(), headers or Headers(), answer))
        return answer

    def last(self) -> Sent:
        return self.sent[-1]
