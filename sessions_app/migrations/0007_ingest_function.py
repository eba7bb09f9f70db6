"""The reuse rule as one PostgreSQL function, so an inbound message costs one round trip.

`sessions_app.ingest_sql` calls it; docs/ingest.md says why it exists next to the ORM version (which
SQLite runs) and how the two are kept equal. The function takes whole rows as JSON (built from the
models in Python) and lists their columns once here; `tests/test_ingest_sql.py` fails when a model
gains a column this function does not write.

Also drops `message(session_id)`: `message_thread (session_id, created_at, id)` serves every lookup
it did, and each inbound message paid for maintaining both.
"""

from django.db import migrations, models

SESSION_COLUMNS = (
    "id, external_id, channel_kind, business_id, location_id, agent_id, title, description, "
    "thumbnail_url, status, metadata, mission_id, message_count, first_message_at, last_message_at, "
    "last_activity_at, status_changed_at, created_at, updated_at, channel_id, owner_id"
)
MESSAGE_COLUMNS = (
    "direction, role, content, media, provider, external_id, metadata, delivery_status, reply_state, "
    "reply_claimed_at, delivery_error, created_at, in_reply_to_id, delivery_attempts, "
    "delivery_claimed_at, reply_attempts, reply_error"
)
CONTACT_COLUMNS = (
    "phone, whatsapp_id, whatsapp_profile_name, display_name, company, external_user_id, business_id, "
    "created_at, updated_at"
)


