"""
Runs C{twistd} with the given arguments, as the C{twistd} command does, and
on C{SIGUSR2} appends a census of the server's Python objects to the file
named by C{$SSEDEMO_CENSUS}, as one JSON line: the objects the garbage
collector tracks (those frozen at start-up apart), the live instances of the
classes that make up one stream, and the full collections run so far.

The churn benchmark (C{bench/churn.py}) uses it to count what closed streams
leave behind. Nothing here triggers a collection.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from collections import Counter
from types import FrameType

# The objects of one stream over HTTP/1.1: what a closed stream must not leave.
STREAM_CLASSES = ("EventStream", "BodyLimitedRequest", "HTTPChannel", "EagerServer")


def census() -> dict[str, object]:
    """
    @return: The counts of objects, by kind, that the collector tracks.
    """
    counts = Counter(type(o).__name__ for o in gc.get_objects())
    return {
        "objects": counts.total(),
        "frozen": gc.get_freeze_count(),
        "instances": {name: counts[name] for name in STREAM_CLASSES},
        "full_collections": gc.get_stats()[2]["collections"],
    }


def write_census(signum: int, frame: FrameType | None) -> None:
    with open(os.environ["SSEDEMO_CENSUS"], "a") as out:
        out.write(json.dumps(census()) + "\n")


def main() -> None:
    signal.signal(signal.SIGUSR2, write_census)
    from twisted.scripts.twistd import run

    sys.argv[0] = "twistd"
    run()


if __name__ == "__main__":
    main()
