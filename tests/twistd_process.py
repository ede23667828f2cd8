"""
Run C{twistd ssedemo} as a real subprocess, the way a user does.

The process runs from a directory outside the repository, so that it finds
the plugin through the installed package rather than the source tree.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

TWISTD = str(Path(sys.executable).with_name("twistd"))
_LISTENING = re.compile(rb"Site starting on (\d+)")
DEADLINE = 20.0


class TwistdServer:
    """
    One C{twistd -n ssedemo} process listening on 127.0.0.1.

    With C{port=0} the kernel picks a free port, read back from the log.
    """

    def __init__(self, port: int = 0, args: Sequence[str] = ()) -> None:
        self.port = port
        self.args = list(args)
        self.workdir = Path(tempfile.mkdtemp(prefix="ssedemo-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.output = b""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TwistdServer:
        self.process = subprocess.Popen(
            [
                TWISTD,
                "-n",
                "ssedemo",
                "--port",
                f"tcp:{self.port}:interface=127.0.0.1",
                *self.args,
            ],
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.port = int(self._read_until(_LISTENING).group(1))
        return self

    def _read_until(self, pattern: re.Pattern[bytes]) -> re.Match[bytes]:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output += line
            match = pattern.search(line)
            if match:
                return match
        self.stop()
        raise AssertionError(f"twistd did not start:\n{self.output.decode()}")

    def health(self) -> dict[str, object]:
        with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
            result: dict[str, object] = json.load(response)
            return result

    def stop(self) -> int:
        """
        Send SIGTERM and wait (bounded) for the process to end.

        @return: The exit status.
        """
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            rest, _ = self.process.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rest, _ = self.process.communicate()
        self.output += rest or b""
        return self.process.returncode
