"""The product behind Debian's PgBouncer in transaction mode (docs/scaling.md, "PgBouncer").

A PgBouncer is started on a free loopback port with `pool_mode = transaction` and a pool of three
server connections in front of the suite's PostgreSQL, so consecutive transactions of one client
land on different server connections. Through it: a real web server ingests concurrent webhooks
(the reuse rule's transaction-scoped advisory lock keeps each contact's texts in one session), the
lifecycle sweep runs (SET LOCAL, SKIP LOCKED, several connections), a server-side cursor
(`QuerySet.iterator()`) and a contact export read everything, and the socket layer without Redis
(channels-postgres: LISTEN/NOTIFY) round-trips a message on its direct connection
(`DATABASE_DIRECT_URL`), past the pooler.

Skips, saying why, when /usr/sbin/pgbouncer is missing (`apt-get install pgbouncer`); CI installs
it and sets REQUIRE_PGBOUNCER_TESTS=1, which makes a missing binary a failure.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings
from django.db import connection
from django.utils import timezone
from twilio.request_validator import RequestValidator

from sessions_app.models import Message, Role, Session, SessionStatus
from tests.servers import ROOT, AsgiServer, free_port, server_env, suite_database_url
from tests.twilio_helpers import sms_params

PGBOUNCER = Path(os.environ.get("PGBOUNCER_PATH", "/usr/sbin/pgbouncer"))
CONTACTS = [f"+1555200{n:04d}" for n in range(4)]

pytestmark = pytest.mark.django_db(transaction=True)


def _missing() -> None:
    reason = f"Debian's pgbouncer is not installed at {PGBOUNCER} (apt-get install -y pgbouncer)"
    if os.environ.get("REQUIRE_PGBOUNCER_TESTS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def pgbouncer(django_db_blocker) -> Iterator[str]:
    """A running PgBouncer in transaction mode; yields the test database's URL through it."""
    if not PGBOUNCER.exists():
        _missing()
    db = settings.DATABASES["default"]
    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    # As root, PgBouncer runs as another account (below): its folder must be reachable by it
    # (pytest's own temporary folders are the owner's only).
    with tempfile.TemporaryDirectory(prefix="pgbouncer-") as where:
        folder = Path(where)
        folder.chmod(0o777)
        yield from _run_pgbouncer(folder, db, name)


