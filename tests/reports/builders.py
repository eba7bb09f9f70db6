"""Sessions, messages and status changes at given times, for the reports' tests."""

from __future__ import annotations

from datetime import datetime

from sessions_app.models import Channel, Message, Session, StatusChange
from tests.factories import ChannelFactory, MessageFactory, SessionFactory

ADDRESSES = {"sms": "+15005550006", "whatsapp": "+15005550006", "voice": "+15005550006"}


def channel_of(kind: str) -> Channel:
    return ChannelFactory(kind=kind, address=ADDRESSES.get(kind, ""))


def make_session(created: datetime, kind: str, **fields: object) -> Session:
    return SessionFactory(
        channel=channel_of(kind),
        created_at=created,
        updated_at=created,
        first_message_at=None,
        last_message_at=None,
        **fields,
    )


def add_message(session: Session, when: datetime, direction: str, role: str, **fields: object) -> Message:
    return MessageFactory(session=session, created_at=when, direction=direction, role=role, **fields)


def add_change(
    session: Session, when: datetime, from_status: str, to_status: str, actor: str
) -> StatusChange:
    return StatusChange.objects.create(
        session=session, from_status=from_status, to_status=to_status, actor=actor, created_at=when
    )
