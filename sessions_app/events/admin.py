"""Admin for the event webhooks: endpoints (with a notice for each one disabled by its failures and
the secret shown once), the deliveries with their attempts and a *resend* action, and the attempt
log with filters."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from sessions_app.events import dispatch
from sessions_app.events.models import Delivery, DeliveryAttempt, EventEndpoint


@admin.register(EventEndpoint)
class EventEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "description", "event_types", "enabled", "failing_since", "disabled_reason"]
    list_filter = ["enabled"]
    search_fields = ["url", "description"]
    readonly_fields = ["failing_since", "disabled_reason", "previous_secret_expires_at", "created_at"]
    actions = ["rotate_secrets"]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        for endpoint in EventEndpoint.objects.filter(enabled=False).exclude(disabled_reason=""):
            messages.warning(request, f"Endpoint {endpoint.url} is disabled. {endpoint.disabled_reason}")
        return super().changelist_view(request, extra_context)

    def save_model(self, request: HttpRequest, obj: EventEndpoint, form: Any, change: bool) -> None:
        if change and obj.enabled and "enabled" in form.changed_data:
            obj.failing_since = None  # enabled again by staff: the failure is forgotten
            obj.disabled_reason = ""
        super().save_model(request, obj, form, change)
        if not change:
            messages.warning(request, f"The endpoint's signing secret, shown this once: {obj.secret}")

    @admin.action(description="Rotate the secret (the old one signs too for 24 h)")
    def rotate_secrets(self, request: HttpRequest, queryset: QuerySet[EventEndpoint]) -> None:
        for endpoint in queryset:
            secret = endpoint.rotate_secret()
            messages.warning(request, f"New secret of {endpoint.url}, shown this once: {secret}")


ATTEMPT_FIELDS = ("attempted_at", "status_code", "duration_ms", "error", "response")


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ATTEMPT_FIELDS
    readonly_fields = ATTEMPT_FIELDS
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "endpoint",
        "event_type",
        "session_id",
        "sequence",
        "state",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
    ]
    list_filter = ["state", "endpoint", "event__type", "created_at"]
    list_select_related = ["endpoint", "event"]
    search_fields = ["=event__webhook_id", "=session_id"]
    search_help_text = "A webhook-id or a session id, exactly."
    show_full_result_count = False
    readonly_fields = [
        "event",
        "endpoint",
        "session_id",
        "sequence",
        "state",
        "attempts",
        "next_attempt_at",
        "claimed_at",
        "delivered_at",
        "last_status_code",
        "last_error",
        "created_at",
        "body",
    ]
    exclude = ["event"]
    inlines = [DeliveryAttemptInline]
    actions = ["resend"]

    @admin.display(description="type", ordering="event__type")
    def event_type(self, delivery: Delivery) -> str:
        return delivery.event.type

    @admin.display(description="payload")
    def body(self, delivery: Delivery) -> str:
        return delivery.event.body

    @admin.action(description="Resend the selected deliveries")
    def resend(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = dispatch.resend(queryset)
        messages.success(request, f"{count} delivery(ies) will be sent again.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin):
    """The delivery log: every attempt, with what came back."""

    list_display = ["attempted_at", "delivery", "endpoint", "status_code", "duration_ms", "error"]
    list_filter = ["status_code", "attempted_at", "delivery__endpoint"]
    list_select_related = ["delivery__endpoint"]
    show_full_result_count = False
    readonly_fields = ["delivery", "attempted_at", "status_code", "duration_ms", "response", "error"]

    @admin.display(description="endpoint")
    def endpoint(self, attempt: DeliveryAttempt) -> str:
        return str(attempt.delivery.endpoint)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
