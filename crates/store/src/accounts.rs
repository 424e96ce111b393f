//! Console and API accounts and failed logins by client address. Owns the tables
//! `accounts` and `login_attempts` (sessions are in `sessions`, API tokens in `tokens`).
//! Secrets arrive already hashed (argon2 PHC strings for passwords, SHA-256 hex for
//! recovery codes) and leave the same way: this module never sees a clear secret, and
//! decides nothing about who may log in.

use crate::engine::{on_conn, on_pool};
use crate::{Store, StoreError};

/// One account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub name: String,
    pub role: String,
    pub domains: Vec<String>,
    pub address: String,
    pub password_hash: String,
    /// The confirmed TOTP secret (base32); None: no second factor.
    pub totp_secret: Option<String>,
    /// A secret being enrolled, not yet confirmed with a code.
    pub totp_pending: Option<String>,
    pub totp_last_step: Option<i64>,
    /// Hashes of the unused recovery codes.
    pub recovery_codes: Vec<String>,
    pub created: i64,
    pub last_login: Option<i64>,
    pub failed_count: i64,
    pub locked_until: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct RawAccount {
    name: String,
    role: String,
    domains: String,
    address: String,
    password_hash: String,
    totp_secret: Option<String>,
    totp_pending: Option<String>,
    totp_last_step: Option<i64>,
    recovery_codes: String,
    created: i64,
    last_login: Option<i64>,
    failed_count: i64,
    locked_until: Option<i64>,
}

const ACCOUNT_COLUMNS: &str = "name, role, domains, address, password_hash, totp_secret, \
     totp_pending, totp_last_step, recovery_codes, created, last_login, failed_count, locked_until";

pub(crate) fn to_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_string())
}

pub(crate) fn from_json(context: &str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(context, e.to_string()))
}

impl RawAccount {
    fn decode(self) -> Result<AccountRow, StoreError> {
        let context = format!("reading account {}", self.name);
        Ok(AccountRow {
            domains: from_json(&context, &self.domains)?,
            recovery_codes: from_json(&context, &self.recovery_codes)?,
            name: self.name,
            role: self.role,
            address: self.address,
            password_hash: self.password_hash,
            totp_secret: self.totp_secret,
            totp_pending: self.totp_pending,
            totp_last_step: self.totp_last_step,
            created: self.created,
            last_login: self.last_login,
            failed_count: self.failed_count,
            locked_until: self.locked_until,
        })
    }
}

