"""
The access log, without secrets: a token given in the query
(C{?access_token=}) never reaches a log line.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

from twisted.web.http import combinedLogFormatter
from twisted.web.iweb import IRequest

REDACTED = b"[redacted]"
_SECRET_ARGUMENTS = frozenset({"access_token"})
# Twisted's query parser splits arguments at ";" as well as "&"; so must this.
_SEPARATORS = re.compile(rb"([&;])")


def redact(uri: bytes) -> bytes:
    """
    @param uri: A request URI.
    @return: C{uri} with the value of each C{access_token} query argument
        replaced by L{REDACTED}, however its name is encoded, and whether
        arguments are separated by C{&} or C{;}.
    """
    path, mark, query = uri.partition(b"?")
    if not mark:
        return uri
    # Fields at even indexes, separators at odd ones.
    fields = _SEPARATORS.split(query)
    for index in range(0, len(fields), 2):
        name = fields[index].partition(b"=")[0]
        if unquote_plus(name.decode("latin-1")) in _SECRET_ARGUMENTS:
            fields[index] = name + b"=" + REDACTED
    return path + b"?" + b"".join(fields)


class _Redacted:
    """
    A request as the access log sees it: its URI and referrer redacted.
    """

    def __init__(self, request: IRequest) -> None:
        self._request = request
        self.uri = redact(request.uri)

    def getHeader(self, name: bytes) -> bytes | None:
        value: bytes | None = self._request.getHeader(name)
        if value is not None and name.lower() == b"referer":
            return redact(value)
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def access_log_line(timestamp: str, request: IRequest) -> str:
    """
    An L{twisted.web.iweb.IAccessLogFormatter}: Twisted's combined log
    format, with query tokens redacted.
    """
    line: str = combinedLogFormatter(timestamp, _Redacted(request))
    return line
