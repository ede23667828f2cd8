"""
HTTP/1.1 costs paid once rather than per request: the C{Date} header value,
formatted once a second (L{HTTPDate}).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from twisted.web.http import datetimeToString


class HTTPDate:
    """
    The value of the C{Date} response header, formatted again only when the
    second changes: a burst of thousands of responses formats it once.
    """

    __slots__ = ("_now", "_second", "_value")

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        """
        @param now: The wall-clock time, in seconds since the epoch.
        """
        self._now = now
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        """
        @return: The current time as an HTTP date (RFC 9110, IMF-fixdate).
        """
        second = int(self._now())
        if second != self._second:
            self._value = datetimeToString(second)
            self._second = second
        return self._value


http_date = HTTPDate()
"""The process's one L{HTTPDate}."""
