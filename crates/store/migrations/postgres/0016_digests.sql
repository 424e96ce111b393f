-- Quarantine digests per recipient: which digest listed a held copy (so that one signed
-- "release all" link can name the digest), and each recipient's own digest interval and
-- the time of their last digest (crates/store/src/digests.rs). A recipient without a row
-- gets digests at the configured interval.
ALTER TABLE quarantine_items ADD COLUMN digest_id TEXT;
CREATE INDEX quarantine_items_digest ON quarantine_items (digest_id);

CREATE TABLE digest_recipients (
    address TEXT NOT NULL PRIMARY KEY,
    -- seconds between digests; NULL: the configured interval; 0: never
    every_secs BIGINT,
    last_sent BIGINT
);
