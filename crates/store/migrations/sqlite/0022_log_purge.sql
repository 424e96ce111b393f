-- Retention deletes many messages at once (crates/store/src/retention.rs). The search
-- index of 0017 has no index on its `id` column, so its per-message trigger reads the
-- whole index for each message deleted: minutes per thousand messages on a large log.
-- A purge records its cut here and first deletes the index rows older than the cut, in
-- batches (oldest rows come first in the index, so each batch finds its rows at once);
-- the trigger then leaves alone the messages older than the cut. Other deletions of
-- messages keep the trigger's work.
CREATE TABLE log_purge (
    id INTEGER NOT NULL PRIMARY KEY,
    cut BIGINT NOT NULL
);

DROP TRIGGER message_text_forget;

CREATE TRIGGER message_text_forget AFTER DELETE ON messages
WHEN NOT EXISTS (SELECT 1 FROM log_purge WHERE OLD.received_at < cut)
BEGIN
    DELETE FROM message_text WHERE id = OLD.id;
END;
