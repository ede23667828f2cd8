"""
Tests for the authorization options of C{twistd ssedemo}
(L{sse_twisted.auth.config}).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tokens import SECRET, grants, public_pem
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.usage import UsageError

from sse_twisted.auth.config import access
from sse_twisted.auth.gate import PublicTopics
from sse_twisted.auth.jwt import JWTGate
from sse_twisted.tap import Options, makeService


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


@pytest.fixture
def secret(tmp_path: Path) -> str:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    return str(path)


@pytest.fixture
def es256(tmp_path: Path) -> str:
    path = tmp_path / "es256.pem"
    path.write_bytes(public_pem("ES256"))
    return str(path)


def test_defaults() -> None:
    options = parse()
    assert options["jwt-key"] is None
    assert options["jwt-algorithm"] == "HS256"
    assert options["jwt-cookie"] == "sse_token"
    assert options["public-topic"] == []
    assert options["auth-url"] is None
    assert options["auth-timeout"] == 5.0
    assert not options["publish-open"]


def test_key_is_read_at_start(secret: str, es256: str) -> None:
    assert parse("--jwt-key", secret)["jwt-key"] == SECRET
    options = parse("--jwt-key", es256, "--jwt-algorithm", "ES256")
    assert options["jwt-key"].key_size == 256


def test_public_topics_repeat(secret: str) -> None:
    options = parse(
        "--jwt-key", secret, "--public-topic", "default", "--public-topic", "news.*"
    )
    assert options["public-topic"] == ["default", "news.*"]


@pytest.mark.parametrize(
    "args",
    [
        ["--jwt-key", "/nonexistent/key"],
        ["--jwt-key", "{secret}", "--jwt-algorithm", "none"],
        ["--jwt-key", "{secret}", "--jwt-algorithm", "RS256"],
        ["--jwt-key", "{es256}", "--jwt-algorithm", "HS256"],
        ["--jwt-key", "{es256}", "--jwt-algorithm", "RS256"],
        ["--jwt-audience", "app"],
        ["--jwt-issuer", "me"],
        ["--public-topic", "default"],
        ["--jwt-key", "{secret}", "--public-topic", "user*"],
        ["--jwt-key", "{secret}", "--public-topic", "a b"],
        ["--jwt-key", "{secret}", "--jwt-cookie", "a;b"],
        ["--auth-url", "ftp://x/"],
        ["--auth-url", "/auth"],
        ["--auth-url", "http://127.0.0.1/", "--auth-timeout", "0"],
        ["--protect-api"],
    ],
)
def test_bad_options_are_usage_errors(args: list[str], secret: str, es256: str) -> None:
    with pytest.raises(UsageError):
        parse(*(a.format(secret=secret, es256=es256) for a in args))


def test_protect_api_with_jwt_alone(secret: str) -> None:
    assert parse("--jwt-key", secret, "--protect-api")["protect-api"]


def test_every_option_is_in_help() -> None:
    text = str(Options())
    for name in (
        "--jwt-key",
        "--jwt-algorithm",
        "--jwt-audience",
        "--jwt-issuer",
        "--jwt-cookie",
        "--public-topic",
        "--auth-url",
        "--auth-timeout",
        "--publish-open",
    ):
        assert name in text
    assert "[default: HS256]" in text and "[default: sse_token]" in text


def test_access_follows_the_options(secret: str) -> None:
    reactor = MemoryReactorClock()
    built = access(parse("--jwt-key", secret, "--public-topic", "default"), reactor)
    assert isinstance(built.gate, PublicTopics)
    assert built.verifier is not None
    assert built.verifier.verify(grants(["x"])).subscribe == ("x",)
    assert built.services == []
    private = access(parse("--jwt-key", secret), reactor)
    assert isinstance(private.gate, JWTGate)
    forward = access(parse("--auth-url", "http://127.0.0.1:1/auth"), reactor)
    assert len(forward.services) == 1


def test_warnings_at_start(tmp_path: Path) -> None:
    """
    C{--publish-open} without a token, and a secret shorter than its
    algorithm's hash, are warned about when the service is made.
    """
    short = tmp_path / "short"
    short.write_text("tiny\n")
    with capturedLogs() as events:
        makeService(parse("--publish-open"), MemoryReactorClock())
        makeService(parse("--jwt-key", str(short)), MemoryReactorClock())
    warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 2
    assert "anyone who can reach this server may publish" in warnings[0]
    assert warnings[1].startswith("--jwt-key: ")


def test_stopping_closes_the_auth_connections() -> None:
    """
    With C{--auth-url}, stopping the server closes the kept-alive
    connections to the application.
    """
    reactor = MemoryReactorClock()
    service = makeService(parse("--auth-url", "http://127.0.0.1:1/auth"), reactor)
    closers = [c for c in service if type(c).__name__ == "_Closer"]  # type: ignore[attr-defined]
    assert len(closers) == 1
    service.startService()
    stopped = service.stopService()
    reactor.advance(1)
    assert stopped.called


def test_https_auth_url() -> None:
    assert parse("--auth-url", "https://auth.example/check")["auth-url"] == (
        "https://auth.example/check"
    )
