import pytest

from sessions_app.lifecycle.transitions import TransitionRefused, transition_session
from sessions_app.models import SessionStatus, StatusChange
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db


def test_it_moves_a_session_and_records_who_when_from_and_to():
    session = SessionFactory()
    transition_session(session, SessionStatus.CLOSED, actor="staff:alice", reason="done")
    session.refresh_from_db()
    assert session.status == SessionStatus.CLOSED
    change = StatusChange.objects.get()
    assert (change.from_status, change.to_status, change.actor, change.reason) == (
        "active",
        "closed",
        "staff:alice",
        "done",
    )


def test_it_refuses_a_transition_that_is_not_allowed_and_says_why():
    session = SessionFactory(status=SessionStatus.ARCHIVED)
    with pytest.raises(TransitionRefused, match=r"An archived session cannot become closed; .* active"):
        transition_session(session, SessionStatus.CLOSED, actor="test")
    session.refresh_from_db()
    assert session.status == SessionStatus.ARCHIVED
    assert not StatusChange.objects.exists()


def test_moving_to_the_current_status_is_a_no_op():
    session = SessionFactory(status=SessionStatus.CLOSED)
    transition_session(session, SessionStatus.CLOSED, actor="test")
    assert not StatusChange.objects.exists()


def test_a_closed_session_can_be_reopened():
    session = SessionFactory(status=SessionStatus.CLOSED)
    transition_session(session, SessionStatus.ACTIVE, actor="test")
    session.refresh_from_db()
    assert session.status == SessionStatus.ACTIVE


def test_an_unknown_status_is_an_error():
    with pytest.raises(ValueError, match="unknown status 'paused'"):
        transition_session(SessionFactory(), "paused", actor="test")
