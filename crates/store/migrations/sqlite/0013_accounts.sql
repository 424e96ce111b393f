-- Console and API accounts, their sessions and API tokens, login throttling, and the audit
-- log of every change made through the operations layer. Times are unix seconds; secrets
-- (sessions, tokens, recovery codes) are kept only as SHA-256 hashes (hex), passwords as
-- argon2id PHC strings. Lists (domains, recovery codes) are JSON arrays in text.

CREATE TABLE accounts (
    name TEXT NOT NULL PRIMARY KEY,
    role TEXT NOT NULL,
    domains TEXT NOT NULL,
    address TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret TEXT,
    totp_pending TEXT,
    -- The last TOTP time step accepted, so that a code is not accepted twice.
    totp_last_step INTEGER,
    recovery_codes TEXT NOT NULL,
    created INTEGER NOT NULL,
    last_login INTEGER,
    failed_count INTEGER NOT NULL,
    locked_until INTEGER
);

CREATE TABLE web_sessions (
    id TEXT NOT NULL PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    remote TEXT
);
CREATE INDEX web_sessions_account ON web_sessions (account);

CREATE TABLE api_tokens (
    id INTEGER NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    role TEXT NOT NULL,
    domains TEXT NOT NULL,
    read_only INTEGER NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    expires INTEGER,
    last_used INTEGER,
    last_remote TEXT,
    revoked INTEGER NOT NULL
);
CREATE INDEX api_tokens_account ON api_tokens (account);

-- One row per failed login, by client address, for per-address throttling.
CREATE TABLE login_attempts (
    remote TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX login_attempts_remote ON login_attempts (remote, at);

CREATE TABLE audit_log (
    id INTEGER NOT NULL PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    via TEXT NOT NULL,
    remote TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, at);
