"""
Tests for L{sse_twisted.event}: the wire format of events.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_twisted.event import (
    InvalidEventField,
    encode_comment,
    encode_event,
    encode_retry,
)
from sse_twisted.testing import EventStreamParser, parse


def test_single_line() -> None:
    """
    A one-line payload is one C{data:} field followed by a blank line.
    """
    assert encode_event('{"message": "Gotcha"}') == b'data: {"message": "Gotcha"}\n\n'


@pytest.mark.parametrize("newline", ["\n", "\r", "\r\n"])
def test_every_line_break_splits_data(newline: str) -> None:
    """
    LF, CR and CRLF each start a new C{data:} field, so no raw line break
    reaches the wire inside a field.
    """
    wire = encode_event(f"one{newline}two{newline}{newline}three")
    assert wire == b"data: one\ndata: two\ndata: \ndata: three\n\n"


def test_all_fields_in_order() -> None:
    """
    C{event}, C{id} and C{retry} come before the data.
    """
    wire = encode_event("x", event="update", id="a-7", retry=1500)
    assert wire == b"event: update\nid: a-7\nretry: 1500\ndata: x\n\n"


def test_unicode_is_utf8() -> None:
    """
    Text is sent as UTF-8.
    """
    assert encode_event("héllo ✓ 🚀") == "data: héllo ✓ 🚀\n\n".encode()


def test_empty_id_clears_the_client_id() -> None:
    """
    An empty id is written as an empty C{id} field, which resets the
    client's last event id.
    """
    parsed = parse(b"id: x\ndata: a\n\n" + encode_event("b", id=""))
    assert [e.last_event_id for e in parsed.events] == ["x", ""]


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "a\x00b", "\n"])
@pytest.mark.parametrize("field", ["event", "id"])
def test_line_breaks_and_nul_are_refused(field: str, bad: str) -> None:
    """
    An C{event} or C{id} holding a line break or NUL would corrupt the
    stream, so it is refused.
    """
    with pytest.raises(InvalidEventField, match=field):
        encode_event("x", **{field: bad})  # type: ignore[arg-type]


def test_lone_surrogate_is_refused() -> None:
    """
    Text that cannot be UTF-8 (a lone surrogate, as JSON can carry) is
    refused with the same error, not a UnicodeEncodeError.
    """
    with pytest.raises(InvalidEventField):
        encode_event("\ud800")


def test_negative_retry_is_refused() -> None:
    """
    A negative reconnection delay is refused.
    """
    with pytest.raises(InvalidEventField):
        encode_event("x", retry=-1)
    with pytest.raises(InvalidEventField):
        encode_retry(-1)


def test_retry_alone() -> None:
    """
    A lone C{retry:} field sets the delay without dispatching an event.
    """
    parsed = parse(encode_retry(2500))
    assert (parsed.retry, parsed.events) == (2500, [])


def test_comment_is_ignored_by_clients() -> None:
    """
    A comment reaches the parser as a comment, not as an event, even when
    its text has line breaks.
    """
    parsed = parse(encode_comment("keep\nalive"))
    assert (parsed.comments, parsed.events) == (["keep", "alive"], [])


_text = st.text(st.characters(exclude_categories=["Cs"]))


@given(data=_text, event=st.none() | _text, event_id=st.none() | _text)
def test_round_trip(data: str, event: str | None, event_id: str | None) -> None:
    """
    Any data survives encoding and an independent parser unchanged
    (line breaks come back as LF, as the spec says); C{event} and C{id}
    either survive or are refused.
    """
    try:
        wire = encode_event(data, event=event, id=event_id)
    except InvalidEventField:
        fields = (event or "") + (event_id or "")
        assert any(c in fields for c in "\r\n\x00")
        return
    parser = EventStreamParser()
    # Feed byte by byte: a client sees arbitrary splits.
    for index in range(len(wire)):
        parser.feed(wire[index : index + 1])
    [received] = parser.events
    expected = data.replace("\r\n", "\n").replace("\r", "\n")
    assert received.data == expected
    assert received.type == (event or "message")
    assert received.last_event_id == (event_id or "")


def test_parser_replaces_bytes_that_are_not_utf8() -> None:
    """
    The test parser, like a browser's, reads UTF-8; it tells apart a cut
    multi-byte character (kept for the next bytes) from bytes that are no
    UTF-8 at all, which become U+FFFD as the WHATWG decoder makes them.
    """
    parser = EventStreamParser()
    parser.feed("data: é".encode()[:-1])
    assert parser.feed(b"\xa9\n\n")[0].data == "é"
    assert parser.feed(b"data: a\xffb\n\n")[0].data == "a\ufffdb"
