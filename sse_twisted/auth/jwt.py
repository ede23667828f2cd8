"""
JSON Web Tokens: verified with one key and one algorithm, both from the
configuration (never from the token), and read for the topics they grant.

A token grants topics in its C{sse} claim::

    {"sse": {"subscribe": ["user.42.*", "news"], "publish": ["user.42.orders"]},
     "exp": 1700000000}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from cryptography.x509 import load_pem_x509_certificate
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from sse_twisted.auth.gate import (
    DEFAULT_COOKIE,
    Denial,
    Grant,
    Patterns,
    Refusal,
    presented_token,
)

ALGORITHMS = (
    *("HS256", "HS384", "HS512", "RS256", "RS384", "RS512"),
    *("PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"),
)
"""The algorithms C{--jwt-algorithm} may name."""

CACHE_SIZE = 4096
"""How many verified tokens are remembered, so that a token presented again
(a reconnecting client, a page opened twice) is not verified again."""

MAX_TOKEN = 16 * 1024
"""The longest token looked at, in characters."""

_ACTIONS = ("subscribe", "publish")


class BadKey(ValueError):
    """
    The key cannot verify tokens of the configured algorithm.
    """


@dataclass(frozen=True, slots=True)
class Claims:
    """
    What a verified token says.

    @ivar subscribe: The topic patterns it may subscribe to.
    @ivar publish: The topic patterns it may publish to.
    @ivar expires: Its C{exp}, or C{None}.
    @ivar not_before: Its C{nbf}, or C{None}.
    @ivar issued: Its C{iat}, or C{None}.
    @ivar subscribing: C{subscribe}, ready for matching.
    @ivar grant: The leave it gives a stream: until C{expires}.
    """

    subscribe: tuple[str, ...]
    publish: tuple[str, ...]
    expires: float | None
    not_before: float | None
    issued: float | None
    # Made once per verified token, not once per stream.
    subscribing: Patterns = field(init=False, repr=False, compare=False)
    grant: Grant = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "subscribing", Patterns(self.subscribe))
        object.__setattr__(self, "grant", Grant(self.expires, self.issued))


def load_key(text: bytes, algorithm: str) -> Any:
    """
    Read the verification key for C{algorithm}.

    @param text: The contents of the key file: the shared secret for
        C{HS*} (without its trailing newline), a PEM public key (or
        certificate) otherwise.
    @param algorithm: One of L{ALGORITHMS}.
    @return: The key, ready for verifying.
    @raise BadKey: If C{text} is no such key.
    """
    if algorithm.startswith("HS"):
        secret = text.rstrip(b"\r\n")
        try:
            jwt.get_algorithm_by_name(algorithm).prepare_key(secret)
        except jwt.InvalidKeyError as e:
            raise BadKey(str(e)) from None
        return secret
    try:
        key: Any
        if b"-----BEGIN CERTIFICATE-----" in text:
            key = load_pem_x509_certificate(text).public_key()
        else:
            key = load_pem_public_key(text)
        return jwt.get_algorithm_by_name(algorithm).prepare_key(key)
    except (ValueError, TypeError, jwt.InvalidKeyError) as e:
        raise BadKey(
            f"not a PEM public key for {algorithm}: {str(e) or type(e).__name__}"
        ) from None


def short_key_warning(key: Any, algorithm: str) -> str | None:
    """
    @return: Why C{key} is too short for C{algorithm}, if it is.
    """
    message: str | None = jwt.get_algorithm_by_name(algorithm).check_key_length(key)
    return message


class Verifier:
    """
    Verifies tokens with one key and one algorithm, against the reactor's
    clock; remembers up to L{CACHE_SIZE} good ones until they expire.
    """

    def __init__(
        self,
        key: Any,
        algorithm: str,
        clock: IReactorTime,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        """
        @param key: From L{load_key}.
        @param algorithm: The only algorithm accepted.
        @param clock: Tells the time for C{exp} and C{nbf}.
        @param audience: The C{aud} tokens must name, if any.
        @param issuer: The C{iss} tokens must have, if any.
        """
        self._key = key
        self._algorithms = [algorithm]
        self._clock = clock
        self._audience = audience
        self._issuer = issuer
        self._cache: dict[str, Claims] = {}
        # exp, nbf and iat are checked here, on the reactor's clock.
        # aud is checked only when an audience is configured.
        self._jwt = jwt.PyJWT(
            {
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": audience is not None,
            }
        )
        # A short secret is reported once, at start (see tap).
        warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)

    def verify(self, token: str) -> Claims:
        """
        @param token: A compact JWT.
        @return: What it says.
        @raise Refusal: L{Denial.INVALID}, if it is malformed, badly signed,
            of another algorithm, for another audience or issuer, expired or
            not valid yet.
        """
        claims = self._cache.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._cache) >= CACHE_SIZE:
                del self._cache[next(iter(self._cache))]
            self._cache[token] = claims
        now = self._clock.seconds()
        if claims.expires is not None and claims.expires <= now:
            self._cache.pop(token, None)
            raise _invalid("the token has expired")
        if claims.not_before is not None and claims.not_before > now:
            raise _invalid("the token is not valid yet")
        return claims

    def _decode(self, token: str) -> Claims:
        if len(token) > MAX_TOKEN:
            raise _invalid("the token is too long")
        try:
            payload = self._jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
            )
        except jwt.InvalidAlgorithmError:
            raise _invalid(
                f"the token must be signed with {self._algorithms[0]}"
            ) from None
        except jwt.InvalidTokenError as e:
            raise _invalid(f"the token is not valid: {e}") from None
        return _claims(payload)


def _claims(payload: dict[str, Any]) -> Claims:
    grants = payload.get("sse", {})
    if not isinstance(grants, dict):
        raise _invalid("the sse claim must be an object")
    patterns = {}
    for action in _ACTIONS:
        value = grants.get(action, [])
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise _invalid(f"sse.{action} must be a list of topic patterns")
        patterns[action] = tuple(value)
    times = {}
    for name in ("exp", "nbf", "iat"):
        value = payload.get(name)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise _invalid(f"{name} must be a number of seconds since the epoch")
        times[name] = value
    return Claims(
        patterns["subscribe"],
        patterns["publish"],
        times["exp"],
        times["nbf"],
        times["iat"],
    )


def _invalid(message: str) -> Refusal:
    return Refusal(Denial.INVALID, message)


class JWTGate:
    """
    Lets a stream in when the subscriber's token covers every topic it asks
    for, until the token expires.
    """

    def __init__(self, verifier: Verifier, cookie: str = DEFAULT_COOKIE) -> None:
        """
        @param verifier: Verifies the tokens.
        @param cookie: The cookie that may carry the token.
        """
        self._verifier = verifier
        self._cookie = cookie.encode("ascii")

    def authorize(
        self, request: IRequest, topics: Sequence[str]
    ) -> Grant | Deferred[Grant]:
        token = presented_token(request, self._cookie)
        if token is None:
            raise Refusal(Denial.MISSING, "a token is required for these topics")
        claims = self._verifier.verify(token)
        subscribing = claims.subscribing.covers
        for topic in topics:
            if not subscribing(topic):
                refused = [t for t in topics if not subscribing(t)]
                raise Refusal(
                    Denial.FORBIDDEN,
                    f"the token does not allow subscribing to {', '.join(refused)}",
                )
        return claims.grant
