"""Staff pages: the sessions list and one session's thread, with live updates and actions.

Views read through `queries.py` and change state only through the services
(`lifecycle.transition_session`, `outbound.record_outbound_message`); they validate and render.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from sessions_app.delivery.outbound import MESSAGING_KINDS, record_outbound_message
from sessions_app.ingest.channels import set_reuse_window
from sessions_app.ingest.window_report import BadReportQuery, ReportQuery, window_report
from sessions_app.lifecycle.boundaries import BoundaryRefused, merge_sessions, split_session
from sessions_app.lifecycle.transitions import TransitionRefused, allowed_targets, transition_session
from sessions_app.models import Channel, DeliveryStatus, Direction, Message, Role, Session, SessionStatus
from sessions_app.ui import queries
from sessions_app.ui.chart import build_chart
from sessions_app.ui.window_chart import build_window_chart, duration_label

# The staff actions this page offers, in button order: (target status, button label).
ACTIONS = [
    (SessionStatus.CLOSED, "Close"),
    (SessionStatus.RESOLVED, "Resolve"),
    (SessionStatus.ARCHIVED, "Archive"),
    (SessionStatus.ACTIVE, "Reopen"),
]
ACTION_LABELS: dict[str, str] = {str(to): label for to, label in ACTIONS}
# Delivery states after which an outbound message's status no longer changes.
FINAL_DELIVERY = {DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED, DeliveryStatus.FAILED, ""}


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous visitors go to the login page; signed-in people who are not staff get 403."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied("Only staff can see sessions.")
        return view(request, *args, **kwargs)

    return wrapper


def _since(request: HttpRequest) -> datetime | None:
    moment = parse_datetime(request.GET.get("since", "").replace(" ", "+"))
    return moment if moment is not None and moment.tzinfo else None


def _origin(request: HttpRequest) -> str:
    return settings.PUBLIC_BASE_URL or f"{request.scheme}://{request.get_host()}"


def _webhook_urls(request: HttpRequest) -> list[tuple[str, str]]:
    base = _origin(request)
    return [
        ("SMS (A message comes in)", base + reverse("twilio-sms")),
        ("WhatsApp (When a message comes in)", base + reverse("twilio-whatsapp")),
        ("Voice (A call comes in)", base + reverse("twilio-voice")),
    ]


# --- The sessions list ----------------------------------------------------------------------------


@require_GET
@staff_required
def session_list(request: HttpRequest) -> HttpResponse:
    filters = queries.ListFilters.from_query(request.GET)
    page = queries.sessions_page(filters)
    counts = queries.tab_counts(filters)
    tabs = [
        {
            "key": tab.key,
            "label": tab.label,
            "count": queries.count_label(counts.get(tab.key, 0)),
            "url": filters.url(channel=tab.key),
            "current": tab.key == filters.channel,
        }
        for tab in queries.TABS
    ]
    context = {
        "filters": filters,
        "page": page,
        "tabs": tabs,
        "statuses": [(value, label, value in filters.statuses) for value, label in SessionStatus.choices],
        "sort_options": [("activity", "Last activity"), ("created", "Created")],
        "next_url": filters.url(cursor=page.next_cursor) if page.next_cursor else "",
        "first_page_url": filters.url() if filters.cursor else "",
        "clear_url": reverse("sessions_ui:list"),
        "export_url": reverse("session-export") + "?" + filters.export_query(),
        "reports_url": reverse("sessions_ui:reports"),
        "chart": build_chart(queries.daily_counts()),
        "no_sessions_at_all": counts.get("", 0) == 0 and not filters.is_filtered,
        "webhook_urls": _webhook_urls(request),
        "origin": _origin(request),
        "public_base_url_set": bool(settings.PUBLIC_BASE_URL),
        "now": timezone.now(),
        "poll_url": reverse("sessions_ui:list-updates") + filters.url(),
        "poll_ms": settings.STAFF_UI_POLL_MS,
    }
    return render(request, "sessions_ui/list.html", context)


@require_GET
@staff_required
def session_list_updates(request: HttpRequest) -> HttpResponse:
    """What changed since `since` (the previous answer's `now`): rows to insert or refresh, and counts."""
    since = _since(request)
    if since is None:
        return HttpResponseBadRequest(
            "since must be an ISO 8601 time with a zone, e.g. 2025-01-31T10:00:00+00:00"
        )
    now = timezone.now()
    filters = queries.ListFilters.from_query(request.GET)
    changed = queries.changed_sessions(filters, since)
    rows = [
        {
            "id": str(session.pk),
            # Started since the last poll: in "created" order it belongs on top; otherwise it is an
            # older session whose activity changed and belongs wherever its creation time puts it.
            "new": session.created_at > since - queries.POLL_OVERLAP,
            "html": render_to_string("sessions_ui/_row.html", {"session": session, "now": now}, request),
        }
        for session in changed
    ]
    counts = {key: queries.count_label(n) for key, n in queries.tab_counts(filters).items()}
    return JsonResponse({"now": now.isoformat(), "rows": rows, "counts": counts})


# --- One session ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaItem:
    url: str
    content_type: str
    is_image: bool
    name: str


def _media_items(message: Message) -> list[MediaItem]:
    items = []
    for entry in message.media or []:
        if not isinstance(entry, dict):
            continue
        url = str(entry.get("url", ""))
        # Only web links become links or images: a stored "javascript:" URL must never be clickable.
        if urlsplit(url).scheme not in {"http", "https"}:
            continue
        content_type = str(entry.get("content_type", "")) or "unknown type"
        name = url.rstrip("/").rsplit("/", 1)[-1] or url
        items.append(MediaItem(url, content_type, content_type.startswith("image/"), name))
    return items


@dataclass(frozen=True)
class ThreadMessage:
    message: Message
    media: list[MediaItem]
    tracks_delivery: bool  # outbound with a delivery status that may still change
    splittable: bool = False  # "Split here" is offered beside it: not the session's first message


def _thread(
    messages_: list[Message], *, first_id: int | None = None, splittable: bool = True
) -> list[ThreadMessage]:
    return [
        ThreadMessage(
            message=m,
            media=_media_items(m),
            tracks_delivery=m.direction == Direction.OUTBOUND and m.delivery_status not in FINAL_DELIVERY,
            splittable=splittable and m.pk != first_id,
        )
        for m in messages_
    ]


def _first_message_id(session_id: Any) -> int | None:
    return (
        Message.objects.filter(session_id=session_id)
        .order_by("created_at", "id")
        .values_list("pk", flat=True)
        .first()
    )


def _load_session(session_id: UUID) -> Session:
    return get_object_or_404(Session.objects.select_related("contact", "channel", "owner"), pk=session_id)


def _render_session(
    request: HttpRequest,
    session: Session,
    *,
    status: int = 200,
    reply_text: str = "",
    reply_error: str = "",
) -> HttpResponse:
    messages_ = list(session.messages.order_by("created_at", "id"))
    reshapable = session.status != SessionStatus.MERGED
    thread = _thread(messages_, first_id=messages_[0].pk if messages_ else None, splittable=reshapable)
    targets = allowed_targets(session.status)
    context = {
        "session": session,
        "thread": thread,
        "history": list(session.status_changes.order_by("created_at", "id")),
        "actions": [(to, label) for to, label in ACTIONS if to in targets],
        "merge_targets": queries.merge_targets(session) if reshapable else [],
        "allowed_text": ", ".join(sorted(targets)) or "nothing",
        "metadata": sorted((str(k), v) for k, v in (session.metadata or {}).items()),
        "reply_text": reply_text,
        "reply_error": reply_error,
        "reply_max": settings.SMS_MAX_BODY_LENGTH,
        "now": timezone.now(),
        "poll_url": reverse("sessions_ui:detail-updates", args=[session.pk]),
        "poll_ms": settings.STAFF_UI_POLL_MS,
    }
    return render(request, "sessions_ui/detail.html", context, status=status)


@require_GET
@staff_required
def session_detail(request: HttpRequest, session_id: UUID) -> HttpResponse:
    return _render_session(request, _load_session(session_id))


@require_GET
@staff_required
def session_detail_updates(request: HttpRequest, session_id: UUID) -> HttpResponse:
    """Messages newer than `since`, the delivery status of the `pending` outbound messages, the status."""
    since = _since(request)
    if since is None:
        return HttpResponseBadRequest(
            "since must be an ISO 8601 time with a zone, e.g. 2025-01-31T10:00:00+00:00"
        )
    try:
        pending = [int(part) for part in request.GET.get("pending", "").split(",") if part][:200]
    except ValueError:
        return HttpResponseBadRequest("pending must be comma-separated message ids")
    now = timezone.now()
    session = Session.objects.filter(pk=session_id).only("status", "message_count").first()
    if session is None:
        raise Http404("No such session")
    new = _thread(
        list(
            Message.objects.filter(
                session_id=session_id, created_at__gt=since - queries.POLL_OVERLAP
            ).order_by("created_at", "id")
        ),
        first_id=_first_message_id(session_id),
        splittable=session.status != SessionStatus.MERGED,
    )
    delivery = dict(
        Message.objects.filter(session_id=session_id, pk__in=pending).values_list("pk", "delivery_status")
    )
    labels = dict(DeliveryStatus.choices)
    return JsonResponse(
        {
            "now": now.isoformat(),
            "status": session.status,
            "status_label": session.get_status_display(),
            "message_count": session.message_count,
            "messages": [
                {
                    "id": item.message.pk,
                    "html": render_to_string("sessions_ui/_message.html", {"item": item}, request),
                }
                for item in new
            ],
            "delivery": {
                str(pk): {
                    "status": value,
                    "label": labels.get(value, value),
                    "final": value in FINAL_DELIVERY,
                }
                for pk, value in delivery.items()
            },
        }
    )


@require_POST
@staff_required
def session_transition(request: HttpRequest, session_id: UUID) -> HttpResponse:
    session = _load_session(session_id)
    to_status = request.POST.get("to", "")
    if to_status not in ACTION_LABELS:
        messages.error(
            request, f"“{to_status}” is not an action here; use Close, Resolve, Archive or Reopen."
        )
        return _render_session(request, session, status=400)
    try:
        transition_session(session, to_status, actor=f"staff:{request.user.get_username()}")
    except TransitionRefused as exc:
        messages.error(request, f"{ACTION_LABELS[to_status]} refused: {exc}")
        session.refresh_from_db()
        return _render_session(request, session, status=409)
    messages.success(request, f"Session is now {session.get_status_display().lower()}.")
    return redirect("sessions_ui:detail", session_id=session.pk)


@require_POST
@staff_required
def session_reply(request: HttpRequest, session_id: UUID) -> HttpResponse:
    session = _load_session(session_id)
    text = request.POST.get("body", "").strip()
    limit = settings.SMS_MAX_BODY_LENGTH
    error = ""
    if not text:
        error = "Write a reply before sending."
    elif len(text) > limit:
        error = f"A reply can be at most {limit} characters; this one has {len(text)}."
    if error:
        return _render_session(request, session, status=400, reply_text=text, reply_error=error)
    record_outbound_message(
        session, text, role=Role.STAFF, metadata={"sent_by": f"staff:{request.user.get_username()}"}
    )
    if session.channel_kind in MESSAGING_KINDS:
        messages.success(request, "Reply stored; it is sent to the contact's phone.")
    else:
        messages.success(request, "Reply stored in the thread.")
    return redirect(reverse("sessions_ui:detail", args=[session.pk]) + "#reply")


def _boundary_refused(
    request: HttpRequest, session: Session, what: str, exc: BoundaryRefused
) -> HttpResponse:
    messages.error(request, f"{what} refused: {exc}")
    session.refresh_from_db()
    return _render_session(request, session, status=409 if exc.conflict else 400)


@require_POST
@staff_required
def session_merge(request: HttpRequest, session_id: UUID) -> HttpResponse:
    """Merge this session into the one chosen (same contact and channel): its messages move there."""
    session = _load_session(session_id)
    try:
        target = Session.objects.filter(pk=UUID(request.POST.get("into", ""))).first()
    except ValueError:
        target = None
    if target is None:
        messages.error(request, "Choose the session to merge this one into.")
        return _render_session(request, session, status=400)
    try:
        merge_sessions(session, target, actor=f"staff:{request.user.get_username()}")
    except BoundaryRefused as exc:
        return _boundary_refused(request, session, "Merge", exc)
    messages.success(request, f"Session “{session}” was merged into this one; its messages are here now.")
    return redirect("sessions_ui:detail", session_id=target.pk)


@require_POST
@staff_required
def session_split(request: HttpRequest, session_id: UUID) -> HttpResponse:
    """Split this session before the message chosen: it and every later message go to a new session."""
    session = _load_session(session_id)
    try:
        message_id = int(request.POST.get("message_id", ""))
    except ValueError:
        messages.error(request, "Choose the message to split at.")
        return _render_session(request, session, status=400)
    try:
        new = split_session(session, message_id, actor=f"staff:{request.user.get_username()}")
    except BoundaryRefused as exc:
        return _boundary_refused(request, session, "Split", exc)
    messages.success(request, f"Split: this new session holds message {message_id} and every later one.")
    return redirect("sessions_ui:detail", session_id=new.pk)


# --- A channel's windows: the what-if report --------------------------------------------------------


@require_GET
@staff_required
def channel_windows(request: HttpRequest, channel_id: int) -> HttpResponse:
    """The channel's gap histogram with its window marked, sessions against the window, and buttons
    that set the window (ingest/window_report.py)."""
    channel = get_object_or_404(Channel, pk=channel_id)
    current = int(channel.effective_reuse_window.total_seconds())
    now = timezone.now()
    status = 200
    try:
        query = ReportQuery.parse(
            request.GET.get("windows"), request.GET.get("since"), request.GET.get("until"), now=now
        )
    except BadReportQuery as exc:
        messages.error(request, f"{exc.field}: {exc} Showing the defaults instead.")
        query, status = ReportQuery.parse(None, None, None, now=now), 400
    asked = sorted({*query.windows, current} if current else set(query.windows))
    report = window_report(channel, asked, query.since, query.until)
    abandon = channel.effective_abandon_after
    rows = [
        {
            "seconds": w.seconds,
            "label": duration_label(w.seconds),
            "sessions": w.sessions,
            "current": w.seconds == current,
            "allowed": not abandon or w.seconds <= abandon,
        }
        for w in report.windows
    ]
    context = {
        "channel": channel,
        "current": current,
        "current_label": duration_label(current),
        "own_window": channel.reuse_window is not None,
        "abandon_label": duration_label(abandon) if abandon else "",
        "report": report,
        "chart": build_window_chart(report, current),
        "rows": rows,
        "query": query,
        "windows_text": ",".join(str(w) for w in query.windows),
    }
    return render(request, "sessions_ui/channel_windows.html", context, status=status)


@require_POST
@staff_required
def channel_set_window(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = get_object_or_404(Channel, pk=channel_id)
    back = reverse("sessions_ui:channel-windows", args=[channel.pk])
    query = request.POST.get("query", "")
    if query and all(part.split("=", 1)[0] in {"windows", "since", "until"} for part in query.split("&")):
        back += "?" + query
    try:
        seconds = int(request.POST.get("seconds", ""))
        set_reuse_window(channel, seconds)
    except ValueError:
        messages.error(request, "Choose a window in whole seconds.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"The reuse window of {channel} is now {duration_label(seconds)}.")
    return redirect(back)
