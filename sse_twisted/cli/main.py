"""
The C{ssedemo} console script: parses the command line, then runs the verb
(under L{twisted.internet.task.react} when it needs the network).

Exit status: 0 when the verb did its job (or C{tail} was stopped with
Ctrl-C or told to stop with a C{204}), 1 when it failed (the reason is on
standard error), 2 for a command line that cannot be run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet.task import react
from twisted.python import usage

from sse_twisted.cli import publish, tail, token
from sse_twisted.cli._common import VerbOptions

USAGE_ERROR = 2
"""The exit status of a command line that cannot be run."""


class Options(usage.Options):
    """
    The command line of C{ssedemo}: one of its verbs and the verb's options.
    """

    longdesc = (
        "The other end of an ssedemo server (which runs as twistd ssedemo):"
        " follow a stream, publish an event, mint a token. Run"
        " 'ssedemo COMMAND --help' for a command's options."
    )
    subCommands = [
        ["tail", None, tail.Options, "Print the events of a stream as they come."],
        ["publish", None, publish.Options, "Publish one event; print the receipt."],
        ["token", None, token.Options, "Print a JWT for a server's --jwt-key."],
    ]

    opt_version = VerbOptions.opt_version

    def getSynopsis(self) -> str:
        if self.subCommand is None:
            return "Usage: ssedemo COMMAND [options]"
        return "Usage: ssedemo"

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("give a command: tail, publish or token")


def main(argv: Sequence[str] | None = None) -> None:
    """
    Run C{ssedemo} with C{argv} (by default the process's arguments) and
    exit with its status.
    """
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else list(argv))
    except usage.UsageError as e:
        command = f"ssedemo {options.subCommand}" if options.subCommand else "ssedemo"
        sys.stderr.write(f"{command}: {e}\nRun '{command} --help' for usage.\n")
        sys.exit(USAGE_ERROR)
    verb: Any = options.subOptions
    if options.subCommand == "token":
        sys.exit(token.run(verb, sys.stdout, sys.stderr))
    run = tail.run if options.subCommand == "tail" else publish.run
    react(_exiting, (run, verb))


async def _exiting(reactor: Any, run: Any, verb: Any) -> None:
    code = await run(reactor, verb, sys.stdout, sys.stderr)
    if code:
        raise SystemExit(code)
