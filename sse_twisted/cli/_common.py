"""
What C{tail} and C{publish} share: the token options.
"""

from __future__ import annotations

import getopt
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from twisted.python import usage


class VerbOptions(usage.Options):
    """
    The options of one verb: C{--version} tells ssedemo's version.
    """

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse C{options} as GNU tools do: options may come after the
        arguments (C{ssedemo tail URL --json}); C{--} ends the options.
        """
        if options is None:
            options = sys.argv[1:]
        try:
            found, arguments = getopt.gnu_getopt(
                list(options), self.shortOpt, self.longOpt
            )
        except getopt.error as e:
            raise usage.UsageError(str(e)) from None
        takes_value = {f"--{long[:-1]}" for long in self.longOpt if long[-1] == "="}
        flat = [
            f"{name}={value}" if name in takes_value else name for name, value in found
        ]
        super().parseOptions([*flat, "--", *arguments])

    def opt_version(self) -> None:
        """
        Display ssedemo's version and exit.
        """
        print(f"ssedemo {package_version()}")
        raise SystemExit(0)


def package_version() -> str:
    """
    @return: The installed ssedemo's version, or C{"unknown"}.
    """
    try:
        return metadata.version("ssedemo")
    except metadata.PackageNotFoundError:
        return "unknown"


TOKEN_PARAMETERS: list[list[Any]] = [
    ["token", None, None, "A bearer token to send (a JWT or the publish token)."],
    [
        "token-file",
        None,
        None,
        "A file holding the bearer token (kept out of the process list).",
    ],
]


def read_token(options: usage.Options) -> str | None:
    """
    @return: The token C{--token} or C{--token-file} gives, if any.
    @raise usage.UsageError: If both are given, or the file cannot be read.
    """
    if options["token"] is not None and options["token-file"] is not None:
        raise usage.UsageError("give --token or --token-file, not both")
    if options["token-file"] is None:
        token: str | None = options["token"]
        return token
    try:
        return Path(options["token-file"]).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise usage.UsageError(f"--token-file: {e}") from None
