import pytest
from django.test import Client

from tests.http_stub import running_stub


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture(autouse=True)
def _forget_cached_channels():
    """Each test starts with no channel remembered: a test's channels are rolled back after it, and
    tests that run on-commit callbacks inside their transaction would otherwise leave theirs behind."""
    from sessions_app.ingest.channels import forget_cached_channels

    forget_cached_channels()
    yield
    forget_cached_channels()


@pytest.fixture(autouse=True)
def _forget_reply_drain_promises():
    """No test relies on a reply drain's promise another test read (sessions_app/delivery/reply_drain.py)."""
    from sessions_app.delivery.reply_drain import forget_promises

    forget_promises()
    yield
    forget_promises()


@pytest.fixture(scope="session", autouse=True)
def _channels_postgres_on_the_test_database(django_db_setup, django_db_blocker):
    """channels-postgres connects on its own, to the database its settings name: in this process,
    the test database pytest-django made (servers the tests start get its URL as DATABASE_URL)."""
    from channels.layers import channel_layers
    from django.conf import settings
    from django.db import connection

    with django_db_blocker.unblock():
        settings.POSTGRES_CHANNEL_LAYER["CONFIG"]["NAME"] = connection.settings_dict["NAME"]
    channel_layers.backends.clear()
    yield
    # Before the test database is dropped: the connections this process's publisher loop opened.
    from sessions_app.realtime.postgres_layer import close_pools
    from sessions_app.realtime.publish import run_on_publisher

    run_on_publisher(close_pools())


@pytest.fixture
def model_server():
    """A local OpenAI-compatible server (tests/http_stub.py) the test scripts its answers on."""
    yield from running_stub()


@pytest.fixture
def openai_agent(settings, model_server):
    """The `openai` backend pointed at `model_server`, answering whole (not streamed) completions."""
    settings.AGENT_BACKEND = "openai"
    settings.AGENT_URL = model_server.url + "/v1"
    settings.AGENT_API_KEY = "sk-test-not-a-secret"
    settings.AGENT_MODEL = "test-model"
    settings.AGENT_STREAM = False
    settings.AGENT_TIMEOUT = 2
    return model_server
