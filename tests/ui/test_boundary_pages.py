"""The staff session page's merge form and "Split here" buttons."""

from datetime import UTC, datetime, timedelta

import pytest

from sessions_app.models import Session, SessionStatus, StatusChange
from tests.factories import ChannelFactory, ContactFactory, MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db

LIST = "/sessions/"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def session_with(contact, channel, minutes: list[int], **fields) -> Session:
    session = SessionFactory(contact=contact, channel=channel, message_count=len(minutes), **fields)
    for m in minutes:
        MessageFactory(session=session, created_at=NOON + timedelta(minutes=m), content=f"at {m}")
    return session


def test_the_page_offers_a_merge_into_the_contacts_other_sessions_on_the_channel(staff_client):
    channel, contact = ChannelFactory(), ContactFactory()
    session = session_with(contact, channel, [0], title="this one")
    sibling = session_with(contact, channel, [5], title="its sibling")
    session_with(contact, ChannelFactory(kind="whatsapp"), [1], title="other channel")
    session_with(ContactFactory(), channel, [1], title="other contact")
    html = staff_client.get(f"{LIST}{session.pk}/").content.decode()
    assert 'id="merge"' in html
    assert f'value="{sibling.pk}"' in html and "its sibling" in html
    assert "other channel" not in html and "other contact" not in html


def test_merging_from_the_page_moves_the_messages_and_shows_the_target(staff_client):
    channel, contact = ChannelFactory(), ContactFactory()
    source = session_with(contact, channel, [1, 3])
    target = session_with(contact, channel, [0, 2])
    response = staff_client.post(f"{LIST}{source.pk}/merge/", {"into": str(target.pk)})
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}{target.pk}/"
    page = staff_client.get(response["Location"]).content.decode()
    assert "was merged into this one" in page
    assert page.index("at 0") < page.index("at 1") < page.index("at 2") < page.index("at 3")
    source.refresh_from_db()
    assert (source.status, source.merged_into_id) == (SessionStatus.MERGED, target.pk)
    assert StatusChange.objects.get(session=source).actor == "staff:staff"
    merged_page = staff_client.get(f"{LIST}{source.pk}/").content.decode()
    assert 'id="merged-into"' in merged_page and 'id="merge"' not in merged_page


def test_a_refused_merge_is_explained(staff_client):
    channel = ChannelFactory()
    source = session_with(ContactFactory(), channel, [1])
    stranger = session_with(ContactFactory(), channel, [0])
    response = staff_client.post(f"{LIST}{source.pk}/merge/", {"into": str(stranger.pk)})
    assert response.status_code == 400
    assert "Merge refused: Both sessions must belong to the same contact." in response.content.decode()
    assert staff_client.post(f"{LIST}{source.pk}/merge/", {"into": "nope"}).status_code == 400


def test_every_message_but_the_first_has_a_split_button(staff_client):
    session = session_with(ContactFactory(), ChannelFactory(), [0, 1, 2])
    first, *later = session.messages.order_by("created_at")
    html = staff_client.get(f"{LIST}{session.pk}/").content.decode()
    assert html.count('data-action="split"') == 2
    for message in later:
        assert f'name="message_id" value="{message.pk}"' in html
    assert f'name="message_id" value="{first.pk}"' not in html


def test_splitting_from_the_page_opens_the_new_session(staff_client):
    session = session_with(ContactFactory(), ChannelFactory(), [0, 1, 2])
    cut = session.messages.get(content="at 1")
    response = staff_client.post(f"{LIST}{session.pk}/split/", {"message_id": cut.pk})
    assert response.status_code == 302
    new = Session.objects.exclude(pk=session.pk).get()
    assert response["Location"] == f"{LIST}{new.pk}/"
    assert [m.content for m in new.messages.all()] == ["at 1", "at 2"]
    page = staff_client.get(response["Location"]).content.decode()
    assert "this new session holds message" in page


def test_a_split_at_the_first_message_from_the_page_is_refused(staff_client):
    session = session_with(ContactFactory(), ChannelFactory(), [0, 1])
    first = session.messages.order_by("created_at").first()
    response = staff_client.post(f"{LIST}{session.pk}/split/", {"message_id": first.pk})
    assert response.status_code == 400
    assert "Split refused" in response.content.decode()
    assert Session.objects.count() == 1


def test_merge_and_split_need_staff(client):
    session = session_with(ContactFactory(), ChannelFactory(), [0, 1])
    last = session.messages.order_by("created_at").last()
    assert client.post(f"{LIST}{session.pk}/split/", {"message_id": last.pk}).status_code == 302  # login
    assert Session.objects.count() == 1
