"""
Tests for the C{redis-server} fixture the scale-out tests stand on.
"""

from __future__ import annotations

from redis_server import RedisServer, running_redis


def test_answers_on_its_own_port(redis_server: RedisServer) -> None:
    """
    The fixture's server answers on the port it names, and holds no data.
    """
    assert redis_server.cli("PING") == "PONG"
    assert redis_server.cli("DBSIZE") == "0"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


def test_durable_server_keeps_entries_across_kill() -> None:
    """
    A durable server killed with SIGKILL and restarted on the same port still
    has every entry it acknowledged; one without persistence has none.
    """
    with running_redis(durable=True) as durable, running_redis() as volatile:
        for server in (durable, volatile):
            server.cli("XADD", "ssedemo", "*", "data", "kept")
            port = server.port
            server.restart()
            assert server.port == port
        assert durable.cli("XLEN", "ssedemo") == "1"
        assert volatile.cli("XLEN", "ssedemo") == "0"


def test_removed_server_is_gone() -> None:
    """
    Leaving the context kills the server and deletes its directory.
    """
    with running_redis() as server:
        process = server.process
        directory = server.directory
    assert process is not None and process.poll() is not None
    assert not directory.exists()
