import pytest
from twisted.internet.interfaces import IReactorCore


@pytest.fixture
def reactor() -> IReactorCore:
    """
    The global reactor that pytest-twisted runs (it no longer ships this
    fixture).
    """
    from twisted.internet import reactor

    return reactor  # type: ignore[return-value]
