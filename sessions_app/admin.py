from __future__ import annotations

from functools import cached_property
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest

from sessions_app.agents.tools import BACKEND_HANDLERS
from sessions_app.lifecycle.boundaries import BoundaryRefused, merge_sessions
from sessions_app.lifecycle.transitions import TransitionRefused, transition_session
from sessions_app.models import (
    AgentTool,
    Channel,
    Character,
    Contact,
    ErasureRecord,
    KeywordAnswer,
    Message,
    Session,
    SessionStatus,
    StatusChange,
    ToolRunsOn,
)
from sessions_app.privacy.erasure_admin import erase_selected_contacts
from sessions_app.search.query import search_sessions


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = [
        "kind",
        "address",
        "name",
        "surface",
        "business_id",
        "reuse_window",
        "reopen_window",
        "abandon_after",
        "archive_after",
        "is_active",
    ]
    # Abandon-after beside the reuse window: each limits the other (Channel.clean), and the form
    # must hold the field that a refusal is reported on.
    list_editable = ["reuse_window", "reopen_window", "abandon_after", "archive_after", "is_active"]
    list_filter = ["kind", "surface", "is_active"]
    search_fields = ["address", "name"]


class AgentToolForm(forms.ModelForm):
    class Meta:
        model = AgentTool
        fields = ["name", "description", "parameters", "runs_on", "is_active"]

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if data.get("runs_on") == ToolRunsOn.BACKEND and data.get("name") not in BACKEND_HANDLERS:
            known = ", ".join(sorted(BACKEND_HANDLERS))
            self.add_error("name", f"A backend tool names a handler of this server: one of {known}.")
        return data


@admin.register(AgentTool)
class AgentToolAdmin(admin.ModelAdmin):
    form = AgentToolForm
    list_display = ["name", "runs_on", "is_active", "updated_at"]
    list_filter = ["runs_on", "is_active"]
    search_fields = ["name", "description"]


@admin.register(Character)
class CharacterAdmin(admin.ModelAdmin):
    list_display = ["name", "config_id", "model", "updated_at"]
    search_fields = ["name", "config_id"]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["__str__", "phone", "whatsapp_profile_name", "company", "business_id", "created_at"]
    search_fields = ["phone", "display_name", "whatsapp_profile_name", "company", "external_user_id"]
    list_filter = ["created_at"]
    readonly_fields = ["created_at", "updated_at"]
    actions = [erase_selected_contacts]


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    ordering = ["created_at", "id"]
    fields = ("created_at", "direction", "role", "content", "media", "delivery_status", "external_id")
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class StatusChangeInline(admin.TabularInline):
    model = StatusChange
    extra = 0
    can_delete = False
    fields = ("created_at", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _report(modeladmin: admin.ModelAdmin, request: HttpRequest, done: str, refused: list[str]) -> None:
    """What a bulk action did (`done`, if anything) and the first ten sessions it refused."""
    if done:
        modeladmin.message_user(request, done, messages.SUCCESS)
    for line in refused[:10]:
        modeladmin.message_user(request, line, messages.WARNING)


def _transition_action(to_status: str, label: str):  # type: ignore[no-untyped-def]
    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        moved, refused = 0, []
        for session in queryset:
            try:
                transition_session(session, to_status, actor=f"staff:{request.user.get_username()}")
                moved += 1
            except TransitionRefused as exc:
                refused.append(f"{session}: {exc}")
        _report(modeladmin, request, f"{moved} session(s) now {to_status}." if moved else "", refused)

    action.__name__ = f"mark_{to_status}"
    return admin.action(description=label)(action)


@admin.action(description="Merge selected sessions into the oldest of them (same contact and channel)")
def merge_selected(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Session]) -> None:
    """The selected sessions' messages move into the one that started first (lifecycle/boundaries.py)."""
    sessions = list(queryset.order_by("created_at", "id")[:101])
    if len(sessions) < 2:
        modeladmin.message_user(request, "Select at least two sessions to merge.", messages.WARNING)
        return
    if len(sessions) > 100:
        modeladmin.message_user(request, "Merge at most 100 sessions at a time.", messages.WARNING)
        return
    target, *others = sessions
    merged, refused = 0, []
    for source in others:
        try:
            merge_sessions(source, target, actor=f"staff:{request.user.get_username()}")
            merged += 1
        except BoundaryRefused as exc:
            refused.append(f"{source}: {exc}")
    _report(modeladmin, request, f"{merged} session(s) merged into “{target}”." if merged else "", refused)


