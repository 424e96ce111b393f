//! Rate limit counters in the store, so that a limit holds across every node of a cluster
//! (`rate_counters`). Fixed windows: a client may reach twice its limit across a window
//! boundary, the usual price of one counter per window.

use crate::engine::on_pool;
use crate::{Store, StoreError};

impl Store {
    /// Count one hit for `key` in the window of `window_secs` that holds `now`; the hits
    /// in that window so far, this one included.
    pub async fn rate_hit(&self, key: &str, window_secs: i64, now: i64) -> Result<i64, StoreError> {
        let window = window_secs.max(1);
        let start = now - now.rem_euclid(window);
        let (hits,): (i64,) = on_pool!(&self.pool, |p| sqlx::query_as(
            "INSERT INTO rate_counters (key, window_start, hits) VALUES ($1, $2, 1) \
             ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_counters.hits + 1 \
             RETURNING hits",
        )
        .bind(key)
        .bind(start)
        .fetch_one(p)
        .await)
        .map_err(StoreError::query(format!("counting a hit for {key}")))?;
        Ok(hits)
    }

    /// Forget windows that started before `before`; how many.
    pub async fn rate_purge(&self, before: i64) -> Result<u64, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM rate_counters WHERE window_start < $1"
        )
        .bind(before)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query("purging rate counters"))?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {

    store_test! {
        async fn fixed_windows_count_and_purge(store) {
            assert_eq!(store.rate_hit("ip:192.0.2.1", 60, 120).await.unwrap(), 1);
            assert_eq!(store.rate_hit("ip:192.0.2.1", 60, 179).await.unwrap(), 2);
            assert_eq!(store.rate_hit("ip:192.0.2.2", 60, 150).await.unwrap(), 1);
            // A new window starts again at one.
            assert_eq!(store.rate_hit("ip:192.0.2.1", 60, 180).await.unwrap(), 1);
            assert_eq!(store.rate_purge(180).await.unwrap(), 2);
            assert_eq!(store.rate_hit("ip:192.0.2.1", 60, 181).await.unwrap(), 2);
        }
    }
}
