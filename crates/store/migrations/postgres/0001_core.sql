-- Core policy tables and the message log: the PostgreSQL spelling of sqlite/0001_core.sql.
--
-- The same tables, columns and keys on both engines; only the types are spelled per engine:
-- every integer is BIGINT (the store decodes all integers as i64, and PostgreSQL's INTEGER is
-- four bytes), and every text column collates "C", byte order as SQLite's BINARY, so that
-- ORDER BY and comparisons give the same answer whatever locale the server was made with.

CREATE TABLE domains (
    name TEXT COLLATE "C" NOT NULL PRIMARY KEY
);

-- seq keeps the order the routes were given in, so routes with equal priority come back stable.
CREATE TABLE domain_routes (
    domain TEXT COLLATE "C" NOT NULL REFERENCES domains (name) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    host TEXT COLLATE "C" NOT NULL,
    port BIGINT NOT NULL,
    priority BIGINT NOT NULL,
    tls TEXT COLLATE "C" NOT NULL,
    auth_user TEXT COLLATE "C",
    auth_password TEXT COLLATE "C",
    PRIMARY KEY (domain, seq)
);

CREATE TABLE networks (
    cidr TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    comment TEXT COLLATE "C" NOT NULL
);

CREATE TABLE users (
    email TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    password_hash TEXT COLLATE "C" NOT NULL
);

CREATE TABLE messages (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    received_at BIGINT NOT NULL,
    client_ip TEXT COLLATE "C" NOT NULL,
    helo TEXT COLLATE "C" NOT NULL,
    direction TEXT COLLATE "C" NOT NULL,
    sender TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    auth_user TEXT COLLATE "C",
    message_id TEXT COLLATE "C",
    subject TEXT COLLATE "C"
);

-- Every log search is "newest first", usually bounded by time.
CREATE INDEX messages_received_at ON messages (received_at);

-- seq is the RCPT order within the message.
CREATE TABLE message_recipients (
    message TEXT COLLATE "C" NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    address TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    reply TEXT COLLATE "C",
    remote_host TEXT COLLATE "C",
    updated_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    PRIMARY KEY (message, address)
);

-- Exact-address lookups (status views, per-recipient history) use this; substring searches scan.
CREATE INDEX message_recipients_address ON message_recipients (address);
