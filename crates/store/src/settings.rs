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

/// A setting changed over the configuration file's value (`config_overrides`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigOverride {
    /// `greylist`, `dnsbl`, `fcrdns`.
    pub section: String,
    /// The key within the section, as the file names it: `delay_secs`.
    pub key: String,
    /// The value, JSON.
    pub value: String,
    /// Who changed it (an account, a token, `cli`).
    pub changed_by: String,
    /// Unix seconds.
    pub changed_at: i64,
}

impl Store {
    /// Every changed setting, by section and key.
    pub async fn list_config_overrides(&self) -> Result<Vec<ConfigOverride>, StoreError> {
        let rows: Vec<(String, String, String, String, i64)> = on_pool!(&self.pool, |p| {
            sqlx::query_as(
                "SELECT section, key, value, changed_by, changed_at FROM config_overrides \
                 ORDER BY section, key",
            )
            .fetch_all(p)
            .await
        })
        .map_err(StoreError::query("listing changed settings"))?;
        Ok(rows
            .into_iter()
            .map(
                |(section, key, value, changed_by, changed_at)| ConfigOverride {
                    section,
                    key,
                    value,
                    changed_by,
                    changed_at,
                },
            )
            .collect())
    }

    /// Set one key of a section (replacing an earlier change of it).
    pub async fn set_config_override(&self, o: &ConfigOverride) -> Result<(), StoreError> {
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO config_overrides (section, key, value, changed_by, changed_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (section, key) DO UPDATE SET \
             value = excluded.value, changed_by = excluded.changed_by, \
             changed_at = excluded.changed_at",
        )
        .bind(&o.section)
        .bind(&o.key)
        .bind(&o.value)
        .bind(&o.changed_by)
        .bind(o.changed_at)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(StoreError::query("changing a setting"))
    }

    /// Give a key back to the configuration file; false when it was not changed.
    pub async fn remove_config_override(
        &self,
        section: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM config_overrides WHERE section = $1 AND key = $2"
        )
        .bind(section)
        .bind(key)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query("resetting a setting"))?;
        Ok(n > 0)
    }
}
