//! The directory: who exists, who may log in, which groups they are in. One trait,
//! [`Directory`], with a source per kind: LDAP and Active Directory (`ldap`), a static
//! list of addresses (`static_list`), and the users of the store (`store_users`, today's
//! SMTP AUTH users). [`cache::Cached`] keeps answers for a bounded time, found and not
//! found separately. [`Directories`] is what the gateway asks: per domain, which source
//! verifies recipients, which authenticates logins, and what to do when it is down.
//!
//! A source that cannot answer says so ([`DirectoryError::Unavailable`]); it never turns
//! a failure into "no such user": the caller tempfails (or accepts, by setting) and the
//! client tries again. Passwords are never logged nor cached.

pub mod cache;
pub mod config;
pub mod domains;
pub mod ldap;
pub mod static_list;
pub mod store_users;

pub use config::{DomainConfig, Flavour, LoginMode, OnUnavailable, SourceConfig, SourceKind};
pub use domains::{Directories, LoginCheck, RecipientCheck};

use async_trait::async_trait;

/// What went wrong asking a source.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DirectoryError {
    /// The source could not answer (server down, timeout, TLS, a refused service bind):
    /// a temporary failure, never a "no".
    #[error("directory {source_name} unavailable: {reason}")]
    Unavailable { source_name: String, reason: String },
    /// The source cannot do this at all (a static list has no passwords).
    #[error("directory {source_name} cannot {what}")]
    Unsupported {
        source_name: String,
        what: &'static str,
    },
    /// The settings of a source are wrong (found when it is built).
    #[error("{0}")]
    Config(String),
}

impl DirectoryError {
    pub fn unavailable(source_name: &str, reason: impl std::fmt::Display) -> Self {
        DirectoryError::Unavailable {
            source_name: source_name.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// One source of users and addresses.
#[async_trait]
pub trait Directory: Send + Sync {
    /// The name of the source (`[directory.NAME]`), for logs and the message log.
    fn name(&self) -> &str;

    /// Does this address receive mail here (aliases included)?
    async fn recipient_exists(&self, address: &str) -> Result<bool, DirectoryError>;

    /// Is this the password of this login? A wrong password, an unknown or disabled
    /// account are all `Ok(false)`; only a source that cannot answer is an error.
    async fn authenticate(&self, login: &str, password: &str) -> Result<bool, DirectoryError>;

    /// The groups an address belongs to, nested groups included; empty for an unknown
    /// address, and from a source that keeps no groups.
    async fn groups(&self, _address: &str) -> Result<Vec<String>, DirectoryError> {
        Ok(Vec::new())
    }

    /// The display name of an address, when the source knows one.
    async fn display_name(&self, _address: &str) -> Result<Option<String>, DirectoryError> {
        Ok(None)
    }

    /// Whether [`Directory::authenticate`] can ever say yes (a static list cannot).
    fn can_authenticate(&self) -> bool {
        true
    }
}

/// The domain of an address, lowercased; None without one.
pub fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}
