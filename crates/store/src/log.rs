//! The message log: one record per accepted (or rejected-at-DATA) message and one row per recipient,
//! updated as delivery proceeds. Owns the `messages` and `message_recipients` tables. It records what
//! the queue and the SMTP server report; it never decides delivery itself.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use crate::engine::{Conn, on_conn, on_pool};
use crate::{Store, StoreError};

/// Directions a message can travel.
pub const DIRECTIONS: [&str; 2] = ["inbound", "outbound"];

/// States of one recipient of one message.
pub const RECIPIENT_STATUSES: [&str; 7] = [
    "queued",
    "delivered",
    "deferred",
    "bounced",
    "rejected",
    "quarantined",
    "discarded",
];

/// Statuses that are the outcome of a delivery attempt, and so count towards `attempts`.
const ATTEMPT_STATUSES: [&str; 3] = ["delivered", "deferred", "bounced"];

/// Largest `LogQuery::limit` honoured, so one careless request cannot pull the whole log into memory.
pub const MAX_SEARCH_LIMIT: i64 = 10_000;

/// How many message ids go into one `IN (...)` list when fetching recipients; well under the
/// bound-parameter limits of both SQLite and PostgreSQL.
const RECIPIENT_FETCH_CHUNK: usize = 500;

/// The escape character for LIKE patterns. Not a backslash, whose meaning inside a string literal
/// depends on PostgreSQL's `standard_conforming_strings`.
pub(crate) const LIKE_ESCAPE: char = '!';

/// One message as seen by the gateway; read as `MESSAGE_COLUMNS`, its recipients apart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, sqlx::FromRow)]
pub struct MessageRecord {
    /// The gateway's own queue id.
    pub id: String,
    /// Unix seconds.
    pub received_at: i64,
    pub client_ip: String,
    pub helo: String,
    /// One of [`DIRECTIONS`].
    pub direction: String,
    /// Envelope sender; empty for the null sender `<>`.
    pub sender: String,
    pub size: i64,
    pub auth_user: Option<String>,
    /// The Message-ID header.
    pub message_id: Option<String>,
    pub subject: Option<String>,
    /// What the rules decided: `deliver`, `reject`, `tempfail`, `discard`, `quarantine:<class>`.
    #[serde(default)]
    pub verdict: Option<String>,
    /// The rule that decided, when one did.
    #[serde(default)]
    pub rule: Option<String>,
    /// The sum of the findings' scores.
    #[serde(default)]
    pub score: Option<f64>,
    /// The checks' findings, a JSON array of `{name, score, detail}`.
    #[serde(default)]
    pub findings: Option<String>,
    /// In RCPT order.
    #[sqlx(skip)]
    pub recipients: Vec<RecipientRecord>,
}

/// One envelope recipient of a message and where its delivery stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, sqlx::FromRow)]
pub struct RecipientRecord {
    pub address: String,
    /// One of [`RECIPIENT_STATUSES`].
    pub status: String,
    /// The remote server's last reply, one line.
    pub reply: Option<String>,
    pub remote_host: Option<String>,
    /// Unix seconds of the last status change.
    pub updated_at: i64,
    pub attempts: i64,
}

pub(crate) const MESSAGE_COLUMNS: &str = "m.id, m.received_at, m.client_ip, m.helo, m.direction, m.sender, \
                               m.size, m.auth_user, m.message_id, m.subject, m.verdict, m.rule, \
                               m.score, m.findings";

/// A row of `message_recipients` (`RECIPIENT_COLUMNS`): the recipient and its message.
#[derive(sqlx::FromRow)]
struct RecipientRow {
    message: String,
    #[sqlx(flatten)]
    record: RecipientRecord,
}

const RECIPIENT_COLUMNS: &str =
    "message, address, status, reply, remote_host, updated_at, attempts";

fn check_status(context: &str, status: &str) -> Result<(), StoreError> {
    if RECIPIENT_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(StoreError::invalid(
            context,
            format!(
                "recipient status {status:?}; expected one of {}",
                RECIPIENT_STATUSES.join(", ")
            ),
        ))
    }
}

/// A filter's value, trimmed; None when absent or blank.
pub(crate) fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A LIKE pattern matching `needle` anywhere, with the wildcards of user input taken literally.
pub(crate) fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if c == LIKE_ESCAPE || c == '%' || c == '_' {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A LIKE pattern matching an address of `domain` (`%@domain`), wildcards taken literally.
pub(crate) fn domain_pattern(domain: &str) -> String {
    let mut pattern = String::from("%@");
    for c in domain.to_ascii_lowercase().chars() {
        if c == LIKE_ESCAPE || c == '%' || c == '_' {
            pattern.push(LIKE_ESCAPE);
        }
        pattern.push(c);
    }
    pattern
}

/// What part of the mail a caller may see: the message log and the quarantine are
/// narrowed to it in the query, so that a page of results is a full page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sees {
    All,
    /// Mail to or from addresses of these domains (lower case).
    Domains(Vec<String>),
    /// Mail to or from this address (lower case).
    Address(String),
}

