-- Filtering: the administrator's rules and lists, the quarantine, and what the checks found for
-- each message in the log. Same portability rules as 0001 (BLOB is bytea's counterpart; the
-- PostgreSQL migrations will spell it so).

-- What the checks found and what the rules decided, per logged message.
ALTER TABLE messages ADD COLUMN score DOUBLE PRECISION;
ALTER TABLE messages ADD COLUMN verdict TEXT;
ALTER TABLE messages ADD COLUMN rule TEXT;
-- JSON array of {name, score, detail}.
ALTER TABLE messages ADD COLUMN findings TEXT;

-- seq is the evaluation order; names are unique so the CLI can address a rule.
CREATE TABLE rules (
    seq BIGINT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- JSON of one rule (portcullis_filter::rules::Rule).
    definition TEXT NOT NULL
);

-- Allow, block and valid-recipient lists. kind: allow | block | valid; field: ip | sender |
-- recipient; scope: '' for global, a domain, or an address (per user).
CREATE TABLE lists (
    kind TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    scope TEXT NOT NULL,
    comment TEXT NOT NULL,
    PRIMARY KEY (kind, field, value, scope)
);

-- One held message: its body as it would have been delivered, and its envelope.
CREATE TABLE quarantine_messages (
    id TEXT NOT NULL PRIMARY KEY,
    -- inbound | outbound: only inbound items go to recipients' digests.
    direction TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    sender TEXT NOT NULL,
    subject TEXT,
    class TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    rule TEXT,
    findings TEXT NOT NULL,
    -- JSON of the spool envelope.
    envelope TEXT NOT NULL,
    body BLOB NOT NULL
);

CREATE INDEX quarantine_messages_expires_at ON quarantine_messages (expires_at);

-- One held message per recipient, so each recipient releases only their own copy.
-- state: held | releasing (claimed, being queued) | released | deleted.
CREATE TABLE quarantine_items (
    id TEXT NOT NULL PRIMARY KEY,
    message TEXT NOT NULL REFERENCES quarantine_messages (id) ON DELETE CASCADE,
    recipient TEXT NOT NULL,
    state TEXT NOT NULL,
    changed_at BIGINT NOT NULL,
    digest_sent_at BIGINT
);

CREATE INDEX quarantine_items_recipient ON quarantine_items (recipient, state);
CREATE INDEX quarantine_items_message ON quarantine_items (message);
