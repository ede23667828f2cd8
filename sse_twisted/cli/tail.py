"""
C{ssedemo tail}: print the events of a stream as they come, reconnecting
and resuming by itself, until Ctrl-C or a failure for good.

Events go to standard output (readable, or one JSON object a line with
C{--json}), flushed one by one; reconnects and failures are told on
standard error. Writes to standard output block: a slow reader of the pipe
slows the stream down instead of filling memory.
"""

from __future__ import annotations

import json
import os
from typing import Any, TextIO
from urllib.parse import quote, urlsplit, urlunsplit

from twisted.python import usage

from sse_twisted.cli._common import TOKEN_PARAMETERS, VerbOptions, read_token
from sse_twisted.client.eventsource import (
    DEFAULT_TIMEOUT,
    EventSource,
    EventSourceFailed,
    MessageEvent,
    Reconnecting,
)

FAILED = 1
"""The exit status of a stream that failed for good."""


class Options(VerbOptions):
    """
    The options of C{ssedemo tail}.
    """

    synopsis = "[options] URL"
    longdesc = (
        "Print each event of the stream at URL (such as http://localhost:8080/sse)"
        " as it comes, whatever its type. Reconnects and resumes by itself,"
        " saying so on standard error; Ctrl-C ends it with status 0. A failure"
        " for good (any answer but 200 with text/event-stream) exits with"
        " status 1 and the reason; a 204 ends it with status 0."
    )
    optFlags = [["json", None, "One JSON object a line: event, id, data."]]
    optParameters = [
        ["last-event-id", None, None, "Resume after this event id."],
        *TOKEN_PARAMETERS,
        [
            "timeout",
            None,
            DEFAULT_TIMEOUT,
            "Seconds to wait for a connection and the response's headers"
            " before trying again.",
            float,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["topic"] = []

    def opt_topic(self, topic: str) -> None:
        """
        Subscribe to this topic (repeatable; adds topic=T to the URL).
        """
        self["topic"].append(topic)

    def parseArgs(self, url: str) -> None:  # type: ignore[override]
        self["url"] = url

    def postOptions(self) -> None:
        parts = urlsplit(self["url"])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise usage.UsageError(f"not an http:// or https:// URL: {self['url']}")
        if not 0 < self["timeout"] <= 3600:
            raise usage.UsageError("--timeout must be between 0 and 3600 seconds")
        self["token"] = read_token(self)
        self["stream"] = with_topics(self["url"], self["topic"])


def with_topics(url: str, topics: list[str]) -> str:
    """
    @return: C{url} with C{topic=T} added to its query for each of C{topics}.
    """
    if not topics:
        return url
    parts = urlsplit(url)
    added = "&".join(f"topic={quote(topic, safe='')}" for topic in topics)
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit(parts._replace(query=query))


def show(event: MessageEvent, as_json: bool) -> str:
    """
    @return: How C{tail} prints C{event}, with its line end(s).
    """
    if as_json:
        line = {"event": event.type, "id": event.id, "data": event.data}
        return json.dumps(line) + "\n"
    head = f"event: {event.type}\n" + (f"id: {event.id}\n" if event.id else "")
    return head + "".join(f"data: {line}\n" for line in event.data.split("\n")) + "\n"


async def run(reactor: Any, options: Options, out: TextIO, err: TextIO) -> int:
    """
    Follow the stream until Ctrl-C (the reactor's shutdown), a closed
    standard output, or a failure for good.

    @return: The exit status.
    """
    headers = {}
    if options["token"] is not None:
        headers["Authorization"] = f"Bearer {options['token']}"
    source = EventSource(
        options["stream"],
        reactor=reactor,
        headers=headers,
        last_event_id=options["last-event-id"],
        timeout=options["timeout"],
    )
    opened = 0

    def on_open() -> None:
        nonlocal opened
        opened += 1
        if opened > 1:
            _say(err, f"reconnected to {source.url}")

    def on_error(error: Exception) -> None:
        if isinstance(error, Reconnecting):
            _say(err, f"{error.reason}; reconnecting in {error.delay:.1f} s")
        elif isinstance(error, EventSourceFailed) and error.status == 204:
            _say(err, "the server answered 204 No Content: the stream is over")

    source.on_open = on_open
    source.on_error = on_error
    stopping = reactor.addSystemEventTrigger("before", "shutdown", source.close)
    try:
        async for event in source:
            out.write(show(event, options["json"]))
            out.flush()
    except EventSourceFailed as e:
        _say(err, f"{e.reason} ({e.url})")
        return FAILED
    except BrokenPipeError:
        _close_quietly(out)
        await source.close()
    finally:
        reactor.removeSystemEventTrigger(stopping)
    return 0


def _say(err: TextIO, message: str) -> None:
    err.write(f"ssedemo tail: {message}\n")
    err.flush()


def _close_quietly(out: TextIO) -> None:
    """
    Point C{out} at /dev/null, so that the flush at exit does not complain
    about the reader that went away (C{| head -1}).
    """
    try:
        descriptor = out.fileno()
    except (OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, descriptor)
    os.close(null)
