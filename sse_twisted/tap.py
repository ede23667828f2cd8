"""
The C{twistd ssedemo} command line: options and the service they describe.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from OpenSSL.crypto import Error as CryptoError
from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import VerifyError
from twisted.internet.interfaces import IReactorTime, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.filepath import FilePath

from sse_twisted.app import Settings, SSEApp, package_version
from sse_twisted.auth import config as auth_config
from sse_twisted.auth.gate import Patterns
from sse_twisted.event import encode_jittered_retry
from sse_twisted.fanout import choose_fanout
from sse_twisted.hub import RETURN_HOLD, Hub, is_topic_name
from sse_twisted.log import MemoryLog
from sse_twisted.ops import worker_metrics
from sse_twisted.ops.jsonlog import STDOUT, JsonLog
from sse_twisted.ops.metrics import Metrics
from sse_twisted.ops.metrics_dir import MetricsDirectory
from sse_twisted.ops.signals import SignalsInLoop
from sse_twisted.ops.worker_metrics import WorkerMetrics
from sse_twisted.overload import ClientLimit
from sse_twisted.redis import options as redis_options
from sse_twisted.redis.connect import shared_log
from sse_twisted.retained import DEFAULT_MAX_KEYS
from sse_twisted.service import (
    ListenWhenReady,
    PortService,
    StopInTurn,
    sse_service,
)
from sse_twisted.stream import DEFAULT_MAX_BACKLOG
from sse_twisted.transport.shared import can_share, parent_socket
from sse_twisted.workers.child import serve
from sse_twisted.workers.fork import ForkedWorker, WorkerMain
from sse_twisted.workers.supervisor import WorkerSupervisor

BUNDLED_STATIC = Path(__file__).parent / "static"
"""The client page shipped with the package."""

DEFAULT_BACKLOG = 4096
"""
The listen queue given to TCP endpoints that name none. Twisted's own
default of 50 overflows when thousands of clients connect at once.
"""

log = Logger()

DEFAULT_PORT = "8080"
"""Where to listen when no C{--port} is given."""

_MAX_RETRY = 24 * 60 * 60 * 1000
_MAX_HISTORY = 1_000_000
_MIN_REDIS_HISTORY = 100
_MAX_CLIENTS = 100_000_000
_MAX_WORKERS = 1024
_MAX_KEYS = 100_000_000


def endpoint_description(port: str) -> str:
    """
    Turn C{--port} (or C{--metrics}) into a server endpoint description.

    A bare number means TCP on that port. IPv4 TCP is served by
    L{sse_twisted.transport.eager}'s C{eagertcp:} endpoint, which takes the same
    arguments as C{tcp:} and writes faster, and sockets passed by systemd
    by its C{eagersystemd:}, with the arguments of C{systemd:}. TLS (C{ssl:})
    is served by L{sse_twisted.transport.tls}'s C{sparingssl:}, which copes with a
    full descriptor table as those do. TCP and TLS endpoints get
    L{DEFAULT_BACKLOG} unless they name a C{backlog} of their own. Other
    descriptions (C{unix:}, ...) are left as they are.

    @param port: A port number or any endpoint description.
    @return: The endpoint description.
    """
    kind, _, rest = port.partition(":")
    if port.isdigit():
        kind, rest = "eagertcp", port
    elif kind in ("tcp", "systemd"):
        kind = "eager" + kind
    elif kind == "ssl":
        kind = "sparingssl"
    description = f"{kind}:{rest}" if rest else kind
    if kind in ("eagertcp", "tcp6", "sparingssl") and "backlog=" not in rest:
        description += f":backlog={DEFAULT_BACKLOG}"
    return description


class Options(usage.Options):
    """
    Options for C{twistd ssedemo}.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve Server-Sent Events: the demo page at /, the event stream at"
        " /sse, the demo's POST /api and the POST /publish API."
    )
    optFlags = [
        [
            "protect-api",
            None,
            "Require the publish token (or a JWT that may publish to default)"
            " on POST /api too.",
        ],
        *auth_config.FLAGS,
    ]
    optParameters: list[list[Any]] = [
        [
            "heartbeat",
            None,
            3.0,
            "Seconds between demo heartbeats (Hello hello!); 0 turns them off.",
            float,
        ],
        [
            "keepalive",
            None,
            15.0,
            "Seconds of silence on a stream after which a comment is written,"
            " so that proxies do not cut it; 0 turns it off.",
            float,
        ],
        [
            "crowd-hold",
            None,
            RETURN_HOLD,
            "Seconds live events may be held, then written together, while a"
            " crowd of clients comes back at once (1,000 resumes a second, as"
            " after a restart); 0 turns it off.",
            float,
        ],
        ["static", None, None, "Directory served at / instead of the bundled page."],
        ["max-body", None, 64 * 1024, "Largest request body, in bytes.", int],
        [
            "max-backlog",
            None,
            DEFAULT_MAX_BACKLOG,
            "Bytes a stream may fall behind a slow client (beyond the"
            " connection's own buffer) before it is dropped; the client"
            " reconnects and resumes from the history.",
            int,
        ],
        [
            "history",
            None,
            1000,
            "Events kept for clients that resume with Last-Event-ID; 0 turns"
            " resuming off.",
            int,
        ],
        [
            "max-keys",
            None,
            DEFAULT_MAX_KEYS,
            "Most retained values (events published with a key), across all"
            " topics (with --redis, across every ssedemo on the stream); a"
            " new key beyond them is refused with 507.",
            int,
        ],
        ["retry", None, 3000, "Reconnection delay told to clients, in ms.", int],
        [
            "max-clients",
            None,
            0,
            "Most streams open at once on the whole server; further clients"
            " are told to come back after one to two --retry intervals. With"
            " --workers W each worker takes N // W of them (the kernel spreads"
            " connections unevenly, so part of N can stay unused); N must be"
            " at least W. 0: no limit.",
            int,
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at GET /metrics on this endpoint, given"
            " as --port is, such as tcp:9100:interface=127.0.0.1; off by"
            " default. With --workers the parent serves the whole server's:"
            " counters summed over the workers (never going back when one is"
            " replaced), ssedemo_streams summed and ssedemo_broker_up the"
            " least over the workers alive, these two read every"
            f" {worker_metrics.REFRESH:g} s; process_* and python_* figures"
            " are the parent's own.",
        ],
        [
            "publish-token",
            None,
            None,
            "Bearer token that POST /publish requires (visible in the process"
            " list: prefer --publish-token-file).",
        ],
        [
            "publish-token-file",
            None,
            None,
            "File holding the bearer token that POST /publish requires.",
        ],
        *redis_options.PARAMETERS,
        [
            "log-json",
            None,
            None,
            "Also write every log event as one JSON line to this file (- for"
            " standard output); the file is reopened on SIGUSR1.",
        ],
        [
            "workers",
            None,
            1,
            "Worker processes serving the one --port (TCP, ssl: with HTTP/2,"
            " or a systemd: socket), restarted if they die; the parent binds"
            " the port and serves --metrics (more than 1 needs --redis).",
            int,
        ],
        *auth_config.PARAMETERS,
    ]

    def __init__(self, *, worker: bool = False) -> None:
        """
        @param worker: Whether these are the options of a worker of
            C{--workers N}, which serves the socket its parent gives it:
            its C{--port} was checked by the parent, and says only how to
            serve that socket (a socket systemd passed was passed to the
            parent, not to it).
        """
        super().__init__()
        self.worker = worker
        self["cors-origin"] = []
        self["ports"] = []
        self["conflate"] = []

    def opt_port(self, port: str) -> None:
        """Where to listen (repeatable; default 8080): a port number, or a Twisted server endpoint description such as tcp:8080:interface=127.0.0.1 or ssl:8443:privateKey=key.pem:certKey=cert.pem (HTTPS, and HTTP/2 by ALPN). TCP and TLS get a listen backlog of 4096 unless given."""  # noqa: E501 (one line: --help keeps a docstring's line breaks)
        self["ports"].append(port)

    opt_p = opt_port

    def opt_version(self) -> None:
        """Print ssedemo's version, and Twisted's and Klein's, then exit."""
        print(
            f"ssedemo {package_version()}"
            f" (Twisted {metadata.version('twisted')},"
            f" Klein {metadata.version('klein')})"
        )
        sys.exit(0)

    def opt_cors_origin(self, origin: str) -> None:
        """Let this origin use /sse and /publish (repeatable; * for any)."""
        self["cors-origin"].append(origin)

    def opt_conflate(self, pattern: str) -> None:
        """Conflate keyed events of these topics (repeatable; an exact topic, prefix.* or *): a stream that is behind gets only the newest pending event of each key, and stays connected as long as one event per key fits in --max-backlog. Off by default."""  # noqa: E501
        if pattern != "*" and not is_topic_name(pattern.removesuffix(".*")):
            raise usage.UsageError(f"--conflate {pattern}: a topic name, prefix.* or *")
        self["conflate"].append(pattern)

    def opt_public_topic(self, pattern: str) -> None:
        """Let anyone subscribe to this topic pattern, no token checked (repeatable)."""
        auth_config.public_topic(self, pattern)

    def postOptions(self) -> None:
        given_ports = self["ports"] or [DEFAULT_PORT]
        check = endpoint_description if self.worker else _port_endpoint
        self["ports"] = [check(port) for port in given_ports]
        _check_range(self, "heartbeat", 0, 86400)
        _check_range(self, "keepalive", 0, 86400)
        _check_range(self, "crowd-hold", 0, 10)
        _check_range(self, "max-body", 1, 1 << 30)
        _check_range(self, "max-backlog", 1, 1 << 32)
        _check_range(self, "history", 0, _MAX_HISTORY)
        _check_range(self, "retry", 0, _MAX_RETRY)
        _check_range(self, "max-keys", 0, _MAX_KEYS)
        _check_range(self, "max-clients", 0, _MAX_CLIENTS)
        if self["metrics"] is not None:
            self["metrics"] = _endpoint("metrics", self["metrics"])
        static = Path(self["static"]) if self["static"] else BUNDLED_STATIC
        if not static.is_dir():
            raise usage.UsageError(f"--static: {static} is not a directory")
        self["static"] = static
        self["publish-token"] = self._token()
        redis_options.check(self)
        self._check_redis_history()
        self["log-json"] = _log_json_path(self["log-json"])
        auth_config.check(self)
        self._check_workers(given_ports)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse the command line, and keep it in C{argv}: the worker processes
        of C{--workers} are given the same one.

        @param options: The arguments; C{sys.argv[1:]} by default.
        """
        self.argv = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def _check_workers(self, given_ports: list[str]) -> None:
        _check_range(self, "workers", 1, _MAX_WORKERS)
        if self["workers"] == 1:
            return
        if self["redis"] is None:
            raise usage.UsageError(
                "--workers needs --redis: each worker would keep its own"
                " in-memory event log, so clients would miss the events"
                " published through the other workers"
            )
        [port, *more] = given_ports
        if more:
            raise usage.UsageError("--workers shares one --port, not several")
        if not can_share(endpoint_description(port)):
            raise usage.UsageError(
                "--workers shares one TCP port (a number, tcp:..., ssl:... or"
                " systemd:...) between the workers; it cannot share"
                f" {port.partition(':')[0]}:"
            )
        if 0 < self["max-clients"] < self["workers"]:
            raise usage.UsageError(
                f"--max-clients {self['max-clients']} is smaller than --workers"
                f" {self['workers']}: each worker takes --max-clients // --workers"
                " streams, which would leave a worker none"
            )

    def _check_redis_history(self) -> None:
        if self["redis"] is not None and self["history"] < _MIN_REDIS_HISTORY:
            raise usage.UsageError(
                f"--history must be at least {_MIN_REDIS_HISTORY} with --redis"
            )

    def _token(self) -> bytes | None:
        if self["publish-token"] and self["publish-token-file"]:
            raise usage.UsageError(
                "give --publish-token or --publish-token-file, not both"
            )
        token: str | None = self["publish-token"]
        if self["publish-token-file"]:
            try:
                token = Path(self["publish-token-file"]).read_text().strip()
            except OSError as e:
                raise usage.UsageError(f"--publish-token-file: {e}") from e
        if token is None:
            if self["protect-api"] and self["jwt-key"] is None:
                raise usage.UsageError(
                    "--protect-api needs a publish token or --jwt-key"
                )
            return None
        if not token or any(c.isspace() for c in token):
            raise usage.UsageError("the publish token must be one word")
        return token.encode("utf-8")


def _endpoint(option: str, value: str) -> str:
    description = endpoint_description(value)
    try:
        serverFromString(None, description)
    except (ValueError, KeyError, TypeError, OSError, VerifyError) as e:
        raise usage.UsageError(f"--{option} {value}: {e}") from e
    except CryptoError as e:
        raise usage.UsageError(
            f"--{option} {value}: cannot load the TLS key and certificate (PEM): {e}"
        ) from e
    return description


def _port_endpoint(port: str) -> str:
    return _endpoint("port", port)


def _log_json_path(path: str | None) -> str | None:
    if path is None or path == STDOUT:
        return path
    absolute = Path(path).absolute()
    try:
        absolute.open("a").close()
    except OSError as e:
        raise usage.UsageError(f"--log-json: {e}") from e
    return str(absolute)


def _check_range(options: Options, name: str, low: float, high: float) -> None:
    if not low <= options[name] <= high:
        raise usage.UsageError(f"--{name} must be between {low} and {high}")


def worker_share(max_clients: int, workers: int) -> int:
    """
    The streams one server process may keep open under C{--max-clients}.

    @param max_clients: C{--max-clients}, for the whole server.
    @param workers: C{--workers}: how many processes share it (1 when the
        process is the whole server).
    @return: C{max_clients // workers}: rounded down, so that the workers
        together never exceed C{max_clients}.
    """
    return max_clients // workers


def _metrics(options: Options, clock: IReactorTime) -> Metrics | None:
    """
    The metrics of one server process: a worker of C{--workers N} counts
    for its parent, which serves the sum (see L{_supervisor}).
    """
    if not options["metrics"]:
        return None
    if options["workers"] > 1:
        return WorkerMetrics(clock)
    return Metrics()


def _supervisor(options: Options, reactor: Any) -> IService:
    """
    The parent of C{--workers N}: it writes C{--log-json}, the workers'
    events included, which they send it.
    """
    # The workers log to the parent until they have ended: its log stops
    # after the supervisor has.
    parent = StopInTurn()
    SignalsInLoop(reactor).setServiceParent(parent)
    if options["log-json"]:
        JsonLog(options["log-json"], reactor).setServiceParent(parent)
    # Read before the workers are forked, which inherit it: each would
    # otherwise search the installed packages, a fifth of its start.
    package_version()
    # Options allows --workers with one port that can be shared.
    port = parent_socket(reactor, options["ports"][0])
    metrics = None
    if options["metrics"]:
        metrics = MetricsDirectory()
        PortService(
            serverFromString(reactor, options["metrics"]), metrics.site()
        ).setServiceParent(parent)
    start = partial(ForkedWorker, reactor, _worker_main(options.argv))
    WorkerSupervisor(
        reactor, port, start, options["workers"], metrics=metrics
    ).setServiceParent(parent)
    return parent


def _worker_main(argv: Sequence[str]) -> WorkerMain:
    """
    What each worker of C{--workers N} runs: the server that the parent's
    own arguments describe, on the socket the parent bound. The worker
    parses them anew, so that a worker started again reads the files they
    name (keys, tokens) again.
    """

    def main(reactor: Any) -> None:
        options = Options(worker=True)
        options.parseOptions(argv)
        options["log-json"] = None  # the parent writes it, the workers' events too
        serve(
            reactor,
            options["ports"][0],
            lambda endpoint: makeService(options, reactor, endpoint),
        )

    return main


def makeService(
    options: Options,
    reactor: Any = None,
    endpoint: IStreamServerEndpoint | None = None,
) -> IService:
    """
    Build the server that C{options} describe.

    @param options: Parsed L{Options}.
    @param reactor: The reactor to listen with and to time by; the global
        one by default.
    @param endpoint: Where to serve instead of the C{--port}s: a worker
        process serves the socket its parent bound.
    @return: The service for C{twistd} to run: the server, or with
        C{--workers N} (and no C{endpoint}) the supervisor of N worker
        processes, each running the server.
    """
    if reactor is None:
        from twisted.internet import reactor
    if endpoint is not None:
        endpoints = [endpoint]
    elif options["workers"] > 1:
        return _supervisor(options, reactor)
    else:
        endpoints = [serverFromString(reactor, port) for port in options["ports"]]
    clock: IReactorTime = reactor
    fanout = choose_fanout()
    log.info("fan-out: {fanout} ({why})", fanout=fanout.name, why=fanout.why)
    shared = (
        None
        if options["redis"] is None
        else shared_log(
            reactor,
            options["redis"],
            options["redis-key"],
            options["history"],
            tls=options["redis-tls"],
            sentinel_login=options["redis-sentinel-login"],
            replicas=options["redis-replicas"],
            replica_timeout=options["redis-replica-timeout"],
            max_keys=options["max-keys"],
        )
    )
    metrics = _metrics(options, clock)
    hub = Hub(
        clock,
        MemoryLog(options["history"], max_keys=options["max-keys"], clock=clock)
        if shared is None
        else shared,
        observer=metrics,
        groups=fanout.groups,
        unavailable=lambda: encode_jittered_retry(options["retry"]),
        conflated=Patterns(options["conflate"]).covers if options["conflate"] else None,
        crowd_hold=options["crowd-hold"],
    )
    limit = None
    if options["max-clients"]:
        limit = ClientLimit(
            hub.__len__,
            worker_share(options["max-clients"], options["workers"]),
            clock=clock,
            retry=options["retry"],
            observer=metrics,
        )
    access = auth_config.access(options, reactor)
    settings = Settings(
        static=FilePath(str(options["static"])),
        max_body=options["max-body"],
        max_backlog=options["max-backlog"],
        retry=options["retry"],
        publish_token=options["publish-token"],
        protect_api=options["protect-api"],
        cors_origins=tuple(options["cors-origin"]),
        gate=access.gate,
        verifier=access.verifier,
        publish_open=options["publish-open"],
        fanout=fanout.name,
    )
    if shared is not None:
        endpoints = [ListenWhenReady(e, shared.read_or_given_up) for e in endpoints]
    service = sse_service(
        hub,
        SSEApp(hub, settings, limit=limit, observer=metrics, broker=shared).site(),
        *endpoints,
        clock=clock,
        heartbeat=options["heartbeat"],
        keepalive=options["keepalive"],
        retry=options["retry"],
        json_log=JsonLog(options["log-json"], reactor) if options["log-json"] else None,
    )
    if limit is not None:
        limit.setServiceParent(service)
    if isinstance(metrics, WorkerMetrics):
        metrics.count_streams(hub.__len__)
        metrics.service.setServiceParent(service)
    elif metrics is not None:
        metrics.count_streams(hub.__len__)
        PortService(
            serverFromString(reactor, options["metrics"]), metrics.site()
        ).setServiceParent(service)
    for child in access.services:
        child.setServiceParent(service)
    if shared is not None:
        shared.feed(hub)
        shared.setServiceParent(service)
        if metrics is not None:
            metrics.watch_shared_log(shared)
    if endpoint is None:  # a worker handles its signals itself
        SignalsInLoop(reactor).setServiceParent(service)
    return service