impl Store {
    /// How many accounts exist.
    pub async fn account_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM accounts"
        )
        .fetch_one(p)
        .await)
        .map_err(StoreError::query("counting accounts"))?;
        Ok(n)
    }

    /// Adds an account. False when one of that name exists (nothing is changed).
    pub async fn account_insert(&self, a: &AccountRow) -> Result<bool, StoreError> {
        let context = format!("adding account {}", a.name);
        if a.name.is_empty() || a.name.chars().any(char::is_whitespace) {
            return Err(StoreError::invalid(
                context,
                "account name must be non-empty without spaces",
            ));
        }
        if a.password_hash.is_empty() {
            return Err(StoreError::invalid(context, "password hash is empty"));
        }
        let done = on_pool!(&self.pool, |p| sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (name) DO NOTHING"
        )))
        .bind(&a.name)
        .bind(&a.role)
        .bind(to_json(&a.domains))
        .bind(&a.address)
        .bind(&a.password_hash)
        .bind(&a.totp_secret)
        .bind(&a.totp_pending)
        .bind(a.totp_last_step)
        .bind(to_json(&a.recovery_codes))
        .bind(a.created)
        .bind(a.last_login)
        .bind(a.failed_count)
        .bind(a.locked_until)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        Ok(done > 0)
    }

    pub async fn account_get(&self, name: &str) -> Result<Option<AccountRow>, StoreError> {
        let context = format!("reading account {name}");
        let row: Option<RawAccount> =
            on_pool!(&self.pool, |p| sqlx::query_as(sqlx::AssertSqlSafe(
                format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1")
            ))
            .bind(name)
            .fetch_optional(p)
            .await)
            .map_err(StoreError::query(&context))?;
        row.map(RawAccount::decode).transpose()
    }

    /// All accounts, sorted by name.
    pub async fn account_list(&self) -> Result<Vec<AccountRow>, StoreError> {
        let rows: Vec<RawAccount> = on_pool!(&self.pool, |p| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY name")
        ))
        .fetch_all(p)
        .await)
        .map_err(StoreError::query("listing accounts"))?;
        rows.into_iter().map(RawAccount::decode).collect()
    }

    /// Removes an account with its sessions and tokens. False when there was none.
    pub async fn account_delete(&self, name: &str) -> Result<bool, StoreError> {
        let context = format!("removing account {name}");
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(&context))?;
        let mut done = 0;
        for sql in [
            "DELETE FROM web_sessions WHERE account = $1",
            "DELETE FROM api_tokens WHERE account = $1",
            "DELETE FROM accounts WHERE name = $1",
        ] {
            done = on_conn!(&mut tx, |c| sqlx::query(sql)
                .bind(name)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))
            .map_err(StoreError::query(&context))?;
        }
        tx.commit().await.map_err(StoreError::query(&context))?;
        Ok(done > 0)
    }

    /// Sets a new password hash. False when there is no such account.
    pub async fn account_set_password(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        let context = format!("changing the password of account {name}");
        if hash.is_empty() {
            return Err(StoreError::invalid(context, "password hash is empty"));
        }
        self.account_update(
            &context,
            "UPDATE accounts SET password_hash = $2 WHERE name = $1",
            name,
            Some(hash),
        )
        .await
    }

    async fn account_update(
        &self,
        context: &str,
        sql: &'static str,
        name: &str,
        value: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(&self.pool, |p| {
            let q = sqlx::query(sql).bind(name);
            let q = if sql.contains("$2") { q.bind(value) } else { q };
            q.execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(StoreError::query(context))?;
        Ok(done > 0)
    }

    /// Counts a failed login on an account; at the `max`th failure in a row the account is
    /// locked until `lock_until` and the count starts again.
    pub async fn account_login_failed(
        &self,
        name: &str,
        max: i64,
        lock_until: i64,
    ) -> Result<(), StoreError> {
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE accounts SET \
             locked_until = CASE WHEN failed_count + 1 >= $2 THEN $3 ELSE locked_until END, \
             failed_count = CASE WHEN failed_count + 1 >= $2 THEN 0 ELSE failed_count + 1 END \
             WHERE name = $1"
        )
        .bind(name)
        .bind(max)
        .bind(lock_until)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(StoreError::query(format!(
            "counting a failed login of account {name}"
        )))
    }

    /// A successful login: the failure count and any lock are cleared.
    pub async fn account_login_succeeded(&self, name: &str, now: i64) -> Result<(), StoreError> {
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE accounts SET failed_count = 0, locked_until = NULL, last_login = $2 \
             WHERE name = $1"
        )
        .bind(name)
        .bind(now)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(StoreError::query(format!(
            "recording the login of account {name}"
        )))
    }

    /// Starts (Some) or abandons (None) a TOTP enrolment.
    pub async fn account_set_totp_pending(
        &self,
        name: &str,
        secret: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.account_update(
            &format!("enrolling TOTP for account {name}"),
            "UPDATE accounts SET totp_pending = $2 WHERE name = $1",
            name,
            secret,
        )
        .await
    }

    /// Makes the pending TOTP secret the account's, with fresh recovery code hashes and the
    /// step of the code that confirmed it (not to be accepted again). False when the
    /// pending secret is no longer `secret` (enrolment started again meanwhile).
    pub async fn account_confirm_totp(
        &self,
        name: &str,
        secret: &str,
        step: i64,
        recovery_hashes: &[String],
    ) -> Result<bool, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE accounts SET totp_secret = totp_pending, totp_pending = NULL, \
             totp_last_step = $3, recovery_codes = $4 WHERE name = $1 AND totp_pending = $2"
        )
        .bind(name)
        .bind(secret)
        .bind(step)
        .bind(to_json(recovery_hashes))
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(format!(
            "confirming TOTP for account {name}"
        )))?;
        Ok(done > 0)
    }

    /// Claims TOTP time step `step` for a login: false when it (or a later one) was used
    /// already, so a code is accepted once.
    pub async fn account_use_totp_step(&self, name: &str, step: i64) -> Result<bool, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE accounts SET totp_last_step = $2 \
             WHERE name = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)"
        )
        .bind(name)
        .bind(step)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(format!(
            "using a TOTP code of account {name}"
        )))?;
        Ok(done > 0)
    }

    /// Uses up the recovery code of hash `hash`: false when the account has no such unused
    /// code (or another login used it at the same moment).
    pub async fn account_use_recovery_code(
        &self,
        name: &str,
        hash: &str,
    ) -> Result<bool, StoreError> {
        let Some(account) = self.account_get(name).await? else {
            return Ok(false);
        };
        if !account.recovery_codes.iter().any(|h| h == hash) {
            return Ok(false);
        }
        let left: Vec<String> = account
            .recovery_codes
            .iter()
            .filter(|h| *h != hash)
            .cloned()
            .collect();
        // Compare-and-set on the whole list: two logins with one code cannot both win.
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE accounts SET recovery_codes = $3 WHERE name = $1 AND recovery_codes = $2"
        )
        .bind(name)
        .bind(to_json(&account.recovery_codes))
        .bind(to_json(&left))
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(format!(
            "using a recovery code of account {name}"
        )))?;
        Ok(done > 0)
    }

    /// Records a failed login from `remote` and forgets those older than `forget_before`.
    pub async fn login_failure(
        &self,
        remote: &str,
        at: i64,
        forget_before: i64,
    ) -> Result<(), StoreError> {
        let context = "recording a failed login";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(context))?;
        on_conn!(&mut tx, |c| sqlx::query(
            "DELETE FROM login_attempts WHERE at < $1"
        )
        .bind(forget_before)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(StoreError::query(context))?;
        on_conn!(&mut tx, |c| sqlx::query(
            "INSERT INTO login_attempts (remote, at) VALUES ($1, $2)"
        )
        .bind(remote)
        .bind(at)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(StoreError::query(context))?;
        tx.commit().await.map_err(StoreError::query(context))
    }

    /// Failed logins from `remote` at or after `since`.
    pub async fn login_failures_since(&self, remote: &str, since: i64) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM login_attempts WHERE remote = $1 AND at >= $2"
        )
        .bind(remote)
        .bind(since)
        .fetch_one(p)
        .await)
        .map_err(StoreError::query("counting failed logins"))?;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn account(name: &str) -> AccountRow {
        AccountRow {
            name: name.into(),
            role: "domain-admin".into(),
            domains: vec!["example.com".into()],
            address: name.into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            totp_secret: None,
            totp_pending: None,
            totp_last_step: None,
            recovery_codes: Vec::new(),
            created: 1000,
            last_login: None,
            failed_count: 0,
            locked_until: None,
        }
    }

    store_test! {
        async fn accounts_round_trip_and_lock(store) {
            assert_eq!(store.account_count().await.unwrap(), 0);
            assert!(store.account_insert(&account("alice")).await.unwrap());
            assert!(!store.account_insert(&account("alice")).await.unwrap());
            let got = store.account_get("alice").await.unwrap().unwrap();
            assert_eq!(got, account("alice"));
            assert!(store.account_set_password("alice", "$argon2id$new").await.unwrap());
            assert!(!store.account_set_password("nobody", "$argon2id$new").await.unwrap());

            for _ in 0..4 {
                store.account_login_failed("alice", 5, 2000).await.unwrap();
            }
            let got = store.account_get("alice").await.unwrap().unwrap();
            assert_eq!((got.failed_count, got.locked_until), (4, None));
            store.account_login_failed("alice", 5, 2000).await.unwrap();
            let got = store.account_get("alice").await.unwrap().unwrap();
            assert_eq!((got.failed_count, got.locked_until), (0, Some(2000)));
            store.account_login_succeeded("alice", 3000).await.unwrap();
            let got = store.account_get("alice").await.unwrap().unwrap();
            assert_eq!((got.last_login, got.locked_until), (Some(3000), None));

            assert_eq!(store.account_list().await.unwrap().len(), 1);
            assert!(store.account_delete("alice").await.unwrap());
            assert!(!store.account_delete("alice").await.unwrap());
        }

        async fn totp_steps_and_recovery_codes_are_used_once(store) {
            store.account_insert(&account("bob")).await.unwrap();
            assert!(store.account_set_totp_pending("bob", Some("SECRET")).await.unwrap());
            assert!(!store.account_confirm_totp("bob", "OTHER", 10, &[]).await.unwrap());
            let codes = vec!["h1".to_string(), "h2".to_string()];
            assert!(store.account_confirm_totp("bob", "SECRET", 10, &codes).await.unwrap());
            let got = store.account_get("bob").await.unwrap().unwrap();
            assert_eq!(got.totp_secret.as_deref(), Some("SECRET"));
            assert_eq!(got.totp_pending, None);
            assert!(!store.account_use_totp_step("bob", 10).await.unwrap());
            assert!(store.account_use_totp_step("bob", 11).await.unwrap());
            assert!(!store.account_use_totp_step("bob", 11).await.unwrap());
            assert!(store.account_use_recovery_code("bob", "h1").await.unwrap());
            assert!(!store.account_use_recovery_code("bob", "h1").await.unwrap());
            assert!(!store.account_use_recovery_code("bob", "nope").await.unwrap());
            let got = store.account_get("bob").await.unwrap().unwrap();
            assert_eq!(got.recovery_codes, vec!["h2".to_string()]);
        }

        async fn failed_logins_by_remote(store) {
            for at in [100, 200, 300] {
                store.login_failure("192.0.2.1", at, 0).await.unwrap();
            }
            store.login_failure("192.0.2.2", 300, 0).await.unwrap();
            assert_eq!(store.login_failures_since("192.0.2.1", 150).await.unwrap(), 2);
            store.login_failure("192.0.2.1", 400, 250).await.unwrap();
            assert_eq!(store.login_failures_since("192.0.2.1", 0).await.unwrap(), 2);
        }
    }
}
