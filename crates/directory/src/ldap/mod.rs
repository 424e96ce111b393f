//! LDAP and Active Directory (`type = "ldap"`): searches as a service account over one
//! shared connection per server (LDAP multiplexes requests on a connection, so one is the
//! pool), logins checked by a bind of their own on a fresh connection (a bind changes a
//! connection's identity, so the shared one never binds as a user).
//!
//! Servers are tried in the order given: a server that cannot be reached, times out or
//! answers with an error hands the question to the next one; a cached connection that
//! died is reconnected once first. Only when every server failed is the source
//! [`DirectoryError::Unavailable`]. Plain `ldap://`, StartTLS and `ldaps://` all verify
//! the server's certificate against `ca_file` (or the WebPKI roots); there is no
//! setting that turns verification off.

pub mod filter;

use crate::config::{Flavour, LoginMode, SourceConfig};
use crate::{Directory, DirectoryError};
use async_trait::async_trait;
use filter::{Target, expand};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// `userAccountControl` bit ACCOUNTDISABLE (Active Directory).
const ACCOUNT_DISABLED: i64 = 0x2;
/// Nested groups are followed this many levels up at the most (OpenLDAP member walk).
const MAX_GROUP_DEPTH: usize = 16;
/// Groups of one address at the most.
const MAX_GROUPS: usize = 1000;

pub struct LdapDirectory {
    name: String,
    cfg: SourceConfig,
    bind_password: String,
    tls: Arc<rustls::ClientConfig>,
    /// The service connection of each server, made on first use.
    connections: Vec<Mutex<Option<Ldap>>>,
    /// Until when a server that could not be connected to is passed over, so that the
    /// questions queued behind it do not each wait out its connect timeout.
    down_until: Vec<std::sync::Mutex<Option<Instant>>>,
}

/// What a search found, and where it asked.
#[derive(Debug, Clone)]
pub struct Answer {
    pub server: String,
    pub base: String,
    pub filter: String,
    /// DN and display name of each entry found.
    pub entries: Vec<(String, Option<String>)>,
    pub took: Duration,
}

/// How a login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Accepted,
    WrongPassword,
    NoAccount,
    /// The login filter found more than one account: refused, whichever is meant.
    Ambiguous,
    /// `userAccountControl` has ACCOUNTDISABLE set.
    Disabled,
}

/// A login check, and where it asked.
#[derive(Debug, Clone)]
pub struct LoginAnswer {
    pub server: String,
    /// The filter searched (`login = "search"`) or the DN bound as (`"bind"`).
    pub filter: String,
    pub dn: Option<String>,
    pub outcome: LoginOutcome,
    pub took: Duration,
}

