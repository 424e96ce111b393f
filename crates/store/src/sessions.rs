//! Console sessions. Owns the table `web_sessions`. A session is kept under the SHA-256 of
//! its cookie's secret, never the secret; how long one lasts is the caller's to decide.

use crate::engine::on_pool;
use crate::{Store, StoreError};

/// A console session as stored (`id` is the hash of the cookie's secret).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub account: String,
    pub csrf: String,
    pub created: i64,
    pub last_seen: i64,
    pub expires: i64,
    pub remote: Option<String>,
}

impl Store {
    pub async fn session_insert(&self, s: &SessionRow) -> Result<(), StoreError> {
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO web_sessions (id, account, csrf, created, last_seen, expires, remote) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(&s.id)
        .bind(&s.account)
        .bind(&s.csrf)
        .bind(s.created)
        .bind(s.last_seen)
        .bind(s.expires)
        .bind(&s.remote)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(StoreError::query(format!(
            "opening a session of account {}",
            s.account
        )))
    }

    /// The session of hash `id`, expired or not.
    pub async fn session_get(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT id, account, csrf, created, last_seen, expires, remote \
             FROM web_sessions WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await)
        .map_err(StoreError::query("reading a session"))
    }

    /// Records activity on a session and its new expiry.
    pub async fn session_touch(
        &self,
        id: &str,
        last_seen: i64,
        expires: i64,
    ) -> Result<(), StoreError> {
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE web_sessions SET last_seen = $2, expires = $3 WHERE id = $1"
        )
        .bind(id)
        .bind(last_seen)
        .bind(expires)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(StoreError::query("extending a session"))
    }

    /// Ends one session; false when there was none.
    pub async fn session_delete(&self, id: &str) -> Result<bool, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM web_sessions WHERE id = $1"
        )
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query("ending a session"))?;
        Ok(done > 0)
    }

    /// Ends every session of an account; how many there were.
    pub async fn session_delete_account(&self, account: &str) -> Result<u64, StoreError> {
        on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM web_sessions WHERE account = $1"
        )
        .bind(account)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(format!(
            "ending the sessions of account {account}"
        )))
    }

    /// Forgets sessions that expired before `now`; how many.
    pub async fn session_purge(&self, now: i64) -> Result<u64, StoreError> {
        on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM web_sessions WHERE expires < $1"
        )
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query("removing expired sessions"))
    }
}

impl Store {
    /// Records that `account` passed its password and waits for its second factor, under
    /// the hash `id` of a handle, until `expires`; forgets the expired ones.
    pub async fn login_pending_put(
        &self,
        id: &str,
        account: &str,
        expires: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let context = format!("keeping the pending login of account {account}");
        on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM login_pending WHERE expires <= $1"
        )
        .bind(now)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(StoreError::query(&context))?;
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO login_pending (id, account, expires) VALUES ($1, $2, $3)"
        )
        .bind(id)
        .bind(account)
        .bind(expires)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(StoreError::query(&context))
    }

    /// The account of the pending login `id`, once: the row is gone after this. None when
    /// unknown, used or expired.
    pub async fn login_pending_take(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String, i64)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "DELETE FROM login_pending WHERE id = $1 RETURNING account, expires"
        )
        .bind(id)
        .fetch_optional(p)
        .await)
        .map_err(StoreError::query("taking a pending login"))?;
        Ok(row.filter(|(_, expires)| *expires > now).map(|(a, _)| a))
    }
}
