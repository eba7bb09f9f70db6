import base64
import json

import pytest
import time_machine
from django.utils import timezone

from sessions_app.agents import AgentError
from sessions_app.agents.builtin import ACKNOWLEDGEMENT
from sessions_app.agents.openai import OpenAIAgent
from sessions_app.agents.summary import fallback_summary, summarise
from sessions_app.delivery.replies import produce_reply, recover_owed_replies
from sessions_app.models import KeywordAnswer, Message, ReplyState, Role, Session
from tests.factories import MessageFactory, SessionFactory
from tests.http_stub import Reply
from tests.twilio_helpers import send_sms

pytestmark = pytest.mark.django_db

COMPLETION = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "model": "test-model",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "We open at 9."}, "finish_reason": "stop"}
    ],
}


@pytest.fixture
def openai_agent(openai_agent, settings):
    settings.AGENT_TIMEOUT = 1
    settings.TASK_MAX_ATTEMPTS = 3
    settings.TASK_RETRY_BACKOFF = 0
    return openai_agent


def texts_in(client, *texts, callbacks):
    for text in texts:
        with callbacks(execute=True):
            assert send_sms(client, "+15557654321", text).status_code == 200


def test_the_openai_backend_answers_with_the_conversation_as_context(
    client, openai_agent, django_capture_on_commit_callbacks
):
    openai_agent.replies = [Reply(body=COMPLETION)]
    texts_in(client, "When do you open?", callbacks=django_capture_on_commit_callbacks)
    reply = Message.objects.get(role=Role.AGENT)
    assert reply.content == "We open at 9."
    assert reply.metadata["source"] == "openai"
    assert reply.metadata["responseId"] == "chatcmpl-abc123"
    sent = openai_agent.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-test-not-a-secret"
    body = sent.json()
    assert body["model"] == "test-model"
    assert body["messages"][-1] == {"role": "user", "content": "When do you open?"}
    assert body["messages"][0]["role"] == "system"


def test_the_openai_backend_is_given_the_sessions_earlier_messages_and_its_replies_in_order(
    client, openai_agent, django_capture_on_commit_callbacks
):
    second = {**COMPLETION, "choices": [{"message": {"role": "assistant", "content": "Yes, at 10."}}]}
    openai_agent.replies = [Reply(body=COMPLETION), Reply(body=second)]
    texts_in(client, "When do you open?", "And on Sundays?", callbacks=django_capture_on_commit_callbacks)
    conversation = [m for m in openai_agent.requests[1].json()["messages"] if m["role"] != "system"]
    assert conversation == [
        {"role": "user", "content": "When do you open?"},
        {"role": "assistant", "content": "We open at 9."},
        {"role": "user", "content": "And on Sundays?"},
    ]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(body=COMPLETION, delay=1.5), "did not answer within 1s"),
        (Reply(status=503, body={"error": "overloaded"}), "HTTP 503"),
        (Reply(body={"choices": []}), "malformed"),
        (Reply(body="<html>not json</html>", content_type="text/html"), "malformed"),
    ],
    ids=["timeout", "5xx", "no-choices", "not-json"],
)
def test_an_agent_failure_is_retried_then_marked_failed_with_the_reason(
    client, openai_agent, django_capture_on_commit_callbacks, reply, reason
):
    openai_agent.default = reply
    texts_in(client, "Hello?", callbacks=django_capture_on_commit_callbacks)
    inbound = Message.objects.get(role=Role.CONTACT)
    assert len(openai_agent.requests) == 3  # TASK_MAX_ATTEMPTS
    assert inbound.reply_state == ReplyState.FAILED
    assert inbound.reply_attempts == 3
    assert reason in inbound.reply_error
    assert not Message.objects.filter(role=Role.AGENT).exists()


