import pytest
from django.test import Client


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture(autouse=True)
def _forget_cached_channels():
    """Each test starts with no channel remembered: a test's channels are rolled back after it, and
    tests that run on-commit callbacks inside their transaction would otherwise leave theirs behind."""
    from sessions_app.ingest.rule import forget_cached_channels

    forget_cached_channels()
    yield
    forget_cached_channels()
