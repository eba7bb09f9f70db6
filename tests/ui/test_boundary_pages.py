"""The staff session page's merge form and "Split here" buttons."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

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


# --- A channel's windows ---------------------------------------------------------------------------------


def channel_with_gaps(**fields):
    """One contact's inbound messages 100 s, 200 s and 2,000 s apart, in the last day."""
    channel = ChannelFactory(**fields)
    session = SessionFactory(channel=channel)
    start = timezone.now() - timedelta(hours=2)
    for seconds in (0, 100, 300, 2300):
        MessageFactory(session=session, created_at=start + timedelta(seconds=seconds))
    return channel


def test_the_window_page_draws_the_histogram_the_sessions_line_and_the_current_window(staff_client):
    channel = channel_with_gaps(reuse_window=300)
    response = staff_client.get(f"{LIST}channels/{channel.pk}/windows/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html and 'id="current-window-mark"' in html and "now: 5 min" in html
    assert "gaps of 1 min to 2 min: 1" in html and "gaps of 30 min to 1 h: 1" in html
    assert "<polyline" in html and "window 300 s: 2 sessions" in html
    assert "https://" not in html.split("<body>")[1].split("</svg>")[0]  # nothing from elsewhere
    rows = {w.seconds: w.sessions for w in response.context["report"].windows}
    assert rows == {60: 4, 300: 2, 900: 2}
    assert 'data-window="300"' in html and "current window" in html


def test_the_window_button_sets_the_channels_reuse_window(staff_client):
    channel = channel_with_gaps(reuse_window=300)
    response = staff_client.post(
        f"{LIST}channels/{channel.pk}/windows/set/", {"seconds": "900", "query": "windows=60,900"}
    )
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}channels/{channel.pk}/windows/?windows=60,900"
    channel.refresh_from_db()
    assert channel.reuse_window == 900
    page = staff_client.get(response["Location"]).content.decode()
    assert "The reuse window of" in page and "is now 15 min" in page


def test_a_window_longer_than_abandon_after_is_refused_and_not_offered(staff_client):
    channel = channel_with_gaps(reuse_window=300, abandon_after=600)
    html = staff_client.get(f"{LIST}channels/{channel.pk}/windows/?windows=60,900").content.decode()
    assert "longer than abandon-after" in html
    response = staff_client.post(f"{LIST}channels/{channel.pk}/windows/set/", {"seconds": "900"}, follow=True)
    assert "must not be longer than abandon-after" in response.content.decode()
    channel.refresh_from_db()
    assert channel.reuse_window == 300


def test_bad_window_page_parameters_are_explained(staff_client):
    channel = channel_with_gaps()
    response = staff_client.get(f"{LIST}channels/{channel.pk}/windows/?windows=x")
    assert response.status_code == 400
    assert "Showing the defaults instead." in response.content.decode()


def test_the_session_page_links_to_its_channels_windows(staff_client):
    session = session_with(ContactFactory(), ChannelFactory(), [0])
    html = staff_client.get(f"{LIST}{session.pk}/").content.decode()
    assert f'href="{LIST}channels/{session.channel_id}/windows/"' in html
