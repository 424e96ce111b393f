-- The cut of the last message-log purge (crates/store/src/retention.rs). SQLite needs it
-- to delete its search index in batches rather than per message (see the SQLite
-- migration of the same number); PostgreSQL's trigram indexes go with their rows, and
-- the table is kept for the same code and numbering.
CREATE TABLE log_purge (
    id INTEGER NOT NULL PRIMARY KEY,
    cut BIGINT NOT NULL
);