impl Sees {
    /// The condition on an address column (`column` is lower-cased in SQL), its binds
    /// appended to `binds`; None for [`Sees::All`]. An empty domain list matches nothing.
    pub(crate) fn condition(&self, column: &str, binds: &mut Vec<Bind>) -> Option<String> {
        match self {
            Sees::All => None,
            Sees::Address(a) => {
                binds.push(Bind::Text(a.to_ascii_lowercase()));
                Some(format!("LOWER({column}) = ${}", binds.len()))
            }
            Sees::Domains(domains) if domains.is_empty() => Some("1 = 0".into()),
            Sees::Domains(domains) => {
                let parts: Vec<String> = domains
                    .iter()
                    .map(|d| {
                        binds.push(Bind::Text(domain_pattern(d)));
                        format!(
                            "LOWER({column}) LIKE ${} ESCAPE '{LIKE_ESCAPE}'",
                            binds.len()
                        )
                    })
                    .collect();
                Some(format!("({})", parts.join(" OR ")))
            }
        }
    }
}

impl Sees {
    /// The condition on a message `m` (its sender, or any of its recipients, in what is
    /// seen), binds appended to `binds`; None for [`Sees::All`].
    pub(crate) fn message_condition(&self, binds: &mut Vec<Bind>) -> Option<String> {
        let on_sender = self.condition("m.sender", binds)?;
        let on_recipient = self.condition("r.address", binds).unwrap_or_default();
        Some(format!(
            "({on_sender} OR EXISTS (SELECT 1 FROM message_recipients r \
             WHERE r.message = m.id AND {on_recipient}))"
        ))
    }
}

/// `query` with every value of `binds` (a `&[Bind]`) bound, in order: a macro, so that one
/// spelling serves both engines' query types inside `on_pool!`.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for bind in $binds {
            query = match bind {
                $crate::log::Bind::Text(text) => query.bind(text),
                $crate::log::Bind::Int(int) => query.bind(int),
            };
        }
        query
    }};
}
pub(crate) use bind_all;

/// A value bound to a dynamically built query. Kept engine-neutral (no driver argument buffer) so the
/// search runs unchanged once PostgreSQL is wired in.
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

