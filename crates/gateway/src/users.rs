//! Users for SMTP AUTH: argon2id password hashes kept in the store. The check itself is
//! the directory's store source (`portcullis_directory::store_users`).

pub use portcullis_directory::store_users::{hash_password, verify, verify_hash};