def _select(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


# Outcomes: duplicate (this provider id was stored before: nothing written), named (joined the
# session the client named), reused (joined the newest active session within the window), gap (that
# session's last message is older than the window: opened a new one), ended (that session ended
# while we looked: opened a new one), opened (no active session: opened one).
CREATE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION sessions_app_record_inbound(
    p_channel_id bigint,
    p_reuse_window interval,
    p_now timestamptz,
    p_contact_id bigint,
    p_contact jsonb,
    p_whatsapp_id text,
    p_profile_name text,
    p_provider text,
    p_external_id text,
    p_preferred_session uuid,
    p_session jsonb,
    p_message jsonb
) RETURNS TABLE (
    r_outcome text,
    r_gap double precision,
    r_contact_id bigint,
    r_message_id bigint,
    r_session_id uuid,
    r_external_id varchar,
    r_channel_kind varchar,
    r_business_id varchar,
    r_location_id varchar,
    r_owner_id integer,
    r_agent_id varchar,
    r_title varchar,
    r_status varchar,
    r_mission_id varchar,
    r_message_count integer,
    r_first_message_at timestamptz,
    r_last_message_at timestamptz,
    r_last_activity_at timestamptz,
    r_status_changed_at timestamptz,
    r_created_at timestamptz,
    r_updated_at timestamptz
)
LANGUAGE plpgsql AS $$
DECLARE
    cid bigint := p_contact_id;
    s sessions_app_session;
    seen record;
    outcome text;
    gap double precision;
    mid bigint;
BEGIN
    IF cid IS NULL THEN
        SELECT c.id INTO cid FROM sessions_app_contact c
         WHERE c.phone = p_contact->>'phone' AND c.external_user_id = '';
        IF cid IS NULL THEN
            INSERT INTO sessions_app_contact ({CONTACT_COLUMNS})
            SELECT {_select(CONTACT_COLUMNS, "n")}
              FROM jsonb_populate_record(NULL::sessions_app_contact, p_contact) n
            ON CONFLICT DO NOTHING
            RETURNING id INTO cid;
            IF cid IS NULL THEN  -- a concurrent first message from this number created it
                SELECT c.id INTO cid FROM sessions_app_contact c
                 WHERE c.phone = p_contact->>'phone' AND c.external_user_id = '';
            END IF;
        ELSE  -- Contact.keep_current: store each given non-empty value that differs
            UPDATE sessions_app_contact c SET
                whatsapp_id = CASE WHEN p_whatsapp_id <> '' THEN p_whatsapp_id ELSE c.whatsapp_id END,
                whatsapp_profile_name = CASE WHEN p_profile_name <> '' THEN p_profile_name
                                             ELSE c.whatsapp_profile_name END,
                updated_at = p_now
             WHERE c.id = cid
               AND ((p_whatsapp_id <> '' AND c.whatsapp_id <> p_whatsapp_id)
                    OR (p_profile_name <> '' AND c.whatsapp_profile_name <> p_profile_name));
        END IF;
    END IF;

    -- The same key as the ORM version's lock: one pair's messages queue, other pairs never wait.
    PERFORM pg_advisory_xact_lock(mod(p_channel_id, 2147483648)::int, mod(cid, 2147483648)::int);

    IF p_external_id IS NOT NULL THEN
        SELECT m.id, m.session_id INTO seen FROM sessions_app_message m
         WHERE m.provider = p_provider AND m.external_id = p_external_id;
        IF FOUND THEN
            -- `s` is still unset: its fields are typed NULLs.
            RETURN QUERY SELECT 'duplicate'::text, NULL::float8, cid, seen.id::bigint, seen.session_id::uuid,
                s.external_id, s.channel_kind, s.business_id, s.location_id, s.owner_id, s.agent_id, s.title,
                s.status, s.mission_id, s.message_count, s.first_message_at, s.last_message_at,
                s.last_activity_at, s.status_changed_at, s.created_at, s.updated_at;
            RETURN;
        END IF;
    END IF;

    IF p_preferred_session IS NOT NULL THEN
        SELECT * INTO s FROM sessions_app_session x
         WHERE x.id = p_preferred_session AND x.channel_id = p_channel_id AND x.contact_id = cid
           AND x.status = 'active';
        IF FOUND THEN
            outcome := 'named';
        END IF;
    END IF;
    IF outcome IS NULL THEN
        SELECT * INTO s FROM sessions_app_session x
         WHERE x.channel_id = p_channel_id AND x.contact_id = cid AND x.status = 'active'
         ORDER BY x.last_message_at DESC
         LIMIT 1;
        IF NOT FOUND THEN
            outcome := 'opened';
        ELSE
            gap := extract(epoch FROM p_now - coalesce(s.last_message_at, s.created_at));
            outcome := CASE WHEN p_now - coalesce(s.last_message_at, s.created_at) > p_reuse_window
                            THEN 'gap' ELSE 'reused' END;
        END IF;
    END IF;

    IF outcome IN ('named', 'reused') THEN
        -- Re-checking the status: a session the sweep ended a moment ago is not written to; the
        -- row lock this UPDATE takes makes the two wait for each other.
        UPDATE sessions_app_session x SET
            message_count = x.message_count + 1,
            last_message_at = p_now,
            last_activity_at = p_now,
            updated_at = p_now
         WHERE x.id = s.id AND x.status = 'active'
        RETURNING x.* INTO s;
        IF NOT FOUND THEN
            outcome := 'ended';
        END IF;
    END IF;
    -- A new session's message goes in first (the foreign key is checked at commit), so that what
    -- the session's insert derives from its messages, such as its search document, includes it.
    INSERT INTO sessions_app_message ({MESSAGE_COLUMNS}, session_id)
    SELECT {_select(MESSAGE_COLUMNS, "n")},
           CASE WHEN outcome IN ('named', 'reused') THEN s.id ELSE (p_session->>'id')::uuid END
      FROM jsonb_populate_record(NULL::sessions_app_message, p_message) n
    RETURNING id INTO mid;

    IF outcome NOT IN ('named', 'reused') THEN
        INSERT INTO sessions_app_session ({SESSION_COLUMNS}, contact_id)
        SELECT {_select(SESSION_COLUMNS, "n")}, cid
          FROM jsonb_populate_record(NULL::sessions_app_session, p_session) n
        RETURNING * INTO s;
    END IF;

    RETURN QUERY SELECT outcome, gap, cid, mid, s.id, s.external_id, s.channel_kind, s.business_id,
        s.location_id, s.owner_id, s.agent_id, s.title, s.status, s.mission_id, s.message_count,
        s.first_message_at, s.last_message_at, s.last_activity_at, s.status_changed_at, s.created_at,
        s.updated_at;
END;
$$;
"""  # noqa: S608 - column lists are constants of this module, no input

DROP_FUNCTION = """
DROP FUNCTION IF EXISTS sessions_app_record_inbound(
    bigint, interval, timestamptz, bigint, jsonb, text, text, text, text, uuid, jsonb, jsonb
);
"""


def create_function(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE_FUNCTION)


def drop_function(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_FUNCTION)


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0006_api")]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="session",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="messages",
                to="sessions_app.session",
            ),
        ),
        migrations.RunPython(create_function, drop_function, elidable=False),
    ]