impl Store {
    /// Records a message and its recipients in one transaction. Logging an id that is already
    /// present does nothing: after a crash the queue may log the same message again.
    pub async fn log_message(&self, rec: &MessageRecord) -> Result<(), StoreError> {
        let context = format!("logging message {}", rec.id);
        validate_message(rec, &context)?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(&context))?;
        insert_messages(tx.conn(), &[rec], &context).await?;
        tx.commit().await.map_err(StoreError::query(&context))?;
        Ok(())
    }

    /// Sets the status of one recipient of message `id`. Delivered, deferred and bounced are the
    /// outcome of a delivery attempt and add one to `attempts`.
    ///
    /// An unknown message or recipient is logged as a warning, not an error: a missing log line must
    /// never stop a delivery.
    pub async fn log_recipient_status(
        &self,
        id: &str,
        address: &str,
        status: &str,
        reply: Option<&str>,
        remote_host: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError> {
        let context = format!("logging status {status} for {address} of message {id}");
        check_status(&context, status)?;
        let update = StatusUpdate {
            id: id.to_string(),
            address: address.to_string(),
            status: status.to_string(),
            reply: reply.map(str::to_string),
            remote_host: remote_host.map(str::to_string),
            at,
        };
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::query(&context))?;
        update_statuses(conn.conn(), &[&update], &context).await
    }

    /// Several log writes in one transaction, in order. SQLite has one writer at a time:
    /// batching the log of a busy gateway into few transactions avoids lock contention.
    /// Invalid entries are skipped with a warning so one bad entry cannot lose the rest.
    pub async fn log_batch(&self, entries: &[LogEntry]) -> Result<(), StoreError> {
        let context = format!("writing {} message-log entries", entries.len());
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(&context))?;
        // Consecutive entries of one kind go into one statement: each statement is a round
        // trip to SQLite's worker thread, and per entry those dominated a busy log.
        let mut messages: Vec<&MessageRecord> = Vec::new();
        let mut updates: Vec<&StatusUpdate> = Vec::new();
        for entry in entries {
            match entry {
                LogEntry::Message(rec) => {
                    if !updates.is_empty() {
                        update_statuses(tx.conn(), &updates, &context).await?;
                        updates.clear();
                    }
                    let ctx = format!("logging message {}", rec.id);
                    match validate_message(rec, &ctx) {
                        Ok(()) => messages.push(rec),
                        Err(e) => tracing::warn!(error = %e, "skipped log entry"),
                    }
                    if messages.len() == ROWS_PER_STATEMENT {
                        insert_messages(tx.conn(), &messages, &context).await?;
                        messages.clear();
                    }
                }
                LogEntry::Status(u) => {
                    if !messages.is_empty() {
                        insert_messages(tx.conn(), &messages, &context).await?;
                        messages.clear();
                    }
                    let ctx = format!(
                        "logging status {} for {} of message {}",
                        u.status, u.address, u.id
                    );
                    if let Err(e) = check_status(&ctx, &u.status) {
                        tracing::warn!(error = %e, "skipped log entry");
                        continue;
                    }
                    // Two updates of one recipient must apply in order: one UPDATE … FROM
                    // would apply only one of them.
                    let repeated = updates
                        .iter()
                        .any(|p| p.id == u.id && p.address == u.address);
                    if repeated || updates.len() == ROWS_PER_STATEMENT {
                        update_statuses(tx.conn(), &updates, &context).await?;
                        updates.clear();
                    }
                    updates.push(u);
                }
            }
        }
        if !messages.is_empty() {
            insert_messages(tx.conn(), &messages, &context).await?;
        }
        if !updates.is_empty() {
            update_statuses(tx.conn(), &updates, &context).await?;
        }
        tx.commit().await.map_err(StoreError::query(&context))
    }

    /// One message with its recipients, or `None` if it was never logged.
    pub async fn get_message(&self, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let context = format!("reading message {id}");
        let row: Option<MessageRecord> = on_pool!(&self.pool, |p| sqlx::query_as(AssertSqlSafe(
            format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1")
        ))
        .bind(id)
        .fetch_optional(p)
        .await)
        .map_err(StoreError::query(&context))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut messages = vec![row];
        self.fill_recipients(&context, &mut messages).await?;
        Ok(messages.pop())
    }

    /// The messages a query of `MESSAGE_COLUMNS` finds, with their recipients.
    pub(crate) async fn messages_with_recipients(
        &self,
        sql: String,
        binds: &[Bind],
        context: &str,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let mut messages: Vec<MessageRecord> = on_pool!(&self.pool, |p| {
            bind_all!(sqlx::query_as(AssertSqlSafe(sql)), binds)
                .fetch_all(p)
                .await
        })
        .map_err(StoreError::query(context))?;
        self.fill_recipients(context, &mut messages).await?;
        Ok(messages)
    }

    /// Loads the recipients of `messages` in a few batched queries rather than one per message.
    pub(crate) async fn fill_recipients(
        &self,
        context: &str,
        messages: &mut [MessageRecord],
    ) -> Result<(), StoreError> {
        let index: HashMap<String, usize> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        for chunk in messages
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>()
            .chunks(RECIPIENT_FETCH_CHUNK)
        {
            let placeholders = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT {RECIPIENT_COLUMNS} FROM message_recipients \
                 WHERE message IN ({placeholders}) ORDER BY message, seq"
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
                if let Some(&i) = index.get(&row.message) {
                    messages[i].recipients.push(row.record);
                }
            }
        }
        Ok(())
    }
}

/// Inserts one message and its recipients on `conn` (inside the caller's transaction).
/// Rows bound in one multi-row statement at most (14 columns each stays far below
/// SQLite's limit of bound parameters).
const ROWS_PER_STATEMENT: usize = 64;

