//! The quarantine: held messages with their bodies, so any node of a cluster can show and
//! release them. Owns `quarantine_messages` (one row per message: body, envelope, findings)
//! and `quarantine_items` (one row per recipient, each released or deleted on its own).

use crate::engine::{Conn, Engines, on_conn, on_pool};
use crate::log::{Bind, LIKE_ESCAPE, Sees, contains_pattern, given};
use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// A message to hold.
#[derive(Debug, Clone)]
pub struct HeldMessage {
    pub id: String,
    pub received_at: i64,
    pub expires_at: i64,
    pub sender: String,
    pub subject: Option<String>,
    pub class: String,
    pub score: f64,
    pub rule: Option<String>,
    /// JSON array of findings.
    pub findings: String,
    /// JSON of the spool envelope.
    pub envelope: String,
    /// The message as it would have been delivered.
    pub body: Vec<u8>,
    pub recipients: Vec<String>,
    /// `inbound` or `outbound`.
    pub direction: String,
}

/// One recipient's copy of a held message, as listed; read as the columns of `ITEM_COLUMNS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct QuarantineItem {
    /// `<message id>.<recipient number>`
    pub id: String,
    pub message: String,
    pub recipient: String,
    pub sender: String,
    pub subject: Option<String>,
    pub class: String,
    pub score: f64,
    pub rule: Option<String>,
    pub state: String,
    pub received_at: i64,
    pub expires_at: i64,
    pub direction: String,
}

/// States of a quarantine item.
pub const QUARANTINE_STATES: [&str; 4] = ["held", "releasing", "released", "deleted"];

pub(crate) const ITEM_COLUMNS: &str = "i.id, i.message, i.recipient, m.sender, m.subject, m.class, m.score, \
                            m.rule, i.state, m.received_at, m.expires_at, m.direction";

/// Filter for [`Store::quarantine_list`].
#[derive(Debug, Clone, Default)]
pub struct QuarantineQuery {
    pub recipient: Option<String>,
    /// Only items in this state; None: held ones.
    pub state: Option<String>,
    /// Part of the sender, case aside (`%` and `_` are plain characters).
    pub sender: Option<String>,
    /// Part of the subject, case aside.
    pub subject: Option<String>,
    /// The class (`spam`, `virus`, `policy`).
    pub class: Option<String>,
    /// At most this many (0: 1,000; at most 10,000), newest first.
    pub limit: i64,
    /// Skip this many first (paging).
    pub offset: i64,
}

impl Store {
    /// Holds a message, one item per recipient. The message is acknowledged on the
    /// strength of this write, so the transaction is made durable before it returns,
    /// whatever the store's default for other writes.
    pub async fn quarantine_hold(&self, m: &HeldMessage) -> Result<(), StoreError> {
        let context = format!("quarantining message {}", m.id);
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::query(&context))?;
        match &mut conn {
            // The pool runs at synchronous = NORMAL, where a commit can be lost to a power
            // cut; this one connection syncs fully for this one transaction.
            Engines::Sqlite(c) => {
                sqlx::query("PRAGMA synchronous = FULL")
                    .execute(&mut **c)
                    .await
                    .map_err(StoreError::query(&context))?;
                let result = hold(conn.conn(), m, &context).await;
                let restored = on_conn!(&mut conn, |c| sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(c)
                    .await
                    .map(|r| r.rows_affected()))
                .map_err(StoreError::query(&context));
                result.and(restored.map(|_| ()))
            }
            // Every PostgreSQL connection of the store runs with synchronous_commit = on (set
            // when it connects), so the commit returns only once it is flushed.
            Engines::Postgres(_) => hold(conn.conn(), m, &context).await,
        }
    }
}

