"""
Which fan-out runs: the compiled send loop, or the same fan-out in Python.

The compiled one (L{sse_twisted.stream.StreamGroup} over
C{sse_twisted._fanout}) runs wherever the extension was built, unless the
environment variable C{SSEDEMO_PURE_PYTHON} turns the compiled parts off
(L{sse_twisted.transport.compiled}); otherwise, and where it could not be
built, the hub writes every stream in turn (L{sse_twisted.hub.SinkSet}).
Both deliver the same bytes, in the same order, and count the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from sse_twisted.hub import SinkGroup, SinkSet
from sse_twisted.stream import StreamGroup
from sse_twisted.transport.compiled import PURE_PYTHON, pure_python


@dataclass(frozen=True)
class Fanout:
    """
    A fan-out, for the hub.

    @ivar name: C{"c"} or C{"python"}, as C{/health} reports it.
    @ivar why: Why this one runs, for the log.
    @ivar groups: Makes the group of streams of a topic.
    """

    name: str
    why: str
    groups: Callable[[], SinkGroup]


def choose_fanout(environ: Mapping[str, str] = os.environ) -> Fanout:
    """
    @param environ: The environment.
    @return: The compiled fan-out if it is built and not turned off, else
        the Python one.
    """
    if pure_python(environ):
        return Fanout("python", f"{PURE_PYTHON} is set", SinkSet)
    try:
        from sse_twisted._fanout import DirectSet, Lease
    except ImportError as e:
        return Fanout("python", f"the compiled send loop is not built ({e})", SinkSet)
    return Fanout("c", "the compiled send loop", partial(StreamGroup, Lease, DirectSet))