/// Inserts messages and their recipients on `conn`, a few statements for all of them. A
/// message whose id is already logged keeps its first record, recipients included.
async fn insert_messages(
    mut conn: Conn<'_>,
    recs: &[&MessageRecord],
    context: &str,
) -> Result<(), StoreError> {
    let inserted: Vec<String> = on_conn!(&mut conn, |c| {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO messages \
             (id, received_at, client_ip, helo, direction, sender, size, auth_user, message_id, \
              subject, verdict, rule, score, findings) ",
        );
        insert.push_values(recs, |mut row, rec| {
            row.push_bind(&rec.id)
                .push_bind(rec.received_at)
                .push_bind(&rec.client_ip)
                .push_bind(&rec.helo)
                .push_bind(&rec.direction)
                .push_bind(&rec.sender)
                .push_bind(rec.size)
                .push_bind(rec.auth_user.as_deref())
                .push_bind(rec.message_id.as_deref())
                .push_bind(rec.subject.as_deref())
                .push_bind(rec.verdict.as_deref())
                .push_bind(rec.rule.as_deref())
                .push_bind(rec.score)
                .push_bind(rec.findings.as_deref());
        });
        insert.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
        insert.build_query_scalar().fetch_all(c).await
    })
    .map_err(StoreError::query(context))?;
    if inserted.len() < recs.len() {
        // The first logging carried the recipients in the same transaction, so they are there.
        tracing::debug!(
            repeated = recs.len() - inserted.len(),
            "messages already logged; keeping their first records"
        );
    }
    let mut fresh: std::collections::HashSet<&str> = inserted.iter().map(String::as_str).collect();
    let rows: Vec<(&str, usize, &RecipientRecord)> = recs
        .iter()
        // `remove`: the first record of an id repeated within the batch wins.
        .filter(|rec| fresh.remove(rec.id.as_str()))
        .flat_map(|rec| {
            rec.recipients
                .iter()
                .enumerate()
                .map(|(seq, r)| (rec.id.as_str(), seq, r))
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        on_conn!(&mut conn, |c| {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO message_recipients \
                 (message, seq, address, status, reply, remote_host, updated_at, attempts) ",
            );
            insert.push_values(chunk, |mut row, (id, seq, rcpt)| {
                row.push_bind(*id)
                    .push_bind(i64::try_from(*seq).unwrap_or(i64::MAX))
                    .push_bind(&rcpt.address)
                    .push_bind(&rcpt.status)
                    .push_bind(rcpt.reply.as_deref())
                    .push_bind(rcpt.remote_host.as_deref())
                    .push_bind(rcpt.updated_at)
                    .push_bind(rcpt.attempts);
            });
            insert.push(" ON CONFLICT (message, address) DO NOTHING");
            insert.build().execute(c).await.map(|r| r.rows_affected())
        })
        .map_err(StoreError::query(context))?;
    }
    Ok(())
}

/// Updates recipients' statuses on `conn` in one statement; each (message, address) at
/// most once per call. An unknown recipient is only a warning.
async fn update_statuses(
    mut conn: Conn<'_>,
    updates: &[&StatusUpdate],
    context: &str,
) -> Result<(), StoreError> {
    let done: Vec<(String, String)> = on_conn!(&mut conn, |c| {
        let mut update = sqlx::QueryBuilder::new(
            "WITH u (message, address, status, reply, remote_host, updated_at, attempt) AS (",
        );
        update.push_values(updates, |mut row, u| {
            let attempt = i64::from(ATTEMPT_STATUSES.contains(&u.status.as_str()));
            row.push_bind(&u.id)
                .push_bind(&u.address)
                .push_bind(&u.status)
                .push_bind(u.reply.as_deref())
                .push_bind(u.remote_host.as_deref())
                .push_bind(u.at)
                .push_bind(attempt);
        });
        update.push(
            ") UPDATE message_recipients \
             SET status = u.status, reply = u.reply, remote_host = u.remote_host, \
                 updated_at = u.updated_at, attempts = message_recipients.attempts + u.attempt \
             FROM u WHERE message_recipients.message = u.message \
               AND message_recipients.address = u.address \
             RETURNING message_recipients.message, message_recipients.address",
        );
        update.build_query_as().fetch_all(c).await
    })
    .map_err(StoreError::query(context))?;
    if done.len() < updates.len() {
        for u in updates {
            if !done.iter().any(|(m, a)| *m == u.id && *a == u.address) {
                tracing::warn!(id = %u.id, address = %u.address, status = %u.status,
                    "status for a recipient that is not in the log");
            }
        }
    }
    Ok(())
}

/// A status change of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    pub id: String,
    pub address: String,
    pub status: String,
    pub reply: Option<String>,
    pub remote_host: Option<String>,
    pub at: i64,
}

/// One write to the message log, for [`Store::log_batch`].
#[derive(Debug, Clone, PartialEq)]
pub enum LogEntry {
    Message(MessageRecord),
    Status(StatusUpdate),
}

fn validate_message(rec: &MessageRecord, context: &str) -> Result<(), StoreError> {
    if rec.id.is_empty() {
        return Err(StoreError::invalid(
            context.to_string(),
            "message id is empty",
        ));
    }
    if !DIRECTIONS.contains(&rec.direction.as_str()) {
        return Err(StoreError::invalid(
            context,
            format!(
                "direction {:?}; expected inbound or outbound",
                rec.direction
            ),
        ));
    }
    for rcpt in &rec.recipients {
        check_status(context, &rcpt.status)?;
    }

    Ok(())
}
