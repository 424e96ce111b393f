//! The audit log: one row per change made through the operations layer (who, in which role,
//! through which door, from where, what, on what, before and after). Owns the table
//! `audit_log`. Rows are only ever appended; what goes into them (never a secret) is the
//! caller's business.

use crate::engine::on_pool;
use crate::{Store, StoreError};
use sqlx::AssertSqlSafe;

/// The most rows one [`Store::audit_list`] returns.
pub const MAX_AUDIT_LIMIT: i64 = 10_000;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct AuditEntry {
    /// Given by the store when the row is appended.
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub role: String,
    pub via: String,
    pub remote: Option<String>,
    /// `domain.add`, `account.remove`, `quarantine.release`, …
    pub action: String,
    pub target: String,
    /// The item before and after the change, as JSON, where known.
    pub before_json: Option<String>,
    pub after_json: Option<String>,
}

/// A filter for [`Store::audit_list`].
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AuditQuery {
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Actions starting with this (`domain.` or `domain.add`).
    pub action: Option<String>,
    /// At or after (unix seconds).
    pub since: Option<i64>,
    /// Strictly before.
    pub until: Option<i64>,
    /// At most this many, newest first; 0: 100. Capped at [`MAX_AUDIT_LIMIT`].
    pub limit: i64,
    pub offset: i64,
}

const COLUMNS: &str = "id, at, actor, role, via, remote, action, target, before_json, after_json";

enum Bind {
    Text(String),
    Int(i64),
}

impl Store {
    /// Appends a row (its `id` is ignored) and returns the id it got.
    pub async fn audit_append(&self, e: &AuditEntry) -> Result<i64, StoreError> {
        let context = format!("writing the audit log ({} {})", e.action, e.target);
        let mut last = None;
        // Numbered here (the engines number rows differently); two nodes appending at the
        // same moment collide on the key and the loser tries again.
        for _ in 0..5 {
            let result = on_pool!(&self.pool, |p| sqlx::query_as::<_, (i64,)>(
                "INSERT INTO audit_log (id, at, actor, role, via, remote, action, target, \
                 before_json, after_json) \
                 SELECT COALESCE(MAX(id), 0) + 1, $1, $2, $3, $4, $5, $6, $7, $8, $9 \
                 FROM audit_log RETURNING id"
            )
            .bind(e.at)
            .bind(&e.actor)
            .bind(&e.role)
            .bind(&e.via)
            .bind(&e.remote)
            .bind(&e.action)
            .bind(&e.target)
            .bind(&e.before_json)
            .bind(&e.after_json)
            .fetch_one(p)
            .await);
            match result {
                Ok((id,)) => return Ok(id),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    last = Some(sqlx::Error::Database(db))
                }
                Err(err) => return Err(StoreError::query(&context)(err)),
            }
        }
        Err(StoreError::query(&context)(
            last.unwrap_or(sqlx::Error::RowNotFound),
        ))
    }

    /// Rows matching `q`, newest first.
    pub async fn audit_list(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM audit_log WHERE 1 = 1");
        let mut binds = Vec::new();
        if let Some(actor) = q.actor.as_deref().filter(|a| !a.is_empty()) {
            binds.push(Bind::Text(actor.to_string()));
            sql.push_str(&format!(" AND actor = ${}", binds.len()));
        }
        if let Some(action) = q.action.as_deref().filter(|a| !a.is_empty()) {
            // A prefix compared as a range, so no LIKE escaping is needed: every string
            // that starts with `action` sorts between it and it followed by the highest
            // character.
            binds.push(Bind::Text(action.to_string()));
            sql.push_str(&format!(" AND action >= ${}", binds.len()));
            binds.push(Bind::Text(format!("{action}\u{10FFFF}")));
            sql.push_str(&format!(" AND action < ${}", binds.len()));
        }
        if let Some(since) = q.since {
            binds.push(Bind::Int(since));
            sql.push_str(&format!(" AND at >= ${}", binds.len()));
        }
        if let Some(until) = q.until {
            binds.push(Bind::Int(until));
            sql.push_str(&format!(" AND at < ${}", binds.len()));
        }
        let limit = if q.limit <= 0 {
            100
        } else {
            q.limit.min(MAX_AUDIT_LIMIT)
        };
        binds.push(Bind::Int(limit));
        sql.push_str(&format!(
            " ORDER BY at DESC, id DESC LIMIT ${}",
            binds.len()
        ));
        binds.push(Bind::Int(q.offset.max(0)));
        sql.push_str(&format!(" OFFSET ${}", binds.len()));
        on_pool!(&self.pool, |p| {
            let mut query = sqlx::query_as(AssertSqlSafe(sql));
            for bind in &binds {
                query = match bind {
                    Bind::Text(text) => query.bind(text),
                    Bind::Int(int) => query.bind(int),
                };
            }
            query.fetch_all(p).await
        })
        .map_err(StoreError::query("reading the audit log"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: i64, actor: &str, action: &str) -> AuditEntry {
        AuditEntry {
            id: 0,
            at,
            actor: actor.into(),
            role: "admin".into(),
            via: "cli".into(),
            remote: None,
            action: action.into(),
            target: "example.com".into(),
            before_json: None,
            after_json: Some(r#"{"routes":["mx:25"]}"#.into()),
        }
    }

    store_test! {
        async fn audit_rows_filter_and_page(store) {
            assert_eq!(store.audit_append(&entry(100, "cli:root", "domain.add")).await.unwrap(), 1);
            store.audit_append(&entry(200, "alice", "domain.remove")).await.unwrap();
            store.audit_append(&entry(300, "alice", "domainx.add")).await.unwrap();
            store.audit_append(&entry(400, "bob", "account.add")).await.unwrap();

            let all = store.audit_list(&AuditQuery::default()).await.unwrap();
            assert_eq!(all.iter().map(|e| e.at).collect::<Vec<_>>(), [400, 300, 200, 100]);
            assert_eq!(all[3].after_json.as_deref(), Some(r#"{"routes":["mx:25"]}"#));

            let q = AuditQuery { actor: Some("alice".into()), ..AuditQuery::default() };
            assert_eq!(store.audit_list(&q).await.unwrap().len(), 2);
            let q = AuditQuery { action: Some("domain.".into()), ..AuditQuery::default() };
            assert_eq!(store.audit_list(&q).await.unwrap().len(), 2);
            let q = AuditQuery { since: Some(200), until: Some(400), ..AuditQuery::default() };
            assert_eq!(store.audit_list(&q).await.unwrap().len(), 2);
            let q = AuditQuery { limit: 1, offset: 1, ..AuditQuery::default() };
            let page = store.audit_list(&q).await.unwrap();
            assert_eq!(page.len(), 1);
            assert_eq!(page[0].at, 300);
        }
    }
}