impl LdapDirectory {
    /// A source from its settings: the service password read, the TLS roots loaded.
    /// Nothing is connected yet.
    pub fn new(name: &str, cfg: &SourceConfig) -> Result<Self, DirectoryError> {
        let config_err = |m: String| DirectoryError::Config(format!("[directory.{name}]: {m}"));
        let bind_password = match (&cfg.bind_password_file, &cfg.bind_password_env) {
            (Some(file), _) => std::fs::read_to_string(file)
                .map_err(|e| config_err(format!("bind_password_file {}: {e}", file.display())))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                config_err(format!(
                    "bind_password_env: the environment variable {var} is not set"
                ))
            })?,
            (None, None) => String::new(),
        };
        if !cfg.bind_dn.is_empty() && bind_password.is_empty() {
            return Err(config_err(
                "the service account's password is empty (an empty password would be an \
                 unauthenticated bind)"
                    .into(),
            ));
        }
        let tls = tls_config(cfg).map_err(config_err)?;
        Ok(LdapDirectory {
            name: name.to_string(),
            cfg: cfg.clone(),
            bind_password,
            tls: Arc::new(tls),
            connections: cfg.servers.iter().map(|_| Mutex::new(None)).collect(),
            down_until: cfg
                .servers
                .iter()
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.timeout_secs)
    }

    /// A new connection to server `i`, TLS as configured, not bound. A server that could
    /// not be reached is passed over for `connect_timeout_secs` after the failure.
    async fn connect(&self, i: usize) -> Result<Ldap, String> {
        let connect_timeout = Duration::from_secs(self.cfg.connect_timeout_secs);
        {
            let mut down = self.down_until[i].lock().unwrap_or_else(|p| p.into_inner());
            match *down {
                Some(until) if Instant::now() < until => {
                    return Err("passed over after a failed connection a moment ago".into());
                }
                Some(_) => *down = None,
                None => {}
            }
        }
        let result = self.connect_now(i, connect_timeout).await;
        if result.is_err() {
            *self.down_until[i].lock().unwrap_or_else(|p| p.into_inner()) =
                Some(Instant::now() + connect_timeout);
        }
        result
    }

    async fn connect_now(&self, i: usize, connect_timeout: Duration) -> Result<Ldap, String> {
        let url = &self.cfg.servers[i];
        let settings = LdapConnSettings::new()
            .set_conn_timeout(connect_timeout)
            .set_starttls(self.cfg.starttls)
            .set_config(self.tls.clone());
        // The connect timeout covers TCP; the whole (with TLS and StartTLS) gets twice it.
        let (conn, ldap) = tokio::time::timeout(
            connect_timeout * 2,
            LdapConnAsync::with_settings(settings, url),
        )
        .await
        .map_err(|_| format!("no connection within {}s", connect_timeout.as_secs() * 2))?
        .map_err(|e| format!("cannot connect: {e}"))?;
        let source = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(directory = %source, error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// The service connection of server `i` (bound as `bind_dn`), and whether it was
    /// reused rather than made now.
    async fn service(&self, i: usize) -> Result<(Ldap, bool), String> {
        let mut slot = self.connections[i].lock().await;
        if let Some(ldap) = slot.as_mut()
            && !ldap.is_closed()
        {
            return Ok((ldap.clone(), true));
        }
        *slot = None;
        let mut ldap = self.connect(i).await?;
        if !self.cfg.bind_dn.is_empty() {
            let result = ldap
                .with_timeout(self.timeout())
                .simple_bind(&self.cfg.bind_dn, &self.bind_password)
                .await
                .map_err(|e| format!("service bind: {e}"))?;
            if result.rc != 0 {
                return Err(format!(
                    "service bind as {} refused: {} {}",
                    self.cfg.bind_dn, result.rc, result.text
                ));
            }
        }
        *slot = Some(ldap.clone());
        Ok((ldap, false))
    }

    async fn forget(&self, i: usize) {
        *self.connections[i].lock().await = None;
    }

    /// A subtree search under `base_dn`, on the first server that answers: the server
    /// and the entries.
    async fn search(
        &self,
        filter: &str,
        attrs: &[&str],
    ) -> Result<(usize, Vec<SearchEntry>), DirectoryError> {
        let mut last = String::from("no server");
        for i in 0..self.cfg.servers.len() {
            let url = &self.cfg.servers[i];
            loop {
                let (mut ldap, reused) = match self.service(i).await {
                    Ok(c) => c,
                    Err(e) => {
                        last = format!("{url}: {e}");
                        break;
                    }
                };
                let result = ldap
                    .with_search_options(SearchOptions::new().sizelimit(MAX_GROUPS as i32))
                    .with_timeout(self.timeout())
                    .search(&self.cfg.base_dn, Scope::Subtree, filter, attrs.to_vec())
                    .await;
                match result {
                    // 4: sizeLimitExceeded, with the entries up to the limit.
                    Ok(ldap3::SearchResult(entries, res)) if res.rc == 0 || res.rc == 4 => {
                        let entries = entries
                            .into_iter()
                            .filter(|e| !e.is_ref() && !e.is_intermediate())
                            .map(SearchEntry::construct)
                            .collect();
                        return Ok((i, entries));
                    }
                    Ok(ldap3::SearchResult(_, res)) => {
                        last = format!("{url}: search refused: {} {}", res.rc, res.text);
                        break;
                    }
                    Err(e) => {
                        self.forget(i).await;
                        last = format!("{url}: {e}");
                        // A reused connection may have died in the meantime: once more on
                        // a new one before the next server.
                        if !reused {
                            break;
                        }
                    }
                }
            }
            tracing::warn!(directory = %self.name, error = %last, "LDAP server failed, trying the next");
        }
        Err(DirectoryError::unavailable(&self.name, last))
    }

    /// The entries the recipient filter finds for an address.
    pub async fn find_recipient(&self, address: &str) -> Result<Answer, DirectoryError> {
        let started = Instant::now();
        let filter = expand(self.cfg.recipient_filter(), address, "", Target::Filter);
        let attr = self.cfg.display_name_attribute.as_str();
        let (i, entries) = self.search(&filter, &[attr]).await?;
        Ok(Answer {
            server: self.cfg.servers[i].clone(),
            base: self.cfg.base_dn.clone(),
            filter,
            entries: entries
                .into_iter()
                .map(|e| {
                    let name = first(&e, attr);
                    (e.dn, name)
                })
                .collect(),
            took: started.elapsed(),
        })
    }

    /// Check a login, saying where and how.
    pub async fn check_login(
        &self,
        login: &str,
        password: &str,
    ) -> Result<LoginAnswer, DirectoryError> {
        let started = Instant::now();
        let answer = |server: usize, filter: String, dn: Option<String>, outcome| LoginAnswer {
            server: self.cfg.servers[server].clone(),
            filter,
            dn,
            outcome,
            took: started.elapsed(),
        };
        // An empty password would make a simple bind unauthenticated, which servers
        // answer with success (RFC 4513 §5.1.2).
        if password.is_empty() || login.is_empty() {
            return Ok(answer(0, String::new(), None, LoginOutcome::WrongPassword));
        }
        let (first_server, filter, dn) = match self.cfg.login {
            LoginMode::Bind => {
                let template = self.cfg.bind_dn_template.as_deref().unwrap_or("%s");
                let dn = expand(template, login, "", Target::Dn);
                (0, dn.clone(), dn)
            }
            LoginMode::Search => {
                let filter = expand(self.cfg.login_filter(), login, "", Target::Filter);
                let (i, entries) = self.search(&filter, &["userAccountControl"]).await?;
                match entries.as_slice() {
                    [] => return Ok(answer(i, filter, None, LoginOutcome::NoAccount)),
                    [entry] => {
                        if disabled(entry) {
                            let dn = Some(entry.dn.clone());
                            return Ok(answer(i, filter, dn, LoginOutcome::Disabled));
                        }
                        (i, filter, entry.dn.clone())
                    }
                    _ => return Ok(answer(i, filter, None, LoginOutcome::Ambiguous)),
                }
            }
        };
        let mut last = String::from("no server");
        let servers = self.cfg.servers.len();
        for i in (first_server..servers).chain(0..first_server) {
            match self.user_bind(i, &dn, password).await {
                Ok(ok) => {
                    let outcome = if ok {
                        LoginOutcome::Accepted
                    } else {
                        LoginOutcome::WrongPassword
                    };
                    return Ok(answer(i, filter, Some(dn), outcome));
                }
                Err(e) => last = format!("{}: {e}", self.cfg.servers[i]),
            }
        }
        Err(DirectoryError::unavailable(&self.name, last))
    }

    /// A simple bind as `dn` on a connection of its own: Ok(false) when the server says
    /// the credentials are wrong, Err when it could not say.
    async fn user_bind(&self, i: usize, dn: &str, password: &str) -> Result<bool, String> {
        let mut ldap = self.connect(i).await?;
        let result = ldap
            .with_timeout(self.timeout())
            .simple_bind(dn, password)
            .await;
        let _ = ldap.unbind().await;
        match result {
            Ok(r) if r.rc == 0 => Ok(true),
            // invalidCredentials, inappropriateAuthentication, insufficientAccessRights,
            // unwillingToPerform (a locked account), noSuchObject, invalidDNSyntax.
            Ok(r) if matches!(r.rc, 49 | 48 | 50 | 53 | 32 | 34) => Ok(false),
            Ok(r) => Err(format!("bind: {} {}", r.rc, r.text)),
            Err(e) => Err(format!("bind: {e}")),
        }
    }

    /// The DN of an address's entry, when the recipient filter finds exactly one.
    async fn dn_of(&self, address: &str) -> Result<Option<String>, DirectoryError> {
        let filter = expand(self.cfg.recipient_filter(), address, "", Target::Filter);
        let (_, entries) = self.search(&filter, &["1.1"]).await?;
        Ok(match entries.as_slice() {
            [entry] => Some(entry.dn.clone()),
            _ => None,
        })
    }

    /// The names of the groups a DN is in, nested ones included.
    pub async fn groups_of_dn(&self, dn: &str) -> Result<Vec<String>, DirectoryError> {
        let attr = self.cfg.group_name_attribute.as_str();
        let mut names = Vec::new();
        match self.cfg.flavour {
            // The server follows the chain itself.
            Flavour::Ad => {
                let filter = expand(self.cfg.group_filter(), "", dn, Target::Filter);
                let (_, entries) = self.search(&filter, &[attr]).await?;
                names.extend(entries.iter().filter_map(|e| first(e, attr)));
            }
            // Walk `member` upwards, level by level; a loop of groups ends at the visited.
            Flavour::Openldap => {
                let mut seen = std::collections::HashSet::new();
                let mut level = vec![dn.to_string()];
                for _ in 0..MAX_GROUP_DEPTH {
                    let mut next = Vec::new();
                    for member in &level {
                        let filter = expand(self.cfg.group_filter(), "", member, Target::Filter);
                        let (_, entries) = self.search(&filter, &[attr]).await?;
                        for e in entries {
                            if seen.insert(e.dn.to_ascii_lowercase()) {
                                names.extend(first(&e, attr));
                                next.push(e.dn);
                            }
                        }
                        if seen.len() >= MAX_GROUPS {
                            break;
                        }
                    }
                    if next.is_empty() || seen.len() >= MAX_GROUPS {
                        break;
                    }
                    level = next;
                }
            }
        }
        names.sort_by_key(|n| n.to_ascii_lowercase());
        names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        Ok(names)
    }
}

#[async_trait]
impl Directory for LdapDirectory {
    fn name(&self) -> &str {
        &self.name
    }

    async fn recipient_exists(&self, address: &str) -> Result<bool, DirectoryError> {
        Ok(!self.find_recipient(address).await?.entries.is_empty())
    }

    async fn authenticate(&self, login: &str, password: &str) -> Result<bool, DirectoryError> {
        let answer = self.check_login(login, password).await?;
        if answer.outcome != LoginOutcome::Accepted {
            tracing::info!(
                directory = %self.name,
                server = %answer.server,
                login,
                outcome = ?answer.outcome,
                "login refused by the directory"
            );
        }
        Ok(answer.outcome == LoginOutcome::Accepted)
    }

    async fn groups(&self, address: &str) -> Result<Vec<String>, DirectoryError> {
        match self.dn_of(address).await? {
            Some(dn) => self.groups_of_dn(&dn).await,
            None => Ok(Vec::new()),
        }
    }

    async fn display_name(&self, address: &str) -> Result<Option<String>, DirectoryError> {
        let answer = self.find_recipient(address).await?;
        Ok(answer.entries.into_iter().find_map(|(_, name)| name))
    }
}

/// The first value of an attribute.
fn first(entry: &SearchEntry, attr: &str) -> Option<String> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first().cloned())
}

