"""
The ways to reach Redis that an operator expects, against real
C{redis-server}s: TLS with a private CA (and client certificates), a unix
socket, an ACL user whose password is in a file, and a wrong password.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from certificate import CertificateAuthority
from redis_server import free_port, running_redis
from test_scale_out import post, streams
from twistd_process import TwistdServer, eventually
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent

from sse_twisted.redis.address import RedisAddress, parse_redis_url
from sse_twisted.redis.client import RedisConnection
from sse_twisted.redis.connect import address_endpoint, server_endpoint
from sse_twisted.redis.tls import ClientTLS, load_client_tls


def tls_redis_args(
    ca: CertificateAuthority, directory: Path, port: int, alt_names: str
) -> list[str]:
    server = ca.issue(directory, "redis", alt_names)
    return [
        "--tls-port", str(port),
        "--tls-cert-file", str(server.cert),
        "--tls-key-file", str(server.key),
        "--tls-ca-cert-file", str(ca.cert),
        "--tls-auth-clients", "optional",
    ]  # fmt: skip


@pytest_twisted.inlineCallbacks
def connects(reactor: Any, url: str, tls: ClientTLS) -> Any:
    """
    @return: Whether a connection to C{url} is made within a second, and
        the log lines meanwhile.
    """
    address = parse_redis_url(url)
    assert isinstance(address, RedisAddress)
    connection = RedisConnection(
        address_endpoint(reactor, address, tls), address, reactor, "t", (0.05, 0.2)
    )
    with capturedLogs() as events:
        connection.start()
        waited: Deferred[None] = connection.when_connected()
        waited.addTimeout(1.0, reactor).addErrback(lambda _: None)
        yield waited
        connected = connection.connected
        if connected:
            assert (yield connection.execute("PING")) == b"PONG"
        yield connection.stop()
    return connected, [formatEvent(e) for e in events]


@pytest_twisted.inlineCallbacks
def test_tls_checks_the_certificate_and_its_name(
    reactor: Any, tmp_path: Path, certificate_authority: CertificateAuthority
) -> Any:
    """
    Over TLS the server's certificate must come from the trusted CA (the
    system's trust store by default, else C{--redis-ca}) and name the
    URL's host: here 127.0.0.1 but not localhost. A client certificate is
    shown when given.
    """
    port = free_port()
    args = tls_redis_args(certificate_authority, tmp_path, port, "IP:127.0.0.1")
    with running_redis(args=args) as redis:
        trusted = load_client_tls(str(certificate_authority.cert))
        ok, _ = yield connects(reactor, f"rediss://127.0.0.1:{port}/0", trusted)
        assert ok
        wrong_name, lines = yield connects(
            reactor, f"rediss://localhost:{port}", trusted
        )
        assert not wrong_name
        assert any("localhost" in line for line in lines), lines
        untrusted, lines = yield connects(
            reactor, f"rediss://127.0.0.1:{port}/0", load_client_tls()
        )
        assert not untrusted
        assert any("certificate verify failed" in line for line in lines), lines
        redis.cli("CONFIG", "SET", "tls-auth-clients", "yes")
        anonymous, _ = yield connects(reactor, f"rediss://127.0.0.1:{port}", trusted)
        assert not anonymous
        client = certificate_authority.issue(tmp_path, "client")
        with_certificate = load_client_tls(
            str(certificate_authority.cert), str(client.cert), str(client.key)
        )
        ok, _ = yield connects(reactor, f"rediss://127.0.0.1:{port}", with_certificate)
        assert ok


def test_rediss_end_to_end(
    tmp_path: Path, certificate_authority: CertificateAuthority
) -> None:
    """
    C{--redis rediss://... --redis-ca} with a client certificate: events are
    published and delivered through a Redis that speaks TLS only.
    """
    port = free_port()
    args = tls_redis_args(certificate_authority, tmp_path, port, "DNS:localhost")
    client = certificate_authority.issue(tmp_path, "client")
    with running_redis(args=[*args, "--tls-auth-clients", "yes"]) as redis:
        server = TwistdServer(
            args=[
                "--redis", f"rediss://localhost:{port}/0",
                "--redis-ca", str(certificate_authority.cert),
                "--redis-cert", str(client.cert),
                "--redis-key-file", str(client.key),
                "--heartbeat", "0",
            ]
        ).start()  # fmt: skip
        try:
            eventually(lambda: server.health()["broker"] == "ok", "broker ok")
            with streams((server.port, None)) as (stream,):
                status, body, _ = post(server.port, "secret")
                assert status == 200
                assert stream.wait_for_ids([str(body["id"])])
            assert redis.cli("XLEN", "ssedemo") == "1"
        finally:
            server.stop()


def test_unix_socket_with_an_acl_user_and_a_password_file(tmp_path: Path) -> None:
    """
    C{unix:///PATH?db=N} reaches a Redis on the same machine; the ACL user
    named in the URL logs in with the password of C{--redis-password-file},
    which the process list does not show.
    """
    socket_path = tmp_path / "redis.sock"
    secret = tmp_path / "password"
    secret.write_text("app-s3cret\n")
    with running_redis(
        password="admin",
        args=["--unixsocket", str(socket_path), "--unixsocketperm", "700"],
    ) as redis:
        redis.cli("ACL", "SETUSER", "app", "on", ">app-s3cret", "~ssedemo", "+@all")
        server = TwistdServer(
            args=[
                "--redis", f"unix://app@{socket_path}?db=2",
                "--redis-password-file", str(secret),
                "--heartbeat", "0",
            ]
        ).start()  # fmt: skip
        try:
            eventually(lambda: server.health()["broker"] == "ok", "broker ok")
            status, _, _ = post(server.port, "local")
            assert status == 200
            assert server.process is not None
            cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
            assert b"app-s3cret" not in cmdline
        finally:
            server.stop()
        assert redis.cli("-n", "2", "XLEN", "ssedemo") == "1"
        assert b"app-s3cret" not in server.output


def test_wrong_password_is_reported_not_a_crash(tmp_path: Path) -> None:
    """
    With a wrong password, ssedemo serves: C{/health} says the broker is
    down, publishes get 503, the log says clearly why (never the password),
    in few lines and none of Twisted's own per connection; once the
    password is right, it is used.
    """
    secret = tmp_path / "password"
    secret.write_text("wrong-one\n")
    with running_redis(password="right-one") as redis:
        server = TwistdServer(
            args=[
                "--redis", f"redis://127.0.0.1:{redis.port}/0",
                "--redis-password-file", str(secret),
                "--heartbeat", "0",
            ]
        ).start()  # fmt: skip
        try:
            eventually(
                lambda: server.output.count(b"Redis refused the password") >= 4,
                "four refusals logged",
            )
            assert server.health()["broker"] == "down"
            assert post(server.port, "x")[0] == 503
            redis.cli("CONFIG", "SET", "requirepass", "wrong-one")
            redis.password = "wrong-one"
            eventually(lambda: server.health()["broker"] == "ok", "broker ok")
            assert post(server.port, "x")[0] == 200
        finally:
            server.stop()
    output = server.output.decode()
    assert "wrong-one" not in output and "right-one" not in output
    assert "Redis refused the password of user default: WRONGPASS" in output
    assert output.count("Starting factory") == 1  # the web site, not per attempt
    refusals = output.count("Redis refused the password")
    assert refusals <= 2 * 5  # two connections, attempts 1, 2, 4, 8 (16)


def test_an_ip_address_is_connected_to_without_a_lookup() -> None:
    """
    A Redis host given as an IPv4 or IPv6 address is connected to at once,
    without a name lookup (which Twisted makes in a thread pool, started
    first in a new worker); a host name is looked up.
    """
    for host in ("127.0.0.1", "::1"):
        reactor = MemoryReactorClock()
        server_endpoint(reactor, host, 6379, None).connect(
            Factory.forProtocol(Protocol)
        )
        [(connected_host, port, *_)] = reactor.tcpClients
        assert (connected_host, port) == (host, 6379)
    named = server_endpoint(MemoryReactorClock(), "redis.internal", 6379, None)
    assert isinstance(named, HostnameEndpoint)
