"""Production defaults: keys required, HTTPS settings on for an https origin, `check --deploy` clean."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "False",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "sessions.example.com",
    "PUBLIC_BASE_URL": "https://sessions.example.com",
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    # Nothing here connects to it.
    "DATABASE_URL": "postgres://sessions@db.example.com:5432/sessions",
}
SHOW = (
    "from django.conf import settings as s; import json; print(json.dumps({k: getattr(s, k, None) for k in "
    "['SESSION_COOKIE_SECURE','CSRF_COOKIE_SECURE','SECURE_SSL_REDIRECT','SECURE_HSTS_SECONDS',"
    "'SECURE_HSTS_INCLUDE_SUBDOMAINS','SECURE_PROXY_SSL_HEADER','CSRF_TRUSTED_ORIGINS','FIELD_ENCRYPTION_KEYS']}))"
)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`args` with nothing in the environment but PATH, a database URL (which nothing here connects
    to) and `env`."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DATABASE_URL": PRODUCTION["DATABASE_URL"], **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def shell(env: dict[str, str]) -> dict:
    result = run(["manage.py", "shell", "-c", SHOW], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_check_deploy_passes_with_only_the_documented_production_variables():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_an_https_origin_turns_the_secure_settings_on_and_says_so(tmp_path):
    values = shell({**PRODUCTION, "DATA_DIR": str(tmp_path)})
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"] and values["SECURE_SSL_REDIRECT"]
    assert values["SECURE_HSTS_SECONDS"] >= 31536000 and values["SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://sessions.example.com"]
    assert values["SECURE_PROXY_SSL_HEADER"] is None
    behind_proxy = shell(
        {**PRODUCTION, "DATA_DIR": str(tmp_path), "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO"}
    )
    assert behind_proxy["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    relaxed = shell({**PRODUCTION, "DATA_DIR": str(tmp_path), "SECURE_SSL_REDIRECT": "false"})
    assert relaxed["SECURE_SSL_REDIRECT"] is False and relaxed["SESSION_COOKIE_SECURE"] is True


def test_an_http_origin_leaves_them_off_and_says_so_once(tmp_path):
    env = {**PRODUCTION, "DATA_DIR": str(tmp_path), "PUBLIC_BASE_URL": "http://192.0.2.10:8000"}
    result = run(["manage.py", "check"], env)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "HTTPS settings off" in line]
    assert notes == [
        "[WARNING] config.security: HTTPS settings off (no secure cookies, HSTS or HTTPS redirect): "
        "PUBLIC_BASE_URL is http://192.0.2.10:8000, not https://"
    ]
    values = shell(env)
    assert not values["SESSION_COOKIE_SECURE"] and not values["SECURE_SSL_REDIRECT"]
    assert values["SECURE_HSTS_SECONDS"] == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FIELD_ENCRYPTION_KEYS": ""}, "FIELD_ENCRYPTION_KEYS must be set when DEBUG is off"),
        ({"FIELD_ENCRYPTION_KEYS": "not-a-key"}, "FIELD_ENCRYPTION_KEYS: key 1 is not a Fernet key"),
        ({"SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"}, "SECURE_PROXY_SSL_HEADER must name"),
    ],
)
def test_it_refuses_to_start_without_usable_values(tmp_path, env, message):
    result = run(["manage.py", "check"], {**PRODUCTION, "DATA_DIR": str(tmp_path), **env})
    assert result.returncode != 0
    assert message in result.stderr.splitlines()[-1]
    assert "not-a-key" not in result.stderr.splitlines()[-1]


def test_a_local_debug_run_generates_its_key_once_owner_only(tmp_path):
    env = {"DEBUG": "true", "DATA_DIR": str(tmp_path)}
    first = shell(env)
    key_file = tmp_path / "dev-field-encryption-key"
    assert key_file.stat().st_mode & 0o077 == 0
    assert first["FIELD_ENCRYPTION_KEYS"] == [key_file.read_text().strip()]
    assert shell(env)["FIELD_ENCRYPTION_KEYS"] == first["FIELD_ENCRYPTION_KEYS"]
    Fernet(first["FIELD_ENCRYPTION_KEYS"][0])  # a usable key


@pytest.mark.django_db
@override_settings(SECURE_SSL_REDIRECT=True)
def test_the_https_redirect_spares_twilio_webhooks():
    client = Client()
    assert client.get("/admin/login/").status_code == 301
    response = client.post("/webhooks/twilio/sms/", {"Body": "x"})
    assert response.status_code == 403  # reached the signature check: not redirected


def test_it_warns_once_at_start_when_no_twilio_auth_token_is_set(tmp_path):
    warning = "[WARNING] config.security: TWILIO_AUTH_TOKEN is not set: every Twilio webhook will be refused"
    without = run(["manage.py", "check"], {**PRODUCTION, "DATA_DIR": str(tmp_path)})
    assert without.returncode == 0, without.stderr
    assert [line for line in without.stderr.splitlines() if line.startswith(warning)] != []
    assert len([line for line in without.stderr.splitlines() if "TWILIO_AUTH_TOKEN" in line]) == 1
    token = secrets.token_hex(16)
    with_token = run(
        ["manage.py", "check"], {**PRODUCTION, "DATA_DIR": str(tmp_path), "TWILIO_AUTH_TOKEN": token}
    )
    assert with_token.returncode == 0, with_token.stderr
    assert "TWILIO_AUTH_TOKEN" not in with_token.stderr
    assert token not in with_token.stderr + with_token.stdout


def test_it_warns_at_start_when_sending_is_on_but_twilio_could_not_call_back(tmp_path):
    env = {**PRODUCTION, "DATA_DIR": str(tmp_path), "TWILIO_AUTH_TOKEN": secrets.token_hex(16)}
    env["TWILIO_ACCOUNT_SID"] = "AC" + "0" * 32
    warning = "PUBLIC_BASE_URL is not set: replies are sent without a status callback"
    assert warning not in run(["manage.py", "check"], env).stderr
    without_origin = run(["manage.py", "check"], {**env, "PUBLIC_BASE_URL": ""})
    assert without_origin.returncode == 0, without_origin.stderr
    assert warning in without_origin.stderr
