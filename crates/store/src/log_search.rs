//! The message-log search, one for the command line, the REST API and the console: a
//! search box over sender, recipients, subject and Message-ID, filters on each of them, on
//! the client's address, the verdict and the direction, a time range and pages, narrowed
//! to what the caller may see ([`Sees`]). Reads the tables `log` owns; writes nothing.
//!
//! Newest first, one page at a time: the index on `(received_at, id)` gives the order, so
//! a search that matches often stops after a page. What is rare is found through an index
//! where the value is whole (an address, a Message-ID, a client address: migration 0014),
//! and a substring of three characters or more through a trigram index (migration 0017:
//! FTS5 `message_text` on SQLite, pg_trgm GIN indexes under ILIKE on PostgreSQL). On
//! SQLite the index is asked first how often the substring occurs (in the time range, up
//! to [`TEXT_MATCHES_CAP`]): a rare one is then found through the index, a common one by
//! reading the newest messages, which finds a page of it at once. Shorter substrings are
//! a scan. `bench/logsearch` measures each kind over a million messages.

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use crate::engine::Engines;
use crate::log::{
    Bind, DIRECTIONS, LIKE_ESCAPE, MAX_SEARCH_LIMIT, MESSAGE_COLUMNS, Sees, bind_all,
    contains_pattern, given,
};
use crate::{MessageRecord, Store, StoreError};

/// A log search. All given filters must hold. Text is matched without regard to case: a
/// whole address (`bob@example.com`) or Message-ID (`<id@host>`) exactly, anything else as
/// a substring, in which `%` and `_` are plain characters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogQuery {
    /// The search box: found in the sender, any recipient, the subject or the Message-ID.
    pub text: Option<String>,
    pub sender: Option<String>,
    /// Matches a message if any of its recipients matches.
    pub recipient: Option<String>,
    /// A substring of the Subject header.
    pub subject: Option<String>,
    /// The Message-ID header, whole (with or without its angle brackets).
    pub message_id: Option<String>,
    /// The client's address, exactly (`192.0.2.7`, `2001:db8::1`).
    pub client_ip: Option<String>,
    /// A verdict (`deliver`, `reject`, `quarantine:spam`), or a kind of them: `quarantine`
    /// matches every quarantine class.
    pub verdict: Option<String>,
    /// One of [`DIRECTIONS`].
    pub direction: Option<String>,
    /// Received at or after (unix seconds).
    pub since: Option<i64>,
    /// Received strictly before (unix seconds), so consecutive ranges do not overlap.
    pub until: Option<i64>,
    /// At most this many messages, newest first; capped at [`MAX_SEARCH_LIMIT`].
    pub limit: i64,
    /// Skip this many of the matches first (paging).
    pub offset: i64,
}