async fn hold(conn: Conn<'_>, m: &HeldMessage, context: &str) -> Result<(), StoreError> {
    let mut tx = conn.begin().await.map_err(StoreError::query(context))?;
    on_conn!(&mut tx, |c| sqlx::query(
        "INSERT INTO quarantine_messages \
         (id, received_at, expires_at, sender, subject, class, score, rule, findings, envelope, \
          body, direction) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&m.id)
    .bind(m.received_at)
    .bind(m.expires_at)
    .bind(&m.sender)
    .bind(m.subject.as_deref())
    .bind(&m.class)
    .bind(m.score)
    .bind(m.rule.as_deref())
    .bind(&m.findings)
    .bind(&m.envelope)
    .bind(&m.body)
    .bind(&m.direction)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::query(context))?;
    for (n, rcpt) in m.recipients.iter().enumerate() {
        on_conn!(&mut tx, |c| sqlx::query(
            "INSERT INTO quarantine_items (id, message, recipient, state, changed_at) \
             VALUES ($1, $2, $3, 'held', $4)",
        )
        .bind(format!("{}.{}", m.id, n + 1))
        .bind(&m.id)
        .bind(rcpt.to_ascii_lowercase())
        .bind(m.received_at)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(context))?;
    }
    tx.commit().await.map_err(StoreError::query(context))?;
    Ok(())
}

impl Store {
    /// Items, newest first.
    pub async fn quarantine_list(
        &self,
        q: &QuarantineQuery,
    ) -> Result<Vec<QuarantineItem>, StoreError> {
        self.quarantine_list_seen(q, &Sees::All).await
    }

    /// [`Store::quarantine_list`], narrowed to the recipients `sees` allows.
    pub async fn quarantine_list_seen(
        &self,
        q: &QuarantineQuery,
        sees: &Sees,
    ) -> Result<Vec<QuarantineItem>, StoreError> {
        let state = q.state.clone().unwrap_or_else(|| "held".into());
        let limit = if q.limit <= 0 {
            1000
        } else {
            q.limit.min(10_000)
        };
        let mut binds = vec![Bind::Text(state)];
        let mut sql = format!(
            "SELECT {ITEM_COLUMNS} FROM quarantine_items i JOIN quarantine_messages m \
             ON m.id = i.message WHERE i.state = $1"
        );
        if let Some(r) = &q.recipient {
            binds.push(Bind::Text(r.to_ascii_lowercase()));
            sql.push_str(&format!(" AND i.recipient = ${}", binds.len()));
        }
        if let Some(seen) = sees.condition("i.recipient", &mut binds) {
            sql.push_str(&format!(" AND {seen}"));
        }
        let like = match self.engine() {
            "postgres" => "ILIKE",
            _ => "LIKE",
        };
        for (column, value) in [("m.sender", &q.sender), ("m.subject", &q.subject)] {
            if let Some(v) = given(value) {
                binds.push(Bind::Text(contains_pattern(v)));
                sql.push_str(&format!(
                    " AND {column} {like} ${} ESCAPE '{LIKE_ESCAPE}'",
                    binds.len()
                ));
            }
        }
        if let Some(class) = given(&q.class) {
            binds.push(Bind::Text(class.to_ascii_lowercase()));
            sql.push_str(&format!(" AND m.class = ${}", binds.len()));
        }
        binds.push(Bind::Int(limit));
        binds.push(Bind::Int(q.offset.max(0)));
        sql.push_str(&format!(
            " ORDER BY m.received_at DESC, i.id LIMIT ${} OFFSET ${}",
            binds.len() - 1,
            binds.len()
        ));
        on_pool!(&self.pool, |p| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for bind in &binds {
                query = match bind {
                    Bind::Text(text) => query.bind(text),
                    Bind::Int(int) => query.bind(int),
                };
            }
            query.fetch_all(p).await
        })
        .map_err(StoreError::query("listing the quarantine"))
    }

    /// One item with its message's findings (JSON), envelope (JSON) and body.
    pub async fn quarantine_get(
        &self,
        id: &str,
    ) -> Result<Option<(QuarantineItem, String, String, Vec<u8>)>, StoreError> {
        let context = format!("reading quarantine item {id}");
        let row: Option<(String, String, Vec<u8>)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT m.findings, m.envelope, m.body FROM quarantine_items i \
             JOIN quarantine_messages m ON m.id = i.message WHERE i.id = $1",
        )
        .bind(id)
        .fetch_optional(p)
        .await)
        .map_err(StoreError::query(&context))?;
        let Some((findings, envelope, body)) = row else {
            return Ok(None);
        };
        let it: QuarantineItem = on_pool!(&self.pool, |p| sqlx::query_as(sqlx::AssertSqlSafe(
            format!(
                "SELECT {ITEM_COLUMNS} FROM quarantine_items i JOIN quarantine_messages m \
             ON m.id = i.message WHERE i.id = $1"
            )
        ))
        .bind(id)
        .fetch_one(p)
        .await)
        .map_err(StoreError::query(&context))?;
        Ok(Some((it, findings, envelope, body)))
    }

    /// Moves an item from state `from` to `to` (held → releasing → released, held →
    /// deleted). False when it is not in `from` (already released or deleted, or
    /// unknown): a release happens once.
    pub async fn quarantine_transition(
        &self,
        id: &str,
        from: &str,
        to: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let context = format!("marking quarantine item {id} {to}");
        if !QUARANTINE_STATES.contains(&to) || !QUARANTINE_STATES.contains(&from) {
            return Err(StoreError::invalid(&context, "unknown state"));
        }
        let done = on_pool!(&self.pool, |p| {
            sqlx::query(
            "UPDATE quarantine_items SET state = $1, changed_at = $2 WHERE id = $3 AND state = $4",
        )
        .bind(to)
        .bind(now)
        .bind(id)
        .bind(from)
        .execute(p)
        .await.map(|r| r.rows_affected())
        })
        .map_err(StoreError::query(&context))?;
        Ok(done == 1)
    }

    /// Items claimed for release whose release did not finish (a crash between the
    /// claim and the queue write): the gateway finishes them at start.
    pub async fn quarantine_releasing(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT id FROM quarantine_items WHERE state = 'releasing'"
        )
        .fetch_all(p)
        .await)
        .map_err(StoreError::query("finding unfinished releases"))?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Deletes messages past their expiry (with their items); how many.
    pub async fn quarantine_expire(&self, now: i64) -> Result<u64, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM quarantine_messages WHERE expires_at <= $1"
        )
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query("expiring quarantined messages"))?;
        Ok(done)
    }
}
