import pytest
from certificate import Certificate, make_certificate
from twisted.internet.interfaces import IReactorCore


@pytest.fixture
def reactor() -> IReactorCore:
    """
    The global reactor that pytest-twisted runs (it no longer ships this
    fixture).
    """
    from twisted.internet import reactor

    return reactor  # type: ignore[return-value]


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """
    A throwaway self-signed certificate for 127.0.0.1, made once.
    """
    return make_certificate(tmp_path_factory.mktemp("tls"))
