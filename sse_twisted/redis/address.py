"""
Where Redis is, as the operator writes it in C{--redis}: one server over TCP
(C{redis://}, or C{rediss://} with TLS), on a unix socket (C{unix://}), or
the master that Redis Sentinel names (C{redis+sentinel://},
C{rediss+sentinel://}). Parsing only: nothing here connects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_REDIS_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379

URL_FORMS = (
    "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS),"
    " unix://[[USER]:PASSWORD@]/PATH?db=DB, or"
    " redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]"
    " (rediss+sentinel:// with TLS)"
)
"""The URL forms, for error messages and C{--help}."""

_MAX_DB = 1 << 16

_A = TypeVar("_A", bound="RedisAddress | SentinelAddress")


class InvalidRedisURL(ValueError):
    """
    A C{--redis} value is none of the L{URL_FORMS}.
    """


@dataclass(frozen=True)
class Login:
    """
    What a connection sends before it is used: C{AUTH}, then C{SELECT}.

    @ivar username: The ACL user, if any (else C{default}).
    @ivar password: Sent with C{AUTH}, if given.
    @ivar db: The database to select; C{None} for none (a sentinel has none).
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int | None = None


@dataclass(frozen=True)
class RedisAddress:
    """
    Where one Redis database is: a host and port, or a unix socket.

    @ivar host: The host name or address (empty for a unix socket).
    @ivar port: The TCP port.
    @ivar db: The database number, selected on connecting.
    @ivar password: Sent with C{AUTH} on connecting, if given.
    @ivar username: The ACL user for C{AUTH}, if given.
    @ivar tls: Whether to speak TLS (C{rediss://}).
    @ivar path: The unix socket's path (C{unix://}), or C{None}.
    """

    host: str
    port: int = DEFAULT_REDIS_PORT
    db: int = 0
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    tls: bool = False
    path: str | None = None

    @property
    def login(self) -> Login:
        """
        The C{AUTH} and C{SELECT} of a connection to this server.
        """
        return Login(self.username, self.password, self.db)

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        """
        Parse the URL of one server (not the Sentinel forms).

        @raise InvalidRedisURL: If C{url} is not such a URL.
        """
        address = parse_redis_url(url)
        if not isinstance(address, RedisAddress):
            raise InvalidRedisURL("expected one server, not Sentinel")
        return address


@dataclass(frozen=True)
class SentinelAddress:
    """
    The master that Redis Sentinel names, and how to use it.

    @ivar sentinels: The sentinels' hosts and ports, asked in this order.
    @ivar master: The master's name in the sentinels' configuration.
    @ivar db: The database number, selected on connecting.
    @ivar password: The data servers' password (not the sentinels').
    @ivar username: The data servers' ACL user, if given.
    @ivar tls: Whether to speak TLS, to the sentinels and the servers.
    """

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    tls: bool = False

    @property
    def login(self) -> Login:
        """
        The C{AUTH} and C{SELECT} of a connection to the master.
        """
        return Login(self.username, self.password, self.db)


def with_password(address: _A, password: str) -> _A:
    """
    @return: C{address} with the password C{password} (from a file).
    """
    return dataclasses.replace(address, password=password)


def parse_redis_url(url: str) -> RedisAddress | SentinelAddress:
    """
    Parse one of the L{URL_FORMS}: the port defaults to 6379 (26379 for a
    sentinel) and the database to 0.

    @param url: The URL.
    @return: The address.
    @raise InvalidRedisURL: If C{url} is none of them.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise InvalidRedisURL("expected a URL")
    if "#" in rest:
        raise InvalidRedisURL("no fragment is allowed")
    if scheme in ("redis", "rediss"):
        return _server(url, tls=scheme == "rediss")
    if scheme == "unix":
        return _unix(url)
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        return _sentinel(rest, tls=scheme == "rediss+sentinel")
    raise InvalidRedisURL(f"unknown scheme {scheme}://")


def _server(url: str, tls: bool) -> RedisAddress:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidRedisURL(str(e)) from None
    if not parts.hostname:
        raise InvalidRedisURL("a host is required")
    if port == 0:
        raise InvalidRedisURL("the port must not be 0")
    if parts.query:
        raise InvalidRedisURL("no query is allowed")
    username, password = _userinfo(parts.netloc.rpartition("@")[0])
    return RedisAddress(
        host=parts.hostname,
        port=DEFAULT_REDIS_PORT if port is None else port,
        db=_db(parts.path.strip("/") or "0"),
        password=password,
        username=username,
        tls=tls,
    )


def _unix(url: str) -> RedisAddress:
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    if host:
        raise InvalidRedisURL("unix:// takes a path (unix:///PATH), not a host")
    if not parts.path.startswith("/") or parts.path == "/":
        raise InvalidRedisURL("unix:// needs the socket's absolute path")
    try:
        query = parse_qs(parts.query, strict_parsing=bool(parts.query))
    except ValueError:
        raise InvalidRedisURL(f"malformed query {parts.query!r}") from None
    if set(query) - {"db"} or len(query.get("db", [])) > 1:
        raise InvalidRedisURL("the only query parameter is db=N, once")
    username, password = _userinfo(userinfo)
    return RedisAddress(
        host="",
        db=_db(query.get("db", ["0"])[0]),
        password=password,
        username=username,
        path=unquote(parts.path),
    )


def _sentinel(rest: str, tls: bool) -> SentinelAddress:
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    if "?" in path:
        raise InvalidRedisURL("no query is allowed")
    master, _, db = path.partition("/")
    master = unquote(master)
    if not master or "/" in db:
        raise InvalidRedisURL("the path must be /MASTER or /MASTER/DB")
    if not hosts:
        raise InvalidRedisURL("at least one sentinel HOST:PORT is required")
    username, password = _userinfo(userinfo)
    return SentinelAddress(
        sentinels=tuple(_host_port(h, DEFAULT_SENTINEL_PORT) for h in hosts.split(",")),
        master=master,
        db=_db(db or "0"),
        password=password,
        username=username,
        tls=tls,
    )


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    try:
        parts = urlsplit("//" + text)
        port = parts.port
    except ValueError as e:
        raise InvalidRedisURL(f"{text!r}: {e}") from None
    if not parts.hostname or parts.netloc != text or "@" in text:
        raise InvalidRedisURL(f"{text!r} is not HOST:PORT")
    if port == 0:
        raise InvalidRedisURL("the port must not be 0")
    return parts.hostname, default_port if port is None else port


def _userinfo(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _db(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) < _MAX_DB):
        raise InvalidRedisURL(f"the database must be a number, not {text!r}")
    return int(text)
