//! The message-log search of the console: one search box over sender, recipients, subject
//! and Message-ID, filters on direction and verdict, a time range, and pages, narrowed to
//! what the caller may see ([`Sees`]). Reads the tables `log` owns; writes nothing.

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use crate::engine::on_pool;
use crate::log::{Bind, LIKE_ESCAPE, MAX_SEARCH_LIMIT, MESSAGE_COLUMNS, Sees, contains_pattern};
use crate::{MessageRecord, Store, StoreError};

/// A console search. Text matches are case-insensitive substrings; `%` and `_` match
/// literally.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogSearch {
    /// Found in the sender, any recipient, the subject or the Message-ID.
    pub text: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    /// The verdict exactly (`deliver`, `quarantine`, `reject`, …).
    pub verdict: Option<String>,
    /// Received at or after (unix seconds).
    pub since: Option<i64>,
    /// Received strictly before.
    pub until: Option<i64>,
    /// Messages per page, newest first; 0: 50; capped at [`MAX_SEARCH_LIMIT`].
    pub limit: i64,
    /// Messages skipped (the page times `limit`).
    pub offset: i64,
}

/// One page of a console search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogPage {
    pub messages: Vec<MessageRecord>,
    /// Whether another page follows.
    pub more: bool,
}

impl Store {
    /// One page of messages matching `q` that `sees` allows, with their recipients.
    pub async fn search_log_page(&self, q: &LogSearch, sees: &Sees) -> Result<LogPage, StoreError> {
        let context = "searching the message log";
        let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE 1 = 1");
        let mut binds = Vec::new();
        if let Some(on_sender) = sees.condition("m.sender", &mut binds) {
            let on_recipient = sees.condition("r.address", &mut binds).unwrap_or_default();
            sql.push_str(&format!(
                " AND ({on_sender} OR EXISTS (SELECT 1 FROM message_recipients r \
                 WHERE r.message = m.id AND {on_recipient}))"
            ));
        }
        if let Some(text) = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            binds.push(Bind::Text(contains_pattern(text)));
            let n = binds.len();
            let like =
                |column: &str| format!("LOWER({column}) LIKE LOWER(${n}) ESCAPE '{LIKE_ESCAPE}'");
            sql.push_str(&format!(
                " AND ({} OR {} OR {} OR EXISTS (SELECT 1 FROM message_recipients t \
                 WHERE t.message = m.id AND {}))",
                like("m.sender"),
                like("m.subject"),
                like("m.message_id"),
                like("t.address"),
            ));
        }
        for (column, value) in [("m.direction", &q.direction), ("m.verdict", &q.verdict)] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                binds.push(Bind::Text(value.to_string()));
                sql.push_str(&format!(" AND {column} = ${}", binds.len()));
            }
        }
        if let Some(since) = q.since {
            binds.push(Bind::Int(since));
            sql.push_str(&format!(" AND m.received_at >= ${}", binds.len()));
        }
        if let Some(until) = q.until {
            binds.push(Bind::Int(until));
            sql.push_str(&format!(" AND m.received_at < ${}", binds.len()));
        }
        let limit = if q.limit <= 0 {
            50
        } else {
            q.limit.min(MAX_SEARCH_LIMIT)
        };
        // One more than asked: whether a next page exists, without counting them all.
        binds.push(Bind::Int(limit + 1));
        sql.push_str(&format!(
            " ORDER BY m.received_at DESC, m.id DESC LIMIT ${}",
            binds.len()
        ));
        binds.push(Bind::Int(q.offset.max(0)));
        sql.push_str(&format!(" OFFSET ${}", binds.len()));

        let mut messages: Vec<MessageRecord> = on_pool!(&self.pool, |p| {
            let mut query = sqlx::query_as(AssertSqlSafe(sql));
            for bind in &binds {
                query = match bind {
                    Bind::Text(text) => query.bind(text),
                    Bind::Int(int) => query.bind(int),
                };
            }
            query.fetch_all(p).await
        })
        .map_err(StoreError::query(context))?;
        let more = messages.len() as i64 > limit;
        messages.truncate(limit as usize);
        self.fill_recipients(context, &mut messages).await?;
        Ok(LogPage { messages, more })
    }
}
