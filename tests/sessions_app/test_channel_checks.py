"""The `sessions_app.W001` check and the sweep's warning: channels whose reuse window outlasts their
abandon-after because a setting they inherit changed after they were saved."""

import logging
from io import StringIO

import pytest
from django.core.checks import Tags, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from sessions_app.lifecycle import sweep
from sessions_app.lifecycle.sweep import sweep_sessions
from sessions_app.models import ChannelKind
from tests.factories import ChannelFactory

pytestmark = pytest.mark.django_db


def channel_errors(databases=("default",)):
    issues = run_checks(tags=[Tags.database], databases=None if databases is None else list(databases))
    return [issue for issue in issues if issue.id == "sessions_app.W001"]


def sms_channel(address: str, **overrides):
    return ChannelFactory(kind=ChannelKind.SMS, address=address, **overrides)


@override_settings(SESSION_REUSE_WINDOW=300, SESSION_ABANDON_AFTER=1800)
def test_it_reports_a_channel_whose_reuse_window_outlasts_a_lowered_abandon_after():
    channel = sms_channel("+15005550010", name="Front desk", reuse_window=900, abandon_after=None)
    channel.full_clean()  # valid when saved: 900s against 1800s
    with override_settings(SESSION_ABANDON_AFTER=600):
        [error] = channel_errors()
    assert error.obj == channel
    assert f"channel id {channel.pk}" in error.msg
    assert "reuse window (900s)" in error.msg
    assert "abandon-after (600s)" in error.msg
    assert "abandon-after (600s) comes from SESSION_ABANDON_AFTER" in error.hint
    assert "abandon_after" in error.hint and "reuse_window" in error.hint
    assert "Front desk" in str(error)


@override_settings(SESSION_REUSE_WINDOW=300, SESSION_ABANDON_AFTER=1800)
def test_it_reports_a_channel_whose_own_abandon_after_a_raised_reuse_window_outlasts():
    channel = sms_channel("+15005550011", reuse_window=None, abandon_after=600)
    with override_settings(SESSION_REUSE_WINDOW=900):
        [error] = channel_errors()
    assert error.obj == channel
    assert "reuse window (900s)" in error.msg
    assert "abandon-after (600s)" in error.msg
    assert "reuse window (900s) comes from SESSION_REUSE_WINDOW" in error.hint


@override_settings(SESSION_REUSE_WINDOW=300, SESSION_ABANDON_AFTER=600)
def test_it_reports_every_conflicting_channel_from_one_query():
    first = sms_channel("+15005550012", reuse_window=900)
    second = sms_channel("+15005550013", reuse_window=1200)
    sms_channel("+15005550014", reuse_window=600)
    with CaptureQueriesContext(connection) as queries:
        errors = channel_errors()
    assert {error.obj for error in errors} == {first, second}
    assert len([q for q in queries if "sessions_app_channel" in q["sql"]]) == 1


@override_settings(SESSION_REUSE_WINDOW=300, SESSION_ABANDON_AFTER=1800)
def test_it_accepts_channels_that_fit_the_settings():
    sms_channel("+15005550020", reuse_window=None, abandon_after=None)
    sms_channel("+15005550021", reuse_window=1800, abandon_after=None)  # equal is allowed
    sms_channel("+15005550022", reuse_window=None, abandon_after=300)
    sms_channel("+15005550023", reuse_window=60, abandon_after=120)
    assert channel_errors() == []


@override_settings(SESSION_REUSE_WINDOW=300, SESSION_ABANDON_AFTER=1800)
def test_disabled_abandonment_never_conflicts():
    sms_channel("+15005550030", reuse_window=86400, abandon_after=0)
    inheriting = sms_channel("+15005550031", reuse_window=86400, abandon_after=None)
    with override_settings(SESSION_ABANDON_AFTER=0):
        assert channel_errors() == []
    assert [error.obj for error in channel_errors()] == [inheriting]  # once abandonment is back on


@override_settings(SESSION_REUSE_WINDOW=300, SESSION_ABANDON_AFTER=1800)
def test_it_runs_only_when_a_database_is_named():
    sms_channel("+15005550040", reuse_window=3600, abandon_after=None)
    with CaptureQueriesContext(connection) as queries:
        assert channel_errors(databases=None) == []  # runserver and plain `check` stay off the database
    assert len(queries) == 0
    assert len(channel_errors()) == 1


@override_settings(SESSION_REUSE_WINDOW=300, SESSION_ABANDON_AFTER=120)
def test_manage_py_check_with_the_database_warns_of_a_conflicting_channel_without_stopping_start_up():
    sms_channel("+15005550050", reuse_window=600)
    out = StringIO()
    # A warning: `migrate` and `run.py serve` go on, so admin stays reachable to fix the channel.
    call_command("check", "--database", "default", stdout=out, stderr=out)
    assert "sessions_app.W001" in out.getvalue()
    with pytest.raises(SystemCheckError, match=r"sessions_app\.W001"):
        call_command("check", "--database", "default", "--fail-level", "WARNING", stdout=out, stderr=out)


@override_settings(SESSION_REUSE_WINDOW=300, SESSION_ABANDON_AFTER=1800)
def test_the_sweep_logs_a_conflicting_channel_once_per_process(caplog, monkeypatch):
    monkeypatch.setattr(sweep, "_warned_conflicts", set())
    sms_channel("+15005550060", reuse_window=600, abandon_after=None)
    channel = sms_channel("+15005550061", reuse_window=900, abandon_after=None)
    with (
        override_settings(SESSION_ABANDON_AFTER=600),
        caplog.at_level(logging.WARNING, "sessions_app.lifecycle.sweep"),
    ):
        sweep_sessions()
        sweep_sessions()
    [record] = [
        r for r in caplog.records if r.name == "sessions_app.lifecycle.sweep" and r.levelno == logging.WARNING
    ]
    message = record.getMessage()
    assert f"Channel id {channel.pk}" in message
    assert "reuse window (900s)" in message and "abandon-after (600s)" in message


@override_settings(SESSION_REUSE_WINDOW=300, SESSION_ABANDON_AFTER=1800)
def test_a_channel_with_only_its_own_reuse_window_costs_the_sweep_no_statements():
    baseline = sweep_sessions().statements
    sms_channel("+15005550070", reuse_window=600)
    assert sweep_sessions().statements == baseline
