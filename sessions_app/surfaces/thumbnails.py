"""Seed 000's `thumbnail`: an SVG of the session's title initials on a colour derived from its id.

The URL carries a signature of (session id, title): it is the same until the title changes, so
it can be cached for good, and nobody can list other sessions' thumbnails by guessing ids (an
`<img>` sends no credentials, so the signature is the authentication). A wrong signature is 404.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from xml.sax.saxutils import escape

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.crypto import salted_hmac
from django.views.decorators.http import require_GET

from sessions_app.models import Session

SALT = "sessions_app.thumbnail"
CACHE_SECONDS = 365 * 24 * 3600


def _version(session_id: uuid.UUID, title: str) -> str:
    return salted_hmac(SALT, f"{session_id}:{title}", algorithm="sha256").hexdigest()[:24]


def thumbnail_path(session: Session) -> str:
    path = reverse("sessions-webhook-thumbnail", kwargs={"session_id": session.pk})
    return f"{path}?v={_version(session.pk, session.title)}"


def initials(title: str) -> str:
    letters = [word[0] for word in title.split() if word[:1].isalnum()]
    return "".join(letters[:2]).upper() or "?"


def colour(session_id: uuid.UUID) -> str:
    hue = int(hashlib.sha256(str(session_id).encode()).hexdigest()[:8], 16) % 360
    return f"hsl({hue}, 55%, 45%)"


def render_svg(session: Session) -> str:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
        f'<rect width="96" height="96" rx="16" fill="{colour(session.pk)}"/>'
        '<text x="48" y="48" dy="0.35em" text-anchor="middle" font-family="sans-serif" '
        f'font-size="38" fill="#fff">{escape(initials(session.title))}</text></svg>'
    )


@require_GET
def thumbnail_view(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    session = Session.objects.filter(pk=session_id).only("id", "title").first()
    given = request.GET.get("v", "")
    if session is None or not hmac.compare_digest(given, _version(session.pk, session.title)):
        return HttpResponse(status=404, content_type="text/plain", content=b"No such thumbnail.")
    response = HttpResponse(render_svg(session), content_type="image/svg+xml")
    response["Cache-Control"] = f"public, max-age={CACHE_SECONDS}, immutable"
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response["X-Content-Type-Options"] = "nosniff"
    return response
