"""GET /api/v1/sessions/export/ and `manage.py export_sessions`: the list's filters, CSV and JSON lines,
streamed from a server-side cursor that a client hanging up leaves closed."""

from __future__ import annotations

import csv
import io
import json
import socket
import struct
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions_app.api.keys import issue_key
from sessions_app.management.commands.export_sessions import ProgressBar
from sessions_app.models import ChannelKind, Contact, Direction, Role, Session, SessionStatus
from sessions_app.reports.export import COLUMNS, FLUSH_ROWS
from tests.gunicorn_server import gunicorn
from tests.reports.builders import add_message, make_session

URL = "/api/v1/sessions/export/"
HEADER = (
    "id,channel,contact phone,contact name,status,created_at,first_message_at,last_message_at,"
    "message_count,title,business_id"
)


def body_of(response) -> str:
    assert response.status_code == 200, response.content if not response.streaming else ""
    return b"".join(response.streaming_content).decode()


@pytest.fixture
def two_sessions(db):
    first = make_session(
        datetime(2026, 11, 10, 9, tzinfo=UTC),
        ChannelKind.SMS,
        business_id="B1",
        title="=HYPERLINK(evil)",
        message_count=2,
    )
    Contact.objects.filter(pk=first.contact_id).update(display_name='Ana, "the" client')
    add_message(first, datetime(2026, 11, 10, 9, tzinfo=UTC), Direction.INBOUND, Role.CONTACT, content="Hi")
    add_message(
        first, datetime(2026, 11, 10, 9, 0, 5, tzinfo=UTC), Direction.OUTBOUND, Role.AGENT, content="Hello"
    )
    second = make_session(
        datetime(2026, 11, 11, 9, tzinfo=UTC),
        ChannelKind.WHATSAPP,
        business_id="B2",
        status=SessionStatus.CLOSED,
    )
    return first, second


def test_the_csv_has_the_header_row_and_a_row_per_session_oldest_first(api, service_key, two_sessions):
    first, second = two_sessions
    response = api.get(URL, auth=service_key)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="sessions-')
    text = body_of(response)
    assert text.splitlines()[0] == HEADER
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == COLUMNS
    assert [row[0] for row in rows[1:]] == [str(first.pk), str(second.pk)]
    assert rows[1] == [
        str(first.pk),
        "sms",
        first.contact.phone,
        'Ana, "the" client',
        "active",
        "2026-11-10T09:00:00+00:00",
        "",
        "",
        "2",
        "'=HYPERLINK(evil)",  # a spreadsheet would run it as a formula
        "B1",
    ]


def test_it_takes_the_session_lists_filters(api, service_key, two_sessions):
    first, second = two_sessions
    for query, expected in (
        ("channel=whatsapp", [second]),
        ("status=active&status=closed", [first, second]),
        ("status=closed", [second]),
        ("business_id=B1", [first]),
        ("created_after=2026-11-11T00:00:00Z", [second]),
        (f"contact_phone={first.contact.phone.replace('+', '%2B')}", [first]),
    ):
        rows = body_of(api.get(f"{URL}?{query}", auth=service_key)).splitlines()[1:]
        assert [row.split(",")[0] for row in rows] == [str(s.pk) for s in expected], query


def test_json_lines_with_transcripts_give_each_session_its_messages(api, service_key, two_sessions):
    first, second = two_sessions
    response = api.get(f"{URL}?format=jsonl&transcripts=true", auth=service_key)
    assert response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in body_of(response).splitlines()]
    assert [line["id"] for line in lines] == [str(first.pk), str(second.pk)]
    assert lines[0]["contact_name"] == 'Ana, "the" client' and lines[0]["title"] == "=HYPERLINK(evil)"
    assert [(m["role"], m["content"]) for m in lines[0]["messages"]] == [
        ("contact", "Hi"),
        ("agent", "Hello"),
    ]
    assert lines[1]["messages"] == []
    plain = [
        json.loads(line) for line in body_of(api.get(f"{URL}?format=jsonl", auth=service_key)).splitlines()
    ]
    assert "messages" not in plain[0] and set(plain[0]) == {column.replace(" ", "_") for column in COLUMNS}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("format=xlsx", "format"),
        ("transcripts=true", "transcripts"),
        ("contact=0", "contact"),
        ("channel=fax", "channel"),
    ],
)
def test_a_bad_parameter_is_a_400_in_json_naming_it(api, service_key, db, query, field):
    response = api.get(f"{URL}?{query}", auth=service_key)
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert list(response.json()["error"]["fields"]) == [field]


def test_a_business_key_exports_its_business_only(api, business_key, two_sessions):
    rows = body_of(api.get(URL, auth=business_key)).splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == [str(two_sessions[0].pk)]
    assert api.get(URL).status_code == 401


def _cursors() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_stream_cut_after_a_few_rows_closes_its_cursor_and_transaction(api):
    key = issue_key("exporter")[1]
    channel_session = make_session(datetime(2026, 11, 10, tzinfo=UTC), ChannelKind.SMS)
    Session.objects.bulk_create(
        Session(channel=channel_session.channel, channel_kind="sms", title=f"s{i}")
        for i in range(3 * FLUSH_ROWS)
    )
    response = api.get(URL, auth=key)
    pieces = iter(response.streaming_content)
    first = next(pieces).decode()
    assert first.startswith(HEADER) and first.count("\n") == FLUSH_ROWS + 1
    # Streaming: a named cursor is open, inside the export's transaction.
    assert _cursors() == 1 and connection.in_atomic_block
    response.close()  # what a WSGI server does when the client hangs up
    assert _cursors() == 0 and not connection.in_atomic_block


