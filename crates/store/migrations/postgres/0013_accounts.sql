-- The PostgreSQL spelling of sqlite/0013_accounts.sql.
--
-- Console and API accounts, their sessions and API tokens, login throttling, and the audit
-- log of every change made through the operations layer. Times are unix seconds; secrets
-- (sessions, tokens, recovery codes) are kept only as SHA-256 hashes (hex), passwords as
-- argon2id PHC strings. Lists (domains, recovery codes) are JSON arrays in text.

CREATE TABLE accounts (
    name TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    role TEXT COLLATE "C" NOT NULL,
    domains TEXT COLLATE "C" NOT NULL,
    address TEXT COLLATE "C" NOT NULL,
    password_hash TEXT COLLATE "C" NOT NULL,
    totp_secret TEXT COLLATE "C",
    totp_pending TEXT COLLATE "C",
    -- The last TOTP time step accepted, so that a code is not accepted twice.
    totp_last_step BIGINT,
    recovery_codes TEXT COLLATE "C" NOT NULL,
    created BIGINT NOT NULL,
    last_login BIGINT,
    failed_count BIGINT NOT NULL,
    locked_until BIGINT
);

CREATE TABLE web_sessions (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    account TEXT COLLATE "C" NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    csrf TEXT COLLATE "C" NOT NULL,
    created BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    remote TEXT COLLATE "C"
);
CREATE INDEX web_sessions_account ON web_sessions (account);

CREATE TABLE api_tokens (
    id BIGINT NOT NULL PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    account TEXT COLLATE "C" NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    role TEXT COLLATE "C" NOT NULL,
    domains TEXT COLLATE "C" NOT NULL,
    read_only BIGINT NOT NULL,
    secret_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    created BIGINT NOT NULL,
    expires BIGINT,
    last_used BIGINT,
    last_remote TEXT COLLATE "C",
    revoked BIGINT NOT NULL
);
CREATE INDEX api_tokens_account ON api_tokens (account);

-- One row per failed login, by client address, for per-address throttling.
CREATE TABLE login_attempts (
    remote TEXT COLLATE "C" NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX login_attempts_remote ON login_attempts (remote, at);

CREATE TABLE audit_log (
    id BIGINT NOT NULL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT COLLATE "C" NOT NULL,
    role TEXT COLLATE "C" NOT NULL,
    via TEXT COLLATE "C" NOT NULL,
    remote TEXT COLLATE "C",
    action TEXT COLLATE "C" NOT NULL,
    target TEXT COLLATE "C" NOT NULL,
    before_json TEXT COLLATE "C",
    after_json TEXT COLLATE "C"
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, at);
