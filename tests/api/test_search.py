"""`q` through the API: scoping, order and cursor pages.

What matches is tested in tests/sessions_app/test_session_search.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app.api.keys import issue_key
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_api_search_is_scoped_to_what_the_caller_sees(api, alice, alice_token, bob):
    now = timezone.now()
    mine = SessionFactory(owner=alice, business_id="B1", title="Refund for alice", last_activity_at=now)
    SessionFactory(owner=bob, business_id="B2", title="Refund for bob", last_activity_at=now)
    assert _ids(api.get("/api/v1/sessions/?q=refund", auth=alice_token)) == [str(mine.pk)]
    b1_key = issue_key("b1", business_id="B1")[1]
    assert _ids(api.get("/api/v1/sessions/?q=refund", auth=b1_key)) == [str(mine.pk)]
    everything = issue_key("all")[1]
    assert len(_ids(api.get("/api/v1/sessions/?q=refund", auth=everything))) == 2


def test_api_search_pages_newest_activity_first_and_covers_every_match_once(api):
    key = issue_key("all")[1]
    now = timezone.now()
    made = []
    for i in range(7):
        session = SessionFactory(title=f"Refund {i}", last_activity_at=now - timedelta(minutes=i % 3))
        made.append(session)
    SessionFactory(title="Unrelated")
    seen: list[str] = []
    activity: list = []
    url = "/api/v1/sessions/?q=refund&page_size=3"
    while url:
        response = api.get(url, auth=key)
        seen += _ids(response)
        activity += [row["last_activity_at"] for row in response.json()["results"]]
        url = response.json()["next"]
    assert sorted(seen) == sorted(str(s.pk) for s in made)  # every match, each once
    assert activity == sorted(activity, reverse=True)  # newest activity first across pages


def test_api_q_combines_with_other_filters(api):
    key = issue_key("all")[1]
    sms = SessionFactory(title="Refund sms")
    SessionFactory(title="Refund closed", status="closed")
    assert _ids(api.get("/api/v1/sessions/?q=refund&status=active", auth=key)) == [str(sms.pk)]