def test_a_failure_that_passes_is_answered_on_the_next_attempt(
    client, openai_agent, django_capture_on_commit_callbacks
):
    openai_agent.replies = [Reply(status=502, body={}), Reply(body=COMPLETION)]
    texts_in(client, "Hello?", callbacks=django_capture_on_commit_callbacks)
    inbound = Message.objects.get(role=Role.CONTACT)
    assert inbound.reply_state == ReplyState.DONE
    assert inbound.reply_attempts == 2
    assert Message.objects.get(role=Role.AGENT).content == "We open at 9."


def test_a_bad_api_key_is_not_retried(client, openai_agent, django_capture_on_commit_callbacks):
    openai_agent.default = Reply(status=401, body={"error": {"message": "bad key"}})
    texts_in(client, "Hello?", callbacks=django_capture_on_commit_callbacks)
    inbound = Message.objects.get(role=Role.CONTACT)
    assert len(openai_agent.requests) == 1
    assert inbound.reply_state == ReplyState.FAILED
    assert "HTTP 401" in inbound.reply_error
    assert "sk-test" not in inbound.reply_error


def test_the_openai_backend_streams_chunks(client, openai_agent):
    send_sms(client, "+15557654321", "Hi")
    session = Session.objects.get()
    events = [
        'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n',
        'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n',
        'data: {"choices":[{"delta":{"content":"lo!"}}]}\n\n',
        "data: [DONE]\n\n",
    ]
    openai_agent.replies = [Reply(chunks=events)]
    chunks = list(OpenAIAgent().stream(session, list(session.messages.all())))
    assert chunks == ["Hel", "lo!"]
    assert openai_agent.requests[0].json()["stream"] is True


def test_a_malformed_stream_is_an_agent_error(client, openai_agent):
    send_sms(client, "+15557654321", "Hi")
    session = Session.objects.get()
    openai_agent.replies = [Reply(chunks=["data: {not json}\n\n"])]
    with pytest.raises(AgentError, match="stream is malformed"):
        list(OpenAIAgent().stream(session, list(session.messages.all())))


def test_builtin_answers_with_the_keyword_answer_staff_wrote(client, django_capture_on_commit_callbacks):
    KeywordAnswer.objects.create(keyword="opening hours", answer="Mon-Fri 9-17.")
    texts_in(client, "What are your Opening Hours?", "thanks", callbacks=django_capture_on_commit_callbacks)
    first, second = Message.objects.filter(role=Role.AGENT).order_by("id")
    assert first.content == "Mon-Fri 9-17."
    assert first.metadata["toolsUsed"] == ["keyword_answers"]
    assert second.content == ACKNOWLEDGEMENT


def test_keyword_answers_are_edited_in_admin(admin_client):
    response = admin_client.post(
        "/admin/sessions_app/keywordanswer/add/",
        {"keyword": "price", "answer": "From $10.", "position": "0", "is_active": "on"},
    )
    assert response.status_code == 302
    assert KeywordAnswer.objects.get().answer == "From $10."


def test_a_claimed_reply_whose_worker_vanished_is_recovered(client, settings):
    settings.TASK_LEASE = 300
    settings.TASK_RECOVERY_GRACE = 60
    with time_machine.travel("2025-01-15 10:00:00+00:00", tick=False) as clock:
        send_sms(client, "+15557654321", "Hello")  # on-commit not run: as if the broker was down
        inbound = Message.objects.get()
        assert recover_owed_replies() == []  # younger than the grace period: its task may be in flight
        clock.shift(61)
        assert recover_owed_replies() == [inbound.pk]
        Message.objects.filter(pk=inbound.pk).update(
            reply_state=ReplyState.CLAIMED, reply_claimed_at=timezone.now()
        )
        assert recover_owed_replies() == []
        clock.shift(301)
        assert recover_owed_replies() == [inbound.pk]
        reply = produce_reply(inbound.pk)
    assert reply is not None
    assert Message.objects.filter(role=Role.AGENT).count() == 1


