//! Users who may authenticate with SMTP AUTH. Owns the `users` table. Passwords arrive already hashed
//! (argon2 PHC strings) and leave the same way: this module never sees or checks a clear password.

use crate::engine::on_pool;
use crate::{Store, StoreError};

/// Mailbox names are matched case-insensitively at login, so one spelling is stored.
fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

impl Store {
    /// Adds a user, or replaces the password hash of an existing one.
    pub async fn add_user(&self, email: &str, password_hash: &str) -> Result<(), StoreError> {
        let email = normalize_email(email);
        let context = format!("adding user {email}");
        if email.is_empty() || email.chars().any(char::is_whitespace) {
            return Err(StoreError::invalid(
                context,
                "user name must be non-empty without spaces",
            ));
        }
        if password_hash.is_empty() {
            return Err(StoreError::invalid(context, "password hash is empty"));
        }
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO users (email, password_hash) VALUES ($1, $2) \
             ON CONFLICT (email) DO UPDATE SET password_hash = excluded.password_hash",
        )
        .bind(&email)
        .bind(password_hash)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        Ok(())
    }

    /// Removes a user. Returns whether the user existed.
    pub async fn remove_user(&self, email: &str) -> Result<bool, StoreError> {
        let email = normalize_email(email);
        let context = format!("removing user {email}");
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM users WHERE email = $1"
        )
        .bind(&email)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        Ok(done > 0)
    }

    /// All user names, sorted.
    pub async fn list_users(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            on_pool!(&self.pool, |p| sqlx::query_as("SELECT email FROM users")
                .fetch_all(p)
                .await)
            .map_err(StoreError::query("listing users"))?;
        // Sorted here so the order does not depend on the engine's collation.
        let mut users: Vec<String> = rows.into_iter().map(|(email,)| email).collect();
        users.sort();
        Ok(users)
    }

    /// The stored password hash of `email`, or `None` for an unknown user.
    pub async fn user_password_hash(&self, email: &str) -> Result<Option<String>, StoreError> {
        let email = normalize_email(email);
        let context = format!("reading user {email}");
        let row: Option<(String,)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT password_hash FROM users WHERE email = $1"
        )
        .bind(&email)
        .fetch_optional(p)
        .await)
        .map_err(StoreError::query(&context))?;
        Ok(row.map(|(hash,)| hash))
    }
}
