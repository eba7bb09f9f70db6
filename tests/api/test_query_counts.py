"""List endpoints cost the same number of queries whatever the page size (no N+1)."""

from __future__ import annotations

import base64

import pytest

from sessions_app.models import Contact
from tests.factories import MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def many(alice):
    contact = Contact.objects.create(business_id="B1", external_user_id="alice")
    sessions = SessionFactory.create_batch(
        30, owner=alice, contact=contact, business_id="B1", external_id=None
    )
    SessionFactory.create_batch(30, owner=alice, business_id="B1", title="a message about it")
    for session in sessions[:2]:
        MessageFactory.create_batch(30, session=session)
    return sessions


def count(django_assert_num_queries, api, path, auth, expected, method="get", body=None):
    with django_assert_num_queries(expected):
        response = api.request(method, path, body, auth=auth)
    assert response.status_code == 200, response.content
    return response.json()


# (path template with {n} for the page size, queries expected) for a JWT user.
USER_LISTS = [
    ("/api/v1/sessions/?page_size={n}", 2),  # user, page (JWT auth reads the user)
    ("/api/v1/sessions/?page_size={n}&q=message&status=active", 2),  # one word: part of the page query
    # Several words: + 1 bounded probe on PostgreSQL (sessions_app/search/query.py).
    ("/api/v1/sessions/?page_size={n}&q=a+message&status=active", 3),
    ("/api/v1/sessions/{sid}/messages/?page_size={n}", 3),  # user, session, page
    ("/api/v1/contacts/?page_size={n}", 2),
    ("/agent/api/sessions/business/B1/user/alice/history?limit={n}", 2),
    ("/agent/api/sessions/{sid}/messages?limit={n}", 3),
    ("/workspace/api/sessions/?limit={n}", 2),
]


@pytest.mark.parametrize(("path", "expected"), USER_LISTS)
@pytest.mark.parametrize("size", [5, 25])
def test_list_query_count_does_not_grow_with_the_page(
    api, alice_token, many, django_assert_num_queries, path, expected, size
):
    data = count(django_assert_num_queries, api, path.format(n=size, sid=many[0].pk), alice_token, expected)
    items = data["results"] if isinstance(data, dict) else data
    assert len(items) == size


@pytest.mark.parametrize("size", [5, 25])
def test_the_webhook_list_query_count_does_not_grow(api, settings, django_assert_num_queries, size):
    SessionFactory.create_batch(30, contact=Contact.objects.create(phone="+31612345678"))
    settings.SESSIONS_WEBHOOK_USERNAME = "app"
    settings.SESSIONS_WEBHOOK_PASSWORD = "pw"
    from sessions_app.surfaces import sessions_webhook

    settings_limit = sessions_webhook.LIST_LIMIT
    sessions_webhook.LIST_LIMIT = size
    try:
        basic = "Basic " + base64.b64encode(b"app:pw").decode()
        body = {"method": "list", "phoneNumber": "+31612345678", "name": "", "companyName": ""}
        # savepoint, contact lookup, release, the page
        data = count(django_assert_num_queries, api, "/webhook/sessions", basic, 4, method="post", body=body)
    finally:
        sessions_webhook.LIST_LIMIT = settings_limit
    assert len(data["data"]) == size
