"""API keys: issue (the plain key is shown once), verify, revoke. Only a SHA-256 of the key is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.utils import timezone

from sessions_app.models import ApiKey

KEY_PREFIX = "sk_"  # JWTs start with "eyJ": the prefix tells the two Bearer kinds apart


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_key(name: str, business_id: str = "") -> tuple[ApiKey, str]:
    """A new key; returns the row and the plain key, which is never stored or shown again."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(name=name, prefix=prefix, key_hash=_hash(secret), business_id=business_id)
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


def fill_new_key(key: ApiKey) -> str:
    """Give an unsaved ApiKey (made in admin) its prefix and hash; returns the plain key."""
    key.prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key.key_hash = _hash(secret)
    return f"{KEY_PREFIX}{key.prefix}_{secret}"


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def verify_key(token: str) -> ApiKey | None:
    """The live key `token` names, or None (unknown, malformed, wrong secret or revoked)."""
    if not looks_like_key(token):
        return None
    prefix, _, secret = token[len(KEY_PREFIX) :].partition("_")
    if not prefix or not secret:
        return None
    key = ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.key_hash, _hash(secret)):
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)  # at most once a minute per key
    return key


def revoke_key(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
