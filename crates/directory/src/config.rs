//! The directory's settings as `portcullis.toml` spells them: `[directory.NAME]` for each
//! source and `[domain."example.org"]` for which source a domain uses. Filters left unset
//! take the defaults of the source's flavour (OpenLDAP or Active Directory). Reading the
//! file and naming the line of an error is the binary's job; [`validate`] says which key
//! is wrong and why.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What kind of source a `[directory.NAME]` section describes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// An LDAP server (OpenLDAP, any RFC 4511 server) or Active Directory.
    #[default]
    Ldap,
    /// A fixed list of addresses (`addresses`): recipients only.
    Static,
    /// The users of the store (`portcullis user add`).
    Store,
    /// SMTP callout: the domain's own servers (its routes) are asked with MAIL and RCPT,
    /// no DATA. Recipients only.
    Callout,
}

/// The kind of LDAP server: it decides the default filters and how nested groups are
/// found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// OpenLDAP or any RFC 4511 server: nested groups by walking `member`.
    #[default]
    Openldap,
    /// Active Directory (also its Global Catalog, ports 3268/3269): nested groups by
    /// LDAP_MATCHING_RULE_IN_CHAIN, disabled accounts by `userAccountControl`.
    Ad,
}

/// How a login's password is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginMode {
    /// Find the account with `login_filter` (as the service account), then bind as it.
    #[default]
    Search,
    /// Bind directly as `bind_dn_template` with the login put in.
    Bind,
}

/// What a domain's mail meets when its recipient source cannot answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// `451 4.4.3`: the client tries again later.
    #[default]
    Tempfail,
    /// Accept the recipient unverified.
    Accept,
}

/// One `[directory.NAME]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    #[serde(rename = "type")]
    pub kind: SourceKind,
    pub flavour: Flavour,
    /// `ldap://host:port` or `ldaps://host:port`, tried in this order (failover).
    pub servers: Vec<String>,
    /// StartTLS on `ldap://` servers.
    pub starttls: bool,
    /// PEM file of the CA certificates that verify the servers (only these); unset: the
    /// WebPKI roots.
    pub ca_file: Option<PathBuf>,
    /// The service account searches run as; empty: anonymous.
    pub bind_dn: String,
    /// A file whose first line is the service account's password.
    pub bind_password_file: Option<PathBuf>,
    /// An environment variable holding the service account's password.
    pub bind_password_env: Option<String>,
    /// Where searches start.
    pub base_dn: String,
    /// Finds a recipient; `%s` is the address, `%u` its local part, `%d` its domain.
    pub recipient_filter: Option<String>,
    /// Finds the account of a login (`login = "search"`); `%s` is the login as given.
    pub login_filter: Option<String>,
    /// Finds the groups that list a DN as a member (OpenLDAP flavour); `%D` is the DN.
    pub group_filter: Option<String>,
    pub login: LoginMode,
    /// The DN to bind as with `login = "bind"`, e.g. `uid=%u,ou=people,dc=example,dc=org`
    /// (on AD, `%s` binds with the userPrincipalName as given).
    pub bind_dn_template: Option<String>,
    /// The attribute holding a display name.
    pub display_name_attribute: String,
    /// The attribute holding a group's name.
    pub group_name_attribute: String,
    pub connect_timeout_secs: u64,
    /// Seconds one search or bind may take.
    pub timeout_secs: u64,
    /// Seconds a found recipient (and its groups) stays cached; 0: no cache.
    pub cache_ttl_secs: u64,
    /// Seconds an unknown recipient stays cached; 0: not cached.
    pub negative_cache_ttl_secs: u64,
    /// Entries the cache holds at the most.
    pub cache_max_entries: usize,
    /// `type = "static"`: the addresses that exist (`user@domain`).
    pub addresses: Vec<String>,
    /// `type = "callout"`: the MAIL FROM of the probe; empty: the null sender `<>`.
    pub sender: String,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Ldap,
            flavour: Flavour::Openldap,
            servers: Vec::new(),
            starttls: false,
            ca_file: None,
            bind_dn: String::new(),
            bind_password_file: None,
            bind_password_env: None,
            base_dn: String::new(),
            recipient_filter: None,
            login_filter: None,
            group_filter: None,
            login: LoginMode::Search,
            bind_dn_template: None,
            display_name_attribute: "displayName".into(),
            group_name_attribute: "cn".into(),
            connect_timeout_secs: 5,
            timeout_secs: 5,
            cache_ttl_secs: 300,
            negative_cache_ttl_secs: 60,
            cache_max_entries: 50_000,
            addresses: Vec::new(),
            sender: String::new(),
        }
    }
}

