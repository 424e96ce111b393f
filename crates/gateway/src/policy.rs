//! Direction and relay control, and the routing of recipient domains. The policy is a
//! snapshot of the store (domains, routes, internal networks), reloaded every few
//! seconds so that CLI changes reach a running gateway without a restart.
//!
//! The rules: a client is *internal* when it authenticated or its address is in an
//! internal network; its mail is outbound and may go anywhere. Everyone else may only
//! send to the configured domains (inbound). Anything else is relaying: `554 5.7.1`.

use crate::checks::Checks;
use crate::filtering::FilterPolicy;
use ipnet::IpNet;
use portcullis_filter::rules::SpamThresholds;
use portcullis_queue::client::TlsMode;
use portcullis_queue::{Destination, RouteHost, Router};
use portcullis_smtp::Reply;
use portcullis_store::{Domain, Store};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub domains: HashMap<String, Domain>,
    pub networks: Vec<IpNet>,
    pub filter: Arc<FilterPolicy>,
    rule_source: Vec<(String, String)>,
    list_source: Vec<portcullis_store::ListEntry>,
    content_source: Vec<portcullis_store::ContentRow>,
    /// Greylisting, DNSBL and FCrDNS: the file's settings with the store's changes.
    pub checks: Arc<Checks>,
    override_source: Vec<portcullis_store::ConfigOverride>,
}

/// The shared, periodically refreshed policy.
#[derive(Clone, Default)]
pub struct Policy {
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    smarthost: Option<Vec<RouteHost>>,
    thresholds: SpamThresholds,
    /// The connection checks as the configuration file sets them.
    file_checks: Arc<Checks>,
}

impl Policy {
    pub fn new(smarthost: Option<RouteHost>, thresholds: SpamThresholds) -> Self {
        let snap = Snapshot {
            filter: Arc::new(FilterPolicy::build(&[], Vec::new(), &[], &thresholds)),
            ..Snapshot::default()
        };
        Policy {
            snapshot: Arc::new(RwLock::new(Arc::new(snap))),
            smarthost: smarthost.map(|h| vec![h]),
            thresholds,
            file_checks: Arc::new(Checks::default()),
        }
    }

    /// The connection checks' settings of the configuration file, under the store's
    /// changes (before the first reload).
    pub fn with_checks(mut self, checks: Checks) -> Self {
        let checks = Arc::new(checks);
        self.file_checks = checks.clone();
        let snap = Snapshot {
            checks,
            ..(*self.current()).clone()
        };
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snap);
        self
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub async fn reload(&self, store: &Store) -> Result<(), portcullis_store::StoreError> {
        let domains = store.list_domains().await?;
        let networks = store.list_networks().await?;
        let rules = store.list_rules().await?;
        let lists = store.list_entries().await?;
        let content = store.list_content_patterns().await?;
        let overrides = store.list_config_overrides().await?;
        let old = self.current();
        let checks = if old.override_source == overrides {
            old.checks.clone()
        } else {
            let (checks, skipped) = self.file_checks.with_overrides(&overrides);
            for (key, reason) in skipped {
                tracing::warn!(key = %key, reason = %reason, "stored setting not applied; the file's value stays");
            }
            for o in overrides
                .iter()
                .filter(|o| !old.override_source.contains(o))
            {
                tracing::info!(key = %format!("{}.{}", o.section, o.key), value = %o.value, by = %o.changed_by, "setting changed in the store");
            }
            for o in &old.override_source {
                if !overrides
                    .iter()
                    .any(|n| n.section == o.section && n.key == o.key)
                {
                    tracing::info!(key = %format!("{}.{}", o.section, o.key), "setting given back to the configuration file");
                }
            }
            Arc::new(checks)
        };
        // Rules are compiled (regexes) only when they changed.
        let filter = if old.rule_source == rules
            && old.list_source == lists
            && old.content_source == content
        {
            old.filter.clone()
        } else {
            Arc::new(FilterPolicy::build(
                &rules,
                lists.clone(),
                &content,
                &self.thresholds,
            ))
        };
        let snap = Snapshot {
            domains: domains.into_iter().map(|d| (d.name.clone(), d)).collect(),
            networks: networks.into_iter().map(|(n, _)| n).collect(),
            filter,
            rule_source: rules,
            list_source: lists,
            content_source: content,
            checks,
            override_source: overrides,
        };
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snap);
        Ok(())
    }

    /// Keep reloading; a failed reload keeps the last good snapshot.
    pub fn spawn_reloader(&self, store: Store, every: Duration) {
        let policy = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = policy.reload(&store).await {
                    tracing::warn!(error = %e, "policy reload failed; keeping the last one");
                }
            }
        });
    }

    pub fn is_internal_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.current().networks.iter().any(|n| n.contains(&ip))
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.current().domains.contains_key(domain)
    }

    /// Decide a recipient. `internal` is the direction: authenticated or internal network.
    pub fn check_recipient(&self, address: &str, internal: bool) -> Result<(), Reply> {
        let (local, domain) = split_address(address)
            .ok_or_else(|| Reply::new(501, "5.1.3", "Bad recipient address syntax"))?;
        if domain.ends_with('.') || domain.starts_with('.') || domain.contains("..") {
            return Err(Reply::new(501, "5.1.3", "Bad recipient address syntax"));
        }
        if !forwardable_local_part(local) {
            return Err(Reply::new(
                553,
                "5.1.3",
                "Recipient address cannot be relayed intact",
            ));
        }
        let domain = domain.to_ascii_lowercase();
        if internal {
            return Ok(());
        }
        // Routing characters in the local part would make the domain's own server relay
        // on (the percent hack, bang paths, user@other@ours): refused for outsiders, as
        // Postfix's allow_untrusted_routing = no does.
        if local.contains(['%', '!', '@']) {
            return Err(Reply::new(554, "5.7.1", "Relay access denied"));
        }
        if self.is_local_domain(&domain) {
            Ok(())
        } else {
            Err(Reply::new(554, "5.7.1", "Relay access denied"))
        }
    }
}