/// `userAccountControl` says the account is disabled.
fn disabled(entry: &SearchEntry) -> bool {
    first(entry, "userAccountControl")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .is_some_and(|flags| flags & ACCOUNT_DISABLED != 0)
}

/// rustls on aws-lc-rs verifying against `ca_file` (its certificates only) or the WebPKI
/// roots.
fn tls_config(cfg: &SourceConfig) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect())
                .map_err(|e| {
                    format!(
                        "ca_file {}: not a PEM certificate file: {e}",
                        path.display()
                    )
                })?;
            if certs.is_empty() {
                return Err(format!("ca_file {}: no certificate in it", path.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(attrs: &[(&str, &str)]) -> SearchEntry {
        SearchEntry {
            dn: "cn=x".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                .collect::<HashMap<_, _>>(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn disabled_accounts() {
        assert!(disabled(&entry(&[("userAccountControl", "514")])));
        assert!(disabled(&entry(&[("useraccountcontrol", "2")])));
        assert!(!disabled(&entry(&[("userAccountControl", "512")])));
        assert!(!disabled(&entry(&[("userAccountControl", "junk")])));
        assert!(!disabled(&entry(&[])));
    }

    #[tokio::test]
    async fn down_is_unavailable_never_unknown() {
        // A loopback port where nothing listens.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let cfg = SourceConfig {
            servers: vec![
                format!("ldap://127.0.0.1:{port}"),
                format!("ldap://127.0.0.1:{port}"),
            ],
            base_dn: "dc=example,dc=org".into(),
            connect_timeout_secs: 1,
            timeout_secs: 1,
            ..SourceConfig::default()
        };
        let dir = LdapDirectory::new("corp", &cfg).expect("source");
        let e = dir.recipient_exists("a@example.org").await.unwrap_err();
        assert!(matches!(e, DirectoryError::Unavailable { .. }), "{e}");
        let e = dir.authenticate("a", "pw").await.unwrap_err();
        assert!(matches!(e, DirectoryError::Unavailable { .. }), "{e}");
        // No password: refused before any server is asked.
        assert!(!dir.authenticate("a", "").await.expect("refused"));
        // The failed servers are passed over for a while: the next question fails at once.
        let started = Instant::now();
        assert!(dir.recipient_exists("b@example.org").await.is_err());
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
