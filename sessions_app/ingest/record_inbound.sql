-- The reuse rule: which session an inbound message joins, and the message stored in it.
--
-- This file is the whole current text of the rule's two functions. A migration applies it
-- (sessions_app/sql.py); a change edits this file and adds a migration that applies it again.
-- `sessions_app/ingest/rule.py` calls `sessions_app_record_inbound` once per inbound message (a
-- webhook, a chat API, the socket); `sessions_app/ingest/contacts.py` calls
-- `sessions_app_phone_contact` for a phone contact outside ingest. docs/ingest.md says why the rule
-- is a database function (about 65 % of the webhook's throughput, bench/ingest.py).
--
-- The rule, for a message on a (channel, contact) pair: join the session the client named, if it
-- is that pair's and active; else the pair's newest active session, if its last message is within
-- the channel's reuse window; else reopen the pair's newest session if it was closed or resolved
-- within the channel's reopen window (0: never); else open a new session. One transaction, serialised per pair by a
-- transaction-scoped advisory lock, so two servers handling the same pair queue and different
-- pairs never wait on each other. A provider id stored before (a redelivery) stores nothing.

-- A phone number's contact: found, or created; a WhatsApp id or profile name that changed is kept.
-- The contact's row comes back, and `created`: true only when this call inserted it.
CREATE OR REPLACE FUNCTION sessions_app_phone_contact(
    p_phone text,
    p_whatsapp_id text,
    p_profile_name text,
    p_now timestamptz
) RETURNS TABLE (
    id bigint,
    phone varchar,
    whatsapp_id varchar,
    whatsapp_profile_name varchar,
    display_name varchar,
    company varchar,
    external_user_id varchar,
    business_id varchar,
    created_at timestamptz,
    updated_at timestamptz,
    created boolean
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    cid bigint;
    inserted boolean := false;
BEGIN
    SELECT c.id INTO cid FROM sessions_app_contact c WHERE c.phone = p_phone AND c.external_user_id = '';
    IF cid IS NULL THEN
        INSERT INTO sessions_app_contact (phone, whatsapp_id, whatsapp_profile_name, display_name, company,
                                          external_user_id, business_id, created_at, updated_at)
        VALUES (p_phone, p_whatsapp_id, p_profile_name, '', '', '', '', p_now, p_now)
        ON CONFLICT DO NOTHING
        RETURNING sessions_app_contact.id INTO cid;
        inserted := cid IS NOT NULL;
        IF NOT inserted THEN
            -- A concurrent first message from this number created it: its insert committed before
            -- ours could conflict with it, so it is visible now.
            SELECT c.id INTO cid FROM sessions_app_contact c
             WHERE c.phone = p_phone AND c.external_user_id = '';
        END IF;
    ELSE
        UPDATE sessions_app_contact c SET
            whatsapp_id = CASE WHEN p_whatsapp_id <> '' THEN p_whatsapp_id ELSE c.whatsapp_id END,
            whatsapp_profile_name = CASE WHEN p_profile_name <> '' THEN p_profile_name
                                         ELSE c.whatsapp_profile_name END,
            updated_at = p_now
         WHERE c.id = cid
           AND ((p_whatsapp_id <> '' AND c.whatsapp_id <> p_whatsapp_id)
                OR (p_profile_name <> '' AND c.whatsapp_profile_name <> p_profile_name));
    END IF;
    RETURN QUERY SELECT c.id, c.phone, c.whatsapp_id, c.whatsapp_profile_name, c.display_name, c.company,
                        c.external_user_id, c.business_id, c.created_at, c.updated_at, inserted
                   FROM sessions_app_contact c WHERE c.id = cid;
END;
$$;

-- The lock that serialises everything written for a (channel, contact) pair: every message the rule
-- stores, and staff merging or splitting the pair's sessions (sessions_app/lifecycle/boundaries.py).
-- Transaction-scoped: released at commit or rollback.
CREATE OR REPLACE FUNCTION sessions_app_lock_pair(p_channel_id bigint, p_contact_id bigint) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(mod(p_channel_id, 2147483648)::int, mod(p_contact_id, 2147483648)::int)
$$;

-- Outcomes: duplicate (this provider id was stored before: nothing written; the message and session
-- ids are the first delivery's), named (joined the session the client named), reused (joined the
-- newest active session within the window), gap (that session's last message is older than the
-- window: opened a new one), ended (that session ended while we looked: opened a new one), opened
-- (no active session: opened one), reopened (the pair's newest session was closed or resolved at
-- most the reopen window ago: it is active again, with a StatusChange by `system:reopen`, and the
-- message joins it; `gap` is then the seconds since it ended and `reopened_from` its old status).
-- Abandoned sessions never reopen (they follow the reuse window, so a new one opens), nor do
-- archived ones; merged ones (empty pointers to their target) are not even looked at.
--
-- Every value comes as a plain parameter. `p_contact_id` NULL: the contact is the phone number's
-- (`sessions_app_phone_contact`). The p_session_* values are the session to open if none is joined
-- (its metadata already encrypted); the p_message_* values, the message. The joined or opened
-- session comes back whole, but for its metadata and search document.
--
-- Events (sessions_app/events/record.py): p_event_opened, p_event_status and p_event_message say
-- whether `session.opened`, `session.status_changed` and `message.created` have a subscriber. The
-- message's events that do (session.opened when it opens a session, session.status_changed when it
-- reopens one, message.created always) take their numbers from the session's counter in the row
-- version this function writes anyway (`event_sequence`, returned: the last number taken), under
-- the row lock its UPDATE holds; a rollback takes them back. When it has any, the session's
-- metadata (encrypted) and, for a phone contact found or created here, the contact's columns come
-- back too, for the events' payloads; otherwise those are NULL.
CREATE OR REPLACE FUNCTION sessions_app_record_inbound(
    p_channel_id bigint,
    p_reuse_window interval,
    p_now timestamptz,
    p_contact_id bigint,
    p_phone text,
    p_whatsapp_id text,
    p_profile_name text,
    p_provider text,
    p_external_id text,
    p_preferred_session uuid,
    p_session_id uuid,
    p_session_kind text,
    p_session_title text,
    p_session_business_id text,
    p_session_location_id text,
    p_session_agent_id text,
    p_session_owner_id integer,
    p_session_metadata text,
    p_message_role text,
    p_message_content text,
    p_message_media jsonb,
    p_message_metadata jsonb,
    p_message_reply_state text,
    p_reopen_window interval DEFAULT interval '0',
    p_event_opened boolean DEFAULT false,
    p_event_status boolean DEFAULT false,
    p_event_message boolean DEFAULT false
) RETURNS TABLE (
    outcome text,
    gap double precision,
    contact_id bigint,
    message_id bigint,
    id uuid,
    external_id varchar,
    channel_id bigint,
    channel_kind varchar,
    business_id varchar,
    location_id varchar,
    owner_id integer,
    agent_id varchar,
    title varchar,
    description text,
    thumbnail_url varchar,
    status varchar,
    mission_id varchar,
    message_count integer,
    first_message_at timestamptz,
    last_message_at timestamptz,
    last_activity_at timestamptz,
    status_changed_at timestamptz,
    created_at timestamptz,
    updated_at timestamptz,
    reopened_from varchar,
    merged_into_id uuid,
    event_sequence bigint,
    session_metadata text,
    contact_whatsapp_id varchar,
    contact_whatsapp_profile_name varchar,
    contact_display_name varchar,
    contact_company varchar,
    contact_business_id varchar,
    contact_created_at timestamptz,
    contact_updated_at timestamptz
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    cid bigint := p_contact_id;
    c sessions_app_contact;  -- the phone contact's row (all NULL when the caller named the contact)
    numbered integer;  -- how many numbers this message's events took from the session's counter
    ended sessions_app_session;
    was text;
    created_contact boolean := false;
    s sessions_app_session;
    seen record;
    result text;
    since double precision;
    mid bigint;
    document tsvector;
BEGIN
    IF cid IS NULL THEN
        SELECT f.id, f.created, f.whatsapp_id, f.whatsapp_profile_name, f.display_name, f.company,
               f.business_id, f.created_at, f.updated_at
          INTO cid, created_contact, c.whatsapp_id, c.whatsapp_profile_name, c.display_name, c.company,
               c.business_id, c.created_at, c.updated_at
          FROM sessions_app_phone_contact(p_phone, p_whatsapp_id, p_profile_name, p_now) f;
    END IF;

    IF created_contact THEN
        -- Until this transaction commits no other one can see the new contact, and one creating the
        -- same contact waits on its unique index until then: no stored message, session or
        -- concurrent writer can involve the pair yet, so the lock and the lookups would find nothing.
        -- A redelivery of this message waits on the contact, then finds this message.
        result := 'opened';
    ELSE
        PERFORM sessions_app_lock_pair(p_channel_id, cid);

        IF p_external_id IS NOT NULL THEN
            SELECT m.id, m.session_id INTO seen FROM sessions_app_message m
             WHERE m.provider = p_provider AND m.external_id = p_external_id;
            IF FOUND THEN
                RETURN QUERY SELECT 'duplicate'::text, NULL::float8, cid, seen.id::bigint, seen.session_id::uuid,
                    NULL::varchar, NULL::bigint, NULL::varchar, NULL::varchar, NULL::varchar, NULL::integer,
                    NULL::varchar, NULL::varchar, NULL::text, NULL::varchar, NULL::varchar, NULL::varchar,
                    NULL::integer, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz,
                    NULL::timestamptz, NULL::timestamptz, NULL::varchar, NULL::uuid, NULL::bigint, NULL::text,
                    NULL::varchar, NULL::varchar, NULL::varchar, NULL::varchar, NULL::varchar, NULL::timestamptz,
                    NULL::timestamptz;
                RETURN;
            END IF;
        END IF;

        IF p_preferred_session IS NOT NULL THEN
            SELECT * INTO s FROM sessions_app_session x
             WHERE x.id = p_preferred_session AND x.channel_id = p_channel_id AND x.contact_id = cid
               AND x.status = 'active';
            IF FOUND THEN
                result := 'named';
            END IF;
        END IF;
        IF result IS NULL THEN
            -- In the order of `session_reuse_lookup` (partial: active sessions only), which serves it.
            -- A session opened without a message yet (last_message_at NULL) counts as the newest, its
            -- gap taken from its creation.
            SELECT * INTO s FROM sessions_app_session x
             WHERE x.channel_id = p_channel_id AND x.contact_id = cid AND x.status = 'active'
             ORDER BY x.last_message_at DESC
             LIMIT 1;
            IF NOT FOUND THEN
                result := 'opened';
            ELSE
                since := extract(epoch FROM p_now - coalesce(s.last_message_at, s.created_at));
                result := CASE WHEN p_now - coalesce(s.last_message_at, s.created_at) > p_reuse_window
                               THEN 'gap' ELSE 'reused' END;
            END IF;
        END IF;

        IF result IN ('opened', 'gap') AND p_reopen_window > interval '0' THEN
            -- The reopen window: the pair's newest session (by `session_contact_recent`, a contact's
            -- few sessions), if it ended as closed or resolved at most the window ago. Still under the
            -- pair's lock, so a second message of the same moment joins the reopened session.
            SELECT * INTO ended FROM sessions_app_session x
             WHERE x.contact_id = cid AND x.channel_id = p_channel_id AND x.status <> 'merged'
             ORDER BY x.last_activity_at DESC, x.id DESC
             LIMIT 1;
            IF FOUND AND ended.status IN ('closed', 'resolved')
               AND p_now - ended.status_changed_at <= p_reopen_window THEN
                was := ended.status;
                -- Re-checking the status on the row it locks: a sweep archiving it right now holds it
                -- until it commits, and then this finds it archived and opens a new session instead.
                UPDATE sessions_app_session x SET
                    status = 'active',
                    status_changed_at = p_now,
                    message_count = x.message_count + 1,
                    first_message_at = coalesce(x.first_message_at, p_now),
                    last_message_at = p_now,
                    last_activity_at = p_now,
                    updated_at = p_now,
                    search_document = x.search_document || session_search_words(p_message_content),
                    event_sequence = x.event_sequence + p_event_status::int + p_event_message::int
                 WHERE x.id = ended.id AND x.status = was
                RETURNING x.* INTO s;
                IF FOUND THEN
                    since := extract(epoch FROM p_now - ended.status_changed_at);
                    result := 'reopened';
                    INSERT INTO sessions_app_statuschange (session_id, from_status, to_status, actor, reason,
                                                           created_at)
                    VALUES (s.id, was, 'active', 'system:reopen',
                            'a message ' || floor(since)::bigint || 's after it was ' || was, p_now);
                ELSE
                    was := NULL;
                END IF;
            END IF;
        END IF;
    END IF;

    IF result IN ('named', 'reused') THEN
        -- Re-checking the status: a session the sweep ended a moment ago is not written to; the row
        -- lock this UPDATE takes makes the two wait for each other. The message's new words join the
        -- search document in the same row version (sessions_app/search/document.sql).
        UPDATE sessions_app_session x SET
            message_count = x.message_count + 1,
            last_message_at = p_now,
            last_activity_at = p_now,
            updated_at = p_now,
            search_document = x.search_document || session_search_words(p_message_content),
            event_sequence = x.event_sequence + p_event_message::int
         WHERE x.id = s.id AND x.status = 'active'
        RETURNING x.* INTO s;
        IF NOT FOUND THEN
            result := 'ended';
        END IF;
    END IF;
    -- The numbers the UPDATE above took, or a new session's first ones.
    numbered := p_event_message::int + CASE WHEN result IN ('named', 'reused') THEN 0
                                            WHEN result = 'reopened' THEN p_event_status::int
                                            ELSE p_event_opened::int END;

    -- This function keeps the search document itself: the search triggers read this flag and stay
    -- out of the way until it is lowered (sessions_app/search/document.sql).
    PERFORM set_config('sessions_app.ingest_writes_search', 'on', true);
    -- A new session's message goes in first (the foreign key is checked at commit), so that a
    -- session insert trigger computing the document from its messages finds it.
    INSERT INTO sessions_app_message (session_id, direction, role, content, media, provider, external_id,
                                      metadata, delivery_status, reply_state, reply_claimed_at,
                                      delivery_error, created_at, in_reply_to_id, delivery_attempts,
                                      delivery_claimed_at, reply_attempts, reply_error)
    VALUES (CASE WHEN result IN ('named', 'reused', 'reopened') THEN s.id ELSE p_session_id END, 'inbound',
            p_message_role, p_message_content, p_message_media, p_provider, p_external_id,
            p_message_metadata, '', p_message_reply_state, NULL, '', p_now, NULL, 0, NULL, 0, '')
    RETURNING sessions_app_message.id INTO mid;

    IF result NOT IN ('named', 'reused', 'reopened') THEN
        IF created_contact THEN
            -- The document of a session whose contact this call created, from the values at hand,
            -- as `session_search_fields` would read them back (two queries).
            document := session_search_words(p_session_title)
                || session_search_phone(p_phone)
                || session_search_words(p_profile_name)
                || session_search_words(p_message_content);
        ELSE
            -- The session insert trigger computes it, reading the contact as staff may have edited it.
            PERFORM set_config('sessions_app.ingest_writes_search', 'off', true);
        END IF;
        INSERT INTO sessions_app_session (id, external_id, channel_id, channel_kind, contact_id, business_id,
                                          location_id, owner_id, agent_id, title, description, thumbnail_url,
                                          status, metadata, mission_id, message_count, first_message_at,
                                          last_message_at, last_activity_at, status_changed_at, created_at,
                                          updated_at, search_document, merged_into_id, event_sequence)
        VALUES (p_session_id, NULL, p_channel_id, p_session_kind, cid, p_session_business_id,
                p_session_location_id, p_session_owner_id, p_session_agent_id, p_session_title, '', '',
                'active', p_session_metadata, '', 1, p_now, p_now, p_now, p_now, p_now, p_now,
                coalesce(document, ''), NULL, numbered)
        RETURNING * INTO s;
    END IF;
    PERFORM set_config('sessions_app.ingest_writes_search', 'off', true);

    RETURN QUERY SELECT result, since, cid, mid, s.id, s.external_id, s.channel_id, s.channel_kind,
        s.business_id, s.location_id, s.owner_id, s.agent_id, s.title, s.description, s.thumbnail_url,
        s.status, s.mission_id, s.message_count, s.first_message_at, s.last_message_at, s.last_activity_at,
        s.status_changed_at, s.created_at, s.updated_at, was::varchar, s.merged_into_id, s.event_sequence,
        CASE WHEN numbered > 0 THEN s.metadata END, CASE WHEN numbered > 0 THEN c.whatsapp_id END,
        CASE WHEN numbered > 0 THEN c.whatsapp_profile_name END, CASE WHEN numbered > 0 THEN c.display_name END,
        CASE WHEN numbered > 0 THEN c.company END, CASE WHEN numbered > 0 THEN c.business_id END,
        CASE WHEN numbered > 0 THEN c.created_at END, CASE WHEN numbered > 0 THEN c.updated_at END;
END;
$$;
