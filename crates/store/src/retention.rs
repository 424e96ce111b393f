//! Retention: deleting what is older than an age, in bounded batches (`[retention]`), and
//! reading the message log in time order a page at a time for its export. The tables
//! belong to their modules (`log`, `quarantine`, `reports`, `audit`); this one only
//! deletes by age and reads.

use serde::Serialize;
use sqlx::AssertSqlSafe;

use crate::engine::{Engines, on_pool};
use crate::log::{Bind, MESSAGE_COLUMNS, Sees};
use crate::{MessageRecord, Store, StoreError};

/// What a retention purge deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Purge {
    /// Messages of the log (their recipients and search rows go with them). The
    /// dashboard's counters stay: they are the history.
    MessageLog,
    /// Held messages (their per-recipient items with them), whatever their expiry.
    Quarantine,
    /// Incoming DMARC aggregate and TLS-RPT reports.
    Reports,
    /// Rows of the audit log.
    Audit,
}

impl Purge {
    /// The table and its time column.
    fn table(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Purge::MessageLog => ("messages", "id", "received_at"),
            Purge::Quarantine => ("quarantine_messages", "id", "received_at"),
            Purge::Reports => ("reports", "id", "received_at"),
            Purge::Audit => ("audit_log", "id", "at"),
        }
    }
}

impl Store {
    /// Deletes the rows of `what` from before `before` (unix seconds), at most `batch`
    /// per statement (each its own transaction, so that the mail path's writes get
    /// their turn between them), until none is left; how many.
    pub async fn purge_older(
        &self,
        what: Purge,
        before: i64,
        batch: u64,
    ) -> Result<u64, StoreError> {
        let (table, key, at) = what.table();
        let batch = batch.clamp(1, i64::MAX as u64) as i64;
        if what == Purge::MessageLog {
            // The cut first, then SQLite's search rows older than it in batches: the
            // per-message trigger would read the whole index for each message (0022).
            let context = "recording the cut of a message-log purge";
            on_pool!(&self.pool, |p| sqlx::query(
                "INSERT INTO log_purge (id, cut) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET cut = excluded.cut"
            )
            .bind(before)
            .execute(p)
            .await
            .map(|_| ()))
            .map_err(StoreError::query(context))?;
            if let Engines::Sqlite(_) = &self.pool {
                self.delete_batches(
                    "DELETE FROM message_text WHERE rowid IN \
                     (SELECT rowid FROM message_text WHERE received_at < $1 LIMIT $2)",
                    before,
                    batch,
                    "deleting old rows of the message-log search index",
                )
                .await?;
            }
        }
        let sql = format!(
            "DELETE FROM {table} WHERE {key} IN \
             (SELECT {key} FROM {table} WHERE {at} < $1 ORDER BY {at} LIMIT $2)"
        );
        self.delete_batches(
            &sql,
            before,
            batch,
            &format!("deleting old rows of {table}"),
        )
        .await
    }

    /// Runs `sql` (bound to `before` and `batch`) until it deletes fewer than `batch`
    /// rows; how many in all.
    async fn delete_batches(
        &self,
        sql: &str,
        before: i64,
        batch: i64,
        context: &str,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let done = on_pool!(&self.pool, |p| sqlx::query(AssertSqlSafe(sql.to_string()))
                .bind(before)
                .bind(batch)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))
            .map_err(StoreError::query(context))?;
            total += done;
            if done < batch as u64 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Up to `limit` messages received in `[from, to)` that `sees` allows, oldest first,
    /// with their recipients, after the message `after` (its `(received_at, id)`) when
    /// given: one page of an export, read by keyset so that each page costs the same
    /// however far into the range it is.
    pub async fn log_export_page(
        &self,
        from: i64,
        to: i64,
        after: Option<(i64, &str)>,
        limit: i64,
        sees: &Sees,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let context = "reading the message log for an export";
        let mut binds = vec![Bind::Int(from), Bind::Int(to)];
        let mut sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.received_at >= $1 \
             AND m.received_at < $2"
        );
        if let Some((at, id)) = after {
            binds.push(Bind::Int(at));
            binds.push(Bind::Text(id.to_string()));
            sql.push_str(" AND (m.received_at > $3 OR (m.received_at = $3 AND m.id > $4))");
        }
        if let Some(seen) = sees.message_condition(&mut binds) {
            sql.push_str(&format!(" AND {seen}"));
        }
        binds.push(Bind::Int(limit.max(1)));
        sql.push_str(&format!(
            " ORDER BY m.received_at, m.id LIMIT ${}",
            binds.len()
        ));
        self.messages_with_recipients(sql, &binds, context).await
    }
}
