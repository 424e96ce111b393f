//! What the gateway asks: per domain, the source that verifies its recipients and the
//! one that checks its logins, each with its cache, and what a recipient meets when the
//! source is down (`on_unavailable`). `[domain."*"]` stands for every domain without a
//! section of its own, and for logins without a domain. Without any setting nothing is
//! verified and logins go to the store's users, as before the directory.

use crate::cache::Cached;
use crate::config::{DomainConfig, OnUnavailable, SourceConfig, SourceKind};
use crate::ldap::LdapDirectory;
use crate::static_list::StaticList;
use crate::store_users::StoreUsers;
use crate::{Directory, DirectoryError, domain_of};
use portcullis_store::Store;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// The name of the built-in source of the store's users.
pub const STORE_SOURCE: &str = "store";

/// What a recipient's source said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientCheck {
    /// The domain has no recipient source.
    NotChecked,
    Known {
        source: String,
    },
    Unknown {
        source: String,
    },
    /// The source could not answer; `accept`: the domain says accept anyway.
    Unavailable {
        source: String,
        reason: String,
        accept: bool,
    },
}

/// What a login's source said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginCheck {
    Accepted { source: String },
    Refused { source: String },
    Unavailable { source: String, reason: String },
}

/// Every source, and which domain uses which.
#[derive(Default)]
pub struct Directories {
    sources: HashMap<String, Arc<dyn Directory>>,
    /// The LDAP sources again, by name, for `directory test|auth` (where and how).
    ldap: HashMap<String, Arc<LdapDirectory>>,
    domains: HashMap<String, DomainConfig>,
    /// Logins of domains without an `auth` source.
    store: Option<Arc<dyn Directory>>,
}

impl Directories {
    /// Build every configured source (service passwords read, TLS roots loaded; nothing
    /// connected). `store`: the store whose users are the `store` source.
    pub fn build(
        sources: &BTreeMap<String, SourceConfig>,
        domains: &BTreeMap<String, DomainConfig>,
        store: Option<Store>,
    ) -> Result<Directories, DirectoryError> {
        let mut built = Directories {
            domains: domains
                .iter()
                .map(|(d, c)| (d.trim_end_matches('.').to_ascii_lowercase(), c.clone()))
                .collect(),
            store: store
                .clone()
                .map(|s| Arc::new(StoreUsers::new(STORE_SOURCE, s)) as Arc<dyn Directory>),
            ..Directories::default()
        };
        for (name, cfg) in sources {
            let source: Box<dyn Directory> = match cfg.kind {
                SourceKind::Ldap => {
                    let ldap = Arc::new(LdapDirectory::new(name, cfg)?);
                    built.ldap.insert(name.clone(), ldap.clone());
                    Box::new(Shared(ldap))
                }
                SourceKind::Static => Box::new(StaticList::new(name, &cfg.addresses)),
                // Built by the gateway, which knows the domains' routes
                // ([`Directories::add_source`]).
                SourceKind::Callout => continue,
                SourceKind::Store => match &store {
                    Some(s) => Box::new(StoreUsers::new(name, s.clone())),
                    None => {
                        return Err(DirectoryError::Config(format!(
                            "[directory.{name}]: the store is not open here"
                        )));
                    }
                },
            };
            built.add_source(name, cfg, source);
        }
        Ok(built)
    }

    /// Add a source built elsewhere (a callout, which needs the gateway's routes), cached
    /// as its settings say.
    pub fn add_source(&mut self, name: &str, cfg: &SourceConfig, source: Box<dyn Directory>) {
        let source: Arc<dyn Directory> = match cfg.kind {
            SourceKind::Ldap | SourceKind::Callout => Arc::new(Cached::new(
                source,
                Duration::from_secs(cfg.cache_ttl_secs),
                Duration::from_secs(cfg.negative_cache_ttl_secs),
                cfg.cache_max_entries,
            )),
            // A list in memory and the store need no cache.
            SourceKind::Static | SourceKind::Store => Arc::from(source),
        };
        self.sources.insert(name.to_string(), source);
    }

    fn domain(&self, domain: &str) -> Option<&DomainConfig> {
        self.domains.get(domain).or_else(|| self.domains.get("*"))
    }

    fn source(&self, name: &str) -> Option<Arc<dyn Directory>> {
        match self.sources.get(name) {
            Some(s) => Some(s.clone()),
            None if name == STORE_SOURCE => self.store.clone(),
            None => None,
        }
    }

    /// Whether any domain has its recipients verified (the RCPT path skips the rest).
    pub fn verifies_recipients(&self) -> bool {
        self.domains.values().any(|d| d.recipients.is_some())
    }

    /// Ask the domain's recipient source about an address.
    pub async fn check_recipient(&self, address: &str) -> RecipientCheck {
        let Some(domain) = domain_of(address) else {
            return RecipientCheck::NotChecked;
        };
        let Some(settings) = self.domain(&domain) else {
            return RecipientCheck::NotChecked;
        };
        let Some(name) = &settings.recipients else {
            return RecipientCheck::NotChecked;
        };
        let Some(source) = self.source(name) else {
            return RecipientCheck::NotChecked;
        };
        let source_name = name.clone();
        match source.recipient_exists(address).await {
            Ok(true) => RecipientCheck::Known {
                source: source_name,
            },
            Ok(false) => RecipientCheck::Unknown {
                source: source_name,
            },
            Err(e) => RecipientCheck::Unavailable {
                source: source_name,
                reason: e.to_string(),
                accept: settings.on_unavailable == OnUnavailable::Accept,
            },
        }
    }

