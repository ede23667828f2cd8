"""
Tests for L{sse_twisted.transport.http1}: the C{Date} is formatted once a
second.
"""

from __future__ import annotations

from sse_twisted.transport.http1 import HTTPDate


def test_date_formatted_once_a_second() -> None:
    """
    The C{Date} value changes with the second, and only then is it made.
    """
    now = [784111777.2]
    date = HTTPDate(lambda: now[0])
    first = date()
    assert first == b"Sun, 06 Nov 1994 08:49:37 GMT"
    now[0] = 784111777.9
    assert date() is first
    now[0] = 784111778.0
    assert date() == b"Sun, 06 Nov 1994 08:49:38 GMT"
