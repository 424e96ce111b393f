-- Core policy tables and the message log.
--
-- Written for both SQLite and PostgreSQL: only TEXT, INTEGER and BIGINT columns, times as unix seconds,
-- natural primary keys (no AUTOINCREMENT / SERIAL, which differ between engines).

CREATE TABLE domains (
    name TEXT NOT NULL PRIMARY KEY
);

-- seq keeps the order the routes were given in, so routes with equal priority come back stable.
CREATE TABLE domain_routes (
    domain TEXT NOT NULL REFERENCES domains (name) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    priority BIGINT NOT NULL,
    tls TEXT NOT NULL,
    auth_user TEXT,
    auth_password TEXT,
    PRIMARY KEY (domain, seq)
);

CREATE TABLE networks (
    cidr TEXT NOT NULL PRIMARY KEY,
    comment TEXT NOT NULL
);

CREATE TABLE users (
    email TEXT NOT NULL PRIMARY KEY,
    password_hash TEXT NOT NULL
);

CREATE TABLE messages (
    id TEXT NOT NULL PRIMARY KEY,
    received_at BIGINT NOT NULL,
    client_ip TEXT NOT NULL,
    helo TEXT NOT NULL,
    direction TEXT NOT NULL,
    sender TEXT NOT NULL,
    size BIGINT NOT NULL,
    auth_user TEXT,
    message_id TEXT,
    subject TEXT
);

-- Every log search is "newest first", usually bounded by time.
CREATE INDEX messages_received_at ON messages (received_at);

-- seq is the RCPT order within the message.
CREATE TABLE message_recipients (
    message TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    reply TEXT,
    remote_host TEXT,
    updated_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    PRIMARY KEY (message, address)
);

-- Exact-address lookups (status views, per-recipient history) use this; substring searches scan.
CREATE INDEX message_recipients_address ON message_recipients (address);