    /// The source that checks this login: its domain's `auth`, else `"*"`'s, else None
    /// (the store's users, as before).
    pub fn login_source(&self, login: &str) -> Option<Arc<dyn Directory>> {
        let settings = match domain_of(login) {
            Some(domain) => self.domain(&domain),
            None => self.domains.get("*"),
        }?;
        self.source(settings.auth.as_deref()?)
    }

    /// Check a login against its source; None when no directory is set for it.
    pub async fn authenticate(&self, login: &str, password: &str) -> Option<LoginCheck> {
        let source = self.login_source(login)?;
        let name = source.name().to_string();
        Some(match source.authenticate(login, password).await {
            Ok(true) => LoginCheck::Accepted { source: name },
            Ok(false) => LoginCheck::Refused { source: name },
            Err(e) => LoginCheck::Unavailable {
                source: name,
                reason: e.to_string(),
            },
        })
    }

    /// The groups of an address from its domain's recipient source (empty without one).
    pub async fn groups(&self, address: &str) -> Result<Vec<String>, DirectoryError> {
        let source = domain_of(address)
            .and_then(|d| self.domain(&d).and_then(|s| s.recipients.clone()))
            .and_then(|name| self.source(&name));
        match source {
            Some(s) => s.groups(address).await,
            None => Ok(Vec::new()),
        }
    }

    /// A source by name (`directory test --source`).
    pub fn by_name(&self, name: &str) -> Option<Arc<dyn Directory>> {
        self.source(name)
    }

    /// An LDAP source by name, for where-and-how answers.
    pub fn ldap(&self, name: &str) -> Option<Arc<LdapDirectory>> {
        self.ldap.get(name).cloned()
    }

    /// The name of the recipient source of an address's domain.
    pub fn recipient_source_name(&self, address: &str) -> Option<String> {
        self.domain(&domain_of(address)?)?.recipients.clone()
    }

    /// The name of the login source of a login, `store` when none is set.
    pub fn login_source_name(&self, login: &str) -> String {
        self.login_source(login)
            .map(|s| s.name().to_string())
            .unwrap_or_else(|| STORE_SOURCE.to_string())
    }
}

/// An LDAP source shared between the cache and the where-and-how answers.
struct Shared(Arc<LdapDirectory>);

#[async_trait::async_trait]
impl Directory for Shared {
    fn name(&self) -> &str {
        self.0.name()
    }
    async fn recipient_exists(&self, address: &str) -> Result<bool, DirectoryError> {
        self.0.recipient_exists(address).await
    }
    async fn authenticate(&self, login: &str, password: &str) -> Result<bool, DirectoryError> {
        self.0.authenticate(login, password).await
    }
    async fn groups(&self, address: &str) -> Result<Vec<String>, DirectoryError> {
        self.0.groups(address).await
    }
    async fn display_name(&self, address: &str) -> Result<Option<String>, DirectoryError> {
        self.0.display_name(address).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(on_unavailable: OnUnavailable) -> Directories {
        let mut sources = BTreeMap::new();
        sources.insert(
            "list".to_string(),
            SourceConfig {
                kind: SourceKind::Static,
                addresses: vec!["alice@example.org".into()],
                ..SourceConfig::default()
            },
        );
        sources.insert(
            "down".to_string(),
            SourceConfig {
                servers: vec!["ldap://127.0.0.1:1".into()],
                base_dn: "dc=x".into(),
                connect_timeout_secs: 1,
                timeout_secs: 1,
                ..SourceConfig::default()
            },
        );
        let mut domains = BTreeMap::new();
        domains.insert(
            "Example.org".to_string(),
            DomainConfig {
                recipients: Some("list".into()),
                ..DomainConfig::default()
            },
        );
        domains.insert(
            "*".to_string(),
            DomainConfig {
                recipients: Some("down".into()),
                auth: Some("down".into()),
                on_unavailable,
            },
        );
        Directories::build(&sources, &domains, None).expect("build")
    }

    #[tokio::test]
    async fn per_domain_sources() {
        let dirs = setup(OnUnavailable::Tempfail);
        assert!(dirs.verifies_recipients());
        assert_eq!(
            dirs.check_recipient("Alice@example.org").await,
            RecipientCheck::Known {
                source: "list".into()
            }
        );
        assert_eq!(
            dirs.check_recipient("bob@EXAMPLE.org").await,
            RecipientCheck::Unknown {
                source: "list".into()
            }
        );
        match dirs.check_recipient("bob@other.test").await {
            RecipientCheck::Unavailable { source, accept, .. } => {
                assert_eq!(source, "down");
                assert!(!accept);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            dirs.authenticate("bob", "pw").await,
            Some(LoginCheck::Unavailable { .. })
        ));
        let dirs = setup(OnUnavailable::Accept);
        assert!(matches!(
            dirs.check_recipient("bob@other.test").await,
            RecipientCheck::Unavailable { accept: true, .. }
        ));
        assert_eq!(dirs.login_source_name("alice@example.org"), "store");
    }

    #[tokio::test]
    async fn nothing_configured_checks_nothing() {
        let dirs = Directories::build(&BTreeMap::new(), &BTreeMap::new(), None).expect("b");
        assert!(!dirs.verifies_recipients());
        assert_eq!(
            dirs.check_recipient("a@b.c").await,
            RecipientCheck::NotChecked
        );
        assert!(dirs.authenticate("a@b.c", "x").await.is_none());
    }
}
