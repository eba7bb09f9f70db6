-- The window report's daily rollup (sessions_app/ingest/window_report.py) sums stored messages, so
-- deleting sessions (an erasure, a retention purge, the API's delete) changes what it summed. This
-- statement trigger records per channel how recent the deleted sessions' messages were
-- (`dirty_before`): reports of periods starting before then read the messages themselves until the
-- next roll rebuilds the channel's rollup. Merge and split move messages between sessions of one
-- contact and channel and change nothing the rollup holds.
--
-- This file is the whole current text; a migration applies it (sessions_app/sql.py).

CREATE OR REPLACE FUNCTION sessions_app_window_rollup_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sessions_app_windowrollupstate w
       SET dirty_before = greatest(w.dirty_before, d.latest)
      FROM (SELECT channel_id, max(greatest(last_message_at, last_activity_at)) AS latest
              FROM gone GROUP BY channel_id) d
     WHERE w.channel_id = d.channel_id AND w.rolled_until IS NOT NULL;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER session_window_rollup_dirty AFTER DELETE ON sessions_app_session
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION sessions_app_window_rollup_dirty();
