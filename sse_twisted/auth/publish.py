"""
Who may publish: the holder of the static publish token, of a JWT whose
C{publish} patterns cover the topic, or, when no token is configured, only
clients on this machine (unless publishing is opened on purpose).
"""

from __future__ import annotations

import hmac
import ipaddress

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.iweb import IRequest

from sse_twisted.auth.gate import Denial, Refusal, bearer_token, covers, query_token
from sse_twisted.auth.jwt import Verifier

HOW_TO_OPEN = (
    "publishing is open only to clients on the server's own machine: start it"
    " with --publish-token-file FILE or --jwt-key FILE and send a bearer token,"
    " or with --publish-open to let anyone publish"
)

EVERY_TOPIC = ("*",)


class PublishGuard:
    """
    Checks publishers.
    """

    def __init__(
        self,
        token: bytes | None = None,
        verifier: Verifier | None = None,
        open_to_all: bool = False,
    ) -> None:
        """
        @param token: The static publish token, if any.
        @param verifier: Verifies JWTs, if they are configured.
        @param open_to_all: Whether anyone may publish when no token is
            configured; otherwise only clients on a loopback address may.
        """
        self._token = token
        self._verifier = verifier
        self._open = open_to_all

    def topics(self, request: IRequest) -> tuple[str, ...]:
        """
        Authenticate a publisher.

        @param request: A request to publish.
        @return: The patterns of the topics it may publish to.
        @raise Refusal: If it may publish nowhere.
        """
        bearer = bearer_token(request)
        if (
            self._token is not None
            and bearer is not None
            and hmac.compare_digest(bearer.encode("utf-8"), self._token)
        ):
            return EVERY_TOPIC
        if self._verifier is not None:
            token = bearer if bearer is not None else query_token(request)
            if token is None:
                raise Refusal(Denial.MISSING, "a bearer token is required")
            return self._verifier.verify(token).publish
        if self._token is not None:
            raise Refusal(Denial.MISSING, "a valid bearer token is required")
        if not (self._open or is_local(request)):
            raise Refusal(Denial.FORBIDDEN, HOW_TO_OPEN)
        return EVERY_TOPIC

    def check(self, topics: tuple[str, ...], topic: str) -> None:
        """
        @param topics: What L{topics} returned.
        @param topic: The topic of the event.
        @raise Refusal: If the publisher may not publish to C{topic}.
        """
        if not covers(topics, topic):
            raise Refusal(
                Denial.FORBIDDEN, f"the token does not allow publishing to {topic}"
            )


def is_local(request: IRequest) -> bool:
    """
    @return: Whether the request comes from a loopback address (or a UNIX
        socket), as its connection says; forwarding headers are not trusted.
    """
    address = request.getClientAddress()
    if not isinstance(address, IPv4Address | IPv6Address):
        return not hasattr(address, "host")
    try:
        ip = ipaddress.ip_address(address.host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
