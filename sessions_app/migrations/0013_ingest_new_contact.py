"""Four shortcuts in the ingest function for work it can prove is void (PostgreSQL only; docs/ingest.md).

- **A contact this call created has nothing yet.** Until this transaction commits, no other
  transaction can see the new contact row, and one that tries to create the same contact waits on
  its unique index until then (and finds it afterwards). So no stored message, no session and no
  concurrent writer can involve the pair: the per-pair lock, the redelivery check and the session
  lookup would each find nothing. The call goes straight to opening a session. A redelivery of this
  same message still comes out as a duplicate: it waits on the contact, then sees this message.
- **The message insert trigger of 0008 stays out of ingest's way.** The function already writes the
  search document itself: the new session's insert trigger reads its first message, and a joined
  session's bump appends the new words (0009). The trigger then only computed the words again and
  ran an UPDATE that changed nothing. The function now marks its own insert with a
  transaction-local setting that the trigger's WHEN clause reads; every other message insert (ORM,
  API, outbound replies, staff) fires the trigger as before.
- **A session opened for a new contact gets its document from the call itself.** The session insert
  trigger would read back the contact and the messages this call has just written (two queries)
  to compute what the call can compute from the rows it holds; the same flag keeps the trigger
  out. A session opened for a contact seen before still gets its document from the trigger, which
  reads the contact as staff may have edited it.
- **A new session's row is not sent back.** It is the row Python built and sent; returning it only to
  be parsed and dropped cost the client about 3 % of an inbound message's CPU (six timestamps).
  Its columns come back NULL.
"""

import importlib

from django.db import migrations

with_words = importlib.import_module("sessions_app.migrations.0009_ingest_search")
search = importlib.import_module("sessions_app.migrations.0008_search")

# Raised by the function from its message insert until it returns (lowered before its session insert
# when the trigger is to compute the document); the triggers' WHEN clauses read it.
INGEST_FLAG = "sessions_app.ingest_writes_search"


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


CREATE_FUNCTION = with_words.CREATE_FUNCTION
CREATE_FUNCTION = _replace_once(
    CREATE_FUNCTION,
    "    mid bigint;\n",
    "    mid bigint;\n    created_contact boolean := false;\n    document tsvector;\n",
)
CREATE_FUNCTION = _replace_once(
    CREATE_FUNCTION,
    "            RETURNING id INTO cid;\n",
    "            RETURNING id INTO cid;\n            created_contact := cid IS NOT NULL;\n",
)
# Everything from the lock to the end of the session lookup runs only for a contact seen before.
LOCK = "    -- The same key as the ORM version's lock"
LOOKUP_END = """            outcome := CASE WHEN p_now - coalesce(s.last_message_at, s.created_at) > p_reuse_window
                            THEN 'gap' ELSE 'reused' END;
        END IF;
    END IF;
"""
_head, _rest = CREATE_FUNCTION.split(LOCK)
_guarded, _tail = _rest.split(LOOKUP_END)
CREATE_FUNCTION = (
    _head
    + "    IF created_contact THEN\n"
    + "        outcome := 'opened';  -- see migration 0013: nothing can exist for this pair yet\n"
    + "    ELSE\n"
    + "\n".join(f"    {line}" if line else line for line in (LOCK + _guarded + LOOKUP_END).split("\n"))
    + "    END IF;\n"
    + _tail
)
MESSAGE_INSERT = "    INSERT INTO sessions_app_message ("
CREATE_FUNCTION = _replace_once(
    CREATE_FUNCTION,
    MESSAGE_INSERT,
    f"    PERFORM set_config('{INGEST_FLAG}', 'on', true);\n{MESSAGE_INSERT}",
)

CREATE_FUNCTION = _replace_once(
    CREATE_FUNCTION,
    "FROM jsonb_populate_record(NULL::sessions_app_session, p_session) n\n        RETURNING * INTO s;\n",
    "FROM jsonb_populate_record(NULL::sessions_app_session, p_session) n;\n        s := NULL;\n",
)
CREATE_FUNCTION = _replace_once(
    CREATE_FUNCTION,
    "    END IF;\n\n    RETURN QUERY SELECT outcome, gap, cid, mid,",
    f"    END IF;\n    PERFORM set_config('{INGEST_FLAG}', 'off', true);\n\n    RETURN QUERY SELECT outcome, gap, cid, mid,",
)
# A session opened for a contact this call created: its document is computed from the rows this
# call holds, exactly as session_search_fields would read them back (the new contact, the one
# message). The session insert trigger would find them with two more queries.
CREATE_FUNCTION = _replace_once(
    CREATE_FUNCTION,
    "    IF outcome NOT IN ('named', 'reused') THEN\n        INSERT INTO sessions_app_session (",
    f"""    IF outcome NOT IN ('named', 'reused') THEN
        IF created_contact THEN
            document := session_search_words(concat_ws(' ', p_session->>'title', p_session->>'description'))
                || session_search_words(concat_ws(' ', p_contact->>'display_name',
                                                  p_contact->>'whatsapp_profile_name',
                                                  p_contact->>'external_user_id'))
                || session_search_phone(p_contact->>'phone')
                || session_search_words(p_message->>'content');
        ELSE  -- the insert trigger computes it, reading the contact as it is now
            PERFORM set_config('{INGEST_FLAG}', 'off', true);
        END IF;
        INSERT INTO sessions_app_session (search_document, """,
)
CREATE_FUNCTION = _replace_once(
    CREATE_FUNCTION,
    "        SELECT n.id, n.external_id,",
    "        SELECT coalesce(document, ''), n.id, n.external_id,",
)

SESSION_TRIGGER = """
DROP TRIGGER session_search_insert ON sessions_app_session;
CREATE TRIGGER session_search_insert BEFORE INSERT ON sessions_app_session
    FOR EACH ROW{when} EXECUTE FUNCTION session_search_on_session();
"""
_OLD_SESSION_TRIGGER = SESSION_TRIGGER.format(when="")
assert _OLD_SESSION_TRIGGER.split("\n", 2)[2] in search.TRIGGERS
NEW_SESSION_TRIGGER = SESSION_TRIGGER.format(
    when=f" WHEN (current_setting('{INGEST_FLAG}', true) IS DISTINCT FROM 'on')"
)

MESSAGE_TRIGGER = """
DROP TRIGGER session_search_message_insert ON sessions_app_message;
CREATE TRIGGER session_search_message_insert AFTER INSERT ON sessions_app_message
    FOR EACH ROW WHEN (NEW.content <> ''{extra}) EXECUTE FUNCTION session_search_on_message_insert();
"""
_OLD_TRIGGER = MESSAGE_TRIGGER.format(extra="")
assert _OLD_TRIGGER.split("\n", 2)[2] in search.TRIGGERS  # the trigger as 0008 created it
NEW_TRIGGER = MESSAGE_TRIGGER.format(
    extra=f" AND current_setting('{INGEST_FLAG}', true) IS DISTINCT FROM 'on'"
)


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE_FUNCTION)
        schema_editor.execute(NEW_TRIGGER)
        schema_editor.execute(NEW_SESSION_TRIGGER)


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(with_words.CREATE_FUNCTION)
        schema_editor.execute(_OLD_TRIGGER)
        schema_editor.execute(_OLD_SESSION_TRIGGER)


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0012_search_phone_plpgsql")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
