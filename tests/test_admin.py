import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions_app.models import SessionStatus, StatusChange
from tests.factories import MessageFactory, SessionFactory, UserFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/sessions_app/session/"


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
