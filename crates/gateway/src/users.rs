//! Users for SMTP AUTH: argon2id password hashes kept in the store.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use portcullis_store::{Store, StoreError};
use std::sync::OnceLock;

pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

/// Check a user's password. Unknown users cost a hash too, so timing does not tell
/// which users exist.
pub async fn verify(store: &Store, user: &str, password: &str) -> Result<bool, StoreError> {
    let stored = store.user_password_hash(user).await?;
    let password = password.to_string();
    let result = tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| dummy_hash().to_string());
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && known
    })
    .await;
    Ok(result.unwrap_or(false))
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no such user, no such password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_and_verify() {
        use argon2::{Argon2, PasswordHash, PasswordVerifier};
        let h = super::hash_password("s3cret").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        let parsed = PasswordHash::new(&h).expect("parse");
        assert!(
            Argon2::default()
                .verify_password(b"s3cret", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
    }
}
