-- Logins that passed the password and wait for their TOTP code, by the hash of the handle
-- the second form carries (crates/ops/src/sessions.rs). In the store, so that any node of
-- a cluster can take the second step; each handle is used once and lives five minutes.
CREATE TABLE login_pending (
    id TEXT NOT NULL PRIMARY KEY,
    account TEXT NOT NULL,
    expires BIGINT NOT NULL
);