impl SourceConfig {
    /// The recipient filter, or the flavour's default.
    pub fn recipient_filter(&self) -> &str {
        match (&self.recipient_filter, self.flavour) {
            (Some(f), _) => f,
            (None, Flavour::Openldap) => "(|(mail=%s)(mailLocalAddress=%s))",
            (None, Flavour::Ad) => "(|(mail=%s)(proxyAddresses=smtp:%s))",
        }
    }

    /// The login filter, or the flavour's default.
    pub fn login_filter(&self) -> &str {
        match (&self.login_filter, self.flavour) {
            (Some(f), _) => f,
            (None, Flavour::Openldap) => "(|(uid=%s)(mail=%s))",
            (None, Flavour::Ad) => {
                "(&(objectClass=user)(|(userPrincipalName=%s)(sAMAccountName=%s)))"
            }
        }
    }

    /// The filter that finds the groups listing `%D` as a member: on AD every group up
    /// the chain at once (LDAP_MATCHING_RULE_IN_CHAIN); elsewhere the direct groups, walked
    /// upwards by the caller.
    pub fn group_filter(&self) -> &str {
        match (&self.group_filter, self.flavour) {
            (Some(f), _) => f,
            (None, Flavour::Openldap) => "(|(member=%D)(uniqueMember=%D))",
            (None, Flavour::Ad) => "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=%D))",
        }
    }
}

/// One `[domain."example.org"]` section (`"*"`: every domain without one of its own, and
/// logins without a domain).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainConfig {
    /// The source that says which recipients exist; unset: not verified (beyond the
    /// valid-recipient lists).
    pub recipients: Option<String>,
    /// The source that checks SMTP AUTH logins of this domain; unset: the store's users.
    pub auth: Option<String>,
    pub on_unavailable: OnUnavailable,
}

/// A settings error: the key it is about (as written in the file) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: &'static str,
    pub message: String,
}

fn problem(key: &'static str, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        key,
        message: message.into(),
    }
}

