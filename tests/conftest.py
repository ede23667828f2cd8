from collections.abc import Iterator

import pytest
from certificate import (
    Certificate,
    CertificateAuthority,
    make_certificate,
    make_certificate_authority,
)
from redis_server import RedisServer, running_redis
from twisted.internet.interfaces import IReactorCore
from twisted.python.failure import Failure

_CLEAN_FAILURE = Failure.cleanFailure
"""
Twisted's own, taken before pytest-twisted starts the reactor and makes it a
no-op (to keep tracebacks whole).
"""


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


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """
    A throwaway self-signed certificate for 127.0.0.1, made once.
    """
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def certificate_authority(
    tmp_path_factory: pytest.TempPathFactory,
) -> CertificateAuthority:
    """
    A throwaway certificate authority, made once.
    """
    return make_certificate_authority(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def clean_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    C{Failure.cleanFailure} as Twisted has it, for tests of what it lets go.
    """
    assert _CLEAN_FAILURE.__module__ == "twisted.python.failure"
    monkeypatch.setattr(Failure, "cleanFailure", _CLEAN_FAILURE)