def _server_backends(exclude_pid: int) -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(state, ''), query FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> %s AND backend_type = 'client backend'",
            [exclude_pid],
        )
        return cursor.fetchall()


def _read_a_few_rows_then_hang_up(client: socket.socket, key: str, own_pid: int) -> None:
    request = f"GET {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n"
    client.sendall(request.encode())
    received = b""
    while received.partition(b"\r\n\r\n")[2].count(b"\n") < 5:  # the headers, then a few rows
        received += client.recv(4096)
    assert received.startswith(b"HTTP/1.1 200") and b"\nid,channel," in received
    # While it streams (30,000 rows of 200+ bytes do not fit the socket buffers), the worker's
    # connection holds the export's transaction and cursor open.
    assert any(query.startswith(("DECLARE", "FETCH")) for _state, query in _server_backends(own_pid))


@pytest.mark.django_db(transaction=True)
def test_a_client_hanging_up_on_a_real_server_leaves_no_cursor_or_connection_open():
    """gunicorn, as in production: the client reads a few rows of a large export and closes the socket."""
    key = issue_key("exporter")[1]
    seed = make_session(datetime(2026, 11, 10, tzinfo=UTC), ChannelKind.SMS)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO sessions_app_session (id, channel_id, channel_kind, business_id, location_id,"
            " agent_id, title, description, thumbnail_url, status, metadata, mission_id, message_count,"
            " last_activity_at, status_changed_at, created_at, updated_at)"
            " SELECT gen_random_uuid(), %s, 'sms', '', '', '', repeat('x', 200), '', '', 'active', %s, '', 0,"
            " now(), now(), now() - i * interval '1 second', now() FROM generate_series(1, 30000) AS i",
            [seed.channel_id, Session._meta.get_field("metadata").get_prep_value({})],
        )
        cursor.execute("SELECT pg_backend_pid()")
        own_pid = cursor.fetchone()[0]
    with gunicorn(workers=1) as origin:
        port = urlsplit(origin).port
        assert port is not None
        baseline = len(_server_backends(own_pid))
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        # However the test ends, the client hangs up with unread data: the kernel resets the connection.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            _read_a_few_rows_then_hang_up(client, key, own_pid)
        finally:
            client.close()
        # The worker keeps its one persistent connection (CONN_MAX_AGE), idle: the export's
        # transaction was rolled back, which closes its cursor (a non-holdable cursor ends with it).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            backends = _server_backends(own_pid)
            if len(backends) <= baseline + 1 and all(state == "idle" for state, _ in backends):
                break
            time.sleep(0.1)
        assert len(backends) <= baseline + 1, backends
        assert all(state == "idle" for state, _ in backends), backends


@pytest.mark.django_db
def test_the_command_writes_what_the_api_streams(api, service_key, two_sessions, tmp_path):
    path = tmp_path / "out.csv"
    call_command(
        "export_sessions",
        "--format",
        "csv",
        "--output",
        str(path),
        "--channel",
        "sms",
        "--channel",
        "whatsapp",
    )
    streamed = body_of(api.get(f"{URL}?channel=sms&channel=whatsapp", auth=service_key))
    assert path.read_bytes().decode() == streamed
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    jsonl = tmp_path / "out.jsonl"
    call_command(
        "export_sessions", "--format", "jsonl", "--transcripts", "--output", str(jsonl), "--business-id", "B1"
    )
    assert [json.loads(line)["id"] for line in jsonl.read_text().splitlines()] == [str(two_sessions[0].pk)]
    with pytest.raises(CommandError, match="contact"):
        call_command("export_sessions", "--output", str(path), "--contact", "0")
    with pytest.raises(CommandError, match="jsonl"):
        call_command("export_sessions", "--output", str(path), "--transcripts")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_only():
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = ProgressBar(1000, stream)
        bar.advance(500)
        bar.advance(500)
        bar.finish()
    assert terminal.getvalue().endswith("1,000/1,000 sessions (100%)\n") and "[###" in terminal.getvalue()
    assert pipe.getvalue() == ""


@pytest.mark.django_db
def test_transcripts_cost_one_query_per_batch_of_sessions_not_per_session(api, service_key):
    seed = make_session(datetime(2026, 11, 10, tzinfo=UTC), ChannelKind.SMS)
    api.get(URL, auth=service_key)  # the key's first use is recorded once, not in every request
    counts = []
    for total in (FLUSH_ROWS, 3 * FLUSH_ROWS):
        Session.objects.bulk_create(
            Session(channel=seed.channel, channel_kind="sms") for _ in range(total - Session.objects.count())
        )
        with CaptureQueriesContext(connection) as queries:
            lines = body_of(api.get(f"{URL}?format=jsonl&transcripts=true", auth=service_key)).splitlines()
        assert len(lines) == total
        counts.append(len(queries))
    assert counts[1] == counts[0] + 2  # two more batches of FLUSH_ROWS, one transcripts query each