def test_summarise_falls_back_to_a_deterministic_summary(client, settings, openai_agent):
    send_sms(client, "+15557654321", "My order #42 never arrived")
    send_sms(client, "+15557654321", "Can you check?")
    session = Session.objects.get()
    openai_agent.default = Reply(status=500, body={})
    summary = summarise(session)
    assert summary == fallback_summary(session)
    assert summary.title == "My order #42 never arrived"
    assert summary.description == "2 messages. Latest: Can you check?"
    assert summary.source == "fallback"


def test_summarise_does_not_ask_the_agent_about_a_session_with_no_messages(openai_agent):
    session = SessionFactory(title="")
    summary = summarise(session, fallback_title="Planning", fallback_description="Q3 roadmap")
    assert (summary.title, summary.description, summary.source) == ("Planning", "Q3 roadmap", "fallback")
    assert openai_agent.requests == []


SESSIONS_WEBHOOK_AUTH = "Basic " + base64.b64encode(b"app:s3cret-webhook-password").decode()


def seed_000(client, settings, **body):
    settings.SESSIONS_WEBHOOK_USERNAME = "app"
    settings.SESSIONS_WEBHOOK_PASSWORD = "s3cret-webhook-password"
    user = {"phoneNumber": "+31612345678", "name": "User Name", "companyName": "Company Name"}
    return client.post(
        "/webhook/sessions",
        json.dumps({**user, **body}),
        content_type="application/json",
        HTTP_AUTHORIZATION=SESSIONS_WEBHOOK_AUTH,
    )


def test_seed_000s_update_answers_with_the_title_and_description_the_agent_wrote(
    client, settings, openai_agent
):
    seed_000(client, settings, method="create", sessionId="session_1")
    session = Session.objects.get(external_id="session_1")
    MessageFactory(session=session, content="My order #42 never arrived")
    content = '{"title": "Missing order #42", "description": "The contact reports order 42 missing."}'
    openai_agent.replies = [Reply(body={**COMPLETION, "choices": [{"message": {"content": content}}]})]
    data = seed_000(client, settings, method="update", sessionId="session_1").json()["data"]
    assert (data["title"], data["description"]) == (
        "Missing order #42",
        "The contact reports order 42 missing.",
    )
    session.refresh_from_db()
    assert session.title == "Missing order #42"
    assert "My order #42 never arrived" in json.dumps(openai_agent.requests[-1].json())


def test_seed_000s_update_falls_back_to_the_deterministic_summary_when_the_agent_fails(
    client, settings, openai_agent
):
    seed_000(client, settings, method="create", sessionId="session_1")
    MessageFactory(session=Session.objects.get(external_id="session_1"), content="My order #42 never arrived")
    openai_agent.default = Reply(status=500, body={})
    data = seed_000(client, settings, method="update", sessionId="session_1").json()["data"]
    assert data["title"] == "My order #42 never arrived"
    assert data["description"] == "1 message. Latest: My order #42 never arrived"


def test_summarise_uses_the_agent_when_it_answers(client, openai_agent):
    send_sms(client, "+15557654321", "My order #42 never arrived")
    content = '{"title": "Missing order #42", "description": "The contact reports order 42 missing."}'
    openai_agent.replies = [Reply(body={**COMPLETION, "choices": [{"message": {"content": content}}]})]
    summary = summarise(Session.objects.get())
    assert (summary.title, summary.source) == ("Missing order #42", "openai")


def test_staff_see_a_failed_reply_and_its_reason_in_admin(
    client, openai_agent, admin_client, django_capture_on_commit_callbacks
):
    openai_agent.default = Reply(status=500, body={})
    texts_in(client, "Hello?", callbacks=django_capture_on_commit_callbacks)
    page = admin_client.get("/admin/sessions_app/message/?problem=reply")
    assert page.status_code == 200
    assert b"attempt 3: the agent answered HTTP 500" in page.content
