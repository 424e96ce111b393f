//! Greylisting memory: triplets (client network, sender, recipient) and client networks that
//! passed. Owns the `greylist` and `greylist_clients` tables. The policy (delay, windows, when
//! to auto-allow a network) belongs to `portcullis_filter::greylist`; this module stores and
//! returns plain values, so that every node of a cluster sees the same state.
//!
//! Concurrent writers to one row are harmless: the last write wins, and the worst outcome of a
//! race is one more deferral.

use crate::engine::on_pool;
use crate::{Store, StoreError};

/// One triplet as stored. `network` is CIDR text (`192.0.2.0/24`), sender and recipient are
/// lower-cased by the caller; the null sender is the empty string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreylistEntry {
    pub network: String,
    pub sender: String,
    pub recipient: String,
    /// Unix seconds of the first attempt (of the current round: a restart resets it).
    pub first_seen: i64,
    /// Unix seconds of the latest attempt; expiry counts from here.
    pub last_seen: i64,
    /// The triplet came back after the delay and has been let through since.
    pub passed: bool,
    /// Attempts told to come back later.
    pub deferred: i64,
    /// Attempts let through.
    pub passes: i64,
}

/// A client network's record of passes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GreylistClient {
    pub network: String,
    pub passes: i64,
    /// When `passes` last grew.
    pub counted_at: i64,
    pub last_seen: i64,
}

/// What [`Store::greylist_purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GreylistPurged {
    pub triplets: u64,
    pub clients: u64,
}

/// How many rows the greylist holds, for status pages and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GreylistCounts {
    pub waiting: i64,
    pub passed: i64,
    pub clients: i64,
}

/// A row of `greylist`: `passed` is stored as 0 or 1.
#[derive(sqlx::FromRow)]
struct EntryRow {
    network: String,
    sender: String,
    recipient: String,
    first_seen: i64,
    last_seen: i64,
    passed: i64,
    deferred: i64,
    passes: i64,
}

impl Store {
    /// The triplet, if it is known.
    pub async fn greylist_get(
        &self,
        network: &str,
        sender: &str,
        recipient: &str,
    ) -> Result<Option<GreylistEntry>, StoreError> {
        let context = format!("reading greylist triplet {network} {sender:?} {recipient:?}");
        let row: Option<EntryRow> = on_pool!(&self.pool, |p| {
            sqlx::query_as(
            "SELECT network, sender, recipient, first_seen, last_seen, passed, deferred, passes \
             FROM greylist WHERE network = $1 AND sender = $2 AND recipient = $3",
        )
        .bind(network)
        .bind(sender)
        .bind(recipient)
        .fetch_optional(p)
        .await
        })
        .map_err(StoreError::query(&context))?;
        Ok(row.map(|r| GreylistEntry {
            network: r.network,
            sender: r.sender,
            recipient: r.recipient,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            passed: r.passed != 0,
            deferred: r.deferred,
            passes: r.passes,
        }))
    }

    /// Writes the triplet, replacing what was stored under the same key.
    pub async fn greylist_put(&self, entry: &GreylistEntry) -> Result<(), StoreError> {
        let context = format!(
            "writing greylist triplet {} {:?} {:?}",
            entry.network, entry.sender, entry.recipient
        );
        if entry.network.is_empty() {
            return Err(StoreError::invalid(context, "network is empty"));
        }
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO greylist \
             (network, sender, recipient, first_seen, last_seen, passed, deferred, passes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (network, sender, recipient) DO UPDATE SET \
             first_seen = excluded.first_seen, last_seen = excluded.last_seen, \
             passed = excluded.passed, deferred = excluded.deferred, passes = excluded.passes",
        )
        .bind(&entry.network)
        .bind(&entry.sender)
        .bind(&entry.recipient)
        .bind(entry.first_seen)
        .bind(entry.last_seen)
        .bind(i64::from(entry.passed))
        .bind(entry.deferred)
        .bind(entry.passes)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        Ok(())
    }

