"""
Publishing one event to ssedemo's C{POST /publish}, on treq.

The answer is a L{Receipt}; a refusal is a L{PublishRefused} (C{4xx}: the
request must change) or a L{ServerFailed} (C{5xx}: try again later, after
its C{retry_after} if the server gave one); both carry the server's JSON
C{error}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.web.client import Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for the server's answer."""


@dataclass(frozen=True)
class Receipt:
    """
    The server's answer to a publish.

    @ivar id: The event's id.
    @ivar delivered: How many streams it was written to, when the server
        knows (not with a shared event log).
    @ivar topic: The topic it was published on, when the server says.
    @ivar answer: The whole JSON answer.
    """

    id: str
    delivered: int | None
    topic: str | None
    answer: dict[str, Any]


class PublishFailed(Exception):
    """
    The server did not take the event.

    @ivar status: The HTTP status.
    @ivar error: The server's C{error} text, or the start of its body.
    @ivar answer: The server's JSON answer, if it sent one.
    """

    def __init__(
        self, status: int, error: str, answer: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status}: {error}" if error else str(status))
        self.status = status
        self.error = error
        self.answer = answer


class PublishRefused(PublishFailed):
    """
    A C{4xx}: the request was wrong or not allowed (bad field, missing or
    bad token, topic not granted); sending it again will not help.
    """


class ServerFailed(PublishFailed):
    """
    A C{5xx}: the server could not take the event now.

    @ivar retry_after: Seconds after which to try again (C{Retry-After},
        as a 503 gives it), or C{None}.
    """

    def __init__(
        self,
        status: int,
        error: str,
        answer: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, error, answer)
        self.retry_after = retry_after


class UnexpectedAnswer(PublishFailed):
    """
    An answer that is neither a receipt nor an error: another status, or
    a body that is not the JSON receipt (not an ssedemo publish endpoint?).
    """


def publish(
    url: str,
    data: str,
    *,
    event: str | None = None,
    topic: str | None = None,
    key: str | None = None,
    token: str | None = None,
    agent: IAgent | None = None,
    reactor: Any = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Deferred[Receipt]:
    """
    Publish one event.

    @param url: The publish endpoint, such as C{http://host:8080/publish}.
    @param data: The event's data, sent as a string exactly as given.
    @param event: The event type, if not C{message}.
    @param topic: The topic, if not the server's default.
    @param key: The event's key, for servers with keyed events (others
        refuse it with C{400}); sent only when given.
    @param token: A bearer token (the server's publish token or a JWT).
    @param agent: Makes the request; by default an
        L{twisted.web.client.Agent} on C{reactor}.
    @param reactor: For the default agent and the timeout; by default the
        global reactor.
    @param timeout: Seconds to wait for the answer.
    @return: Fires with the L{Receipt}, or fails with a L{PublishFailed}
        (or a network error).
    """
    if reactor is None:
        from twisted.internet import reactor as _global

        reactor = _global
    body: dict[str, str] = {"data": data}
    for name, value in (("event", event), ("topic", topic), ("key", key)):
        if value is not None:
            body[name] = value
    headers = Headers({b"Accept": [b"application/json"]})
    if token is not None:
        headers.setRawHeaders(b"Authorization", [f"Bearer {token}".encode()])
    client = HTTPClient(agent or Agent(reactor))
    answered = client.post(
        url, json=body, headers=headers, reactor=reactor, timeout=timeout
    )
    return answered.addCallback(
        lambda response: Deferred.fromCoroutine(_read_answer(response))
    )


async def _read_answer(response: IResponse) -> Receipt:
    content: bytes = await treq.content(response)
    status = response.code
    answer = _json_object(content)
    if answer is not None and isinstance(answer.get("error"), str):
        error = answer["error"]
    else:
        error = content.decode("utf-8", "replace").strip()[:200]
    if 400 <= status < 500:
        raise PublishRefused(status, error, answer)
    if 500 <= status < 600:
        raise ServerFailed(status, error, answer, _retry_after(response))
    if status != 200 or answer is None or not isinstance(answer.get("id"), str):
        raise UnexpectedAnswer(status, error or "not a receipt", answer)
    delivered = answer.get("delivered")
    topic = answer.get("topic")
    return Receipt(
        answer["id"],
        delivered if isinstance(delivered, int) else None,
        topic if isinstance(topic, str) else None,
        answer,
    )


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(content)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _retry_after(response: IResponse) -> float | None:
    values = response.headers.getRawHeaders(b"retry-after")
    if not values:
        return None
    try:
        return max(0.0, float(values[-1]))
    except ValueError:
        return None  # an HTTP date: rare enough to leave to the caller
