"""The admin action that erases contacts, behind a confirmation page that says what will go."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from sessions_app.models import Contact, Message, Session
from sessions_app.privacy.erasure import erase_contacts


@admin.action(description="Erase selected contacts with their sessions and messages", permissions=["delete"])
def erase_selected_contacts(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Contact]
) -> TemplateResponse | None:
    contacts = list(queryset)
    if request.POST.get("confirm") == "yes":
        record = erase_contacts(contacts, actor=f"staff:{request.user.get_username()}")
        summary = ", ".join(f"{count} {label}" for label, count in record.deleted.items())
        modeladmin.message_user(request, f"Erased ({summary}); audit record {record.pk}.", messages.SUCCESS)
        return None
    sessions = Session.objects.filter(contact__in=contacts)
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Erase contacts",
        "opts": modeladmin.model._meta,
        "contacts": contacts,
        "session_count": sessions.count(),
        "message_count": Message.objects.filter(session__in=sessions).count(),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/sessions_app/contact/erase_confirmation.html", context)
