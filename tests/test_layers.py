"""
The core's lower layers run without HTTP: what import-linter cannot check
for the subpackages of another project (C{twisted.web}), checked here by
importing them alone in a new interpreter.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CORE = ("sse_twisted.event", "sse_twisted.log", "sse_twisted.hub")


@pytest.mark.parametrize("module", CORE)
def test_core_imports_no_http(module: str) -> None:
    """
    Importing the events, the log or the hub loads neither C{twisted.web}
    nor Klein: they know streams only as sinks.
    """
    check = (
        f"import sys, {module}; "
        "print(sorted(m for m in sys.modules"
        " if m.split('.')[:2] == ['twisted', 'web'] or m.split('.')[0] == 'klein'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
