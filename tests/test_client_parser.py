"""
The one WHATWG parser (L{sse_twisted.client.parser}), shared by the client
and the server's tests: bytes split anywhere give the same events.
"""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from sse_twisted import testing
from sse_twisted.client.parser import EventStreamParser, ParsedEvent, parse

AWKWARD = (
    "\ufeff: a comment\r\n"
    "retry: 12x\r"
    "retry: 2500\n"
    "unknown: field\r\n"
    "id: with\0nul\n"
    "id: é-1\r"
    "data: first line ✓\r\n"
    "data\n"
    "data:  two spaces\r"
    "\r\n"
    "event: named\n"
    "data: 𝄞\n"
    "\n"
    "data: no end"
).encode()

EXPECTED = [
    ParsedEvent("message", "first line ✓\n\n two spaces", "é-1"),
    ParsedEvent("named", "𝄞", "é-1"),
]


_LINE_CHARACTERS = st.characters(exclude_characters="\r\n", exclude_categories=["Cs"])


def feed_in(pieces: list[bytes]) -> EventStreamParser:
    parser = EventStreamParser()
    returned: list[ParsedEvent] = []
    for piece in pieces:
        returned += parser.feed(piece)
    assert returned == parser.events
    return parser


def test_testing_exports_the_same_parser() -> None:
    assert testing.EventStreamParser is EventStreamParser


def test_an_awkward_stream_whole() -> None:
    """
    A BOM, CR, LF and CRLF line ends, comments, unknown fields, a junk
    C{retry:}, an id with NUL (ignored), a field without colon, and an
    unfinished event at the end (not dispatched).
    """
    parser = parse(AWKWARD)
    assert parser.events == EXPECTED
    assert parser.retry == 2500
    assert parser.comments == [" a comment"]
    assert parser.last_event_id == "é-1"


def test_one_byte_at_a_time() -> None:
    parser = feed_in([AWKWARD[i : i + 1] for i in range(len(AWKWARD))])
    assert parser.events == EXPECTED and parser.retry == 2500


@given(st.sets(st.integers(min_value=1, max_value=len(AWKWARD) - 1), max_size=40))
def test_split_anywhere(cuts: set[int]) -> None:
    """
    Cut anywhere (inside a UTF-8 sequence, between CR and LF, inside the
    BOM), the stream gives the same events.
    """
    points = [0, *sorted(cuts), len(AWKWARD)]
    pieces = [AWKWARD[a:b] for a, b in pairwise(points)]
    parser = feed_in(pieces)
    assert parser.events == EXPECTED and parser.retry == 2500


@given(
    st.lists(st.text(_LINE_CHARACTERS), max_size=5),
    st.sampled_from(["\n", "\r", "\r\n"]),
    st.data(),
)
def test_any_data_any_line_end_any_split(
    lines: list[str], end: str, data: st.DataObject
) -> None:
    stream = "".join(f"data: {line}{end}" for line in lines) + end
    encoded = stream.encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded)))
    parser = feed_in([encoded[:cut], encoded[cut:]])
    expected = [ParsedEvent("message", "\n".join(lines), "")] if lines else []
    assert parser.events == expected


def test_a_leading_bom_is_dropped_once() -> None:
    assert parse(b"\xef\xbb\xbfdata: a\n\n").events[0].data == "a"
    # A second BOM is part of the first field's name: an unknown field.
    assert parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n").events == []
    assert parse(b"data: \xef\xbb\xbfa\n\n").events[0].data == "\ufeffa"


def test_a_bom_split_across_feeds_is_dropped() -> None:
    parser = feed_in([b"\xef", b"\xbb", b"\xbfdata: a\n\n"])
    assert [e.data for e in parser.events] == ["a"]


def test_bytes_that_are_not_utf8_become_replacement_characters() -> None:
    assert parse(b"data: a\xffb\xc3\n\n").events[0].data == "a\ufffdb\ufffd"


def test_a_line_ending_in_cr_is_taken_at_once() -> None:
    """
    A CR ends its line at once, so a CR-only stream is not held back until
    the next byte; an LF right after it, even in the next chunk, belongs to
    it (CRLF).
    """
    parser = EventStreamParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # CRLF is one line end, not two
    assert [e.data for e in parser.feed(b"\r")] == ["a"]
    assert [e.data for e in parser.feed(b"data: b\r\r")] == ["b"]


def test_the_last_event_id_changes_when_an_event_is_dispatched() -> None:
    parser = EventStreamParser(last_event_id="old")
    parser.feed(b"id: new\ndata: x")
    assert parser.last_event_id == "old"
    parser.feed(b"\n\n")
    assert parser.last_event_id == "new"
    parser.feed(b"id\n\n")  # an empty id resets it
    assert parser.last_event_id == ""


def test_a_client_parser_keeps_no_record() -> None:
    parser = EventStreamParser(record=False)
    assert [e.data for e in parser.feed(b": hi\ndata: a\n\n")] == ["a"]
    assert parser.events == [] and parser.comments == []
