"""Admin's part in session boundaries: the channel's reopen window and the merge action."""

import pytest

from sessions_app.models import SessionStatus
from tests.factories import ChannelFactory, ContactFactory, MessageFactory, SessionFactory, UserFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/sessions_app/session/"
CHANNELS = "/admin/sessions_app/channel/"


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="staff", is_staff=True, is_superuser=True))
    return client


def test_a_channels_reopen_window_is_edited_from_the_channel_list(staff_client):
    channel = ChannelFactory()
    form = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(channel.pk),
        "form-0-reuse_window": "",
        "form-0-reopen_window": "90",
        "form-0-abandon_after": "",
        "form-0-is_active": "on",
        "_save": "Save",
    }
    assert staff_client.post(CHANNELS, form).status_code == 302
    channel.refresh_from_db()
    assert channel.reopen_window == 90
    page = staff_client.get(f"{CHANNELS}{channel.pk}/change/").content.decode()
    assert 'name="reopen_window"' in page


def test_the_merge_action_merges_the_selected_sessions_into_the_oldest(staff_client):
    channel, contact = ChannelFactory(), ContactFactory()
    oldest, middle, newest = (SessionFactory(channel=channel, contact=contact) for _ in range(3))
    for session in (oldest, middle, newest):
        MessageFactory(session=session)
    response = staff_client.post(
        CHANGELIST,
        {"action": "merge_selected", "_selected_action": [newest.pk, oldest.pk, middle.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "2 session(s) merged into" in response.content.decode()
    for session in (middle, newest):
        session.refresh_from_db()
        assert (session.status, session.merged_into_id) == (SessionStatus.MERGED, oldest.pk)
    oldest.refresh_from_db()
    assert oldest.message_count == 3 and oldest.messages.count() == 3
    page = staff_client.get(f"{CHANGELIST}{middle.pk}/change/").content.decode()
    assert str(oldest.pk) in page  # merged_into shown


def test_the_merge_action_explains_a_refusal_and_needs_two_sessions(staff_client):
    channel = ChannelFactory()
    mine, theirs = SessionFactory(channel=channel), SessionFactory(channel=channel)
    response = staff_client.post(
        CHANGELIST, {"action": "merge_selected", "_selected_action": [mine.pk, theirs.pk]}, follow=True
    )
    assert "Both sessions must belong to the same contact." in response.content.decode()
    one = staff_client.post(
        CHANGELIST, {"action": "merge_selected", "_selected_action": [mine.pk]}, follow=True
    )
    assert "Select at least two sessions to merge." in one.content.decode()
    mine.refresh_from_db()
    assert mine.status == SessionStatus.ACTIVE