/// The SMTP parser hands us local parts with their quoting removed, so one that needed
/// quotes (spaces, `"`, `<`, `@`, ...) would reach the next hop as a different address:
/// such addresses are refused instead of accepted and bounced later.
pub fn forwardable_local_part(local: &str) -> bool {
    !local.is_empty()
        && !local.chars().any(|c| {
            c.is_control()
                || matches!(
                    c,
                    ' ' | '"' | '\\' | '<' | '>' | '@' | ',' | '(' | ')' | '[' | ']' | ';' | ':'
                )
        })
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) compares as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Split at the last `@` outside a quoted local part. Returns None for addresses with no
/// domain or an empty part.
pub fn split_address(address: &str) -> Option<(&str, &str)> {
    let at = address.rfind('@')?;
    let (local, domain) = (&address[..at], &address[at + 1..]);
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    let literal = domain.starts_with('[') && domain.ends_with(']');
    let valid = literal
        || domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    valid.then_some((local, domain))
}

pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}

pub fn tls_mode(s: &str) -> TlsMode {
    match s {
        "none" => TlsMode::None,
        "encrypt" => TlsMode::Encrypt,
        "verify" => TlsMode::Verify,
        "dane" => TlsMode::Dane,
        _ => TlsMode::May,
    }
}

/// Routes recipient domains: configured domains to their own servers, everything else to
/// the smarthost or by MX.
pub struct PolicyRouter(pub Policy);

impl Router for PolicyRouter {
    fn route(&self, domain: &str) -> Destination {
        let snap = self.0.current();
        if let Some(d) = snap.domains.get(domain)
            && !d.routes.is_empty()
        {
            return Destination::Hosts(
                d.routes
                    .iter()
                    .map(|r| RouteHost {
                        host: r.host.clone(),
                        port: r.port,
                        tls: tls_mode(&r.tls),
                        auth: r.auth_user.clone().zip(r.auth_password.clone()),
                    })
                    .collect(),
            );
        }
        match &self.0.smarthost {
            Some(hosts) => Destination::Hosts(hosts.clone()),
            None => Destination::Mx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let p = Policy::new(None, SpamThresholds::default());
        let mut snap = Snapshot::default();
        snap.domains.insert(
            "example.com".into(),
            Domain {
                name: "example.com".into(),
                routes: vec![],
            },
        );
        snap.networks.push("10.0.0.0/8".parse().expect("net"));
        *p.snapshot.write().expect("lock") = Arc::new(snap);
        p
    }

    #[test]
    fn open_relay_battery() {
        let p = policy();
        let denied = [
            "victim@other.org",
            "victim%other.org@example.com",
            "other.org!victim@example.com",
            "\"victim@other.org\"@example.com",
            "victim@other.org@example.com",
            "user@example.com.",
            "user@example.com..",
            "user@.example.com",
            "user@[127.0.0.1]",
            "user@[IPv6:::1]",
            "user@exаmple.com", // Cyrillic a
            "user@example.com.other.org",
            "user@sub.example.com",
            "user@",
            "@example.com",
            "user",
        ];
        for rcpt in denied {
            let r = p.check_recipient(rcpt, false);
            assert!(r.is_err(), "{rcpt} was accepted");
            let code = r.unwrap_err().code;
            assert!(matches!(code, 501 | 553 | 554), "{rcpt}: {code}");
        }
        for quoted in [
            "\"a b\"@example.com",
            "\"x>y\"@example.com",
            "\"x@y\"@example.com",
        ] {
            // As the parser hands them over: quotes removed.
            let unquoted = quoted.replace('"', "");
            assert_eq!(
                p.check_recipient(&unquoted, true).map_err(|r| r.code),
                Err(553)
            );
        }
        for ok in [
            "user@example.com",
            "User@EXAMPLE.COM",
            "first.last+tag@example.com",
        ] {
            assert!(p.check_recipient(ok, false).is_ok(), "{ok} refused");
        }
        assert!(p.check_recipient("anyone@other.org", true).is_ok());
    }

    #[test]
    fn internal_networks_and_mapped_addresses() {
        let p = policy();
        assert!(p.is_internal_ip("10.1.2.3".parse().expect("ip")));
        assert!(p.is_internal_ip("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!p.is_internal_ip("192.0.2.1".parse().expect("ip")));
    }

    #[test]
    fn host_port() {
        assert_eq!(parse_host_port("mx:25"), Some(("mx".into(), 25)));
        assert_eq!(parse_host_port("[::1]:2525"), Some(("::1".into(), 2525)));
        assert_eq!(parse_host_port("mx"), None);
        assert_eq!(parse_host_port("mx:0"), None);
    }
}
