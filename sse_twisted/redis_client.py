"""
The way to Redis: where it is (C{--redis redis://HOST:PORT/DB}).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_REDIS_PORT = 6379

_MAX_DB = 1 << 16


class InvalidRedisURL(ValueError):
    """
    A C{--redis} value is not a C{redis://HOST:PORT/DB} URL.
    """


@dataclass(frozen=True)
class RedisAddress:
    """
    Where one Redis database is.

    @ivar host: The host name or address.
    @ivar port: The TCP port.
    @ivar db: The database number, selected on connecting.
    @ivar password: Sent with C{AUTH} on connecting, if given.
    @ivar username: The ACL user for C{AUTH}, if given.
    """

    host: str
    port: int = DEFAULT_REDIS_PORT
    db: int = 0
    password: str | None = field(default=None, repr=False)
    username: str | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        """
        Parse C{redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]}; the port
        defaults to 6379 and the database to 0.

        @param url: The URL.
        @return: The address.
        @raise InvalidRedisURL: If C{url} is not such a URL.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise InvalidRedisURL(str(e)) from None
        if parts.scheme != "redis":
            raise InvalidRedisURL("the scheme must be redis://")
        if not parts.hostname:
            raise InvalidRedisURL("a host is required")
        if port == 0:
            raise InvalidRedisURL("the port must not be 0")
        if parts.query or parts.fragment:
            raise InvalidRedisURL("no query or fragment is allowed")
        db = parts.path.strip("/") or "0"
        if not (db.isascii() and db.isdigit() and int(db) < _MAX_DB):
            raise InvalidRedisURL(f"the database must be a number, not {db!r}")
        return cls(
            host=parts.hostname,
            port=DEFAULT_REDIS_PORT if port is None else port,
            db=int(db),
            password=None if parts.password is None else unquote(parts.password),
            username=unquote(parts.username) if parts.username else None,
        )
