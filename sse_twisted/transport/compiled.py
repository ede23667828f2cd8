"""
Whether the compiled parts run: the fan-out's send loop
(C{sse_twisted._fanout}) and the request-head parser
(C{sse_twisted.transport._head}). Each is optional: where it was not built,
or where the environment variable C{SSEDEMO_PURE_PYTHON} is set (to
anything but C{0}), the same work is done in Python, with the same result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

PURE_PYTHON = "SSEDEMO_PURE_PYTHON"
"""The environment variable that turns the compiled parts off."""


def pure_python(environ: Mapping[str, str] = os.environ) -> bool:
    """
    @param environ: The environment.
    @return: Whether C{environ} turns the compiled parts off.
    """
    return environ.get(PURE_PYTHON, "0") not in ("", "0")
