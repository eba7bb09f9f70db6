"""Who writes: contacts found or created by what identifies them, one function per kind of identity.

- A phone number (SMS, WhatsApp, voice, 000's people): `contact_for_phone`, which calls the same
  database function the reuse rule calls for a phone message (`sessions_app_phone_contact` in
  record_inbound.sql), so there is one get-or-create of phone contacts, not one per caller.
- A chat client's user in a business (seed 001's `businessId` + `userId`): `contact_for_external_user`.
- A logged-in user (JWT or Django login): `contact_for_user`, an external user in a namespace of its own.
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from sessions_app.models import Contact

# Logged-in users (JWT or Django login) are contacts in this namespace, apart from any client's
# business ids: a chat client cannot claim `user:7` in its own business and reach user 7's sessions.
USER_NAMESPACE = "@users"


def contact_for_phone(phone: str, *, whatsapp_id: str = "", profile_name: str = "") -> Contact:
    """The contact with this E.164 number, created if new; WhatsApp details kept current."""
    # The function returns the contact's row (and whether it created it, as `created`).
    found = Contact.objects.raw(
        "SELECT * FROM sessions_app_phone_contact(%s, %s, %s, %s)",
        [phone, whatsapp_id, profile_name, timezone.now()],
    )
    return next(iter(found))


def contact_for_external_user(business_id: str, external_user_id: str) -> Contact:
    """The contact a chat client calls `external_user_id` in `business_id`, created if new."""
    contact, _ = Contact.objects.get_or_create(business_id=business_id, external_user_id=external_user_id)
    return contact


def contact_for_user(user: AbstractBaseUser) -> Contact:
    """The contact that stands for a logged-in user in the sessions they own."""
    contact = contact_for_external_user(USER_NAMESPACE, str(user.pk))
    contact.keep_current(display_name=user.get_username())
    return contact


def contact_for_person(phone: str, name: str, company: str) -> Contact:
    """000's user: found by E.164 phone (the same person who texts us), name and company kept current."""
    with transaction.atomic():
        contact = contact_for_phone(phone)
        contact.keep_current(display_name=name, company=company)
    return contact
