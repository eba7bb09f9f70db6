import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from sessions_app.models import Channel, ChannelKind, Contact, Direction, Message, Role, Session


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct horse battery staple")


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel
        django_get_or_create = ("kind", "address")

    kind = ChannelKind.SMS
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
