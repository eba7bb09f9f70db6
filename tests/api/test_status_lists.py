"""Lists filtered by several statuses: the right sessions in the right order, page after page, each
page read as one index range per status (search/statuses.py), never a walk past every newer session
of another status."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions_app.models import Session, SessionStatus
from sessions_app.search.statuses import SeveralStatuses, in_statuses
from sessions_app.ui import queries
from tests.factories import ChannelFactory, SessionFactory, sessions_ended_oldest_first

S = SessionStatus
ENDED = [S.ABANDONED, S.CLOSED]


def mixed_sessions(count: int = 24) -> list[Session]:
    """`count` sessions a minute apart, newest first in the result, cycling through four statuses."""
    channel = ChannelFactory()
    now = timezone.now()
    cycle = [S.ACTIVE, S.ABANDONED, S.CLOSED, S.ARCHIVED]
    made = [
        SessionFactory(channel=channel, status=cycle[i % 4], last_activity_at=now - timedelta(minutes=i))
        for i in range(count)
    ]
    return made


def api_pages(api: Any, token: str, path: str) -> list[list[str]]:
    pages = []
    while path:
        response = api.get(path, auth=token)
        assert response.status_code == 200, response.content
        body = response.json()
        pages.append([item["id"] for item in body["results"]])
        path = body["next"] and body["next"].replace("http://testserver", "")
    return pages


def staff_list_ids(page_size: int) -> list:
    """Every page of the staff list filtered to the ended statuses, in order, following its cursor."""
    filters = queries.ListFilters(statuses=tuple(ENDED))
    seen: list = []
    while True:
        page = queries.sessions_page(filters, page_size=page_size)
        seen += [s.pk for s in page.sessions]
        if not page.next_cursor:
            return seen
        filters = queries.ListFilters(statuses=tuple(ENDED), cursor=page.next_cursor)


@pytest.mark.django_db
def test_the_api_pages_through_several_statuses_newest_first_and_back(api, staff_token):
    made = mixed_sessions()
    expected = [str(s.pk) for s in made if s.status in ENDED]
    pages = api_pages(api, staff_token, "/api/v1/sessions/?status=abandoned&status=closed&page_size=5")
    assert [len(page) for page in pages] == [5, 5, 2]
    assert [pk for page in pages for pk in page] == expected
    # And back from the last page: DRF's cursor reverses the order, and the merge must follow it.
    last = api.get("/api/v1/sessions/?status=abandoned&status=closed&page_size=5", auth=staff_token).json()
    while last["next"]:
        last = api.get(last["next"].replace("http://testserver", ""), auth=staff_token).json()
    previous = api.get(last["previous"].replace("http://testserver", ""), auth=staff_token).json()
    assert [item["id"] for item in previous["results"]] == pages[1]


@pytest.mark.django_db
def test_the_staff_list_pages_through_several_statuses_newest_first():
    made = mixed_sessions()
    expected = [s.pk for s in made if s.status in ENDED]
    assert staff_list_ids(page_size=4) == expected


@pytest.mark.django_db
def test_sessions_with_the_same_last_activity_are_neither_lost_nor_repeated_across_pages():
    channel = ChannelFactory()
    moment = timezone.now() - timedelta(hours=1)
    made = [SessionFactory(channel=channel, status=ENDED[i % 2], last_activity_at=moment) for i in range(9)]
    assert staff_list_ids(page_size=4) == sorted((s.pk for s in made), reverse=True)


@pytest.mark.django_db
def test_one_status_and_counts_read_as_before(django_assert_num_queries):
    mixed_sessions(8)

    def several() -> SeveralStatuses:
        return SeveralStatuses(in_statuses(Session.objects.all(), ENDED), ENDED)

    with django_assert_num_queries(1):
        assert (
            len(list(in_statuses(Session.objects.all(), [S.CLOSED]).order_by("-last_activity_at")[:10])) == 2
        )
    with django_assert_num_queries(1):
        assert several().count() == 4
    with django_assert_num_queries(2):  # a page: one slice per status
        assert len(list(several().order_by("-last_activity_at")[:10])) == 4
    with django_assert_num_queries(2):  # the model's own ordering is last activity too
        assert [s.status for s in several()[:2]] == [S.ABANDONED, S.CLOSED]
    with django_assert_num_queries(2):  # creation order has a status index too
        assert len(list(several().order_by("-created_at", "-id")[:10])) == 4
    with django_assert_num_queries(1):  # another order: the plain query
        assert len(list(several().order_by("title")[:10])) == 4


@pytest.mark.django_db
def test_several_statuses_page_in_creation_order_too(api, staff_token):
    channel = ChannelFactory()
    now = timezone.now()
    cycle = [S.ACTIVE, S.ABANDONED, S.CLOSED, S.ARCHIVED]
    # Created in one order, last active in another, so the two orders differ.
    made = [
        SessionFactory(
            channel=channel,
            status=cycle[i % 4],
            created_at=now - timedelta(minutes=i),
            last_activity_at=now - timedelta(minutes=(i * 7) % 24),
        )
        for i in range(24)
    ]
    expected = [str(s.pk) for s in made if s.status in ENDED]
    pages = api_pages(
        api, staff_token, "/api/v1/sessions/?status=abandoned&status=closed&ordering=-created_at&page_size=5"
    )
    assert [pk for page in pages for pk in page] == expected
    oldest_first = api_pages(
        api, staff_token, "/api/v1/sessions/?status=abandoned&status=closed&ordering=created_at&page_size=5"
    )
    assert [pk for page in oldest_first for pk in page] == expected[::-1]


def _rows_removed_by_filters(sql: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def walk(node: dict[str, Any]) -> int:
        own = int(node.get("Rows Removed by Filter", 0))
        return own + sum(walk(child) for child in node.get("Plans", []))

    return walk(plan[0]["Plan"])


@pytest.mark.django_db
def test_a_page_of_several_statuses_reads_no_newer_sessions_of_other_statuses(api, staff_token):
    """The shape of a real table: the newest sessions are active, the ended ones older. Filtered to
    two ended statuses and sorted newest first, `status IN (…)` walked the recency index from the
    newest end and dropped every active session on the way (637 ms a page at a million).

    Abandoned and archived: each has an index range of its own (abandoned too, since migration 0015
    gave up the status group that shared one with active sessions)."""
    own_ranges = (S.ABANDONED, S.ARCHIVED)
    channel = ChannelFactory()
    now = timezone.now()
    sessions_ended_oldest_first(channel, now, ended=own_ranges)
    expected = [
        str(pk)
        for pk in Session.objects.filter(status__in=own_ranges)
        .order_by("-last_activity_at", "-id")
        .values_list("pk", flat=True)[:20]
    ]
    with CaptureQueriesContext(connection) as api_queries:
        response = api.get(
            "/api/v1/sessions/?status=abandoned&status=archived&page_size=20", auth=staff_token
        )
    assert [item["id"] for item in response.json()["results"]] == expected
    with CaptureQueriesContext(connection) as ui_queries:
        page = queries.sessions_page(queries.ListFilters(statuses=own_ranges), page_size=20)
    assert [str(s.pk) for s in page.sessions] == expected
    reads = [
        q["sql"]
        for q in [*api_queries.captured_queries, *ui_queries.captured_queries]
        if q["sql"].startswith("SELECT") and 'FROM "sessions_app_session"' in q["sql"]
    ]
    removed = {sql: _rows_removed_by_filters(sql) for sql in reads}
    assert all(count < 100 for count in removed.values()), removed
    assert len(reads) == 4, reads  # one per status, for each of the two lists
