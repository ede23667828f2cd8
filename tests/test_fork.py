"""
Tests for L{sse_twisted.workers.fork}: a worker forked from a running
parent sheds the parent's state (C{fork_probe.py} does the forking, in a
process of its own; C{test_workers_process.py} runs the real server).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TIMEOUT = 30


def test_a_forked_worker_runs_on_its_own(tmp_path: Path) -> None:
    """
    The worker runs its main on a new global reactor, with the environment
    and standard input it was given; it keeps only its own descriptors
    (the parent's other files read as C{/dev/null}), ignores C{SIGPIPE}
    as any Python process does, and logs nothing to the parent's log.
    The parent sees its output and its exit status.
    """
    parent_log = tmp_path / "parent.log"
    secret = tmp_path / "secret"
    secret.write_bytes(b"the parent's own file")
    probe = Path(__file__).with_name("fork_probe.py")
    done = subprocess.run(
        [sys.executable, str(probe), str(parent_log), str(secret)],
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["exit_code"] == 0, done.stderr
    assert report["worker"] == {
        "own_reactor": True,
        "secret_fd": "/dev/null",
        "fds": report["worker"]["fds"],
        "sigpipe_ignored": True,
        "environment": "yes",
        "stdin": "from the parent",
    }
    # Its standard descriptors, the /dev/null left where the parent's
    # files were, and the new reactor's own.
    assert report["worker"]["fds"][:3] == [0, 1, 2]
    assert "from the parent" in report["parent_log"]
    assert "from the worker" not in report["parent_log"]
