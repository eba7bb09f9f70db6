"""The session search document (PostgreSQL only): one `tsvector` per session, kept current by triggers.

`sessions_app_session.search_document` holds, without positions, the lower-cased words of the
session's title and description, of its contact's names and external user id, of the text of every
one of its messages, and the contact's phone digits with every ending of them (so a prefix search
finds any run of digits). One GIN index serves `session_search.search_sessions` (docs/api.md,
"Search at scale").

Why triggers and not Python: every write path (the ORM, the ingest path, which is moving to raw SQL,
admin edits, bulk loads) keeps the document current in its own transaction at no extra round trip.
The column is unknown to the Django model on purpose, so no ORM read ever fetches it.

- session INSERT, or UPDATE that changes title, description or contact: the document is recomputed
  (BEFORE trigger, so it is written with the row itself);
- message INSERT with text: its words are appended to its session's document, and only when it
  brings a word the document lacks (a message of known words writes nothing);
- message text UPDATE (row) or DELETE (once per statement): the sessions concerned are recomputed;
- contact UPDATE of phone, names or external user id: the contact's sessions are recomputed.

SQLite has none of this: it searches with `icontains` (fine at embedded sizes).
"""

from django.db import migrations

# Words: punctuation is a separator (so "e-mail", "ana@x.com", "#4242" and "+1 (555)" index as plain
# words and digits that the query side finds by the same rule), lower case, no positions.
FUNCTIONS = r"""
CREATE FUNCTION session_search_words(body text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT strip(to_tsvector('simple'::regconfig, regexp_replace(coalesce(body, ''), '[[:punct:]]+', ' ', 'g')))
$$;

CREATE FUNCTION session_search_phone(phone text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_to_tsvector(array(
        SELECT substr(digits, i)
        FROM (SELECT regexp_replace(coalesce(phone, ''), '\D', '', 'g') AS digits) p,
             generate_series(1, length(digits) - 1) i
    ))
$$;

-- The words of a session's own fields and of its contact.
CREATE FUNCTION session_search_head(title text, description text, contact bigint) RETURNS tsvector
LANGUAGE sql STABLE AS $$
    SELECT session_search_words(concat_ws(' ', title, description))
        || coalesce((
            SELECT session_search_words(concat_ws(' ', c.display_name, c.whatsapp_profile_name,
                                                  c.external_user_id))
                || session_search_phone(c.phone)
            FROM sessions_app_contact c WHERE c.id = contact
        ), '')
$$;

-- A whole document, from the session's fields and all its messages.
CREATE FUNCTION session_search_fields(title text, description text, contact bigint, session uuid)
RETURNS tsvector LANGUAGE sql STABLE AS $$
    SELECT session_search_head(title, description, contact)
        || (SELECT session_search_words(string_agg(m.content, ' '))
            FROM sessions_app_message m WHERE m.session_id = session)
$$;

-- Every document at once (the migration, and bench/seed.py after its bulk load): one pass over
-- the messages instead of an index probe per session.
CREATE FUNCTION session_search_backfill() RETURNS void LANGUAGE sql AS $$
    UPDATE sessions_app_session s
    SET search_document = session_search_head(s.title, s.description, s.contact_id) || coalesce(m.words, '')
    FROM sessions_app_session s2
    LEFT JOIN (
        SELECT session_id, session_search_words(string_agg(content, ' ')) AS words
        FROM sessions_app_message GROUP BY session_id
    ) m ON m.session_id = s2.id
    WHERE s2.id = s.id
$$;

CREATE FUNCTION session_search_on_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_document := session_search_fields(NEW.title, NEW.description, NEW.contact_id, NEW.id);
    RETURN NEW;
END $$;

CREATE FUNCTION session_search_on_message_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    words tsvector := session_search_words(NEW.content);
BEGIN
    UPDATE sessions_app_session SET search_document = search_document || words
    WHERE id = NEW.session_id AND length(search_document || words) > length(search_document);
    RETURN NULL;
END $$;

-- Recomputes whole documents: for the rare writes that remove words (edits, deletes, renames).
CREATE FUNCTION session_search_refresh(sessions uuid[]) RETURNS void LANGUAGE sql AS $$
    UPDATE sessions_app_session s
    SET search_document = session_search_fields(s.title, s.description, s.contact_id, s.id)
    WHERE s.id = ANY(sessions)
$$;

CREATE FUNCTION session_search_on_message_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM session_search_refresh(ARRAY[OLD.session_id, NEW.session_id]);
    RETURN NULL;
END $$;

CREATE FUNCTION session_search_on_message_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM session_search_refresh(ARRAY(SELECT DISTINCT session_id FROM gone));
    RETURN NULL;
END $$;

CREATE FUNCTION session_search_on_contact() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM session_search_refresh(ARRAY(SELECT id FROM sessions_app_session WHERE contact_id = NEW.id));
    RETURN NULL;
END $$;
"""

