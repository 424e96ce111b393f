//! The users of the store (`portcullis user add`): argon2id password hashes, the SMTP
//! AUTH users of before the directory. A user is also a recipient that exists.

use crate::{Directory, DirectoryError};
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use async_trait::async_trait;
use portcullis_store::{Store, StoreError};
use std::sync::OnceLock;

pub struct StoreUsers {
    name: String,
    store: Store,
}

impl StoreUsers {
    pub fn new(name: &str, store: Store) -> Self {
        StoreUsers {
            name: name.to_string(),
            store,
        }
    }

    fn down(&self, e: StoreError) -> DirectoryError {
        DirectoryError::unavailable(&self.name, e)
    }
}

#[async_trait]
impl Directory for StoreUsers {
    fn name(&self) -> &str {
        &self.name
    }

    async fn recipient_exists(&self, address: &str) -> Result<bool, DirectoryError> {
        let hash = self
            .store
            .user_password_hash(address)
            .await
            .map_err(|e| self.down(e))?;
        Ok(hash.is_some())
    }

    async fn authenticate(&self, login: &str, password: &str) -> Result<bool, DirectoryError> {
        verify(&self.store, login, password)
            .await
            .map_err(|e| self.down(e))
    }
}

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
    Ok(verify_hash(stored, password).await)
}

/// Whether `password` matches the argon2 `hash`. With no hash (no such user or account)
/// a dummy hash is checked instead, so that the answer takes as long as for one that
/// exists. Shared by SMTP AUTH and the console's logins.
pub async fn verify_hash(hash: Option<String>, password: &str) -> bool {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| dummy_hash().to_string());
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && known
    })
    .await
    .unwrap_or(false)
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
