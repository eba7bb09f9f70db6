"""The read-replica router (config/replica.py): lists and reports read the replica, until the
request writes; everything else reads the primary.

No real replication here: the `replica` alias (tests/settings.py, as DATABASE_REPLICA_URL makes
one) is a second connection to the same test database. What tells the two apart is the test's own
transaction: rows a test creates are not committed, so the primary's connection sees them and the
replica's does not, just as a replica that has not caught up yet would not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.db import connection, connections

from config.replica import request_reads
from sessions_app.api.keys import issue_key
from sessions_app.models import Session
from tests.factories import SessionFactory
from tests.servers import AsgiServer, suite_database_url

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db(databases=["default", "replica"])


@pytest.fixture(autouse=True)
def _close_the_replica_connection():
    yield
    connections["replica"].close()  # else the test database cannot be dropped at the end


@pytest.fixture
def with_replica(settings):
    settings.DATABASE_REPLICA_ALIAS = "replica"


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    client.force_login(user)
    return client


def test_the_staff_list_reads_the_replica_and_the_login_the_primary(staff_client, with_replica):
    unreplicated = SessionFactory()
    page = staff_client.get("/sessions/")
    # The login (a django_session row and the user, both just written) was found on the primary;
    # the list came from the replica, which does not have the new session yet.
    assert page.status_code == 200
    assert str(unreplicated.pk) not in page.content.decode()


def test_without_a_replica_the_staff_list_reads_the_primary(staff_client):
    session = SessionFactory()
    page = staff_client.get("/sessions/")
    assert page.status_code == 200
    assert str(session.pk) in page.content.decode()


def test_a_detail_page_reads_the_primary_even_with_a_replica(staff_client, with_replica):
    session = SessionFactory()
    assert staff_client.get(f"/sessions/{session.pk}/").status_code == 200


def test_reads_after_a_write_in_the_same_request_stay_on_the_primary(with_replica):
    session = SessionFactory()
    with request_reads(replica_allowed=True) as state:
        assert not Session.objects.filter(pk=session.pk).exists()  # the replica has not caught up
        session.title = "Renamed"
        session.save(update_fields=["title"])
        assert state.wrote
        assert Session.objects.get(pk=session.pk).title == "Renamed"  # read back on the primary


def test_a_write_to_another_table_keeps_the_request_on_the_replica(with_replica):
    session = SessionFactory()
    with request_reads(replica_allowed=True) as state:
        issue_key("bookkeeping")  # an API key row: not a table the replica serves
        assert not state.wrote
        assert not Session.objects.filter(pk=session.pk).exists()


def replica_backend(application_name: str) -> tuple[str, str] | None:
    """The last query and when it started, of the server's replica connection (named by its
    application_name), as PostgreSQL reports it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT query, query_start::text FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
def test_under_asgi_a_list_reads_the_replica_connection_and_a_detail_does_not(tmp_path):
    """A real uvicorn process (the request's state crosses the ASGI handler's thread hops) whose
    DATABASE_REPLICA_URL is the same database under another application_name, so PostgreSQL
    shows which connection ran what."""
    session = SessionFactory()
    _, key = issue_key("replica-test")
    name = f"replica-{uuid.uuid4().hex[:8]}"
    web = AsgiServer(DATABASE_REPLICA_URL=f"{suite_database_url()}?application_name={name}").start(timeout=60)
    try:
        headers = {"Authorization": f"Bearer {key}"}
        listed = requests.get(f"{web.url}/api/v1/sessions/", headers=headers, timeout=30)
        assert listed.status_code == 200, listed.text
        assert str(session.pk) in listed.text
        after_list = replica_backend(name)
        assert after_list is not None, "the list did not read the replica"
        assert "sessions_app_session" in after_list[0]
        detail = requests.get(f"{web.url}/api/v1/sessions/{session.pk}/", headers=headers, timeout=30)
        assert detail.status_code == 200, detail.text
        assert replica_backend(name) == after_list  # the detail read the primary
    finally:
        web.stop()


def test_outside_a_request_everything_reads_the_primary(with_replica):
    session = SessionFactory()
    assert Session.objects.filter(pk=session.pk).exists()
    with request_reads(replica_allowed=False):
        assert Session.objects.filter(pk=session.pk).exists()


def test_database_replica_url_adds_the_replica_alias():
    show = (
        "from django.conf import settings; import json; print(json.dumps({"
        "'alias': settings.DATABASE_REPLICA_ALIAS, 'host': settings.DATABASES['replica']['HOST'], "
        "'mirror': settings.DATABASES['replica']['TEST']['MIRROR']}))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": "postgres://app@primary.example.com/sessions",
        "DATABASE_REPLICA_URL": "postgres://app@replica.example.com/sessions",
    }
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {show}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "alias": "replica",
        "host": "replica.example.com",
        "mirror": "default",
    }
