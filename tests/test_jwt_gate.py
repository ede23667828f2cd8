"""
Tests for L{sse_twisted.auth.jwt}: tokens verified with one key and one
algorithm, on the reactor's clock.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from tokens import SECRET, grants, hand_made, private_key, public_pem, token
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from sse_twisted.auth.gate import Denial, Refusal
from sse_twisted.auth.jwt import (
    CACHE_SIZE,
    BadKey,
    JWTGate,
    Verifier,
    load_key,
    short_key_warning,
)

NOW = 1_800_000_000.0
SSE = {"sse": {"subscribe": ["news"], "publish": []}}


def verifier(algorithm: str = "HS256", **kwargs: Any) -> tuple[Verifier, Clock]:
    clock = Clock()
    clock.advance(NOW)
    text = SECRET + b"\n" if algorithm.startswith("HS") else public_pem(algorithm)
    return Verifier(load_key(text, algorithm), algorithm, clock, **kwargs), clock


def refused(check: Verifier, presented: str) -> str:
    with pytest.raises(Refusal) as caught:
        check.verify(presented)
    assert caught.value.denial is Denial.INVALID
    return caught.value.message


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "ES256", "EdDSA"])
def test_the_configured_algorithm_verifies(algorithm: str) -> None:
    """
    A token signed with the configured algorithm and key is accepted, and
    its patterns and times read.
    """
    check, _ = verifier(algorithm)
    claims = check.verify(
        token(
            {"sse": {"subscribe": ["a.*"], "publish": ["b"]}, "exp": NOW + 60},
            algorithm,
        )
    )
    assert (claims.subscribe, claims.publish, claims.expires) == (
        ("a.*",),
        ("b",),
        NOW + 60,
    )


def test_secret_file_loses_only_its_trailing_newline() -> None:
    """
    The secret is the key file's text without its trailing newline: a token
    signed with the newline is refused.
    """
    check, _ = verifier()
    check.verify(token(SSE, key=SECRET))
    assert "Signature" in refused(check, token(SSE, key=SECRET + b"\n"))


def test_alg_none_is_refused() -> None:
    """
    An unsigned token (C{alg: none}) is refused, whatever it claims.
    """
    check, _ = verifier()
    forged = hand_made({"alg": "none", "typ": "JWT"}, SSE, b"")
    assert refused(check, forged) == "the token must be signed with HS256"


def test_another_algorithm_is_refused() -> None:
    """
    With RS256 configured, an HS256 token signed with the public key as its
    secret (the classic confusion) is refused, as is a genuine ES256 token.
    """
    check, _ = verifier("RS256")
    confused = hand_made({"alg": "HS256", "typ": "JWT"}, SSE, public_pem("RS256"))
    assert refused(check, confused) == "the token must be signed with RS256"
    assert refused(check, token(SSE, "ES256")) == "the token must be signed with RS256"


def test_tampered_payload_is_refused() -> None:
    """
    A token whose payload was changed after signing is refused.
    """
    check, _ = verifier()
    header, _, rest = grants(["news"]).partition(".")
    _, _, signature = rest.partition(".")
    tampered = grants(["*"]).split(".")[1]
    assert "Signature verification failed" in refused(
        check, f"{header}.{tampered}.{signature}"
    )


def test_expiry_is_on_the_reactor_clock() -> None:
    """
    A token is good until the clock reaches its C{exp}, even once
    remembered.
    """
    check, clock = verifier()
    presented = grants(["news"], exp=NOW + 10)
    check.verify(presented)
    clock.advance(9.9)
    check.verify(presented)
    clock.advance(0.1)
    assert refused(check, presented) == "the token has expired"
    assert refused(check, grants(["news"], exp=NOW - 100)) == "the token has expired"


def test_not_before_in_the_future_is_refused() -> None:
    """
    A token is refused until its C{nbf}, then accepted.
    """
    check, clock = verifier()
    presented = grants(["news"], nbf=NOW + 5)
    assert refused(check, presented) == "the token is not valid yet"
    clock.advance(5)
    check.verify(presented)


@pytest.mark.parametrize(
    "claims,message",
    [
        ({"aud": "other", "iss": "me"}, "Audience doesn't match"),
        ({"iss": "me"}, 'Token is missing the "aud" claim'),
        ({"aud": "app", "iss": "someone"}, "Invalid issuer"),
        ({"aud": "app"}, 'Token is missing the "iss" claim'),
    ],
)
def test_wrong_audience_or_issuer_is_refused(
    claims: dict[str, str], message: str
) -> None:
    check, _ = verifier(audience="app", issuer="me")
    check.verify(grants(["news"], aud="app", iss="me"))
    assert message in refused(check, grants(["news"], **claims))


def test_audience_and_issuer_are_free_unless_configured() -> None:
    check, _ = verifier()
    assert check.verify(grants(["news"], aud="any", iss="anyone")).subscribe == (
        "news",
    )


@pytest.mark.parametrize(
    "presented",
    [
        "x" * 8192,
        "a" * 4000 + "." + "b" * 4000 + "." + "c" * 191,
        "e30.e30.",
        "",
        "ünïcödé.ä.ö",
    ],
)
def test_garbage_is_refused(presented: str) -> None:
    check, _ = verifier()
    assert refused(check, presented).startswith("the token ")


@pytest.mark.parametrize(
    "claims,message",
    [
        ({"sse": ["a"]}, "the sse claim must be an object"),
        ({"sse": {"subscribe": "a"}}, "sse.subscribe must be a list"),
        ({"sse": {"publish": [1]}}, "sse.publish must be a list"),
        ({"exp": "tomorrow"}, "exp must be a number"),
        ({"iat": True}, "iat must be a number"),
        ({"exp": float("nan")}, "exp must be a number"),
        ({"nbf": float("-inf")}, "nbf must be a number"),
    ],
)
def test_malformed_claims_are_refused(claims: dict[str, Any], message: str) -> None:
    check, _ = verifier()
    assert refused(check, token(claims)).startswith(message)


def test_overlong_token_is_not_parsed() -> None:
    check, _ = verifier()
    assert refused(check, "e30." * 5000) == "the token is too long"


def test_remembered_tokens_are_bounded() -> None:
    """
    No more than L{CACHE_SIZE} verified tokens are remembered: the oldest
    makes way, and is verified afresh when presented again.
    """
    check, _ = verifier()
    first = grants(["t0"])
    check.verify(first)
    for n in range(1, CACHE_SIZE + 1):
        check.verify(grants([f"t{n}"]))
    assert len(check._cache) == CACHE_SIZE
    assert first not in check._cache
    assert check.verify(first).subscribe == ("t0",)


def test_key_may_be_a_certificate() -> None:
    """
    A PEM certificate's public key verifies tokens too.
    """
    private = private_key("ES256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    check = Verifier(load_key(pem, "ES256"), "ES256", Clock())
    assert check.verify(token(SSE, "ES256")).subscribe == ("news",)


def test_bad_keys_are_refused() -> None:
    with pytest.raises(BadKey, match="not a PEM public key for RS256"):
        load_key(b"not a key", "RS256")
    with pytest.raises(BadKey, match="not a PEM public key for ES256"):
        load_key(public_pem("RS256"), "ES256")
    with pytest.raises(BadKey, match="should not be used as an HMAC secret"):
        load_key(public_pem("RS256"), "HS256")
    with pytest.raises(BadKey, match="must not be empty"):
        load_key(b"\n", "HS256")


def test_short_secret_is_reported() -> None:
    assert short_key_warning(b"short", "HS256") is not None
    assert short_key_warning(SECRET, "HS256") is None


class CookieRequest(DummyRequest):
    def getCookie(self, name: bytes) -> bytes | None:
        value: bytes | None = self.received_cookies.get(name)
        return value


def gate_request(
    headers: dict[str, str] | None = None,
    cookies: dict[bytes, bytes] | None = None,
    query: str | None = None,
) -> DummyRequest:
    request = CookieRequest([b"sse"])
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    request.received_cookies = dict(cookies or {})
    if query is not None:
        request.args[b"access_token"] = [query.encode()]
    return request


def test_gate_needs_every_topic_covered() -> None:
    check, _ = verifier()
    gate = JWTGate(check)
    presented = grants(["user.42.*", "news"], exp=NOW + 60, iat=NOW - 5)
    request = gate_request({"Authorization": f"Bearer {presented}"})
    grant = gate.authorize(request, ["news", "user.42.orders"])
    assert (grant.expires, grant.issued) == (NOW + 60, NOW - 5)  # type: ignore[union-attr]
    with pytest.raises(Refusal) as caught:
        gate.authorize(request, ["news", "user.420", "user.42"])
    assert caught.value.denial is Denial.FORBIDDEN
    assert caught.value.message == (
        "the token does not allow subscribing to user.420, user.42"
    )


def test_gate_without_token_says_missing() -> None:
    check, _ = verifier()
    with pytest.raises(Refusal) as caught:
        JWTGate(check).authorize(gate_request(), ["news"])
    assert caught.value.denial is Denial.MISSING


def test_header_then_cookie_then_query() -> None:
    """
    The token is the C{Authorization} header's if there is one, else the
    cookie's (by its configured name), else the query's.
    """
    check, _ = verifier()
    gate = JWTGate(check, cookie="auth")
    good, bad = grants(["news"]), grants(["other"])
    for request in [
        gate_request({"Authorization": f"Bearer {good}"}, {b"auth": bad.encode()}),
        gate_request(cookies={b"auth": good.encode()}, query=bad),
        gate_request({"Authorization": "Basic x"}, {b"auth": good.encode()}),
        gate_request(cookies={b"sse_token": bad.encode()}, query=good),
    ]:
        gate.authorize(request, ["news"])
    with pytest.raises(Refusal):
        gate.authorize(
            gate_request({"Authorization": f"Bearer {bad}"}, query=good), ["news"]
        )
