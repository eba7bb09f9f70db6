"""Who an API caller speaks for: contacts for chat-API users, logged-in users and 000's people."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction

from sessions_app.ingest.rule import contact_for_phone
from sessions_app.models import Contact

# Logged-in users (JWT or Django login) are contacts in this namespace, apart from any client's
# business ids: a chat client cannot claim `user:7` in its own business and reach user 7's sessions.
USER_NAMESPACE = "@users"


def contact_for_external_user(business_id: str, external_user_id: str) -> Contact:
    """The contact a chat client calls `external_user_id` in `business_id`, created if new."""
    contact = Contact.objects.filter(business_id=business_id, external_user_id=external_user_id).first()
    if contact is not None:
        return contact
    try:
        with transaction.atomic():
            return Contact.objects.create(business_id=business_id, external_user_id=external_user_id)
    except IntegrityError:  # a concurrent first message created it
        return Contact.objects.get(business_id=business_id, external_user_id=external_user_id)


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
