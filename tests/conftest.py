from collections.abc import Iterator

import pytest
from redis_server import RedisServer, running_redis
from twisted.internet.interfaces import IReactorCore


@pytest.fixture
def reactor() -> IReactorCore:
    """
    The global reactor that pytest-twisted runs (it no longer ships this
    fixture).
    """
    from twisted.internet import reactor

    return reactor  # type: ignore[return-value]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """
    A C{redis-server} of the test's own, persistence off, killed afterwards.
    """
    with running_redis() as server:
        yield server