    /// The pass record of a client network, if it has one.
    pub async fn greylist_client(
        &self,
        network: &str,
    ) -> Result<Option<GreylistClient>, StoreError> {
        let context = format!("reading greylist client {network}");
        on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT network, passes, counted_at, last_seen FROM greylist_clients WHERE network = $1",
        )
        .bind(network)
        .fetch_optional(p)
        .await)
        .map_err(StoreError::query(&context))
    }

    /// Records that a triplet of `network` passed at `now`. The count grows by one only when
    /// the last counted pass is at least `min_interval` seconds old, so that a burst of
    /// recipients or messages counts once; `last_seen` is refreshed either way.
    pub async fn greylist_count_client_pass(
        &self,
        network: &str,
        now: i64,
        min_interval: i64,
    ) -> Result<(), StoreError> {
        let context = format!("counting greylist pass of {network}");
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO greylist_clients (network, passes, counted_at, last_seen) \
             VALUES ($1, 1, $2, $2) \
             ON CONFLICT (network) DO UPDATE SET \
             passes = CASE WHEN greylist_clients.counted_at <= $3 \
                 THEN greylist_clients.passes + 1 ELSE greylist_clients.passes END, \
             counted_at = CASE WHEN greylist_clients.counted_at <= $3 \
                 THEN excluded.counted_at ELSE greylist_clients.counted_at END, \
             last_seen = excluded.last_seen",
        )
        .bind(network)
        .bind(now)
        .bind(now.saturating_sub(min_interval))
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        Ok(())
    }

    /// Refreshes `last_seen` of a client network, writing only when it is older than
    /// `min_interval` seconds (an allowed network sends many messages; one write per interval
    /// keeps it from expiring).
    pub async fn greylist_touch_client(
        &self,
        network: &str,
        now: i64,
        min_interval: i64,
    ) -> Result<(), StoreError> {
        let context = format!("refreshing greylist client {network}");
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE greylist_clients SET last_seen = $2 WHERE network = $1 AND last_seen < $3",
        )
        .bind(network)
        .bind(now)
        .bind(now.saturating_sub(min_interval))
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        Ok(())
    }

    /// Deletes triplets that never passed and were last seen before `waiting_before`, triplets
    /// that passed and were last seen before `passed_before`, and client networks last seen
    /// before `passed_before`.
    pub async fn greylist_purge(
        &self,
        waiting_before: i64,
        passed_before: i64,
    ) -> Result<GreylistPurged, StoreError> {
        let context = "purging expired greylist entries";
        let triplets = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM greylist WHERE (passed = 0 AND last_seen < $1) \
             OR (passed <> 0 AND last_seen < $2)",
        )
        .bind(waiting_before)
        .bind(passed_before)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(context))?;
        let clients = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM greylist_clients WHERE last_seen < $1"
        )
        .bind(passed_before)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(context))?;
        Ok(GreylistPurged { triplets, clients })
    }

    /// Rows held: triplets waiting for their retry, triplets that passed, client networks.
    pub async fn greylist_counts(&self) -> Result<GreylistCounts, StoreError> {
        let context = "counting greylist entries";
        let (waiting, passed): (i64, i64) = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT \
             COALESCE(SUM(CASE WHEN passed = 0 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN passed <> 0 THEN 1 ELSE 0 END), 0) \
             FROM greylist",
        )
        .fetch_one(p)
        .await)
        .map_err(StoreError::query(context))?;
        let (clients,): (i64,) = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM greylist_clients"
        )
        .fetch_one(p)
        .await)
        .map_err(StoreError::query(context))?;
        Ok(GreylistCounts {
            waiting,
            passed,
            clients,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(network: &str, last_seen: i64, passed: bool) -> GreylistEntry {
        GreylistEntry {
            network: network.into(),
            sender: "a@example.org".into(),
            recipient: "b@example.com".into(),
            first_seen: last_seen,
            last_seen,
            passed,
            deferred: 1,
            passes: i64::from(passed),
        }
    }

    store_test! {
        async fn put_get_and_replace(store) {
            assert_eq!(
                store
                    .greylist_get("192.0.2.0/24", "a@example.org", "b@example.com")
                    .await
                    .unwrap(),
                None
            );
            let mut e = entry("192.0.2.0/24", 100, false);
            store.greylist_put(&e).await.unwrap();
            e.passed = true;
            e.last_seen = 500;
            e.passes = 1;
            store.greylist_put(&e).await.unwrap();
            let got = store
                .greylist_get("192.0.2.0/24", "a@example.org", "b@example.com")
                .await
                .unwrap();
            assert_eq!(got, Some(e));
            let counts = store.greylist_counts().await.unwrap();
            assert_eq!((counts.waiting, counts.passed, counts.clients), (0, 1, 0));
            assert!(store.greylist_put(&entry("", 1, false)).await.is_err());
        }
    }

    store_test! {
        async fn client_passes_count_once_per_interval(store) {
            let net = "2001:db8::/64";
            store
                .greylist_count_client_pass(net, 1000, 300)
                .await
                .unwrap();
            store
                .greylist_count_client_pass(net, 1100, 300)
                .await
                .unwrap();
            let c = store.greylist_client(net).await.unwrap().unwrap();
            assert_eq!((c.passes, c.counted_at, c.last_seen), (1, 1000, 1100));
            store
                .greylist_count_client_pass(net, 1300, 300)
                .await
                .unwrap();
            let c = store.greylist_client(net).await.unwrap().unwrap();
            assert_eq!((c.passes, c.counted_at, c.last_seen), (2, 1300, 1300));

            store.greylist_touch_client(net, 1400, 3600).await.unwrap();
            assert_eq!(
                store.greylist_client(net).await.unwrap().unwrap().last_seen,
                1300
            );
            store.greylist_touch_client(net, 5000, 3600).await.unwrap();
            assert_eq!(
                store.greylist_client(net).await.unwrap().unwrap().last_seen,
                5000
            );
        }
    }

    store_test! {
        async fn purge_by_kind_and_age(store) {
            store
                .greylist_put(&entry("192.0.2.0/24", 100, false))
                .await
                .unwrap();
            store
                .greylist_put(&entry("198.51.100.0/24", 900, false))
                .await
                .unwrap();
            store
                .greylist_put(&entry("203.0.113.0/24", 100, true))
                .await
                .unwrap();
            store
                .greylist_count_client_pass("203.0.113.0/24", 100, 0)
                .await
                .unwrap();
            store
                .greylist_count_client_pass("192.0.2.0/24", 900, 0)
                .await
                .unwrap();

            // Waiting entries older than 500 go; passed ones survive until 50.
            let purged = store.greylist_purge(500, 50).await.unwrap();
            assert_eq!(
                purged,
                GreylistPurged {
                    triplets: 1,
                    clients: 0
                }
            );
            let purged = store.greylist_purge(500, 200).await.unwrap();
            assert_eq!(
                purged,
                GreylistPurged {
                    triplets: 1,
                    clients: 1
                }
            );
            let counts = store.greylist_counts().await.unwrap();
            assert_eq!((counts.waiting, counts.passed, counts.clients), (1, 0, 1));
        }
    }
}
