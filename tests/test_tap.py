"""
Tests for L{sse_twisted.tap}: the command line.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from certificate import Certificate, CertificateAuthority, make_certificate
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import IService
from twisted.internet import endpoints
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.python.systemd import ListenFDs
from twisted.python.usage import UsageError

from sse_twisted import tap
from sse_twisted.app import package_version
from sse_twisted.ops.jsonlog import JsonLog
from sse_twisted.ops.metrics_dir import MetricsDirectory
from sse_twisted.ops.signals import SignalsInLoop
from sse_twisted.ops.worker_metrics import REFRESH, WorkerMetrics
from sse_twisted.overload import ClientLimit
from sse_twisted.redis.client import RedisAddress
from sse_twisted.redis.log import RedisLog
from sse_twisted.service import ListenWhenReady, StopInTurn, StreamCloser
from sse_twisted.tap import BUNDLED_STATIC, Options, endpoint_description, makeService
from sse_twisted.transport.eager import EagerAdoptedEndpoint, EagerTCPServerEndpoint
from sse_twisted.transport.tls import TLSPort
from sse_twisted.workers.fork import ForkedWorker
from sse_twisted.workers.supervisor import WorkerSupervisor


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_defaults() -> None:
    options = parse()
    assert options["ports"] == ["eagertcp:8080:backlog=4096"]
    assert options["heartbeat"] == 3.0
    assert options["keepalive"] == 15.0
    assert options["crowd-hold"] == 0.5
    assert options["max-body"] == 65536
    assert options["max-backlog"] == 1024 * 1024
    assert options["history"] == 1000
    assert options["retry"] == 3000
    assert options["static"] == BUNDLED_STATIC
    assert options["publish-token"] is None
    assert options["cors-origin"] == []
    assert options["metrics"] is None
    assert options["max-clients"] == 0
    assert (BUNDLED_STATIC / "index.html").is_file()


@pytest.mark.parametrize(
    "port,description",
    [
        ("9000", "eagertcp:9000:backlog=4096"),
        (
            "tcp:9000:interface=127.0.0.1",
            "eagertcp:9000:interface=127.0.0.1:backlog=4096",
        ),
        ("tcp:9000:backlog=10", "eagertcp:9000:backlog=10"),
        ("eagertcp:9000", "eagertcp:9000:backlog=4096"),
        ("tcp6:9000", "tcp6:9000:backlog=4096"),
        ("unix:/tmp/sse.sock", "unix:/tmp/sse.sock"),
    ],
)
def test_port_becomes_an_endpoint_description(port: str, description: str) -> None:
    """
    A bare number is TCP; IPv4 TCP is eager TCP; TCP gets a deep listen
    queue unless it names one; other endpoint kinds pass through.
    """
    assert endpoint_description(port) == description
    assert parse("--port", port)["ports"] == [description]


@pytest.mark.parametrize(
    "port,description",
    [
        ("ssl:443:privateKey=k.pem", "sparingssl:443:privateKey=k.pem:backlog=4096"),
        ("ssl:443:backlog=64:privateKey=k", "sparingssl:443:backlog=64:privateKey=k"),
    ],
)
def test_tls_port_is_served_as_tcp_ports_are(port: str, description: str) -> None:
    """
    A TLS port copes with a full descriptor table (C{sparingssl:}, same
    arguments) and gets the deep listen queue of TCP unless it names one:
    after a restart, thousands of browsers reconnect over TLS as over TCP.
    """
    assert endpoint_description(port) == description


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "bogus:1"],
        ["--port", "tcp:notaport"],
        ["--port", "8080", "--port", "bogus:1"],
        ["--port", "ssl:0:privateKey=/nonexistent/key.pem"],
        ["--heartbeat", "-1"],
        ["--heartbeat", "nan"],
        ["--keepalive", "1e12"],
        ["--crowd-hold", "-1"],
        ["--crowd-hold", "nan"],
        ["--crowd-hold", "60"],
        ["--max-body", "0"],
        ["--max-backlog", "0"],
        ["--history", "-5"],
        ["--history", "99999999999"],
        ["--retry", "-1"],
        ["--max-clients", "-1"],
        ["--max-clients", "many"],
        ["--metrics", "bogus:9100"],
        ["--metrics", "tcp:notaport"],
        ["--static", "/nonexistent/dir"],
        ["--protect-api"],
        ["--publish-token", "two words"],
        ["--publish-token", "a", "--publish-token-file", "x"],
        ["--publish-token-file", "/nonexistent/token"],
        ["--redis", "localhost:6379"],
        ["--redis", "http://localhost:6379/0"],
        ["--redis", "redis://:6379/0"],
        ["--redis", "redis://localhost:notaport/0"],
        ["--redis", "redis://localhost:0/0"],
        ["--redis", "redis://localhost:6379/x"],
        ["--redis", "redis://localhost:6379/0?timeout=1"],
        ["--redis", "redis://localhost", "--history", "99"],
        ["--redis-key", ""],
        ["--max-keys", "-1"],
        ["--max-keys", "many"],
        ["--conflate", "bad topic"],
        ["--conflate", "prices*"],
        ["--conflate", ""],
    ],
)
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    """
    Nonsense on the command line is refused with a message, before the
    server starts.
    """
    with pytest.raises(UsageError):
        parse(*args)


def test_malformed_redis_url_is_one_clear_line() -> None:
    """
    A malformed C{--redis} is refused with one line that names the option
    and shows the expected form.
    """
    with pytest.raises(UsageError) as error:
        parse("--redis", "localhost:6379")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("--redis: ")
    assert "redis://HOST:PORT/DB" in message


def test_redis_history_floor() -> None:
    """
    With C{--redis}, the history (the stream's approximate trim length) must
    be at least 100, and the error says so.
    """
    with pytest.raises(UsageError, match="at least 100 with --redis"):
        parse("--redis", "redis://127.0.0.1:6379/0", "--history", "50")
    assert parse("--history", "50")["history"] == 50


@pytest.mark.parametrize(
    "url,address",
    [
        ("redis://127.0.0.1:6380/2", RedisAddress("127.0.0.1", 6380, 2)),
        ("redis://redis.internal", RedisAddress("redis.internal", 6379, 0)),
        ("redis://[::1]:7000/", RedisAddress("::1", 7000, 0)),
        (
            "redis://:p%40ss@host:1/3",
            RedisAddress("host", 1, 3, password="p@ss"),
        ),
        (
            "redis://reader:pw@host:1/0",
            RedisAddress("host", 1, 0, password="pw", username="reader"),
        ),
    ],
)
def test_redis_url_becomes_an_address(url: str, address: RedisAddress) -> None:
    """
    C{--redis} is parsed into host, port, database and optional credentials;
    the port defaults to 6379 and the database to 0.
    """
    options = parse("--redis", url, "--redis-key", "events")
    assert options["redis"] == address
    assert options["redis-key"] == "events"


def test_redis_defaults() -> None:
    """
    Without C{--redis}, there is no broker; the key defaults to C{ssedemo}.
    """
    options = parse()
    assert options["redis"] is None
    assert options["redis-key"] == "ssedemo"


def test_password_stays_out_of_the_address_repr() -> None:
    assert "s3cret" not in repr(RedisAddress.from_url("redis://:s3cret@host"))


def test_port_repeats(certificate: Certificate) -> None:
    """
    C{--port} (or C{-p}) may be given several times: the server listens on
    each, every one mapped as a single one is.
    """
    options = parse("--port", "9000", "-p", certificate.endpoint(), "-p", "unix:s")
    assert options["ports"] == [
        "eagertcp:9000:backlog=4096",
        "sparing" + certificate.endpoint() + ":backlog=4096",
        "unix:s",
    ]


def test_unreadable_tls_key_is_a_usage_error(tmp_path: Path) -> None:
    """
    A TLS port whose key or certificate is not PEM is refused with a message
    that says so, not with a traceback.
    """
    garbage = tmp_path / "key.pem"
    garbage.write_text("not a key\n")
    with pytest.raises(UsageError, match="cannot load the TLS key"):
        parse("--port", f"ssl:8443:privateKey={garbage}")


def test_key_of_another_certificate_is_a_usage_error(
    certificate: Certificate, tmp_path: Path
) -> None:
    other = make_certificate(tmp_path)
    with pytest.raises(UsageError, match="do not match"):
        parse("--port", f"ssl:8443:privateKey={other.key}:certKey={certificate.cert}")


def test_token_from_file(tmp_path: Path) -> None:
    """
    The token can come from a file, so it stays out of the process list;
    surrounding white space is ignored.
    """
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    assert parse("--publish-token-file", str(token_file))["publish-token"] == b"s3cret"


def test_empty_token_file_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("\n")
    with pytest.raises(UsageError):
        parse("--publish-token-file", str(token_file))


def test_cors_origin_repeats() -> None:
    options = parse("--cors-origin", "https://a.example", "--cors-origin", "*")
    assert options["cors-origin"] == ["https://a.example", "*"]


def test_every_option_is_in_help() -> None:
    """
    C{--help} documents every option, with its default (and unit).
    """
    text = " ".join(str(Options()).split())
    for name in (
        "--port",
        "--heartbeat",
        "--keepalive",
        "--static",
        "--max-body",
        "--max-backlog",
        "--history",
        "--retry",
        "--publish-token",
        "--publish-token-file",
        "--protect-api",
        "--cors-origin",
        "--redis",
        "--redis-key",
        "--max-clients",
        "--metrics",
        "--workers",
        "--redis-password-file",
        "--redis-sentinel-password-file",
        "--redis-ca",
        "--redis-cert",
        "--redis-key-file",
    ):
        assert name in text
    assert "default 8080" in text
    assert "--redis-replicas= Answer a publish with 200 only once" in text
    assert "[default: 0]" in text
    assert "--redis-replica-timeout= Seconds (decimals allowed" in text
    assert "[default: 1.0]" in text


def test_make_service() -> None:
    """
    The service listens where C{--port} says, with eager TCP and a deep
    listen queue, and runs both timers.
    """
    reactor = MemoryReactorClock()
    service = makeService(parse("--port", "tcp:0:interface=127.0.0.1"), reactor)
    children = list(service)  # type: ignore[call-overload]
    assert sum(isinstance(c, TimerService) for c in children) == 2
    [web] = [c for c in children if isinstance(c, StreamServerEndpointService)]
    endpoint = web.endpoint
    assert isinstance(endpoint, EagerTCPServerEndpoint)
    assert (endpoint._port, endpoint._backlog, endpoint._interface) == (
        0,
        4096,
        "127.0.0.1",
    )


def test_make_service_without_timers() -> None:
    reactor = MemoryReactorClock()
    service = makeService(parse("--heartbeat", "0", "--keepalive", "0"), reactor)
    assert not any(isinstance(c, TimerService) for c in service)  # type: ignore[attr-defined]


def test_make_service_with_redis() -> None:
    """
    With C{--redis}, the service runs a Redis log that feeds the hub, and
    the routes report the broker's state.
    """
    reactor = MemoryReactorClock()
    options = parse(
        "--redis",
        "redis://127.0.0.1:1/0",
        "--redis-key",
        "events",
        "--metrics",
        "unix:/tmp/ssedemo-test-metrics.sock",
    )
    service = makeService(options, reactor)
    [shared] = [c for c in service if isinstance(c, RedisLog)]  # type: ignore[attr-defined]
    assert shared._key == "events"
    assert shared._history == 1000
    assert not shared.available


def test_make_service_listens_on_every_port(certificate: Certificate) -> None:
    """
    Each C{--port} gets its own listening service, all stopped before the
    open streams are ended: a MultiService stops its children last first.
    """
    reactor = MemoryReactorClock()
    service = makeService(
        parse("--port", "tcp:0:interface=127.0.0.1", "--port", certificate.endpoint()),
        reactor,
    )
    children = list(service)  # type: ignore[call-overload]
    closer = next(i for i, c in enumerate(children) if isinstance(c, StreamCloser))
    listening = [
        (i, c.endpoint)
        for i, c in enumerate(children)
        if isinstance(c, StreamServerEndpointService)
    ]
    assert [type(endpoint) for _, endpoint in listening] == [
        EagerTCPServerEndpoint,
        SSL4ServerEndpoint,
    ]
    assert all(i > closer for i, _ in listening)
    assert listening[1][1]._backlog == 4096


@pytest.mark.parametrize(
    "metrics,description",
    [
        ("9100", "eagertcp:9100:backlog=4096"),
        (
            "tcp:9100:interface=127.0.0.1",
            "eagertcp:9100:interface=127.0.0.1:backlog=4096",
        ),
        ("unix:/tmp/metrics.sock", "unix:/tmp/metrics.sock"),
    ],
)
def test_metrics_endpoint(metrics: str, description: str) -> None:
    """
    C{--metrics} takes an endpoint description as C{--port} does.
    """
    assert parse("--metrics", metrics)["metrics"] == description


def test_make_service_with_metrics_and_a_limit() -> None:
    """
    C{--metrics} adds a second listening site; C{--max-clients} a limit
    that is stopped with the server.
    """
    reactor = MemoryReactorClock()
    service = makeService(
        parse(
            "--port",
            "tcp:0:interface=127.0.0.1",
            "--metrics",
            "unix:/tmp/metrics.sock",
            "--max-clients",
            "5",
        ),
        reactor,
    )
    children = list(service)  # type: ignore[call-overload]
    assert sum(isinstance(c, ClientLimit) for c in children) == 1
    service.startService()
    [(path, site, _, _, _)] = reactor.unixServers
    assert path == "/tmp/metrics.sock"
    assert list(site.resource.children) == [b"metrics"]


def test_make_service_without_metrics_or_limit() -> None:
    reactor = MemoryReactorClock()
    service = makeService(parse("--port", "tcp:0:interface=127.0.0.1"), reactor)
    assert not any(isinstance(c, ClientLimit) for c in service)  # type: ignore[attr-defined]
    service.startService()
    assert reactor.unixServers == []
    assert sum(isinstance(c, StreamServerEndpointService) for c in service) == 1  # type: ignore[attr-defined]


def test_log_json_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A relative C{--log-json} path is resolved at start, so that a daemon
    that changes directory still writes where it was told; C{-} stays.
    """
    monkeypatch.chdir(tmp_path)
    assert parse("--log-json", "events.json")["log-json"] == str(
        tmp_path / "events.json"
    )
    assert parse("--log-json", "-")["log-json"] == "-"
    assert parse()["log-json"] is None
    assert "--log-json=" in str(Options())


def test_log_json_that_cannot_be_written_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--log-json"):
        parse("--log-json", str(tmp_path / "missing" / "events.json"))


def test_log_json_starts_first_and_stops_last(tmp_path: Path) -> None:
    reactor = MemoryReactorClock()
    path = str(tmp_path / "events.json")
    service = makeService(parse("--log-json", path), reactor)
    children = list(service)  # type: ignore[call-overload]
    assert isinstance(children[0], JsonLog)
    assert children[0].path == path
    assert not any(isinstance(c, JsonLog) for c in makeService(parse(), reactor))  # type: ignore[attr-defined]


def test_systemd_sockets_are_served_eagerly() -> None:
    """
    C{systemd:} becomes C{eagersystemd:} with the same arguments; without a
    socket passed by systemd, C{--port} says so.
    """
    assert endpoint_description("systemd:domain=INET:index=0") == (
        "eagersystemd:domain=INET:index=0"
    )
    with pytest.raises(
        UsageError,
        match="--port systemd:domain=INET:index=0: systemd passed no such socket",
    ):
        parse("--port", "systemd:domain=INET:index=0")


REDIS = "redis://127.0.0.1:6379/0"


def test_workers_need_redis() -> None:
    """
    C{--workers} without C{--redis} is refused, saying why.
    """
    with pytest.raises(UsageError) as refused:
        parse("--workers", "2")
    assert str(refused.value).startswith("--workers needs --redis")
    assert "miss the events" in str(refused.value)


@pytest.mark.parametrize(
    "port",
    ["unix:/tmp/sse.sock", "tcp6:8080"],
)
def test_workers_share_tcp_ports_only(port: str) -> None:
    kind = port.partition(":")[0]
    with pytest.raises(UsageError, match=f"cannot share {kind}:"):
        parse("--workers", "2", "--redis", REDIS, "--port", port)


def supervisor_of(parent: IService) -> WorkerSupervisor:
    """
    @return: The supervisor among the services of C{--workers N}'s parent.
    """
    [supervisor] = [c for c in parent if isinstance(c, WorkerSupervisor)]  # type: ignore[attr-defined]
    return supervisor


def test_workers_share_a_tls_port(certificate: Certificate) -> None:
    """
    With an C{ssl:} port, the parent binds its TCP address, and the workers
    serve it with the same key and certificate.
    """
    args = ["--workers", "2", "--redis", REDIS, "--port", certificate.endpoint(0)]
    parent = makeService(parse(*args), MemoryReactorClock())
    supervisor = supervisor_of(parent)
    tls = supervisor._endpoint
    assert isinstance(tls, TLSPort)
    assert (tls.port, tls.interface, tls.backlog) == (0, "127.0.0.1", 4096)
    with tls.bind() as bound:
        assert bound.getsockname()[0] == "127.0.0.1"


def test_workers_share_a_systemd_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    With a C{systemd:} port, the parent takes the socket systemd passed it;
    a worker, to which systemd passed nothing, accepts the same C{--port}
    (and serves the socket its parent gives it).
    """
    args = ["--workers", "2", "--redis", REDIS, "--port", "systemd:domain=INET:index=0"]
    worker = Options(worker=True)
    worker.parseOptions(args)
    assert worker["ports"] == ["eagersystemd:domain=INET:index=0"]
    with socket.socket() as passed:
        passed.bind(("127.0.0.1", 0))
        passed.listen()
        fd = os.dup(passed.fileno())
        monkeypatch.setattr(
            endpoints._SystemdParser, "_sddaemon", ListenFDs([fd], ["ssedemo.socket"])
        )
        parent = makeService(parse(*args), MemoryReactorClock())
        supervisor = supervisor_of(parent)
        assert isinstance(supervisor._endpoint, EagerAdoptedEndpoint)
        with supervisor._endpoint.bind() as taken:
            assert taken.fileno() == fd
            assert taken.getsockname() == passed.getsockname()


def test_workers_share_one_port_only() -> None:
    with pytest.raises(UsageError, match="one --port, not several"):
        parse("--workers", "2", "--redis", REDIS, "--port", "8080", "--port", "8081")


def test_workers_with_metrics_count_for_the_parent() -> None:
    """
    With C{--workers} and C{--metrics}, the parent serves the metrics of
    the workers' directory; a worker serves none, and counts in its files
    (reading its open streams and the broker's state every so often).
    """
    args = ["--workers", "2", "--redis", REDIS, "--metrics", "unix:/tmp/m.sock"]
    reactor = MemoryReactorClock()
    parent = makeService(parse(*args), reactor)
    [site] = [c for c in parent if isinstance(c, StreamServerEndpointService)]  # type: ignore[attr-defined]
    supervisor = supervisor_of(parent)
    assert isinstance(supervisor._metrics, MetricsDirectory)
    assert site.factory.resource.children[b"metrics"] is not None
    endpoint = EagerTCPServerEndpoint(reactor, 1234)
    worker = makeService(parse(*args), reactor, endpoint)
    servers = [c for c in worker if isinstance(c, StreamServerEndpointService)]  # type: ignore[attr-defined]
    assert [s.endpoint.endpoint for s in servers] == [endpoint]
    [timer] = [
        c
        for c in worker  # type: ignore[attr-defined]
        if isinstance(c, TimerService) and isinstance(c.call[0].__self__, WorkerMetrics)
    ]
    assert timer.step == REFRESH


@pytest.mark.parametrize("count", ["0", "-1", "1025"])
def test_workers_count_is_checked(count: str) -> None:
    with pytest.raises(UsageError, match="--workers must be between 1 and 1024"):
        parse("--workers", count, "--redis", REDIS)


def test_one_worker_is_the_single_process() -> None:
    """
    C{--workers 1}, the default, is the server itself (also without Redis).
    """
    reactor = MemoryReactorClock()
    service = makeService(parse("--workers", "1"), reactor)
    assert not isinstance(service, WorkerSupervisor)
    assert any(isinstance(c, StreamServerEndpointService) for c in service)  # type: ignore[attr-defined]


def test_workers_make_a_supervisor(tmp_path: Path) -> None:
    """
    With C{--workers N} the service is the parent of N workers, each forked
    from it; the parent writes C{--log-json} (the workers'
    events reach it), from before the workers start until they have ended.
    """
    log = str(tmp_path / "log.json")
    args = ["--port", "tcp:0:interface=127.0.0.1", "--redis", REDIS]
    args += ["--workers", "3", "--log-json", log]
    service = makeService(parse(*args), MemoryReactorClock())
    signals, json_log, supervisor = list(service)  # type: ignore[call-overload]
    assert isinstance(service, StopInTurn)  # the log stops once the workers have
    assert isinstance(signals, SignalsInLoop)
    assert isinstance(json_log, JsonLog)
    assert isinstance(supervisor, WorkerSupervisor)
    assert supervisor._start.func is ForkedWorker  # type: ignore[attr-defined]
    assert supervisor._count == 3


def test_workers_inherit_the_version_read_by_their_parent() -> None:
    """
    The parent of C{--workers N} reads the installed version before the
    workers are forked, so that none of them searches the installed
    packages as it starts.
    """
    package_version.cache_clear()
    args = ["--port", "tcp:0:interface=127.0.0.1", "--redis", REDIS]
    makeService(parse(*args, "--workers", "2"), MemoryReactorClock())
    assert package_version.cache_info().currsize == 1


def test_make_service_on_a_given_endpoint() -> None:
    """
    A worker's service serves the endpoint it is given, not C{--port},
    once its shared log has read where the stream ends.
    """
    reactor = MemoryReactorClock()
    endpoint = EagerTCPServerEndpoint(reactor, 1234)
    service = makeService(parse("--redis", REDIS, "--workers", "2"), reactor, endpoint)
    [web] = [c for c in service if isinstance(c, StreamServerEndpointService)]  # type: ignore[attr-defined]
    assert isinstance(web.endpoint, ListenWhenReady)
    assert web.endpoint.endpoint is endpoint


def test_max_clients_below_workers_is_refused() -> None:
    """
    Each worker takes C{--max-clients // --workers} streams: fewer streams
    than workers would leave a worker none, so it is refused, naming both.
    """
    with pytest.raises(UsageError) as refused:
        parse("--max-clients", "1", "--workers", "2", "--redis", REDIS)
    assert "--max-clients 1 is smaller than --workers 2" in str(refused.value)
    assert parse("--max-clients", "2", "--workers", "2", "--redis", REDIS)
    assert parse("--max-clients", "0", "--workers", "2", "--redis", REDIS)


def limit_of(service: object) -> ClientLimit:
    [limit] = [c for c in service if isinstance(c, ClientLimit)]  # type: ignore[attr-defined]
    return limit


@pytest.mark.parametrize(
    ("max_clients", "workers", "share"),
    [("10", "1", 10), ("10", "2", 5), ("11", "2", 5), ("7", "3", 2), ("3", "3", 1)],
)
def test_each_worker_takes_its_share_of_max_clients(
    max_clients: str, workers: str, share: int
) -> None:
    """
    A worker admits C{--max-clients // --workers} streams, so the workers
    together never exceed C{--max-clients}; a single process admits all.
    """
    reactor = MemoryReactorClock()
    args = ["--max-clients", max_clients, "--workers", workers, "--redis", REDIS]
    endpoint = EagerTCPServerEndpoint(reactor, 1234)
    limit = limit_of(makeService(parse(*args), reactor, endpoint))
    open_streams = 0
    limit._open_streams = lambda: open_streams
    while limit.admits() and open_streams < 100:
        open_streams += 1
    assert open_streams == share == tap.worker_share(int(max_clients), int(workers))


def test_port_help_states_the_defaults() -> None:
    """
    The C{--port} help text names the default port and listen backlog that
    L{Options} applies.
    """
    help_text = " ".join(str(Options()).split())
    assert f"default {tap.DEFAULT_PORT})" in help_text
    assert f"listen backlog of {tap.DEFAULT_BACKLOG} unless given" in help_text


def test_live_state_options() -> None:
    """
    C{--max-keys} defaults to 10,000; C{--conflate} repeats and takes the
    patterns of authorization.
    """
    assert parse()["max-keys"] == 10_000
    assert parse()["conflate"] == []
    options = parse("--max-keys", "5", "--conflate", "prices.*", "--conflate", "*")
    assert options["max-keys"] == 5
    assert options["conflate"] == ["prices.*", "*"]


def test_help_names_the_live_state_options() -> None:
    text = str(Options())
    assert "--max-keys=" in text and "[default: 10000]" in text
    assert "--conflate=" in text


def test_redis_password_file(tmp_path: Path) -> None:
    """
    C{--redis-password-file} gives the password (without the trailing
    newline), for the URL's user if it names one; a password in both the
    URL and the file is refused, and so is an empty or missing file.
    """
    secret = tmp_path / "password"
    secret.write_text("p4ss word\n")
    options = parse(
        "--redis", "redis://app@h:1/2", "--redis-password-file", str(secret)
    )
    assert options["redis"] == RedisAddress(
        "h", 1, 2, password="p4ss word", username="app"
    )
    with pytest.raises(UsageError, match="not both"):
        parse("--redis", "redis://:x@h", "--redis-password-file", str(secret))
    secret.write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        parse("--redis", "redis://h", "--redis-password-file", str(secret))
    with pytest.raises(UsageError, match=r"--redis-password-file: .*No such file"):
        parse("--redis", "redis://h", "--redis-password-file", str(tmp_path / "none"))


@pytest.mark.parametrize(
    "args,message",
    [
        (["--redis-password-file", "f"], "--redis-password-file needs --redis"),
        (["--redis-ca", "f"], "--redis-ca needs --redis"),
        (["--redis-replicas", "1"], "--redis-replicas needs --redis"),
        (["--redis", "redis://h", "--redis-ca", "f"], "need TLS: a rediss://"),
        (["--redis", "rediss://h", "--redis-key-file", "f"], "needs --redis-cert"),
        (["--redis", "rediss://h", "--redis-ca", "/nonexistent"], "--redis-ca: "),
        (["--redis", "redis://h", "--redis-replica-timeout", "0"], "WAIT 0"),
        (["--redis", "redis://h", "--redis-replicas", "-1"], "between 0 and"),
        (
            ["--redis", "redis://h", "--redis-sentinel-password-file", "f"],
            "needs a redis\\+sentinel:// URL",
        ),
        (["--redis", "redis+sentinel://s:1"], "--redis: the path must be /MASTER"),
    ],
)
def test_redis_options_that_do_not_fit(args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(*args)


def test_redis_tls_and_sentinel_options(
    tmp_path: Path, certificate_authority: CertificateAuthority
) -> None:
    """
    A TLS URL gets its TLS settings (the CA, the client certificate and
    key, checked to fit); a Sentinel URL its sentinels' password; the
    replica options take a count and decimal seconds.
    """
    client = certificate_authority.issue(tmp_path, "client")
    sentinel_secret = tmp_path / "sentinel"
    sentinel_secret.write_text("sp\n")
    options = parse(
        "--redis", "rediss+sentinel://s1:1,s2:2/m",
        "--redis-ca", str(certificate_authority.cert),
        "--redis-cert", str(client.cert),
        "--redis-key-file", str(client.key),
        "--redis-sentinel-password-file", str(sentinel_secret),
        "--redis-replicas", "2",
        "--redis-replica-timeout", "0.25",
    )  # fmt: skip
    assert options["redis"].sentinels == (("s1", 1), ("s2", 2))
    assert options["redis-tls"].certificate is not None
    assert options["redis-sentinel-login"].password == "sp"
    assert (options["redis-replicas"], options["redis-replica-timeout"]) == (2, 0.25)
    other = certificate_authority.issue(tmp_path, "other")
    with pytest.raises(UsageError, match="does not fit"):
        parse(
            "--redis", "rediss://h",
            "--redis-cert", str(client.cert),
            "--redis-key-file", str(other.key),
        )  # fmt: skip
    assert parse("--redis", "rediss://h")["redis-tls"].certificate is None
    assert parse("--redis", "redis://h")["redis-tls"] is None
