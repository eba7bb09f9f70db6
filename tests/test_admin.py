import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions_app.admin import CappedCountPaginator
from sessions_app.models import ChannelKind, Message, Role, Session, SessionStatus, StatusChange
from tests.factories import ChannelFactory, ContactFactory, MessageFactory, SessionFactory, UserFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/sessions_app/session/"
CHANNELS = "/admin/sessions_app/channel/"
CONTACTS = "/admin/sessions_app/contact/"


@pytest.fixture
def staff_client(client):
    user = UserFactory(username="staff", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def changelist_queries(client, path=CHANGELIST) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    return len(queries)


def test_the_changelist_costs_the_same_queries_for_3_or_30_sessions(staff_client):
    for _ in range(3):
        MessageFactory()
    few = changelist_queries(staff_client)
    for _ in range(27):
        MessageFactory()
    many = changelist_queries(staff_client)
    assert few == many


def test_the_changelist_shows_kind_contact_title_status_and_count(staff_client):
    session = SessionFactory(title="SMS from +15550001111", message_count=4)
    content = staff_client.get(CHANGELIST).content.decode()
    assert "SMS from +15550001111" in content
    assert session.contact.phone in content
    assert ">4<" in content


def test_search_finds_message_text_once_per_session(staff_client):
    session = SessionFactory(title="needle session")
    MessageFactory(session=session, content="where is my parcel")
    MessageFactory(session=session, content="my parcel again")
    SessionFactory(title="other")
    response = staff_client.get(CHANGELIST, {"q": "parcel"})
    assert list(response.context["cl"].result_list) == [session]


def test_the_session_page_shows_messages_oldest_first(staff_client):
    session = SessionFactory()
    for text in ["first", "second", "third"]:
        MessageFactory(session=session, content=text)
    content = staff_client.get(f"{CHANGELIST}{session.pk}/change/").content.decode()
    assert content.index("first") < content.index("second") < content.index("third")


def test_the_close_action_goes_through_the_transition_function(staff_client):
    open_session = SessionFactory()
    archived = SessionFactory(status=SessionStatus.ARCHIVED)
    response = staff_client.post(
        CHANGELIST, {"action": "mark_closed", "_selected_action": [open_session.pk, archived.pk]}, follow=True
    )
    assert response.status_code == 200
    open_session.refresh_from_db()
    archived.refresh_from_db()
    assert open_session.status == SessionStatus.CLOSED
    assert archived.status == SessionStatus.ARCHIVED
    assert StatusChange.objects.get().actor == "staff:staff"
    assert "cannot become closed" in response.content.decode()


def test_anonymous_visitors_are_sent_to_login(client):
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def shown(response) -> set:
    assert response.status_code == 200
    return set(response.context["cl"].result_list)


def filter_spec(client, field_path: str):
    """The changelist's filter on `field_path` (failing when the list offers none)."""
    cl = client.get(CHANGELIST).context["cl"]
    return cl, next(spec for spec in cl.filter_specs if spec.field_path == field_path)


def filter_link(client, field_path: str, display: str) -> str:
    """The query string the filter panel links to for the choice `display` of `field_path`."""
    cl, spec = filter_spec(client, field_path)
    return next(choice["query_string"] for choice in spec.choices(cl) if choice["display"] == display)


def test_the_channel_kind_filter_shows_only_sessions_of_that_kind(staff_client):
    whatsapp = SessionFactory(channel=ChannelFactory(kind=ChannelKind.WHATSAPP, address="+15005550007"))
    SessionFactory(channel=ChannelFactory(kind=ChannelKind.SMS))
    SessionFactory(channel=ChannelFactory(kind=ChannelKind.VOICE))
    link = filter_link(staff_client, "channel_kind", "WhatsApp")
    assert link == "?channel_kind__exact=whatsapp"
    assert shown(staff_client.get(CHANGELIST + link)) == {whatsapp}


def test_the_status_filter_shows_only_sessions_in_that_status(staff_client):
    closed = SessionFactory(status=SessionStatus.CLOSED)
    SessionFactory(status=SessionStatus.ACTIVE)
    SessionFactory(status=SessionStatus.ARCHIVED)
    link = filter_link(staff_client, "status", "Closed")
    assert link == "?status__exact=closed"
    assert shown(staff_client.get(CHANGELIST + link)) == {closed}


def test_the_last_message_date_filter_shows_only_sessions_in_that_range(staff_client):
    now = timezone.now()
    SessionFactory(last_message_at=now - timedelta(days=30))
    last_week = SessionFactory(last_message_at=now - timedelta(days=3))
    SessionFactory(last_message_at=now + timedelta(days=2))
    SessionFactory(last_message_at=None)
    _, spec = filter_spec(staff_client, "last_message_at")
    assert {"last_message_at__gte", "last_message_at__lt"} <= set(spec.expected_parameters())
    params = {"last_message_at__gte": str(now - timedelta(days=7)), "last_message_at__lt": str(now)}
    assert shown(staff_client.get(CHANGELIST, params)) == {last_week}


def test_the_created_date_filter_past_7_days_shows_only_recent_sessions(staff_client):
    recent = SessionFactory()
    SessionFactory(created_at=timezone.now() - timedelta(days=30))
    link = filter_link(staff_client, "created_at", "Past 7 days")
    assert shown(staff_client.get(CHANGELIST + link)) == {recent}


def channel_list_edit(channel, reuse_window: str) -> dict:
    """The channel list's editable form, as the page posts it for one row."""
    return {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(channel.pk),
        "form-0-reuse_window": reuse_window,
        "form-0-abandon_after": "" if channel.abandon_after is None else str(channel.abandon_after),
        "form-0-is_active": "on",
        "_save": "Save",
    }


def test_a_channels_reuse_window_is_edited_from_the_channel_list(staff_client):
    channel = ChannelFactory(reuse_window=None)
    response = staff_client.post(CHANNELS, channel_list_edit(channel, "600"))
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.reuse_window == 600
    assert channel.is_active is True


def test_a_reuse_window_longer_than_the_abandon_after_setting_is_refused(staff_client, settings):
    settings.SESSION_ABANDON_AFTER = 1800
    channel = ChannelFactory(reuse_window=None, abandon_after=None)
    response = staff_client.post(CHANNELS, channel_list_edit(channel, "3600"))
    assert response.status_code == 200
    assert "must not be longer than abandon-after" in response.content.decode()
    channel.refresh_from_db()
    assert channel.reuse_window is None


def test_a_reuse_window_longer_than_the_channels_abandon_after_is_refused(staff_client):
    channel = ChannelFactory(reuse_window=None, abandon_after=60)
    response = staff_client.post(CHANNELS, channel_list_edit(channel, "600"))
    assert response.status_code == 200
    assert "must not be longer than abandon-after" in response.content.decode()
    channel.refresh_from_db()
    assert channel.reuse_window is None
    assert channel.abandon_after == 60


def test_contacts_are_listed_and_each_has_a_page(staff_client):
    contact = ContactFactory(phone="+15550009876", display_name="Grace Hopper")
    listing = staff_client.get(CONTACTS)
    assert listing.status_code == 200
    assert "Grace Hopper" in listing.content.decode()
    assert "+15550009876" in listing.content.decode()
    page = staff_client.get(f"{CONTACTS}{contact.pk}/change/")
    assert page.status_code == 200
    assert "Grace Hopper" in page.content.decode()
    assert "+15550009876" in page.content.decode()


def test_the_contact_search_finds_a_contact_by_phone(staff_client):
    contact = ContactFactory(phone="+15550004242")
    ContactFactory(phone="+15550001111")
    assert shown(staff_client.get(CONTACTS, {"q": "4242"})) == {contact}


def change_form_data(response) -> dict:
    """What a change page would send back unchanged: its own fields and every inline's
    management form."""
    data = {}
    for field in response.context["adminform"].form:
        value = field.value()
        data[field.html_name] = "" if value is None else value
    for inline in response.context["inline_admin_formsets"]:
        for field in inline.formset.management_form:
            data[field.html_name] = field.value()
    return data


def test_the_message_inline_renders_no_inputs_for_message_fields(staff_client):
    message = MessageFactory(content="please call me back")
    content = staff_client.get(f"{CHANGELIST}{message.session.pk}/change/").content.decode()
    assert "please call me back" in content
    inputs = re.findall(r'<(?:input|textarea|select)[^>]*name="messages-[^"]*"', content)
    editable = [tag for tag in inputs if 'type="hidden"' not in tag]
    assert editable == []
    assert 'name="messages-0-content"' not in content
    assert 'name="messages-0-DELETE"' not in content


def test_a_post_cannot_alter_delete_or_add_messages_of_a_session(staff_client):
    message = MessageFactory(content="original text")
    session = message.session
    path = f"{CHANGELIST}{session.pk}/change/"
    data = change_form_data(staff_client.get(path))
    data.update(
        {
            "title": "renamed by staff",
            "messages-TOTAL_FORMS": "2",
            "messages-0-id": str(message.pk),
            "messages-0-session": str(session.pk),
            "messages-0-content": "tampered",
            "messages-0-direction": "outbound",
            "messages-0-role": "agent",
            "messages-0-DELETE": "on",
            "messages-1-session": str(session.pk),
            "messages-1-content": "forged",
            "messages-1-direction": "outbound",
            "messages-1-role": "agent",
        }
    )
    response = staff_client.post(path, data)
    assert response.status_code == 302, response.context and response.context["errors"]
    session.refresh_from_db()
    assert session.title == "renamed by staff"  # the form was saved ...
    message.refresh_from_db()  # ... but its messages were not touched
    assert message.content == "original text"
    assert message.role == Role.CONTACT
    assert list(Message.objects.filter(session=session)) == [message]


def test_a_channels_own_abandon_and_archive_thresholds_are_set_on_its_page(staff_client):
    channel = ChannelFactory(reuse_window=None, abandon_after=None, archive_after=None)
    page = f"{CHANNELS}{channel.pk}/change/"
    data = change_form_data(staff_client.get(page))
    data.update({"abandon_after": "600", "archive_after": "86400", "is_active": "on"})
    response = staff_client.post(page, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    channel.refresh_from_db()
    assert (channel.abandon_after, channel.archive_after) == (600, 86400)
    assert (channel.effective_abandon_after, channel.effective_archive_after) == (600, 86400)


def test_the_changelist_counts_sessions_only_up_to_its_cap():
    class SmallCap(CappedCountPaginator):
        CAP = 3

    SessionFactory.create_batch(6)
    paginator = SmallCap(Session.objects.order_by("-last_activity_at"), 2)
    assert paginator.count == 4  # CAP + 1: "more than CAP"
    assert paginator.num_pages == 2
    assert len(paginator.page(2).object_list) == 2
    assert SmallCap(Session.objects.filter(status=SessionStatus.CLOSED), 2).count == 0


def test_the_changelist_refuses_several_statuses_in_one_hand_made_filter(staff_client):
    SessionFactory()
    assert staff_client.get(CHANGELIST + "?status__in=abandoned,closed").status_code == 400
    assert staff_client.get(CHANGELIST + "?status__exact=abandoned").status_code == 200
