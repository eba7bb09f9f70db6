import os

import pytest
from django.core.cache import cache

from tests.factories import UserFactory

# The browser tests' live server: an IP, not "localhost", so the browser and the webhook client never
# try ::1 first. DJANGO_LIVE_TEST_SERVER_ADDRESS (e.g. 127.0.0.1:18400) still picks a fixed port.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Tab counts and the chart are cached briefly; each test must see its own data.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff_user(db):
    return UserFactory(username="staff", is_staff=True)


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client
