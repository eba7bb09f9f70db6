"""The PostgreSQL version of the reuse rule writes whole rows: it must know every column.

`sessions_app_record_inbound` (migration 0007) names the columns it inserts. A field added to a
model without a migration that redefines the function would be silently left at NULL (or fail on
NOT NULL) on PostgreSQL only; this test fails first, on every backend.
"""

import importlib

from sessions_app.models import Contact, Message, Session

function = importlib.import_module("sessions_app.migrations.0007_ingest_function")


def columns(listed: str) -> set[str]:
    return {column.strip() for column in listed.split(",")}


def model_columns(model, *, but: tuple[str, ...] = ()) -> set[str]:
    # Not the generated ones (Session.status_group): the database computes them.
    return {field.column for field in model._meta.concrete_fields if not field.generated} - set(but)


def test_it_inserts_every_column_of_a_new_session():
    # contact_id is the contact the function found or created
    assert columns(function.SESSION_COLUMNS) | {"contact_id"} == model_columns(Session)


def test_it_inserts_every_column_of_a_message():
    # the id is the database's; session_id is the session the rule picked
    assert columns(function.MESSAGE_COLUMNS) | {"session_id"} == model_columns(Message, but=("id",))


def test_it_inserts_every_column_of_a_new_contact():
    assert columns(function.CONTACT_COLUMNS) == model_columns(Contact, but=("id",))


def test_rows_built_for_ingest_hold_what_djangos_constructor_would():
    """`ingest._build` (the positional constructor with defaults resolved once) and `Model(**values)`
    agree on every field but the per-row defaults (a new uuid, the time)."""
    from datetime import UTC, datetime

    from sessions_app.ingest.rule import _build
    from sessions_app.models import Channel

    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    channel = Channel(pk=7, kind="sms", address="+15005550006")
    contact = Contact(pk=9, phone="+15551234567")
    cases = [
        (Contact, {"phone": "+15551234567", "whatsapp_profile_name": "Ann", "created_at": now}),
        (Session, {"channel": channel, "contact": contact, "title": "SMS from +1", "metadata": {"a": 1}}),
        (Message, {"direction": "inbound", "role": "contact", "content": "hi", "external_id": "SM1"}),
    ]
    for model, values in cases:
        built, expected = _build(model, **values), model(**values)
        per_row = {"id", "created_at", "updated_at", "last_activity_at", "status_changed_at"} - set(values)
        for model_field in model._meta.concrete_fields:
            if model_field.attname not in per_row and not model_field.generated:
                assert getattr(built, model_field.attname) == getattr(expected, model_field.attname), (
                    model.__name__,
                    model_field.attname,
                )
        assert built._state.adding
    session = _build(Session, channel=channel, contact=contact)
    assert session.channel is channel and session.channel_id == 7 and session.contact_id == 9
    assert _build(Session).metadata == {} and _build(Session).metadata is not _build(Session).metadata


def test_the_rows_sent_to_the_function_read_as_the_standard_librarys_encoding_would():
    """`_row_json` uses orjson for speed; what PostgreSQL reads must not change with the encoder.
    An integer beyond 64 bits, which orjson refuses, takes the standard library's path."""
    import json
    from datetime import UTC, datetime

    from sessions_app.ingest.rule import _build, _json_text, _json_value, _row_values
    from sessions_app.models import Channel

    now = datetime(2026, 11, 23, 12, 0, 0, 5, tzinfo=UTC)
    channel = Channel(pk=7, kind="sms", address="+15005550006")
    contact = Contact(pk=9, phone="+15551234567", whatsapp_profile_name="Zoë")
    rows = [
        _build(Contact, phone="+15551234567", whatsapp_profile_name="Zoë ✓", created_at=now, updated_at=now),
        _build(Session, channel=channel, contact=contact, title="SMS from +1", metadata={"a": [1, 2.5]}),
        _build(Message, content='say "hi"\n', media=[{"url": "https://x/1", "n": 2**70}], created_at=now),
    ]
    for row in rows:
        values = _row_values(row)  # once: the metadata's ciphertext differs each time
        assert json.loads(_json_text(values)) == json.loads(json.dumps(values, default=_json_value))
    assert '"n": 1180591620717411303424' in _json_text(_row_values(rows[2]))  # the fallback's spacing


def test_instances_loaded_for_ingest_hold_what_from_db_would():
    """`ingest._instance` skips the constructor: same values, same deferred fields, same state."""
    from datetime import UTC, datetime

    from django.db import DEFAULT_DB_ALIAS

    from sessions_app.ingest.rule import _RETURNED_SESSION_FIELDS, _instance

    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    values = [
        "0b0d3c9e-1c1a-4bde-9a43-0d7d8f1f2a10", None, "sms", "B1", "", 4, "", "SMS from +1", "active",
        "", 3, now, now, now, now, now, now,
    ]  # fmt: skip
    assert len(values) == len(_RETURNED_SESSION_FIELDS)
    loaded = _instance(Session, _RETURNED_SESSION_FIELDS, values, db=DEFAULT_DB_ALIAS)
    expected = Session.from_db(DEFAULT_DB_ALIAS, list(_RETURNED_SESSION_FIELDS), values)
    assert loaded.__dict__.keys() - {"_state"} == expected.__dict__.keys() - {"_state"}
    assert all(getattr(loaded, name) == getattr(expected, name) for name in _RETURNED_SESSION_FIELDS)
    assert loaded.get_deferred_fields() == expected.get_deferred_fields()
    assert "metadata" in loaded.get_deferred_fields()
    assert (loaded._state.db, loaded._state.adding) == (DEFAULT_DB_ALIAS, False)


def test_init_signal_listeners_still_see_every_instance_ingest_builds():
    """Should anyone listen to a model's `pre_init`/`post_init`, ingest goes through the constructor."""
    from django.db.models.signals import post_init

    from sessions_app.ingest.rule import _build, _instance

    seen = []

    def listener(sender, instance, **kwargs):
        seen.append(type(instance))

    post_init.connect(listener, sender=Contact)
    try:
        _build(Contact, phone="+15551234567")
        _instance(Contact, ("id", "phone"), (1, "+15551234567"), db="default")
        _build(Message, content="not listened to")
    finally:
        post_init.disconnect(listener, sender=Contact)
    assert seen == [Contact, Contact]
