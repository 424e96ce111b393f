//! API tokens. Owns the table `api_tokens`. A token is kept under the SHA-256 of its
//! secret, never the secret; whether one may still act is the caller's to decide.

use crate::accounts::{from_json, to_json};
use crate::engine::on_pool;
use crate::{Store, StoreError};

/// An API token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub account: String,
    pub role: String,
    pub domains: Vec<String>,
    pub read_only: bool,
    pub secret_hash: String,
    pub created: i64,
    pub expires: Option<i64>,
    pub last_used: Option<i64>,
    pub last_remote: Option<String>,
    pub revoked: bool,
}

#[derive(sqlx::FromRow)]
struct RawToken {
    id: i64,
    name: String,
    account: String,
    role: String,
    domains: String,
    read_only: i64,
    secret_hash: String,
    created: i64,
    expires: Option<i64>,
    last_used: Option<i64>,
    last_remote: Option<String>,
    revoked: i64,
}

const TOKEN_COLUMNS: &str = "id, name, account, role, domains, read_only, secret_hash, created, \
     expires, last_used, last_remote, revoked";

impl RawToken {
    fn decode(self) -> Result<TokenRow, StoreError> {
        let context = format!("reading API token {}", self.id);
        Ok(TokenRow {
            domains: from_json(&context, &self.domains)?,
            id: self.id,
            name: self.name,
            account: self.account,
            role: self.role,
            read_only: self.read_only != 0,
            secret_hash: self.secret_hash,
            created: self.created,
            expires: self.expires,
            last_used: self.last_used,
            last_remote: self.last_remote,
            revoked: self.revoked != 0,
        })
    }
}

impl Store {
    /// Adds a token (its `id` is ignored) and returns the id it got. Ids are numbered
    /// here rather than by the engine, whose ways differ; two nodes adding at the same
    /// moment collide on the key and the loser tries again.
    pub async fn token_insert(&self, t: &TokenRow) -> Result<i64, StoreError> {
        let context = format!("adding API token {} of account {}", t.name, t.account);
        let mut last = None;
        for _ in 0..3 {
            let result = on_pool!(&self.pool, |p| sqlx::query_as::<_, (i64,)>(
                "INSERT INTO api_tokens (id, name, account, role, domains, read_only, \
                 secret_hash, created, expires, last_used, last_remote, revoked) \
                 SELECT COALESCE(MAX(id), 0) + 1, $1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, 0 \
                 FROM api_tokens RETURNING id"
            )
            .bind(&t.name)
            .bind(&t.account)
            .bind(&t.role)
            .bind(to_json(&t.domains))
            .bind(i64::from(t.read_only))
            .bind(&t.secret_hash)
            .bind(t.created)
            .bind(t.expires)
            .fetch_one(p)
            .await);
            match result {
                Ok((id,)) => return Ok(id),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    last = Some(sqlx::Error::Database(e))
                }
                Err(e) => return Err(StoreError::query(&context)(e)),
            }
        }
        Err(StoreError::query(&context)(
            last.unwrap_or(sqlx::Error::RowNotFound),
        ))
    }

    /// Tokens, of one account or of all, by id.
    pub async fn token_list(&self, account: Option<&str>) -> Result<Vec<TokenRow>, StoreError> {
        let rows: Vec<RawToken> = on_pool!(&self.pool, |p| match account {
            Some(a) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE account = $1 ORDER BY id"
            )))
            .bind(a),
            None => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"
            ))),
        }
        .fetch_all(p)
        .await)
        .map_err(StoreError::query("listing API tokens"))?;
        rows.into_iter().map(RawToken::decode).collect()
    }

    pub async fn token_get(&self, id: i64) -> Result<Option<TokenRow>, StoreError> {
        let row: Option<RawToken> = on_pool!(&self.pool, |p| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1")
        ))
        .bind(id)
        .fetch_optional(p)
        .await)
        .map_err(StoreError::query(format!("reading API token {id}")))?;
        row.map(RawToken::decode).transpose()
    }

    /// The token whose secret hashes to `hash`, whatever its state.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row: Option<RawToken> = on_pool!(&self.pool, |p| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE secret_hash = $1")
        ))
        .bind(hash)
        .fetch_optional(p)
        .await)
        .map_err(StoreError::query("reading an API token"))?;
        row.map(RawToken::decode).transpose()
    }

    /// Records a use of a token.
    pub async fn token_used(
        &self,
        id: i64,
        now: i64,
        remote: Option<&str>,
    ) -> Result<(), StoreError> {
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE api_tokens SET last_used = $2, last_remote = $3 WHERE id = $1"
        )
        .bind(id)
        .bind(now)
        .bind(remote)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(StoreError::query(format!(
            "recording a use of API token {id}"
        )))
    }

    /// Revokes a token; false when there is no such token or it was revoked already.
    pub async fn token_revoke(&self, id: i64) -> Result<bool, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE api_tokens SET revoked = 1 WHERE id = $1 AND revoked = 0"
        )
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(format!("revoking API token {id}")))?;
        Ok(done > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionRow;
    use crate::accounts::tests::account;

    store_test! {
        async fn sessions_and_tokens(store) {
            store.account_insert(&account("carol")).await.unwrap();
            let s = SessionRow {
                id: "hash1".into(),
                account: "carol".into(),
                csrf: "csrf".into(),
                created: 100,
                last_seen: 100,
                expires: 200,
                remote: Some("192.0.2.1".into()),
            };
            store.session_insert(&s).await.unwrap();
            assert_eq!(store.session_get("hash1").await.unwrap(), Some(s.clone()));
            store.session_touch("hash1", 150, 250).await.unwrap();
            assert_eq!(store.session_get("hash1").await.unwrap().unwrap().expires, 250);
            assert_eq!(store.session_purge(300).await.unwrap(), 1);
            store.session_insert(&s).await.unwrap();
            assert_eq!(store.session_delete_account("carol").await.unwrap(), 1);
            assert!(!store.session_delete("hash1").await.unwrap());

            let t = TokenRow {
                id: 0,
                name: "backup".into(),
                account: "carol".into(),
                role: "auditor".into(),
                domains: Vec::new(),
                read_only: true,
                secret_hash: "th1".into(),
                created: 100,
                expires: Some(500),
                last_used: None,
                last_remote: None,
                revoked: false,
            };
            let first = store.token_insert(&t).await.unwrap();
            let second = store
                .token_insert(&TokenRow { secret_hash: "th2".into(), ..t.clone() })
                .await
                .unwrap();
            assert_eq!((first, second), (1, 2));
            store.token_used(first, 120, Some("192.0.2.9")).await.unwrap();
            let got = store.token_by_hash("th1").await.unwrap().unwrap();
            assert_eq!(got.last_used, Some(120));
            assert_eq!(got.last_remote.as_deref(), Some("192.0.2.9"));
            assert!(got.read_only);
            assert!(store.token_revoke(first).await.unwrap());
            assert!(!store.token_revoke(first).await.unwrap());
            assert!(store.token_get(first).await.unwrap().unwrap().revoked);
            assert_eq!(store.token_list(Some("carol")).await.unwrap().len(), 2);
            assert_eq!(store.token_list(Some("dave")).await.unwrap().len(), 0);
            store.session_insert(&s).await.unwrap();
            assert!(store.account_delete("carol").await.unwrap());
            assert_eq!(store.token_list(None).await.unwrap().len(), 0);
            assert_eq!(store.session_get("hash1").await.unwrap(), None);
        }
    }
}