impl Default for LogQuery {
    fn default() -> Self {
        LogQuery {
            text: None,
            sender: None,
            recipient: None,
            subject: None,
            message_id: None,
            client_ip: None,
            verdict: None,
            direction: None,
            since: None,
            until: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogPage {
    pub messages: Vec<MessageRecord>,
    /// Whether another page follows.
    pub more: bool,
}

impl Store {
    /// Messages matching `q`, newest first, with their recipients.
    pub async fn search_log(&self, q: &LogQuery) -> Result<Vec<MessageRecord>, StoreError> {
        self.search_log_seen(q, &Sees::All).await
    }

    /// [`Store::search_log`], narrowed to the mail `sees` allows: messages with a sender or
    /// a recipient in it.
    pub async fn search_log_seen(
        &self,
        q: &LogQuery,
        sees: &Sees,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let limit = q.limit.clamp(0, MAX_SEARCH_LIMIT);
        self.search(q, sees, limit).await
    }

    /// One page of [`Store::search_log_seen`] (`limit` 0: 50), and whether more follow.
    pub async fn search_log_page(&self, q: &LogQuery, sees: &Sees) -> Result<LogPage, StoreError> {
        let limit = if q.limit <= 0 {
            50
        } else {
            q.limit.min(MAX_SEARCH_LIMIT)
        };
        // One more than asked: whether a next page exists, without counting them all.
        let mut messages = self.search(q, sees, limit + 1).await?;
        let more = messages.len() as i64 > limit;
        messages.truncate(limit as usize);
        Ok(LogPage { messages, more })
    }

    async fn search(
        &self,
        q: &LogQuery,
        sees: &Sees,
        limit: i64,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let context = "searching the message log";
        let indexed = self.rare_text_fields(q, context).await?;
        let (sql, binds) = search_sql(q, sees, limit, self.engine(), &indexed, context)?;
        self.messages_with_recipients(sql, &binds, context).await
    }

    /// The engine's plan for the search `q` (SQLite's `EXPLAIN QUERY PLAN` details,
    /// PostgreSQL's `EXPLAIN` lines): what `bench/logsearch` prints beside its timings.
    pub async fn explain_search(
        &self,
        q: &LogQuery,
        sees: &Sees,
    ) -> Result<Vec<String>, StoreError> {
        let context = "explaining a message-log search";
        let indexed = self.rare_text_fields(q, context).await?;
        let (sql, binds) = search_sql(q, sees, q.limit, self.engine(), &indexed, context)?;
        let lines = match &self.pool {
            Engines::Sqlite(p) => {
                let rows: Vec<(i64, i64, i64, String)> = bind_all!(
                    sqlx::query_as(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"))),
                    &binds
                )
                .fetch_all(p)
                .await
                .map_err(StoreError::query(context))?;
                rows.into_iter().map(|r| r.3).collect()
            }
            Engines::Postgres(p) => {
                let rows: Vec<(String,)> = bind_all!(
                    sqlx::query_as(AssertSqlSafe(format!("EXPLAIN {sql}"))),
                    &binds
                )
                .fetch_all(p)
                .await
                .map_err(StoreError::query(context))?;
                rows.into_iter().map(|r| r.0).collect()
            }
        };
        Ok(lines)
    }
}

impl Store {
    /// SQLite: the search's substring fields that the trigram index finds at most
    /// [`TEXT_MATCHES_CAP`] times in the time range, each with the ids of its messages (a
    /// JSON array), so that the search reads those instead of the newest messages. The
    /// index is asked once: a common substring costs one read of its first matches.
    async fn rare_text_fields(
        &self,
        q: &LogQuery,
        context: &str,
    ) -> Result<Vec<(&'static str, String)>, StoreError> {
        let Engines::Sqlite(pool) = &self.pool else {
            return Ok(Vec::new());
        };
        let mut rare = Vec::new();
        for (field, columns, text) in trigram_fields(q) {
            let Some(query) = trigram_query(columns, &text) else {
                continue;
            };
            let ids: Vec<(String,)> = sqlx::query_as(
                "SELECT DISTINCT id FROM (SELECT id FROM message_text WHERE message_text MATCH $1 \
                 AND ($2 IS NULL OR received_at >= $2) AND ($3 IS NULL OR received_at < $3) \
                 LIMIT $4)",
            )
            .bind(&query)
            .bind(q.since)
            .bind(q.until)
            .bind(TEXT_MATCHES_CAP + 1)
            .fetch_all(pool)
            .await
            .map_err(StoreError::query(context))?;
            if ids.len() as i64 <= TEXT_MATCHES_CAP {
                let ids: Vec<String> = ids.into_iter().map(|(id,)| id).collect();
                let json = serde_json::to_string(&ids)
                    .map_err(|e| StoreError::invalid(context, e.to_string()))?;
                rare.push((field, json));
            }
        }
        Ok(rare)
    }
}

/// Appends a value and returns its placeholder number.
fn bind(binds: &mut Vec<Bind>, b: Bind) -> usize {
    binds.push(b);
    binds.len()
}

/// A whole address: something before and a dotted domain after one `@`, no spaces.
fn is_address(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// A whole Message-ID in angle brackets, as the search box takes one: `<id@host>`.
fn is_message_id(s: &str) -> bool {
    s.starts_with('<') && s.ends_with('>') && s.contains('@')
}

/// A whole Message-ID as it is stored: `<id@host>`.
fn whole_message_id(s: &str) -> String {
    format!(
        "<{}>",
        s.trim().trim_start_matches('<').trim_end_matches('>')
    )
}

/// Above this many index rows a substring is common, and a SQLite search reads the newest
/// messages for it rather than every match through the index (see the module comment).
pub const TEXT_MATCHES_CAP: i64 = 5_000;

/// The search's fields that may be looked up in the trigram index, with their columns
/// and text: the search box, and the sender, recipient and subject filters when they are
/// not whole addresses ([`trigram_query`] leaves out those too short for trigrams).
fn trigram_fields(q: &LogQuery) -> Vec<(&'static str, &'static str, String)> {
    let mut fields = Vec::new();
    if let Some(t) = given(&q.text)
        && !is_address(t)
        && !is_message_id(t)
    {
        fields.push(("text", "sender subject message_id recipient", t.to_string()));
    }
    if let Some(t) = given(&q.sender).filter(|t| !is_address(t)) {
        fields.push(("sender", "sender", t.to_string()));
    }
    if let Some(t) = given(&q.recipient).filter(|t| !is_address(t)) {
        fields.push(("recipient", "recipient", t.to_string()));
    }
    if let Some(t) = given(&q.subject) {
        fields.push(("subject", "subject", t.to_string()));
    }
    fields
}

/// An FTS5 query for `text` as a substring of `columns` (the trigram tokenizer matches a
/// quoted phrase anywhere in a value, case aside), or None when it is too short for
/// trigrams.
fn trigram_query(columns: &str, text: &str) -> Option<String> {
    (text.chars().count() >= 3)
        .then(|| format!("{{{columns}}} : \"{}\"", text.replace('"', "\"\"")))
}

/// Builds the SQL of a search and its values, for `engine` (`sqlite`, `postgres`).
fn search_sql(
    q: &LogQuery,
    sees: &Sees,
    limit: i64,
    engine: &str,
    indexed: &[(&str, String)],
    context: &str,
) -> Result<(String, Vec<Bind>), StoreError> {
    let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE 1 = 1");
    let mut binds = Vec::new();
    // `column` contains the bound pattern, case aside. SQLite's LIKE already ignores the
    // case of ASCII letters, as its LOWER() folds only those; PostgreSQL has ILIKE.
    let like = |column: &str, n: usize| match engine {
        "postgres" => format!("{column} ILIKE ${n} ESCAPE '{LIKE_ESCAPE}'"),
        _ => format!("{column} LIKE ${n} ESCAPE '{LIKE_ESCAPE}'"),
    };
    let recipient_is = |n: usize| {
        format!(
            "m.id IN (SELECT message FROM message_recipients WHERE LOWER(address) = LOWER(${n}))"
        )
    };
    let recipient_like = |n: usize| {
        format!(
            "EXISTS (SELECT 1 FROM message_recipients r WHERE r.message = m.id AND {})",
            like("r.address", n)
        )
    };
    let given = |v: &Option<String>| given(v).map(str::to_string);
    // SQLite: the messages the trigram index found for a field it finds rarely
    // (`indexed`: the field and the ids, already narrowed to the time range).
    let trigram = |field: &str, binds: &mut Vec<Bind>| -> Option<String> {
        let (_, ids) = indexed.iter().find(|(f, _)| *f == field)?;
        let n = bind(binds, Bind::Text(ids.clone()));
        Some(format!("m.id IN (SELECT value FROM json_each(${n}))"))
    };

    if let Some(seen) = sees.message_condition(&mut binds) {
        sql.push_str(&format!(" AND {seen}"));
    }
    if let Some(text) = given(&q.text) {
        if is_message_id(&text) {
            let n = bind(&mut binds, Bind::Text(text));
            sql.push_str(&format!(" AND m.message_id = ${n}"));
        } else if is_address(&text) {
            let n = bind(&mut binds, Bind::Text(text));
            sql.push_str(&format!(
                " AND m.id IN (SELECT id FROM messages WHERE LOWER(sender) = LOWER(${n}) \
                 UNION SELECT message FROM message_recipients WHERE LOWER(address) = LOWER(${n}))"
            ));
        } else if let Some(sub) = trigram("text", &mut binds) {
            sql.push_str(&format!(" AND {sub}"));
        } else {
            let n = bind(&mut binds, Bind::Text(contains_pattern(&text)));
            sql.push_str(&format!(
                " AND ({} OR {} OR {} OR {})",
                like("m.sender", n),
                like("m.subject", n),
                like("m.message_id", n),
                recipient_like(n)
            ));
        }
    }
    if let Some(sender) = given(&q.sender) {
        if is_address(&sender) {
            let n = bind(&mut binds, Bind::Text(sender));
            sql.push_str(&format!(" AND LOWER(m.sender) = LOWER(${n})"));
        } else if let Some(sub) = trigram("sender", &mut binds) {
            sql.push_str(&format!(" AND {sub}"));
        } else {
            let n = bind(&mut binds, Bind::Text(contains_pattern(&sender)));
            sql.push_str(&format!(" AND {}", like("m.sender", n)));
        }
    }
    if let Some(recipient) = given(&q.recipient) {
        if is_address(&recipient) {
            let n = bind(&mut binds, Bind::Text(recipient));
            sql.push_str(&format!(" AND {}", recipient_is(n)));
        } else if let Some(sub) = trigram("recipient", &mut binds) {
            sql.push_str(&format!(" AND {sub}"));
        } else {
            let n = bind(&mut binds, Bind::Text(contains_pattern(&recipient)));
            sql.push_str(&format!(" AND {}", recipient_like(n)));
        }
    }
    if let Some(subject) = given(&q.subject) {
        if let Some(sub) = trigram("subject", &mut binds) {
            sql.push_str(&format!(" AND {sub}"));
        } else {
            let n = bind(&mut binds, Bind::Text(contains_pattern(&subject)));
            sql.push_str(&format!(" AND {}", like("m.subject", n)));
        }
    }
    if let Some(id) = given(&q.message_id) {
        let n = bind(&mut binds, Bind::Text(whole_message_id(&id)));
        sql.push_str(&format!(" AND m.message_id = ${n}"));
    }
    if let Some(ip) = given(&q.client_ip) {
        let n = bind(&mut binds, Bind::Text(ip));
        sql.push_str(&format!(" AND m.client_ip = ${n}"));
    }
    if let Some(direction) = given(&q.direction) {
        if !DIRECTIONS.contains(&direction.as_str()) {
            return Err(StoreError::invalid(
                context,
                format!(
                    "direction {direction:?}; expected one of {}",
                    DIRECTIONS.join(", ")
                ),
            ));
        }
        let n = bind(&mut binds, Bind::Text(direction));
        sql.push_str(&format!(" AND m.direction = ${n}"));
    }
    if let Some(verdict) = given(&q.verdict) {
        // The verdict itself, or any of its classes (`quarantine` for `quarantine:spam`).
        let verdict = verdict.trim_end_matches(':').to_string();
        let mut class = contains_pattern(&format!("{verdict}:"));
        class.remove(0);
        let n = bind(&mut binds, Bind::Text(verdict));
        let c = bind(&mut binds, Bind::Text(class));
        sql.push_str(&format!(
            " AND (m.verdict = ${n} OR m.verdict LIKE ${c} ESCAPE '{LIKE_ESCAPE}')"
        ));
    }
    if let Some(since) = q.since {
        let n = bind(&mut binds, Bind::Int(since));
        sql.push_str(&format!(" AND m.received_at >= ${n}"));
    }
    if let Some(until) = q.until {
        let n = bind(&mut binds, Bind::Int(until));
        sql.push_str(&format!(" AND m.received_at < ${n}"));
    }
    let l = bind(&mut binds, Bind::Int(limit.max(0)));
    let o = bind(&mut binds, Bind::Int(q.offset.max(0)));
    sql.push_str(&format!(
        " ORDER BY m.received_at DESC, m.id DESC LIMIT ${l} OFFSET ${o}"
    ));
    Ok((sql, binds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::on_pool;

    #[test]
    fn whole_values() {
        assert!(is_address("Bob@Example.com"));
        assert!(!is_address("bob@example"));
        assert!(!is_address("@example.com"));
        assert!(!is_address("bob smith@example.com"));
        assert_eq!(whole_message_id("abc@host"), "<abc@host>");
        assert_eq!(whole_message_id(" <abc@host> "), "<abc@host>");
    }

    store_test! {
        async fn a_removed_message_leaves_the_text_index(store) {
            let rec = crate::MessageRecord {
                id: "d1".into(),
                received_at: 1_000,
                client_ip: "192.0.2.1".into(),
                helo: "h".into(),
                direction: "inbound".into(),
                sender: "a@example.org".into(),
                size: 1,
                auth_user: None,
                message_id: None,
                subject: Some("uniquely findable".into()),
                verdict: None,
                rule: None,
                score: None,
                findings: None,
                recipients: vec![crate::RecipientRecord {
                    address: "someone.special@example.com".into(),
                    status: "queued".into(),
                    reply: None,
                    remote_host: None,
                    updated_at: 1_000,
                    attempts: 0,
                }],
            };
            store.log_message(&rec).await.unwrap();
            let q = |t: &str| LogQuery { text: Some(t.into()), ..LogQuery::default() };
            assert_eq!(store.search_log(&q("uniquely")).await.unwrap().len(), 1);
            assert_eq!(store.search_log(&q("one.speci")).await.unwrap().len(), 1);
            on_pool!(&store.pool, |p| sqlx::query("DELETE FROM messages WHERE id = $1")
                .bind("d1")
                .execute(p)
                .await
                .map(|_| ()))
            .unwrap();
            assert!(store.search_log(&q("uniquely")).await.unwrap().is_empty());
            if let Engines::Sqlite(p) = &store.pool {
                let (left,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM message_text WHERE message_text MATCH '\"findable\"'",
                )
                .fetch_one(p)
                .await
                .unwrap();
                assert_eq!(left, 0, "the message's index rows stayed");
            }
        }
    }
}
