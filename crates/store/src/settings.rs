//! Shared settings (`settings` table): values every node must agree on, made once.

use crate::engine::on_pool;
use crate::{Store, StoreError};

impl Store {
    /// The value of `name`, stored as `make()` gives it when absent. When two nodes race,
    /// the first write wins and both return it.
    pub async fn setting_or_init(
        &self,
        name: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        let context = format!("reading setting {name}");
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(make())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        let (value,): (String,) = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT value FROM settings WHERE name = $1"
        )
        .bind(name)
        .fetch_one(p)
        .await)
        .map_err(StoreError::query(&context))?;
        Ok(value)
    }
}
