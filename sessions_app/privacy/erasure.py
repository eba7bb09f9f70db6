"""A person's data on request: find their contact records, export everything held, or erase it.

Erasure removes the contacts' sessions (with their messages, status changes and anything else
that belongs to a session) and the contacts themselves in one transaction, and leaves an
`ErasureRecord`: when, who, how many rows of each kind, never the person's data.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone

from sessions_app.models import Contact, ErasureRecord, Session
from sessions_app.phones import InvalidPhoneNumber, normalize_phone

log = logging.getLogger(__name__)


class ContactNotFound(LookupError):
    pass


def find_contacts(reference: str) -> list[Contact]:
    """The contacts `reference` names: a phone number (+E.164, every record holding it) or a contact id.

    Raises ContactNotFound (its message never repeats the number) or ValueError for a reference
    that is neither.
    """
    value = reference.strip()
    if value.isdigit():
        contacts = list(Contact.objects.filter(pk=int(value)))
        if not contacts:
            raise ContactNotFound(f"no contact with id {value}")
        return contacts
    if not value.startswith(("+", "whatsapp:")):
        raise ValueError("give a phone number in E.164 (+15551234567) or a contact id (digits only)")
    try:
        phone = normalize_phone(value)
    except InvalidPhoneNumber as exc:
        raise ValueError(f"not a usable phone number: {exc}") from None
    contacts = list(Contact.objects.filter(phone=phone).order_by("pk"))
    if not contacts:
        raise ContactNotFound("no contact with that phone number")
    return contacts


def _row(obj: models.Model) -> dict[str, Any]:
    # Every concrete field, so whatever a model gains later is exported without touching this.
    return {field.attname: field.value_from_object(obj) for field in obj._meta.concrete_fields}


def _session_children() -> list[str]:
    """Accessor names of everything that belongs to a session (messages, status changes, ...). Not the
    sessions merged into it (`merged_from`): they are the same contact's, exported as sessions."""
    return sorted(
        rel.get_accessor_name() or ""
        for rel in Session._meta.related_objects
        if rel.one_to_many and rel.on_delete is models.CASCADE and rel.related_model is not Session
    )


def export_contacts(contacts: list[Contact]) -> dict[str, Any]:
    """Everything held about `contacts`: their fields, sessions (metadata decrypted) and all that
    belongs to those sessions. A fixed number of queries, however many sessions there are."""
    children = _session_children()
    sessions = (
        Session.objects.filter(contact__in=contacts)
        .order_by("contact_id", "created_at", "pk")
        .prefetch_related(*children)
    )
    by_contact: dict[int, list[dict[str, Any]]] = {contact.pk: [] for contact in contacts}
    for session in sessions:
        row = _row(session)
        for accessor in children:
            row[accessor] = [_row(child) for child in getattr(session, accessor).all()]
        by_contact[session.contact_id or 0].append(row)
    return {
        "exported_at": timezone.now(),
        "contacts": [{**_row(contact), "sessions": by_contact[contact.pk]} for contact in contacts],
    }


def erase_contacts(contacts: list[Contact], *, actor: str, reference: str = "") -> ErasureRecord:
    """Delete `contacts`, their sessions and everything belonging to those, in one transaction."""
    with transaction.atomic():
        # Locking the contacts first makes a message arriving meanwhile wait, then fail its
        # foreign key and be retried by Twilio as a new contact: nothing half-erased.
        ids = list(
            Contact.objects.select_for_update()
            .filter(pk__in=[c.pk for c in contacts])
            .values_list("pk", flat=True)
        )
        deleted: Counter[str] = Counter()
        session_ids = [
            str(pk) for pk in Session.objects.filter(contact_id__in=ids).values_list("pk", flat=True)
        ]
        # The admin's change history repeats the contact's name or number (object_repr, titles).
        for model, object_ids in ((Contact, [str(pk) for pk in ids]), (Session, session_ids)):
            _, by_model = LogEntry.objects.filter(
                content_type=ContentType.objects.get_for_model(model), object_id__in=object_ids
            ).delete()
            deleted.update(by_model)
        _, by_model = Session.objects.filter(contact_id__in=ids).delete()
        deleted.update(by_model)
        _, by_model = Contact.objects.filter(pk__in=ids).delete()
        deleted.update(by_model)
        record = ErasureRecord.objects.create(
            actor=actor[:150],
            reference=reference[:128],
            deleted={k: v for k, v in sorted(deleted.items()) if v},
        )
    log.info("Erasure %s by %s removed %s", record.pk, record.actor, record.deleted)
    return record
