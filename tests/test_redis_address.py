"""
Tests for L{sse_twisted.redis.address}: the C{--redis} URL forms.
"""

from __future__ import annotations

import pytest

from sse_twisted.redis.address import (
    InvalidRedisURL,
    Login,
    RedisAddress,
    SentinelAddress,
    parse_redis_url,
    with_password,
)


@pytest.mark.parametrize(
    "url,address",
    [
        ("redis://127.0.0.1:6380/2", RedisAddress("127.0.0.1", 6380, 2)),
        ("redis://h", RedisAddress("h")),
        ("rediss://h:7000/1", RedisAddress("h", 7000, 1, tls=True)),
        ("redis://[::1]:7000/", RedisAddress("::1", 7000, 0)),
        ("redis://u:p%3Aw@h/0", RedisAddress("h", password="p:w", username="u")),
        ("redis://u@h", RedisAddress("h", username="u")),
        (
            "unix:///run/redis/redis.sock",
            RedisAddress("", path="/run/redis/redis.sock"),
        ),
        ("unix:///tmp/r%20s.sock?db=3", RedisAddress("", db=3, path="/tmp/r s.sock")),
        ("unix://:pw@/tmp/r.sock", RedisAddress("", password="pw", path="/tmp/r.sock")),
        (
            "redis+sentinel://s1:26380,s2,[::1]:5/mymaster",
            SentinelAddress((("s1", 26380), ("s2", 26379), ("::1", 5)), "mymaster"),
        ),
        (
            "rediss+sentinel://app:pw@s1:1/my%2Fmaster/4",
            SentinelAddress(
                (("s1", 1),), "my/master", 4, password="pw", username="app", tls=True
            ),
        ),
        (
            "redis+sentinel://:pw@s1:1/m/",
            SentinelAddress((("s1", 1),), "m", 0, password="pw"),
        ),
    ],
)
def test_url_forms(url: str, address: RedisAddress | SentinelAddress) -> None:
    assert parse_redis_url(url) == address


@pytest.mark.parametrize(
    "url,message",
    [
        ("localhost:6379", "expected a URL"),
        ("http://h", "unknown scheme"),
        ("redis://host:port/0", "Port could not be cast"),
        ("redis://h:0", "must not be 0"),
        ("redis:///0", "a host is required"),
        ("redis://h/x", "must be a number"),
        ("redis://h/0?x=1", "no query"),
        ("redis://h/0#f", "no fragment"),
        ("unix://host/tmp/s", "not a host"),
        ("unix://", "absolute path"),
        ("unix:///tmp/s?db=x", "must be a number"),
        ("unix:///tmp/s?timeout=1", "only query parameter"),
        ("unix:///tmp/s?db=1&db=2", "only query parameter"),
        ("redis+sentinel://s1:1", "/MASTER"),
        ("redis+sentinel:///m", "at least one sentinel"),
        ("redis+sentinel://s1:1,/m", "is not HOST:PORT"),
        ("redis+sentinel://s1:x/m", "Port could not be cast"),
        ("redis+sentinel://s1:1/m/1/2", "/MASTER or /MASTER/DB"),
        ("redis+sentinel://s1:1/m?x", "no query"),
    ],
)
def test_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidRedisURL, match=message):
        parse_redis_url(url)


def test_one_server_only() -> None:
    with pytest.raises(InvalidRedisURL, match="one server"):
        RedisAddress.from_url("redis+sentinel://s:1/m")


def test_login_and_password_stay_out_of_reprs() -> None:
    """
    The login of a connection has the URL's user, password and database;
    no repr shows a password.
    """
    sentinel = with_password(parse_redis_url("redis+sentinel://u@s:1/m/2"), "s3cret")
    assert sentinel.login == Login("u", "s3cret", 2)
    server = with_password(RedisAddress("h"), "s3cret")
    assert server.login == Login(None, "s3cret", 0)
    for value in (sentinel, server, sentinel.login):
        assert "s3cret" not in repr(value)
