"""
A worker started as a fork of its parent.

The parent of C{--workers N} has imported everything a worker runs before
it binds the port. A worker forked from it serves within milliseconds,
where a new interpreter would first spend a third of a second importing
the same modules, and more on a busy machine: when every client comes
back after a restart, connections would wait in the listen queue all that
time.

A fork inherits its parent's state as well, which the child sheds before
it runs a server of its own:

  - Descriptors: the child keeps only its own (the parent's pipes and the
    listening socket), as a spawned process does. The numbers that the
    parent's objects used are pointed at C{/dev/null}, so that those
    objects, which the child never uses, can neither reach the parent's
    files nor close a descriptor the child has since opened under the same
    number.
  - The reactor: the child installs a new one of the same kind as the
    global reactor; the parent's is left untouched.
  - The log: the parent's observers are removed; the worker's main adds
    its own.
  - Signals: C{SIGPIPE} and C{SIGXFSZ} are ignored again, as a new
    interpreter ignores them.
  - Collection: the objects the child inherits are frozen (C{gc.freeze}),
    so that its collections skip them and their pages stay shared with
    the parent.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any

import twisted.internet
from twisted.internet import process
from twisted.internet.main import installReactor
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import globalLogPublisher

WorkerMain = Callable[[Any], None]
"""
Runs a worker's server on the reactor it is given until that reactor
stops.
"""

_IGNORED_BY_PYTHON = ("SIGPIPE", "SIGXFSZ")
"""The signals a new interpreter ignores, as C{os.fork}'s child must too."""


class ForkedWorker(process.Process):
    """
    A worker started as a fork of this process: the child runs a
    L{WorkerMain} instead of executing a program.
    """

    def __init__(
        self,
        reactor: Any,
        main: WorkerMain,
        protocol: ProcessProtocol,
        environment: Mapping[str, str],
        child_fds: Mapping[int, int | str],
    ) -> None:
        """
        Fork the worker.

        @param reactor: This process's reactor, which watches the worker's
            pipes and its end.
        @param main: What the worker runs, on a reactor of its own.
        @param protocol: Told of the worker's output and end, as with
            C{spawnProcess}.
        @param environment: The worker's environment variables.
        @param child_fds: The worker's descriptors, as C{spawnProcess}'s
            C{childFDs} describes them.
        """
        self._main = main
        # Output still buffered would be written again by the child.
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()
        super().__init__(
            reactor,
            sys.executable,
            [sys.executable],
            dict(environment),
            None,
            protocol,
            childFDs=dict(child_fds),
        )

    def _trySpawnInsteadOfFork(self, *args: object) -> bool:
        return False  # posix_spawn cannot run Python code in the child

    def _setupChild(self, fdmap: dict[int, int]) -> None:
        inherited = set(process._listOpenFDs())
        super()._setupChild(fdmap)
        blank = os.open(os.devnull, os.O_RDWR)
        for fd in inherited - set(fdmap) - {blank}:
            os.dup2(blank, fd, inheritable=False)
        if blank not in inherited:
            os.close(blank)
        for name in _IGNORED_BY_PYTHON:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)

    def _execChild(
        self,
        path: object,
        uid: object,
        gid: object,
        executable: object,
        args: object,
        environment: dict[str, str],
    ) -> None:
        # Only the forked child gets here; Process._fork reports what it
        # raises and exits with status 1.
        os.environ.clear()
        os.environ.update(environment)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        gc.enable()  # Process._fork turned it off around the fork
        gc.freeze()
        process.reapProcessHandlers.clear()  # the parent's other workers
        for observer in list(globalLogPublisher._observers):
            globalLogPublisher.removeObserver(observer)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", 1, encoding="utf-8", closefd=False)  # noqa: SIM115
        self._main(_new_global_reactor())
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _new_global_reactor() -> Any:
    """
    Install, as the global reactor, a new one of the global reactor's kind.
    """
    old: Any = sys.modules.pop("twisted.internet.reactor")
    del twisted.internet.reactor
    new = type(old)()
    installReactor(new)
    return new
