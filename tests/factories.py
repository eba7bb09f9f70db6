from datetime import datetime

import factory
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from sessions_app.models import (
    Channel,
    ChannelKind,
    Contact,
    Direction,
    EventEndpoint,
    Message,
    Role,
    Session,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct horse battery staple")


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel
        django_get_or_create = ("kind", "address", "surface")

    kind = ChannelKind.SMS
    surface = ""
    address = "+15005550006"


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    phone = factory.Sequence(lambda n: f"+1555{n:07d}")


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Session

    channel = factory.SubFactory(ChannelFactory)
    channel_kind = factory.LazyAttribute(lambda o: o.channel.kind)
    contact = factory.SubFactory(ContactFactory)
    title = factory.LazyAttribute(lambda o: f"SMS from {o.contact.phone}")
    last_message_at = factory.LazyFunction(timezone.now)
    first_message_at = factory.LazyFunction(timezone.now)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    session = factory.SubFactory(SessionFactory)
    direction = Direction.INBOUND
    role = Role.CONTACT
    content = factory.Sequence(lambda n: f"message {n}")


def sessions_ended_oldest_first(channel: Channel, now: datetime, ended: tuple[str, str]) -> None:
    """60,000 sessions a second apart, written oldest first as ingest writes them (so position in
    the table follows last activity): the newest 30,000 active, the older 30,000 alternating between
    the two `ended` statuses. The shape of a real table that misleads the planner, which takes status
    and age to be independent; analyzed, so plans see it (PostgreSQL only)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO sessions_app_session (id, channel_id, channel_kind, business_id, location_id,
                agent_id, title, description, thumbnail_url, status, metadata, mission_id,
                message_count, last_activity_at, status_changed_at, created_at, updated_at)
            SELECT gen_random_uuid(), %s, 'sms', '', '', '', '', '', '', s, %s, '', 1, t, t, t, t
            FROM (
                SELECT CASE WHEN i > 30000 THEN 'active' WHEN i %% 2 = 0 THEN %s ELSE %s END AS s,
                    %s::timestamptz - (60000 - i) * interval '1 second' AS t
                FROM generate_series(1, 60000) AS i
            ) AS rows
            """,
            [channel.pk, Session._meta.get_field("metadata").get_prep_value({}), *ended, now],
        )
        cursor.execute("ANALYZE sessions_app_session")


class EventEndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EventEndpoint

    url = "https://hooks.example.com/events"
    event_types = factory.LazyFunction(lambda: ["*"])
