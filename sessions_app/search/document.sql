-- The session search document: one `tsvector` per session, `sessions_app_session.search_document`,
-- kept current by the triggers below and read by `sessions_app/search/query.py` through one GIN index.
--
-- This file is the whole current text of the document's functions and triggers. A migration applies
-- it (sessions_app/sql.py); a change edits this file and adds a migration that applies it again.
-- docs/api.md ("Search at scale") says what the document holds and why it lives in the database.
--
-- It holds, without positions, the lower-cased words of the session's title and description, of its
-- contact's names and external user id, of the text of every one of its messages, and every ending
-- of two digits or more of the contact's phone number (so a prefix search finds any run of digits).
--
-- Why triggers: every write path (the ORM, the ingest function, admin edits, bulk loads) keeps the
-- document current in its own transaction at no extra round trip. The column is not a model field,
-- so no ORM read ever fetches it.
--
-- The ingest function (sessions_app/ingest/record_inbound.sql) writes the document itself, in the
-- very row version it writes anyway, and raises the transaction-local flag
-- `sessions_app.ingest_writes_search` while it does: the insert triggers' WHEN clauses read it.
-- Merge and split (sessions_app/lifecycle/boundaries.py) move many messages in one statement and
-- raise `sessions_app.moving_messages` meanwhile: the message update trigger, which would recompute
-- both sessions' whole documents once per moved row, stays out, and they refresh each document once.

-- Words: punctuation is a separator (so "e-mail", "ana@x.com", "#4242" and "+1 (555)" index as plain
-- words and digits that the query side finds by the same rule), lower case, no positions.
CREATE OR REPLACE FUNCTION session_search_words(body text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT strip(to_tsvector('simple'::regconfig, regexp_replace(coalesce(body, ''), '[[:punct:]]+', ' ', 'g')))
$$;

-- Every ending of two digits or more of the number's digits. PL/pgSQL: its plans are kept for the
-- connection's life, where an SQL function around a subquery is planned again on every call.
CREATE OR REPLACE FUNCTION session_search_phone(phone text) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    digits text := regexp_replace(coalesce(phone, ''), '\D', '', 'g');
    suffixes text[] := '{}';
BEGIN
    FOR i IN 1 .. length(digits) - 1 LOOP
        suffixes := suffixes || substr(digits, i);
    END LOOP;
    RETURN array_to_tsvector(suffixes);
END $$;

-- The words of a session's own fields and of its contact.
CREATE OR REPLACE FUNCTION session_search_head(title text, description text, contact bigint)
RETURNS tsvector LANGUAGE plpgsql STABLE AS $$
DECLARE
    person record;
    document tsvector := session_search_words(concat_ws(' ', title, description));
BEGIN
    SELECT c.display_name, c.whatsapp_profile_name, c.external_user_id, c.phone INTO person
      FROM sessions_app_contact c WHERE c.id = contact;
    IF FOUND THEN
        document := document
            || session_search_words(concat_ws(' ', person.display_name, person.whatsapp_profile_name,
                                              person.external_user_id))
            || session_search_phone(person.phone);
    END IF;
    RETURN document;
END $$;

-- A whole document, from the session's fields and all its messages.
CREATE OR REPLACE FUNCTION session_search_fields(title text, description text, contact bigint, session uuid)
RETURNS tsvector LANGUAGE plpgsql STABLE AS $$
DECLARE
    body text;
BEGIN
    SELECT string_agg(m.content, ' ') INTO body FROM sessions_app_message m WHERE m.session_id = session;
    RETURN session_search_head(title, description, contact) || session_search_words(body);
END $$;

-- Every document at once (after a bulk load, e.g. bench/seed.py): one pass over the messages instead
-- of an index probe per session.
CREATE OR REPLACE FUNCTION session_search_backfill() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sessions_app_session s
    SET search_document = session_search_head(s.title, s.description, s.contact_id) || coalesce(m.words, '')
    FROM sessions_app_session s2
    LEFT JOIN (
        SELECT session_id, session_search_words(string_agg(content, ' ')) AS words
        FROM sessions_app_message GROUP BY session_id
    ) m ON m.session_id = s2.id
    WHERE s2.id = s.id;
END $$;

CREATE OR REPLACE FUNCTION session_search_on_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_document := session_search_fields(NEW.title, NEW.description, NEW.contact_id, NEW.id);
    RETURN NEW;
END $$;

-- A message's words join its session's document, and only when it brings a word the document lacks
-- (a message of known words writes nothing).
CREATE OR REPLACE FUNCTION session_search_on_message_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    words tsvector := session_search_words(NEW.content);
BEGIN
    UPDATE sessions_app_session SET search_document = search_document || words
    WHERE id = NEW.session_id AND length(search_document || words) > length(search_document);
    RETURN NULL;
END $$;

-- Recomputes whole documents: for the rare writes that remove words (edits, deletes, renames).
CREATE OR REPLACE FUNCTION session_search_refresh(sessions uuid[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sessions_app_session s
    SET search_document = session_search_fields(s.title, s.description, s.contact_id, s.id)
    WHERE s.id = ANY(sessions);
END $$;

CREATE OR REPLACE FUNCTION session_search_on_message_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM session_search_refresh(ARRAY[OLD.session_id, NEW.session_id]);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION session_search_on_message_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM session_search_refresh(ARRAY(SELECT DISTINCT session_id FROM gone));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION session_search_on_contact() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM session_search_refresh(ARRAY(SELECT id FROM sessions_app_session WHERE contact_id = NEW.id));
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER session_search_insert BEFORE INSERT ON sessions_app_session
    FOR EACH ROW WHEN (current_setting('sessions_app.ingest_writes_search', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION session_search_on_session();
CREATE OR REPLACE TRIGGER session_search_update
    BEFORE UPDATE OF title, description, contact_id ON sessions_app_session
    FOR EACH ROW WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.description IS DISTINCT FROM NEW.description
                       OR OLD.contact_id IS DISTINCT FROM NEW.contact_id)
    EXECUTE FUNCTION session_search_on_session();
CREATE OR REPLACE TRIGGER session_search_message_insert AFTER INSERT ON sessions_app_message
    FOR EACH ROW WHEN (NEW.content <> ''
                       AND current_setting('sessions_app.ingest_writes_search', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION session_search_on_message_insert();
CREATE OR REPLACE TRIGGER session_search_message_update
    AFTER UPDATE OF content, session_id ON sessions_app_message
    FOR EACH ROW WHEN ((OLD.content IS DISTINCT FROM NEW.content OR OLD.session_id IS DISTINCT FROM NEW.session_id)
                       AND current_setting('sessions_app.moving_messages', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION session_search_on_message_update();
CREATE OR REPLACE TRIGGER session_search_message_delete AFTER DELETE ON sessions_app_message
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION session_search_on_message_delete();
CREATE OR REPLACE TRIGGER session_search_contact
    AFTER UPDATE OF phone, display_name, whatsapp_profile_name, external_user_id ON sessions_app_contact
    FOR EACH ROW WHEN (OLD.phone IS DISTINCT FROM NEW.phone OR OLD.display_name IS DISTINCT FROM NEW.display_name
                       OR OLD.whatsapp_profile_name IS DISTINCT FROM NEW.whatsapp_profile_name
                       OR OLD.external_user_id IS DISTINCT FROM NEW.external_user_id)
    EXECUTE FUNCTION session_search_on_contact();
