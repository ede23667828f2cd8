"""
The authorization part of the command line: the options, their checks, and
the gate and publish rules they describe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage

from sse_twisted.auth.forward import DEFAULT_TIMEOUT, ForwardAuthGate
from sse_twisted.auth.gate import (
    DEFAULT_COOKIE,
    OPEN_GATE,
    FirstThen,
    Gate,
    PublicTopics,
)
from sse_twisted.auth.jwt import (
    ALGORITHMS,
    BadKey,
    JWTGate,
    Verifier,
    load_key,
    short_key_warning,
)

PARAMETERS: list[list[Any]] = [
    [
        "jwt-key",
        None,
        None,
        "File with the key that verifies JWTs: the shared secret (HS*; the"
        " file's text without its trailing newline) or a PEM public key"
        " or certificate (RS*, PS*, ES*, EdDSA). Turns JWT authorization on.",
    ],
    [
        "jwt-algorithm",
        None,
        "HS256",
        f"The only algorithm accepted for JWTs: {', '.join(ALGORITHMS)}.",
    ],
    ["jwt-audience", None, None, "The aud claim JWTs must have."],
    ["jwt-issuer", None, None, "The iss claim JWTs must have."],
    [
        "jwt-cookie",
        None,
        DEFAULT_COOKIE,
        "The cookie that carries a subscriber's JWT.",
    ],
    [
        "auth-url",
        None,
        None,
        "Ask this http(s) URL whether a client may subscribe to non-public"
        " topics (forward auth).",
    ],
    [
        "auth-timeout",
        None,
        DEFAULT_TIMEOUT,
        "Seconds to wait for --auth-url's answer; then the client is told to"
        " come back later.",
        float,
    ],
]

FLAGS: list[list[Any]] = [
    [
        "publish-open",
        None,
        "Let anyone publish when no token is configured (by default only"
        " clients on this machine may).",
    ],
]

_PATTERN = re.compile(r"\*|[A-Za-z0-9._~:-]{1,64}|[A-Za-z0-9._~:-]{1,62}\.\*")
_COOKIE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def public_topic(options: MutableMapping[str, Any], pattern: str) -> None:
    """
    Add C{pattern} to C{options["public-topic"]}.

    @raise usage.UsageError: If it is no topic pattern.
    """
    if not _PATTERN.fullmatch(pattern):
        raise usage.UsageError(
            f"--public-topic {pattern!r}: give a topic, a prefix ending in .*, or *"
        )
    options.setdefault("public-topic", []).append(pattern)


def check(options: MutableMapping[str, Any]) -> None:
    """
    Check the authorization options and read the JWT key.

    @raise usage.UsageError: If they do not fit together.
    """
    options.setdefault("public-topic", [])
    jwt_only = [n for n in ("jwt-audience", "jwt-issuer") if options[n] is not None]
    if options["jwt-key"] is None and jwt_only:
        raise usage.UsageError(f"--{jwt_only[0]} needs --jwt-key")
    if options["public-topic"] and not (options["jwt-key"] or options["auth-url"]):
        raise usage.UsageError("--public-topic needs --jwt-key or --auth-url")
    if options["jwt-algorithm"] not in ALGORITHMS:
        raise usage.UsageError(
            f"--jwt-algorithm must be one of {', '.join(ALGORITHMS)}"
        )
    if not _COOKIE.fullmatch(options["jwt-cookie"]):
        raise usage.UsageError("--jwt-cookie must be a cookie name")
    if options["jwt-key"] is not None:
        try:
            text = Path(options["jwt-key"]).read_bytes()
            options["jwt-key"] = load_key(text, options["jwt-algorithm"])
        except (OSError, BadKey) as e:
            raise usage.UsageError(f"--jwt-key: {e}") from e
    url = options["auth-url"]
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise usage.UsageError("--auth-url must be an http:// or https:// URL")
    if not 0 < options["auth-timeout"] <= 3600:
        raise usage.UsageError("--auth-timeout must be between 0 and 3600 seconds")


@dataclass
class Access:
    """
    The authorization that the options describe.

    @ivar gate: Decides who may open a stream.
    @ivar verifier: Verifies JWTs, if configured.
    @ivar services: To run alongside the server.
    """

    gate: Gate
    verifier: Verifier | None
    services: list[Service]


class _Closer(Service):
    """
    Runs a clean-up when the server stops.
    """

    def __init__(self, close: Callable[[], Deferred[None]]) -> None:
        self._close = close

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self._close()


_log = Logger()


def access(options: MutableMapping[str, Any], reactor: Any) -> Access:
    """
    Build the gate and the JWT verifier that checked C{options} describe,
    and log what a user should know at start.

    @param options: Checked by L{check}.
    @param reactor: For the forward auth's connections and all timing.
    """
    for message in _warnings(options):
        _log.warn("{message}", message=message)
    verifier = None
    gates: list[Gate] = []
    services: list[Service] = []
    if options["jwt-key"] is not None:
        verifier = Verifier(
            options["jwt-key"],
            options["jwt-algorithm"],
            reactor,
            audience=options["jwt-audience"],
            issuer=options["jwt-issuer"],
        )
        gates.append(JWTGate(verifier, options["jwt-cookie"]))
    if options["auth-url"] is not None:
        forward = ForwardAuthGate(
            options["auth-url"], reactor, timeout=options["auth-timeout"]
        )
        gates.append(forward)
        services.append(_Closer(forward.close))
    if not gates:
        return Access(OPEN_GATE, None, services)
    gate = gates[0] if len(gates) == 1 else FirstThen(gates[0], gates[1])
    if options["public-topic"]:
        gate = PublicTopics(options["public-topic"], gate)
    return Access(gate, verifier, services)


def _warnings(options: MutableMapping[str, Any]) -> Iterator[str]:
    tokens = options["publish-token"] is not None or options["jwt-key"] is not None
    if options["publish-open"] and not tokens:
        yield (
            "--publish-open: anyone who can reach this server may publish to any topic"
        )
    if options["jwt-key"] is not None:
        short = short_key_warning(options["jwt-key"], options["jwt-algorithm"])
        if short:
            yield f"--jwt-key: {short}"
