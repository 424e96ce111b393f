//! Shared settings (`settings` table): values every node must agree on, made once.

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
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(make())
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(&context))?;
        let (value,): (String,) = sqlx::query_as("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query(&context))?;
        Ok(value)
    }
}
