"""
Retained values in Redis, next to the stream: one hash, C{<stream key>:retained},
whose field C{<topic>/<key>} holds the newest keyed event of that topic and
key as C{<entry id>\\n<event type or nothing>\\n<data>}.

A keyed publish appends the entry and writes the hash in one Lua script
(L{PUBLISH_SCRIPT}), which also refuses a new key beyond C{--max-keys}:
so the hash never names an entry the stream does not have, and every
ssedemo on the stream counts the same keys. A snapshot reads the hash and
the stream's newest entry id in one script too (L{SNAPSHOT_SCRIPT}), so the
values and the position they are current at agree. Scripts run with
C{EVALSHA}, and again with C{EVAL} when Redis answers C{NOSCRIPT} (after a
restart or on another server).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from hashlib import sha1
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from sse_twisted.event import encode_event
from sse_twisted.log import Record, Snapshot
from sse_twisted.redis.client import RedisConnection, RedisError
from sse_twisted.retained import TooManyKeys

log = Logger()

PUBLISH_SCRIPT = """\
-- KEYS: the stream, its hash of retained values
-- ARGV: history (MAXLEN ~), max keys, topic, key, data, event type ('' for none)
local field = ARGV[3] .. '/' .. ARGV[4]
local deleting = ARGV[5] == 'null'
if not deleting and redis.call('HEXISTS', KEYS[2], field) == 0
    and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[2]) then
  return redis.error_reply('MAXKEYS at most ' .. ARGV[2] .. ' keys are retained')
end
local fields = {'data', ARGV[5], 'topic', ARGV[3], 'key', ARGV[4]}
if ARGV[6] ~= '' then
  fields[#fields + 1] = 'event'
  fields[#fields + 1] = ARGV[6]
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
if deleting then
  redis.call('HDEL', KEYS[2], field)
else
  redis.call('HSET', KEYS[2], field, id .. '\\n' .. ARGV[6] .. '\\n' .. ARGV[5])
end
return id
"""
"""
Appends a keyed event and keeps (or, with data C{null}, deletes) its
retained value, in one atomic step; returns the entry id.
"""

SNAPSHOT_SCRIPT = """\
-- KEYS: the stream, its hash of retained values
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local position = ''
if newest[1] then
  position = newest[1][1]
end
return {position, redis.call('HGETALL', KEYS[2])}
"""
"""Reads the newest entry id and every retained value, in one atomic step."""


def retained_key(stream: str) -> str:
    """
    @param stream: The stream's key.
    @return: The key of the hash of its retained values.
    """
    return f"{stream}:retained"


class Script:
    """
    A Lua script, run by its digest and sent again when Redis lacks it.
    """

    def __init__(self, source: str) -> None:
        """
        @param source: The script.
        """
        self.source = source
        self.sha = sha1(source.encode("utf-8")).hexdigest()

    def run(
        self,
        connection: RedisConnection,
        keys: Sequence[str],
        args: Sequence[str | int],
    ) -> Deferred[Any]:
        """
        Run the script with C{EVALSHA}; on C{NOSCRIPT}, with C{EVAL}, which
        also caches it.

        @return: Fires with the script's reply.
        """
        tail = (len(keys), *keys, *args)

        def loaded(failure: Failure) -> Deferred[Any] | Failure:
            if failure.check(RedisError) and str(failure.value).startswith("NOSCRIPT"):
                return connection.execute("EVAL", self.source, *tail)
            return failure

        return connection.execute("EVALSHA", self.sha, *tail).addErrback(loaded)


_PUBLISH = Script(PUBLISH_SCRIPT)
_SNAPSHOT = Script(SNAPSHOT_SCRIPT)


def publish_keyed(
    connection: RedisConnection,
    stream: str,
    history: int,
    max_keys: int,
    data: str,
    event: str | None,
    topic: str,
    key: str,
) -> Deferred[str]:
    """
    Append a keyed event to C{stream} and keep its retained value.

    @return: Fires with the entry id; fails with
        L{sse_twisted.retained.TooManyKeys} if C{key} is new and
        C{max_keys} values are retained already (nothing is appended then).
    """

    def refused(failure: Failure) -> Failure:
        if failure.check(RedisError) and "MAXKEYS" in str(failure.value):
            raise TooManyKeys(max_keys)
        return failure

    stored = _PUBLISH.run(
        connection,
        (stream, retained_key(stream)),
        (history, max_keys, topic, key, data, event or ""),
    )
    return stored.addCallbacks(lambda id: id.decode("ascii"), refused)


def read_snapshot(
    connection: RedisConnection, stream: str, topics: Collection[str]
) -> Deferred[Snapshot]:
    """
    Read the retained values of C{topics} and the position of C{stream}
    they are current at.
    """

    def parsed(reply: list[Any]) -> Snapshot:
        raw_position, pairs = reply
        values = [
            record
            for field, value in zip(pairs[::2], pairs[1::2], strict=True)
            if (record := parse_value(field, value, topics)) is not None
        ]
        values.sort(key=lambda record: _entry_order(record.id))
        return Snapshot(values, raw_position.decode("ascii"))

    return _SNAPSHOT.run(connection, (stream, retained_key(stream)), ()).addCallback(
        parsed
    )


def parse_value(field: bytes, value: bytes, topics: Collection[str]) -> Record | None:
    """
    @param field: A field of the hash, C{<topic>/<key>}.
    @param value: Its value.
    @param topics: The topics wanted.
    @return: The retained event, if it is of one of C{topics} and readable.
    """
    try:
        topic, _, key = field.decode("utf-8").partition("/")
        if topic not in topics:
            return None
        entry_id, event, data = value.decode("utf-8").split("\n", 2)
        milliseconds, dash, sequence = entry_id.partition("-")
        if not (dash and milliseconds.isdigit() and sequence.isdigit()):
            raise ValueError(f"bad entry id {entry_id!r}")
        wire = encode_event(data, event=event or None, id=entry_id)
    except ValueError as e:
        log.warn("skipped a retained value {field!r}: {error}", field=field, error=e)
        return None
    return Record(entry_id, topic, wire, key)


def _entry_order(entry_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in entry_id.split("-"))
