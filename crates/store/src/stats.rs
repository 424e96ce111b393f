//! Reading the message log for the console: a search with every filter of the tracking
//! page (and an offset, for pages of results), counts per time bucket for the dashboard's
//! charts, and the busiest senders, recipients and rejection reasons. Read-only: the
//! `messages` and `message_recipients` tables belong to `log`, which writes them.

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use crate::engine::on_pool;
use crate::log::{Bind, MAX_SEARCH_LIMIT};
use crate::{MessageRecord, RecipientRecord, Sees, Store, StoreError};

/// A message-log search for the console. Text filters are case-insensitive substring
/// matches with `%` and `_` taken literally; `direction` is exact, `verdict` a prefix
/// (`quarantine` matches `quarantine:spam`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MessageFilter {
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub client_ip: Option<String>,
    pub verdict: Option<String>,
    pub direction: Option<String>,
    /// Received at or after (unix seconds).
    pub since: Option<i64>,
    /// Received strictly before (unix seconds).
    pub until: Option<i64>,
    /// At most this many, newest first; capped at [`MAX_SEARCH_LIMIT`].
    pub limit: i64,
    pub offset: i64,
}

/// How many recipients of messages received in one time bucket ended in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BucketCount {
    /// The bucket's number, counted from the start of the range.
    pub bucket: i64,
    pub direction: String,
    pub status: String,
    pub count: i64,
}

/// A name (sender, recipient, rule) and how often it occurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TopEntry {
    pub name: String,
    pub count: i64,
}

const LIKE_ESCAPE: char = '!';

