//! Counting the message log for the console's dashboard: recipients per time bucket,
//! direction and status, and the busiest senders, recipients and rejection reasons.
//! Read-only: the `messages` and `message_recipients` tables belong to `log`, which writes
//! them (the search is `log_search`).

use serde::Serialize;

use crate::engine::on_pool;
use crate::{Store, StoreError};

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

/// The counters' granularity (seconds).
const HOUR: i64 = 3600;

impl Store {
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
        // Whole hours come from the counters the triggers of migration 0015 keep (a month
        // is at most 720 hours of a few rows each); finer buckets count the log itself,
        // which is cheap over the short spans they are used for.
        let sql = if since % HOUR == 0 && width % HOUR == 0 {
            "SELECT (c.hour - $1) / $2 AS bucket, c.direction AS direction, \
             c.status AS status, CAST(SUM(c.count) AS BIGINT) AS count \
             FROM message_counts c WHERE c.hour >= $1 AND c.hour < $3 \
             GROUP BY 1, 2, 3"
        } else {
            "SELECT (m.received_at - $1) / $2 AS bucket, m.direction AS direction, \
             r.status AS status, COUNT(*) AS count \
             FROM messages m JOIN message_recipients r ON r.message = m.id \
             WHERE m.received_at >= $1 AND m.received_at < $3 \
             GROUP BY 1, 2, 3"
        };
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
                // The messages of the range first (the time index), then their
                // recipients by message: written as a join, SQLite walked every
                // recipient in address order instead (12 s at a million messages).
                "SELECT r.address AS name, COUNT(*) AS count FROM message_recipients r \
                 WHERE r.message IN (SELECT m.id FROM messages m WHERE m.received_at >= $1) \
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