class CappedCountPaginator(Paginator):
    """Counts at most CAP + 1 rows: the changelist then says "10001 sessions" and offers that many
    pages. An exact count of a million filtered sessions is a sequential scan, 156-248 ms on its own
    (docs/sweep.md, "Stop 18"); the staff page (`/sessions/`) caps its counts the same way."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        rows: QuerySet[Any] = self.object_list  # type: ignore[assignment]  # the changelist's queryset
        return rows.order_by().values("pk")[: self.CAP + 1].count()


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    paginator = CappedCountPaginator
    list_display = [
        "title",
        "channel_kind",
        "contact",
        "status",
        "message_count",
        "last_message_at",
        "created_at",
    ]
    list_select_related = ["contact", "channel"]
    list_filter = ["channel_kind", "status", "last_message_at", "created_at"]
    search_fields = [
        "contact__phone",
        "contact__display_name",
        "contact__whatsapp_profile_name",
        "title",
        "messages__content",
    ]
    search_help_text = "Phone, contact name, title or message text."
    # No date hierarchy: it reads the dates of every filtered row to draw its links (0.8-1.8 s a page
    # at a million sessions); the "created at" and "last message at" filters cover the same ground.
    ordering = ["-last_activity_at"]
    show_full_result_count = False

    def lookup_allowed(self, lookup: str, value: Any, request: HttpRequest) -> bool:
        # Several statuses at once (a hand-made `status__in=` URL; no filter link makes one) would be
        # the plain IN walking every newer session (1 s at a million): refused with a 400, as Django
        # refuses any lookup it does not offer.
        return lookup != "status__in" and super().lookup_allowed(lookup, value, request)

    readonly_fields = [
        "id",
        "channel",
        "channel_kind",
        "contact",
        "status",
        "merged_into",
        "message_count",
        "first_message_at",
        "last_message_at",
        "last_activity_at",
        "status_changed_at",
        "created_at",
        "updated_at",
    ]
    fields = [
        "id",
        "external_id",
        "title",
        "description",
        "thumbnail_url",
        "status",
        "merged_into",
        "channel",
        "channel_kind",
        "contact",
        "business_id",
        "location_id",
        "owner",
        "agent_id",
        "mission_id",
        "metadata",
        "message_count",
        "first_message_at",
        "last_message_at",
        "last_activity_at",
        "status_changed_at",
        "created_at",
        "updated_at",
    ]
    raw_id_fields = ["owner"]
    inlines = [MessageInline, StatusChangeInline]
    actions = [
        _transition_action(SessionStatus.CLOSED, "Close selected sessions"),
        _transition_action(SessionStatus.RESOLVED, "Resolve selected sessions"),
        _transition_action(SessionStatus.ARCHIVED, "Archive selected sessions"),
        _transition_action(SessionStatus.ACTIVE, "Reopen selected sessions"),
        merge_selected,
    ]

    def get_search_results(self, request, queryset, search_term):  # type: ignore[no-untyped-def]
        # The one search of every surface (API `q`, staff pages): indexed at millions of sessions,
        # where `search_fields`' joins and icontains would scan the messages.
        if not search_term.strip():
            return queryset, False
        return search_sessions(queryset, search_term), False


@admin.register(StatusChange)
class StatusChangeAdmin(admin.ModelAdmin):
    list_display = ["session", "from_status", "to_status", "actor", "created_at"]
    list_filter = ["to_status", "created_at"]
    list_select_related = ["session"]
    readonly_fields = ["session", "from_status", "to_status", "actor", "reason", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ErasureRecord)
class ErasureRecordAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "reference", "deleted"]
    readonly_fields = ["created_at", "actor", "reference", "deleted"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(KeywordAnswer)
class KeywordAnswerAdmin(admin.ModelAdmin):
    list_display = ["keyword", "answer", "position", "is_active", "updated_at"]
    list_editable = ["position", "is_active"]
    search_fields = ["keyword", "answer"]


class FailedFilter(admin.SimpleListFilter):
    title = "problems"
    parameter_name = "problem"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("reply", "Reply failed"), ("delivery", "Delivery failed or undelivered")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        if self.value() == "reply":
            return queryset.filter(reply_state="failed")
        if self.value() == "delivery":
            return queryset.filter(delivery_status__in=["failed", "undelivered"])
        return queryset


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Replies that failed and deliveries Twilio refused, with the reason, for staff to follow up."""

    list_display = [
        "created_at",
        "session",
        "role",
        "direction",
        "reply_state",
        "reply_error",
        "delivery_status",
        "delivery_error",
    ]
    list_filter = [FailedFilter, "reply_state", "delivery_status", "role", "created_at"]
    list_select_related = ["session"]
    # By provider id (a MessageSid from Twilio's console); text is found through the sessions' search.
    search_fields = ["=external_id"]
    search_help_text = "A provider's message id (MessageSid or CallSid:turn), exactly."
    show_full_result_count = False
    readonly_fields = [
        "session",
        "direction",
        "role",
        "content",
        "media",
        "provider",
        "external_id",
        "metadata",
        "in_reply_to",
        "reply_state",
        "reply_claimed_at",
        "reply_attempts",
        "reply_error",
        "delivery_status",
        "delivery_attempts",
        "delivery_claimed_at",
        "delivery_error",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


# --- API keys (the plain key is shown once, right after it is created) -----------------------------
from sessions_app.api.keys import fill_new_key  # noqa: E402
from sessions_app.models import ApiKey  # noqa: E402


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "business_id", "created_at", "last_used_at", "revoked_at"]
    search_fields = ["name", "prefix", "business_id"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    fields = ["name", "business_id", "prefix", "created_at", "last_used_at", "revoked_at"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: object, change: bool) -> None:
        plain = None if change else fill_new_key(obj)
        super().save_model(request, obj, form, change)
        if plain:
            self.message_user(
                request, f"New API key (copy it now; it is not shown again): {plain}", messages.WARNING
            )


# --- Event webhooks (registered by sessions_app/events/admin.py) -----------------------------------
from sessions_app.events.admin import EventEndpointAdmin as EventEndpointAdmin  # noqa: E402