def _run_pgbouncer(folder: Path, db: dict, name: str) -> Iterator[str]:
    port = free_port()
    user = db.get("USER") or "postgres"
    (folder / "userlist.txt").write_text(f'"{user}" "{db.get("PASSWORD") or ""}"\n')
    host = db.get("HOST") or "127.0.0.1"
    (folder / "pgbouncer.ini").write_text(
        textwrap.dedent(
            f"""
            [databases]
            * = host={host} port={db.get("PORT") or 5432}

            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = {port}
            unix_socket_dir =
            auth_type = trust
            auth_file = {folder / "userlist.txt"}
            pool_mode = transaction
            default_pool_size = 3
            max_client_conn = 200
            ignore_startup_parameters = extra_float_digits
            logfile = {folder / "pgbouncer.log"}
            pidfile = {folder / "pgbouncer.pid"}
            """
        )
    )
    for path in folder.iterdir():
        path.chmod(0o666)
    # PgBouncer refuses to run as root. As root it runs as nobody, or, when PostgreSQL listens on a
    # socket folder only (run.py test's embedded server: its folder is its account's alone), as that
    # folder's owner, the one account besides root that can reach the socket.
    account = pwd.getpwuid(Path(host).stat().st_uid).pw_name if host.startswith("/") else "nobody"
    as_user = ["-u", account] if os.geteuid() == 0 else []
    command = [str(PGBOUNCER), *as_user, str(folder / "pgbouncer.ini")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                log = (folder / "pgbouncer.log").read_text() if (folder / "pgbouncer.log").exists() else ""
                pytest.fail(f"PgBouncer did not start:\n{output}\n{log}")
            time.sleep(0.1)
        url = f"postgres://{user}@127.0.0.1:{port}/{name}"
        with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as probe:
            assert probe.execute("SELECT 1").fetchone() == (1,)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def pooled_env(bouncer_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A process of the product whose database connections all go through the pooler, but the
    socket layer's, which go straight to PostgreSQL."""
    return server_env(
        DATABASE_URL=bouncer_url,
        DATABASE_POOLER="transaction",
        DATABASE_DIRECT_URL=suite_database_url(),
        DATA_DIR=str(tmp_path / "data"),
        **extra,
    )


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def shell_json(env: dict[str, str], code: str) -> dict:
    result = manage(env, "shell", "-c", textwrap.dedent(code))
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_ingest_sweep_cursor_and_export_work_through_pgbouncer_in_transaction_mode(pgbouncer, tmp_path):
    web = AsgiServer(**pooled_env(pgbouncer, tmp_path)).start(timeout=60)
    try:
        url = f"{web.url}/webhooks/twilio/sms/"
        validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)

        def text(n: int) -> int:
            params = sms_params(CONTACTS[n % len(CONTACTS)], f"Message {n}")
            signature = validator.compute_signature(url, params)
            headers = {"X-Twilio-Signature": signature}
            return requests.post(url, data=params, headers=headers, timeout=30).status_code

        # 80 texts from 4 contacts, 8 at a time: the four texts of one contact race each other.
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(text, range(80)))
    finally:
        web.stop()
    assert statuses == [200] * 80
    sessions = Session.objects.filter(contact__phone__in=CONTACTS)
    assert sorted(sessions.values_list("contact__phone", flat=True)) == sorted(CONTACTS)  # one each
    for session in sessions:
        inbound = session.messages.filter(role=Role.CONTACT)
        assert inbound.count() == 20
        # Tasks run inline in the server (tests/settings.py): each text answered, through the pooler.
        assert session.messages.filter(role=Role.AGENT).count() == 20
        assert session.message_count == 40

    sessions.update(last_activity_at=timezone.now() - timedelta(hours=2))
    env = pooled_env(pgbouncer, tmp_path, SESSION_SWEEP_PARALLEL="3", SESSION_SWEEP_BATCH_SIZE="1")
    swept = manage(env, "sweep_sessions")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert set(sessions.values_list("status", flat=True)) == {SessionStatus.ABANDONED}

    state = shell_json(
        env,
        """
        import json
        from django.db import connection
        from sessions_app.models import Message
        ids = [m.pk for m in Message.objects.order_by("pk").iterator(chunk_size=7)]
        print(json.dumps({
            "read": len(ids),
            "server_side_cursors": not connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"],
        }))
        """,
    )
    assert state == {"read": Message.objects.count(), "server_side_cursors": False}

    exported = manage(env, "export_contact", CONTACTS[0], "--output", str(tmp_path / "export.json"))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    export = json.loads((tmp_path / "export.json").read_text())
    (contact,) = export["contacts"]
    assert sum(len(session["messages"]) for session in contact["sessions"]) == 40


def test_the_socket_layer_listens_on_its_direct_connection_past_the_pooler(pgbouncer, tmp_path):
    env = pooled_env(pgbouncer, tmp_path)
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):  # the layer without Redis: channels-postgres
        env.pop(name, None)
    state = shell_json(
        env,
        """
        import asyncio, json
        from channels.layers import get_channel_layer
        from django.conf import settings

        async def round_trip():
            layer = get_channel_layer()
            channel = await layer.new_channel()
            await layer.group_add("pooler-test", channel)
            await layer.group_send("pooler-test", {"type": "hello", "n": 7})
            message = await asyncio.wait_for(layer.receive(channel), 20)
            await layer.close_pools()
            return message

        print(json.dumps({
            "message": asyncio.run(round_trip()),
            "layer": [settings.CHANNEL_LAYERS["default"]["CONFIG"][k] for k in ("HOST", "PORT")],
            "default": [settings.DATABASES["default"][k] for k in ("HOST", "PORT")],
        }))
        """,
    )
    assert state["message"] == {"type": "hello", "n": 7}
    # The layer on PostgreSQL itself (the suite's server), the rest through the pooler.
    assert state["layer"][0] == (settings.DATABASES["default"]["HOST"] or "127.0.0.1")
    assert state["default"] == ["127.0.0.1", int(pgbouncer.rsplit(":", 1)[1].split("/")[0])]

    without = {k: v for k, v in env.items() if k != "DATABASE_DIRECT_URL"}
    refused = manage(without, "check")
    assert refused.returncode != 0
    assert "DATABASE_DIRECT_URL" in refused.stderr