fn contains(needle: &str) -> String {
    let mut p = String::from("%");
    for c in needle.chars() {
        if c == LIKE_ESCAPE || c == '%' || c == '_' {
            p.push(LIKE_ESCAPE);
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[derive(sqlx::FromRow)]
struct RecipientRow {
    message: String,
    #[sqlx(flatten)]
    record: RecipientRecord,
}

impl Store {
    /// Messages matching `f` that `sees` allows, newest first, with their recipients.
    pub async fn search_messages(
        &self,
        f: &MessageFilter,
        sees: &Sees,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let context = "searching the message log";
        let mut sql = String::from(
            "SELECT m.id, m.received_at, m.client_ip, m.helo, m.direction, m.sender, m.size, \
             m.auth_user, m.message_id, m.subject, m.verdict, m.rule, m.score, m.findings \
             FROM messages m WHERE 1 = 1",
        );
        let mut binds = Vec::new();
        if let Some(on_sender) = sees.condition("m.sender", &mut binds) {
            let on_recipient = sees.condition("v.address", &mut binds).unwrap_or_default();
            sql.push_str(&format!(
                " AND ({on_sender} OR EXISTS (SELECT 1 FROM message_recipients v \
                 WHERE v.message = m.id AND {on_recipient}))"
            ));
        }
        let text_filters = [
            ("m.sender", &f.sender),
            ("m.subject", &f.subject),
            ("m.message_id", &f.message_id),
            ("m.client_ip", &f.client_ip),
        ];
        for (column, value) in text_filters {
            if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                binds.push(Bind::Text(contains(v)));
                sql.push_str(&format!(
                    " AND LOWER({column}) LIKE LOWER(${}) ESCAPE '{LIKE_ESCAPE}'",
                    binds.len()
                ));
            }
        }
        if let Some(v) = f
            .recipient
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            binds.push(Bind::Text(contains(v)));
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM message_recipients r WHERE r.message = m.id \
                 AND LOWER(r.address) LIKE LOWER(${}) ESCAPE '{LIKE_ESCAPE}')",
                binds.len()
            ));
        }
        if let Some(v) = f
            .verdict
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            let mut prefix = contains(v);
            prefix.remove(0);
            binds.push(Bind::Text(prefix));
            sql.push_str(&format!(
                " AND m.verdict LIKE ${} ESCAPE '{LIKE_ESCAPE}'",
                binds.len()
            ));
        }
        if let Some(v) = f
            .direction
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            binds.push(Bind::Text(v.to_string()));
            sql.push_str(&format!(" AND m.direction = ${}", binds.len()));
        }
        if let Some(since) = f.since {
            binds.push(Bind::Int(since));
            sql.push_str(&format!(" AND m.received_at >= ${}", binds.len()));
        }
        if let Some(until) = f.until {
            binds.push(Bind::Int(until));
            sql.push_str(&format!(" AND m.received_at < ${}", binds.len()));
        }
        binds.push(Bind::Int(f.limit.clamp(0, MAX_SEARCH_LIMIT)));
        binds.push(Bind::Int(f.offset.max(0)));
        sql.push_str(&format!(
            " ORDER BY m.received_at DESC, m.id DESC LIMIT ${} OFFSET ${}",
            binds.len() - 1,
            binds.len()
        ));
        let mut messages: Vec<MessageRecord> = on_pool!(&self.pool, |p| {
            let mut query = sqlx::query_as(AssertSqlSafe(sql));
            for bind in &binds {
                query = match bind {
                    Bind::Text(t) => query.bind(t),
                    Bind::Int(i) => query.bind(i),
                };
            }
            query.fetch_all(p).await
        })
        .map_err(StoreError::query(context))?;
        if messages.is_empty() {
            return Ok(messages);
        }
        // One page of results at most (MAX_SEARCH_LIMIT ids stays below both engines'
        // bound-parameter limits only in chunks).
        let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
        for chunk in ids.chunks(500) {
            let marks = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT message, address, status, reply, remote_host, updated_at, attempts \
                 FROM message_recipients WHERE message IN ({marks}) ORDER BY message, seq"
            );
            let rows: Vec<RecipientRow> = on_pool!(&self.pool, |p| {
                let mut query = sqlx::query_as(AssertSqlSafe(sql));
                for id in chunk {
                    query = query.bind(id);
                }
                query.fetch_all(p).await
            })
            .map_err(StoreError::query(context))?;
            for row in rows {
                if let Some(m) = messages.iter_mut().find(|m| m.id == row.message) {
                    m.recipients.push(row.record);
                }
            }
        }
        Ok(messages)
    }

    /// Recipients of messages received in `[since, since + buckets * width)`, counted per
    /// bucket of `width` seconds, direction and status.
    pub async fn message_counts(
        &self,
        since: i64,
        width: i64,
        buckets: i64,
    ) -> Result<Vec<BucketCount>, StoreError> {
        let width = width.max(1);
        let until = since + width * buckets.max(0);
        let sql = "SELECT (m.received_at - $1) / $2 AS bucket, m.direction AS direction, \
                   r.status AS status, COUNT(*) AS count \
                   FROM messages m JOIN message_recipients r ON r.message = m.id \
                   WHERE m.received_at >= $1 AND m.received_at < $3 \
                   GROUP BY 1, 2, 3";
        on_pool!(&self.pool, |p| sqlx::query_as(sql)
            .bind(since)
            .bind(width)
            .bind(until)
            .fetch_all(p)
            .await)
        .map_err(StoreError::query("counting the message log"))
    }

    /// The `n` most frequent envelope senders, recipients, or deciding rules of refused
    /// mail since `since`: `what` is `sender`, `recipient` or `rejection`.
    pub async fn message_top(
        &self,
        what: &str,
        since: i64,
        n: i64,
    ) -> Result<Vec<TopEntry>, StoreError> {
        let sql = match what {
            "sender" => {
                "SELECT m.sender AS name, COUNT(*) AS count FROM messages m \
                 WHERE m.received_at >= $1 AND m.sender <> '' \
                 GROUP BY m.sender ORDER BY COUNT(*) DESC, m.sender LIMIT $2"
            }
            "recipient" => {
                "SELECT r.address AS name, COUNT(*) AS count FROM messages m \
                 JOIN message_recipients r ON r.message = m.id WHERE m.received_at >= $1 \
                 GROUP BY r.address ORDER BY COUNT(*) DESC, r.address LIMIT $2"
            }
            "rejection" => {
                "SELECT COALESCE(m.rule, m.verdict) AS name, COUNT(*) AS count FROM messages m \
                 WHERE m.received_at >= $1 AND (m.verdict = 'reject' OR m.verdict = 'tempfail') \
                 GROUP BY COALESCE(m.rule, m.verdict) ORDER BY COUNT(*) DESC LIMIT $2"
            }
            other => {
                return Err(StoreError::invalid(
                    "counting the message log",
                    format!("unknown ranking {other:?}; expected sender, recipient or rejection"),
                ));
            }
        };
        on_pool!(&self.pool, |p| sqlx::query_as(sql)
            .bind(since)
            .bind(n.clamp(0, 100))
            .fetch_all(p)
            .await)
        .map_err(StoreError::query("counting the message log"))
    }
}
