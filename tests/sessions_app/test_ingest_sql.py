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
    return {field.column for field in model._meta.concrete_fields} - set(but)


def test_it_inserts_every_column_of_a_new_session():
    # contact_id is the contact the function found or created
    assert columns(function.SESSION_COLUMNS) | {"contact_id"} == model_columns(Session)


def test_it_inserts_every_column_of_a_message():
    # the id is the database's; session_id is the session the rule picked
    assert columns(function.MESSAGE_COLUMNS) | {"session_id"} == model_columns(Message, but=("id",))


def test_it_inserts_every_column_of_a_new_contact():
    assert columns(function.CONTACT_COLUMNS) == model_columns(Contact, but=("id",))
