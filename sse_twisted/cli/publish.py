"""
C{ssedemo publish}: publish one event and print the server's receipt.
"""

from __future__ import annotations

import json
from typing import Any, TextIO
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError
from twisted.python import usage
from twisted.web.client import ResponseFailed, ResponseNeverReceived

from sse_twisted.cli._common import TOKEN_PARAMETERS, VerbOptions, read_token
from sse_twisted.client.publish import (
    DEFAULT_TIMEOUT,
    PublishFailed,
    ServerFailed,
    UnexpectedAnswer,
    publish,
)

FAILED = 1
"""The exit status of a publish that failed."""


class Options(VerbOptions):
    """
    The options of C{ssedemo publish}.
    """

    synopsis = "[options] URL DATA"
    longdesc = (
        "Publish one event to the publish endpoint at URL (such as"
        " http://localhost:8080/publish). DATA is sent as a string exactly as"
        " given (text that looks like JSON is not parsed). Prints the server's"
        " JSON receipt on one line and exits with status 0; otherwise prints"
        " the status and the server's error on standard error and exits with"
        " status 1."
    )
    optParameters = [
        ["event", None, None, "The event type (default: message)."],
        ["topic", None, None, "The topic (default: the server's, default)."],
        ["key", None, None, "The event's key (only for servers with keyed events)."],
        *TOKEN_PARAMETERS,
        ["timeout", None, DEFAULT_TIMEOUT, "Seconds to wait for the answer.", float],
    ]

    def parseArgs(self, url: str, data: str) -> None:  # type: ignore[override]
        self["url"] = url
        self["data"] = data

    def postOptions(self) -> None:
        parts = urlsplit(self["url"])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise usage.UsageError(f"not an http:// or https:// URL: {self['url']}")
        if not 0 < self["timeout"] <= 3600:
            raise usage.UsageError("--timeout must be between 0 and 3600 seconds")
        self["token"] = read_token(self)


_NETWORK = (
    ConnectError,
    DNSLookupError,
    TimeoutError,
    ResponseFailed,
    ResponseNeverReceived,
    CancelledError,
)


async def run(reactor: Any, options: Options, out: TextIO, err: TextIO) -> int:
    """
    Publish, print the receipt on C{out} or the error on C{err}.

    @return: The exit status.
    """
    publishing = publish(
        options["url"],
        options["data"],
        event=options["event"],
        topic=options["topic"],
        key=options["key"],
        token=options["token"],
        reactor=reactor,
        timeout=options["timeout"],
    )
    stopping = reactor.addSystemEventTrigger("before", "shutdown", publishing.cancel)
    try:
        receipt = await publishing
    except ServerFailed as e:
        later = "" if e.retry_after is None else f" (retry after {e.retry_after:g} s)"
        _say(err, f"{e.status}: {e.error}{later}")
        return FAILED
    except UnexpectedAnswer as e:
        _say(err, f"{e.status}, but not a receipt: {e.error}")
        return FAILED
    except PublishFailed as e:
        _say(err, f"{e.status}: {e.error}")
        return FAILED
    except _NETWORK as e:
        reason = _reason(e, options["timeout"])
        _say(err, f"cannot publish to {options['url']}: {reason}")
        return FAILED
    finally:
        reactor.removeSystemEventTrigger(stopping)
    out.write(json.dumps(receipt.answer) + "\n")
    out.flush()
    return 0


def _say(err: TextIO, message: str) -> None:
    err.write(f"ssedemo publish: {message}\n")
    err.flush()


def _reason(error: Exception, timeout: float) -> str:
    reasons = getattr(error, "reasons", None)
    if reasons:
        error = reasons[0].value
    if isinstance(error, CancelledError):
        return f"no answer within {timeout:g} s (or interrupted)"
    return str(error) or type(error).__name__
