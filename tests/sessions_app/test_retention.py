"""SESSION_PURGE_AFTER: archived sessions older than it go, with their messages; nothing else does."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions_app.lifecycle.retention import purge_expired_sessions
from sessions_app.models import Message, Session, SessionStatus, StatusChange
from tests.factories import MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
HOUR = 3600


def archived(inactive_for: float, messages: int = 2, status: str = SessionStatus.ARCHIVED) -> Session:
    session = SessionFactory(status=status, last_activity_at=NOW - timedelta(seconds=inactive_for))
    for _ in range(messages):
        MessageFactory(session=session)
    StatusChange.objects.create(session=session, from_status="closed", to_status=status, actor="test")
    return session


def test_nothing_is_purged_by_default(settings):
    assert settings.SESSION_PURGE_AFTER == 0
    archived(10 * 365 * 24 * HOUR)
    with time_machine.travel(NOW, tick=False):
        assert purge_expired_sessions() == 0
    assert Session.objects.count() == 1


def test_only_archived_sessions_older_than_the_setting_go_with_their_messages(settings, caplog):
    settings.SESSION_PURGE_AFTER = HOUR
    caplog.set_level("INFO", logger="sessions_app")
    just_over = archived(HOUR + 1)
    exactly = archived(HOUR)
    just_under = archived(HOUR - 1)
    closed_long_ago = archived(100 * HOUR, status=SessionStatus.CLOSED)
    with time_machine.travel(NOW, tick=False) as clock:
        assert purge_expired_sessions() == 1
        assert set(Session.objects.values_list("pk", flat=True)) == {
            exactly.pk,
            just_under.pk,
            closed_long_ago.pk,
        }
        assert not Message.objects.filter(session_id=just_over.pk).exists()
        assert not StatusChange.objects.filter(session_id=just_over.pk).exists()
        assert Message.objects.count() == 6
        assert "Purged 1 archived sessions" in caplog.text

        clock.shift(1)  # `exactly` is now one second past the limit
        assert purge_expired_sessions() == 1
        assert not Session.objects.filter(pk=exactly.pk).exists()
        assert purge_expired_sessions(now=NOW + timedelta(seconds=2)) == 1  # an explicit clock
        assert set(Session.objects.values_list("pk", flat=True)) == {closed_long_ago.pk}


def test_a_large_backlog_is_purged_in_bounded_batches(settings):
    settings.SESSION_PURGE_AFTER = HOUR
    for _ in range(7):
        archived(2 * HOUR, messages=1)
    keep = archived(0)
    with CaptureQueriesContext(connection) as queries:
        assert purge_expired_sessions(now=NOW, batch_size=3) == 7
    assert list(Session.objects.values_list("pk", flat=True)) == [keep.pk]
    selects = [q["sql"] for q in queries if "LIMIT 3" in q["sql"]]
    assert len(selects) == 3  # 3 + 3 + 1: each batch its own bounded query