/// Check the sources and the domains that name them.
pub fn validate(
    sources: &BTreeMap<String, SourceConfig>,
    domains: &BTreeMap<String, DomainConfig>,
) -> Result<(), ConfigProblem> {
    for (name, s) in sources {
        match s.kind {
            SourceKind::Ldap => validate_ldap(name, s)?,
            SourceKind::Static => {
                if let Some(bad) = s.addresses.iter().find(|a| !is_address(a)) {
                    return Err(problem(
                        "addresses",
                        format!("[directory.{name}]: `{bad}` is not an address user@domain"),
                    ));
                }
            }
            SourceKind::Store => {}
            SourceKind::Callout => {
                if !s.sender.is_empty() && !is_address(&s.sender) {
                    return Err(problem(
                        "sender",
                        format!(
                            "[directory.{name}]: `{}` is not an address user@domain",
                            s.sender
                        ),
                    ));
                }
                if s.timeout_secs == 0 || s.connect_timeout_secs == 0 {
                    return Err(problem(
                        "timeout_secs",
                        format!("[directory.{name}]: timeouts must be at least 1"),
                    ));
                }
            }
        }
    }
    for (domain, d) in domains {
        for (key, source) in [("recipients", &d.recipients), ("auth", &d.auth)] {
            let Some(source) = source else { continue };
            let Some(s) = sources.get(source) else {
                if key == "auth" && source == "store" {
                    continue;
                }
                return Err(problem(
                    key,
                    format!("[domain.\"{domain}\"]: no [directory.{source}] section"),
                ));
            };
            if key == "auth" && matches!(s.kind, SourceKind::Static | SourceKind::Callout) {
                return Err(problem(
                    "auth",
                    format!(
                        "[domain.\"{domain}\"]: [directory.{source}] cannot check passwords (a static list or callout)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn validate_ldap(name: &str, s: &SourceConfig) -> Result<(), ConfigProblem> {
    let at = |m: String| format!("[directory.{name}]: {m}");
    if s.servers.is_empty() {
        return Err(problem(
            "servers",
            at("give at least one server, e.g. [\"ldaps://ldap.example.org\"]".into()),
        ));
    }
    for url in &s.servers {
        let scheme_ok = url.starts_with("ldap://") || url.starts_with("ldaps://");
        if !scheme_ok {
            return Err(problem(
                "servers",
                at(format!("`{url}` is not an ldap:// or ldaps:// URL")),
            ));
        }
        if s.starttls && url.starts_with("ldaps://") {
            return Err(problem(
                "starttls",
                at(format!(
                    "`{url}` is already TLS (ldaps://): no StartTLS on it"
                )),
            ));
        }
    }
    if s.base_dn.trim().is_empty() {
        return Err(problem("base_dn", at("set the base DN of searches".into())));
    }
    if !s.bind_dn.is_empty() && s.bind_password_file.is_none() && s.bind_password_env.is_none() {
        return Err(problem(
            "bind_dn",
            at("give the password with bind_password_file or bind_password_env".into()),
        ));
    }
    if s.bind_password_file.is_some() && s.bind_password_env.is_some() {
        return Err(problem(
            "bind_password_env",
            at("give bind_password_file or bind_password_env, not both".into()),
        ));
    }
    if let Some(file) = &s.bind_password_file
        && !file.is_file()
    {
        return Err(problem(
            "bind_password_file",
            at(format!("{} is not a file", file.display())),
        ));
    }
    if let Some(ca) = &s.ca_file
        && !ca.is_file()
    {
        return Err(problem(
            "ca_file",
            at(format!("{} is not a file", ca.display())),
        ));
    }
    if s.login == LoginMode::Bind && s.bind_dn_template.is_none() {
        return Err(problem(
            "bind_dn_template",
            at(
                "login = \"bind\" needs bind_dn_template, e.g. uid=%u,ou=people,dc=example,dc=org"
                    .into(),
            ),
        ));
    }
    for (key, filter) in [
        ("recipient_filter", s.recipient_filter()),
        ("login_filter", s.login_filter()),
        ("group_filter", s.group_filter()),
    ] {
        if !balanced(filter) {
            return Err(problem(
                key,
                at(format!("`{filter}` is not a filter in parentheses")),
            ));
        }
    }
    if s.timeout_secs == 0 || s.connect_timeout_secs == 0 {
        return Err(problem(
            "timeout_secs",
            at("timeouts must be at least 1".into()),
        ));
    }
    if s.cache_max_entries == 0 && (s.cache_ttl_secs > 0 || s.negative_cache_ttl_secs > 0) {
        return Err(problem(
            "cache_max_entries",
            at("must be at least 1 while a cache TTL is set".into()),
        ));
    }
    Ok(())
}

fn is_address(a: &str) -> bool {
    a.rsplit_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !a.contains(char::is_whitespace))
}

/// A filter in parentheses whose parentheses pair up (RFC 4515 escapes them as `\28`
/// and `\29`, so every literal one counts).
fn balanced(filter: &str) -> bool {
    let filter = filter.trim();
    if !(filter.starts_with('(') && filter.ends_with(')')) {
        return false;
    }
    let mut depth = 0i32;
    for c in filter.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ldap() -> SourceConfig {
        SourceConfig {
            servers: vec!["ldap://127.0.0.1:389".into()],
            base_dn: "dc=example,dc=org".into(),
            ..SourceConfig::default()
        }
    }

    #[test]
    fn flavour_defaults() {
        let mut s = ldap();
        assert_eq!(s.recipient_filter(), "(|(mail=%s)(mailLocalAddress=%s))");
        s.flavour = Flavour::Ad;
        assert_eq!(s.recipient_filter(), "(|(mail=%s)(proxyAddresses=smtp:%s))");
        assert!(s.group_filter().contains("1.2.840.113556.1.4.1941"));
        assert!(s.login_filter().contains("sAMAccountName=%s"));
        assert!(s.login_filter().contains("userPrincipalName=%s"));
    }

    #[test]
    fn problems_name_the_key() {
        let mut sources = BTreeMap::new();
        let mut s = ldap();
        s.servers = vec!["http://x".into()];
        sources.insert("corp".to_string(), s);
        let e = validate(&sources, &BTreeMap::new()).unwrap_err();
        assert_eq!(e.key, "servers");
        let mut s = ldap();
        s.bind_dn = "cn=svc".into();
        sources.insert("corp".to_string(), s);
        assert_eq!(
            validate(&sources, &BTreeMap::new()).unwrap_err().key,
            "bind_dn"
        );
        let mut s = ldap();
        s.recipient_filter = Some("mail=%s".into());
        sources.insert("corp".to_string(), s);
        let e = validate(&sources, &BTreeMap::new()).unwrap_err();
        assert_eq!(e.key, "recipient_filter");
        sources.insert("corp".to_string(), ldap());
        let mut domains = BTreeMap::new();
        domains.insert(
            "example.org".to_string(),
            DomainConfig {
                recipients: Some("nope".into()),
                ..DomainConfig::default()
            },
        );
        assert_eq!(validate(&sources, &domains).unwrap_err().key, "recipients");
        sources.insert(
            "list".to_string(),
            SourceConfig {
                kind: SourceKind::Static,
                addresses: vec!["a@example.org".into()],
                ..SourceConfig::default()
            },
        );
        domains.insert(
            "example.org".to_string(),
            DomainConfig {
                auth: Some("list".into()),
                ..DomainConfig::default()
            },
        );
        assert_eq!(validate(&sources, &domains).unwrap_err().key, "auth");
    }

    #[test]
    fn filters_must_balance() {
        assert!(balanced("(|(mail=%s)(uid=%u))"));
        assert!(balanced("(cn=a\\29b)"));
        assert!(!balanced("(mail=%s"));
        assert!(!balanced("mail=%s"));
        assert!(!balanced("(a))("));
    }
}