TRIGGERS = """
CREATE TRIGGER session_search_insert BEFORE INSERT ON sessions_app_session
    FOR EACH ROW EXECUTE FUNCTION session_search_on_session();
CREATE TRIGGER session_search_update BEFORE UPDATE OF title, description, contact_id ON sessions_app_session
    FOR EACH ROW WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.description IS DISTINCT FROM NEW.description
                       OR OLD.contact_id IS DISTINCT FROM NEW.contact_id)
    EXECUTE FUNCTION session_search_on_session();
CREATE TRIGGER session_search_message_insert AFTER INSERT ON sessions_app_message
    FOR EACH ROW WHEN (NEW.content <> '') EXECUTE FUNCTION session_search_on_message_insert();
CREATE TRIGGER session_search_message_update AFTER UPDATE OF content, session_id ON sessions_app_message
    FOR EACH ROW WHEN (OLD.content IS DISTINCT FROM NEW.content OR OLD.session_id IS DISTINCT FROM NEW.session_id)
    EXECUTE FUNCTION session_search_on_message_update();
CREATE TRIGGER session_search_message_delete AFTER DELETE ON sessions_app_message
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION session_search_on_message_delete();
CREATE TRIGGER session_search_contact AFTER UPDATE OF phone, display_name, whatsapp_profile_name, external_user_id
    ON sessions_app_contact
    FOR EACH ROW WHEN (OLD.phone IS DISTINCT FROM NEW.phone OR OLD.display_name IS DISTINCT FROM NEW.display_name
                       OR OLD.whatsapp_profile_name IS DISTINCT FROM NEW.whatsapp_profile_name
                       OR OLD.external_user_id IS DISTINCT FROM NEW.external_user_id)
    EXECUTE FUNCTION session_search_on_contact();
"""

def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    run = schema_editor.execute
    run("ALTER TABLE sessions_app_session ADD COLUMN search_document tsvector NOT NULL DEFAULT ''::tsvector")
    run(FUNCTIONS)
    run(TRIGGERS)
    run("SELECT session_search_backfill()")
    run("CREATE INDEX session_search_document ON sessions_app_session USING gin (search_document)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    run = schema_editor.execute
    for trigger, table in [
        ("session_search_insert", "sessions_app_session"),
        ("session_search_update", "sessions_app_session"),
        ("session_search_message_insert", "sessions_app_message"),
        ("session_search_message_update", "sessions_app_message"),
        ("session_search_message_delete", "sessions_app_message"),
        ("session_search_contact", "sessions_app_contact"),
    ]:
        run(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
    for function in [
        "session_search_on_contact()",
        "session_search_on_message_delete()",
        "session_search_on_message_update()",
        "session_search_on_message_insert()",
        "session_search_on_session()",
        "session_search_refresh(uuid[])",
        "session_search_backfill()",
        "session_search_fields(text, text, bigint, uuid)",
        "session_search_head(text, text, bigint)",
        "session_search_phone(text)",
        "session_search_words(text)",
    ]:
        run(f"DROP FUNCTION IF EXISTS {function}")
    run("DROP INDEX IF EXISTS session_search_document")
    run("ALTER TABLE sessions_app_session DROP COLUMN IF EXISTS search_document")


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0007_ingest_function")]

    operations = [migrations.RunPython(create, drop)]
