"""Socket tokens: a service mints one for one chat user with its API key, and a browser connects with
it instead of the key. Signed with Django's `TimestampSigner` (the SECRET_KEY), valid
`SOCKET_TOKEN_TTL` seconds to connect; a socket already open stays open."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core import signing
from django.utils import timezone

from sessions_app.models import ApiKey

SOCKET_TOKEN_TTL = 300
_SALT = "sessions_app.realtime.socket-token"


@dataclass(frozen=True)
class SocketGrant:
    """What a minted token lets its socket see: one chat user (`userId`) of one business."""

    business_id: str
    user_id: str
    key_id: int
    key_name: str


def mint_socket_token(key: ApiKey, business_id: str, user_id: str) -> tuple[str, datetime]:
    """A token for `user_id` of `business_id`, and when it stops being accepted to connect."""
    signer = signing.TimestampSigner(salt=_SALT)
    token = signer.sign_object({"b": business_id, "u": user_id, "k": key.pk})
    return token, timezone.now() + timedelta(seconds=SOCKET_TOKEN_TTL)


def looks_like_socket_token(token: str) -> bool:
    # Signed values are "payload:timestamp:signature"; JWTs and API keys never hold a colon.
    return token.count(":") == 2


def read_socket_token(token: str) -> SocketGrant | None:
    """The grant `token` carries, or None: forged, expired, malformed, or its key was revoked since."""
    try:
        data = signing.TimestampSigner(salt=_SALT).unsign_object(token, max_age=SOCKET_TOKEN_TTL)
    except (signing.BadSignature, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    business_id, user_id, key_id = data.get("b"), data.get("u"), data.get("k")
    if not isinstance(business_id, str) or not isinstance(user_id, str) or not isinstance(key_id, int):
        return None
    key = ApiKey.objects.filter(pk=key_id, revoked_at__isnull=True).first()
    if key is None:
        return None
    return SocketGrant(business_id=business_id, user_id=user_id, key_id=key.pk, key_name=key.name)
