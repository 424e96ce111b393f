-- Substring search of the message log without reading every message: trigram GIN indexes
-- (pg_trgm) under the ILIKE searches of crates/store/src/log_search.rs. pg_trgm is a
-- trusted extension (PostgreSQL 13+): a role that may create objects in the database may
-- create it. Without that right the migration still succeeds and searches still work,
-- by reading the messages as before; the gateway logs nothing about it, so
-- docs/console.md says how to add the extension by hand.
DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN insufficient_privilege OR undefined_file THEN
        RAISE NOTICE 'pg_trgm not available: message-log substring searches read every message';
    END;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX IF NOT EXISTS messages_sender_trgm ON messages USING gin (sender gin_trgm_ops);
        CREATE INDEX IF NOT EXISTS messages_subject_trgm ON messages USING gin (subject gin_trgm_ops);
        CREATE INDEX IF NOT EXISTS messages_message_id_trgm ON messages USING gin (message_id gin_trgm_ops);
        CREATE INDEX IF NOT EXISTS message_recipients_address_trgm
            ON message_recipients USING gin (address gin_trgm_ops);
    END IF;
END
$$;
