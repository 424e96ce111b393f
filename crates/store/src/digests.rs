//! Quarantine digests: which held copies are due in a digest, which digest listed a copy
//! (`quarantine_items.digest_id`, for a digest's "release all" link), and each recipient's
//! own digest interval and last digest (`digest_recipients`).

use crate::engine::{on_conn, on_pool};
use crate::quarantine::ITEM_COLUMNS;
use crate::{QuarantineItem, Store, StoreError};
use std::collections::HashMap;

/// A recipient's digest schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DigestSchedule {
    /// Seconds between digests; `None`: the configured interval; `Some(0)`: never.
    pub every_secs: Option<i64>,
    /// When the recipient's last digest was written.
    pub last_sent: Option<i64>,
}

impl Store {
    /// Held inbound spam not yet in a digest, by recipient, for the digest mailer. Mail
    /// held by policy or for a virus, and outbound mail, is for administrators only.
    pub async fn quarantine_digest_due(&self) -> Result<Vec<QuarantineItem>, StoreError> {
        let rows: Vec<QuarantineItem> = on_pool!(&self.pool, |p| sqlx::query_as(
            sqlx::AssertSqlSafe(format!(
                "SELECT {ITEM_COLUMNS} FROM quarantine_items i JOIN quarantine_messages m \
             ON m.id = i.message WHERE i.state = 'held' AND i.digest_sent_at IS NULL \
             AND m.direction = 'inbound' AND m.class = 'spam' \
             ORDER BY i.recipient, m.received_at"
            ))
        )
        .fetch_all(p)
        .await)
        .map_err(StoreError::query("finding quarantine items for digests"))?;
        Ok(rows)
    }

    /// Records that digest `digest_id` listed `ids` for `recipient` at `now`, in one
    /// transaction with the recipient's last digest time.
    pub async fn quarantine_mark_digested(
        &self,
        digest_id: &str,
        recipient: &str,
        ids: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let context = "marking quarantine items as sent in a digest";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(context))?;
        for id in ids {
            on_conn!(&mut tx, |c| sqlx::query(
                "UPDATE quarantine_items SET digest_sent_at = $1, digest_id = $2 WHERE id = $3"
            )
            .bind(now)
            .bind(digest_id)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(StoreError::query(context))?;
        }
        on_conn!(&mut tx, |c| sqlx::query(
            "INSERT INTO digest_recipients (address, last_sent) VALUES ($1, $2) \
             ON CONFLICT (address) DO UPDATE SET last_sent = excluded.last_sent"
        )
        .bind(recipient)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(context))?;
        tx.commit().await.map_err(StoreError::query(context))?;
        Ok(())
    }

    /// The copies that digest `digest_id` listed, whatever their state now.
    pub async fn digest_items(&self, digest_id: &str) -> Result<Vec<QuarantineItem>, StoreError> {
        let rows: Vec<QuarantineItem> = on_pool!(&self.pool, |p| sqlx::query_as(
            sqlx::AssertSqlSafe(format!(
                "SELECT {ITEM_COLUMNS} FROM quarantine_items i JOIN quarantine_messages m \
                 ON m.id = i.message WHERE i.digest_id = $1 ORDER BY m.received_at"
            ))
        )
        .bind(digest_id)
        .fetch_all(p)
        .await)
        .map_err(StoreError::query("reading a digest's messages"))?;
        Ok(rows)
    }

    /// Every recipient's digest schedule that differs from the default or has a digest.
    pub async fn digest_schedules(&self) -> Result<HashMap<String, DigestSchedule>, StoreError> {
        let rows: Vec<(String, Option<i64>, Option<i64>)> = on_pool!(&self.pool, |p| {
            sqlx::query_as("SELECT address, every_secs, last_sent FROM digest_recipients")
                .fetch_all(p)
                .await
        })
        .map_err(StoreError::query("reading digest schedules"))?;
        Ok(rows
            .into_iter()
            .map(|(a, every_secs, last_sent)| {
                (
                    a,
                    DigestSchedule {
                        every_secs,
                        last_sent,
                    },
                )
            })
            .collect())
    }

    /// One recipient's digest schedule (the default when never set nor sent).
    pub async fn digest_schedule(&self, address: &str) -> Result<DigestSchedule, StoreError> {
        let row: Option<(Option<i64>, Option<i64>)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT every_secs, last_sent FROM digest_recipients WHERE address = $1"
        )
        .bind(address)
        .fetch_optional(p)
        .await)
        .map_err(StoreError::query("reading a digest schedule"))?;
        Ok(row
            .map(|(every_secs, last_sent)| DigestSchedule {
                every_secs,
                last_sent,
            })
            .unwrap_or_default())
    }

    /// Sets a recipient's digest interval (`None`: back to the configured one; `Some(0)`:
    /// never), keeping the time of their last digest.
    pub async fn digest_set_every(
        &self,
        address: &str,
        every_secs: Option<i64>,
    ) -> Result<(), StoreError> {
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO digest_recipients (address, every_secs) VALUES ($1, $2) \
             ON CONFLICT (address) DO UPDATE SET every_secs = excluded.every_secs"
        )
        .bind(address)
        .bind(every_secs)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query("setting a digest schedule"))?;
        Ok(())
    }
}
