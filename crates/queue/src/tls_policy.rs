//! Which transport security one delivery to one host gets: DANE when the host has
//! DNSSEC-validated TLSA records, else the domain's MTA-STS policy, else opportunistic
//! TLS (RFC 8461 §2: DANE takes precedence); for configured routes and the smarthost,
//! the route's own mode, where `dane` requires DANE. The rules are a pure function
//! ([`decide`]) so that precedence is tested without a network; [`TransportSecurity`]
//! holds the state (policy cache, validating resolver) and the result counters kept for
//! TLS reporting (RFC 8460).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use portcullis_smtp::Reply;

use crate::client::{TlsConfigs, TlsMode};
use crate::dane::{Dane, DaneLookup, Tlsa};
use crate::mta_sts::{Found, HttpsSource, Mode, MtaSts, StsCache};
use crate::mx::TokioResolver;

/// What DANE says about one host, as far as the decision goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaneStatus {
    /// Usable validated TLSA records, and the names the certificate may carry.
    Usable(Vec<Tlsa>, Vec<String>),
    /// Validated TLSA records exist but none is usable: TLS without authentication. The
    /// names are as in `Usable` (the TLSA base domain first).
    Unusable(Vec<String>),
    /// DANE does not apply to this host (reason for the log).
    NotApplicable(String),
    /// The lookups failed or did not validate: the host must not be used now.
    Failed(String),
    /// DANE is turned off, or validation is impossible through our nameservers.
    Off(String),
}

impl From<&DaneLookup> for DaneStatus {
    fn from(l: &DaneLookup) -> Self {
        match l {
            DaneLookup::Secure { records, names, .. } if records.is_empty() => {
                DaneStatus::Unusable(names.clone())
            }
            DaneLookup::Secure { records, names, .. } => {
                DaneStatus::Usable(records.clone(), names.clone())
            }
            DaneLookup::NotApplicable(why) => DaneStatus::NotApplicable(why.clone()),
            DaneLookup::Failed(why) => DaneStatus::Failed(why.clone()),
        }
    }
}

/// Where the host came from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// An MX host of the recipient domain, with the domain's MTA-STS policy if any.
    Mx { sts: Option<&'a Found> },
    /// A configured route or the smarthost, with its TLS mode.
    Route(TlsMode),
}

/// How to connect to one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// STARTTLS required, the certificate must match these TLSA records (and, for
    /// DANE-TA, carry one of these names).
    Dane(Vec<Tlsa>, Vec<String>),
    /// MTA-STS `enforce`: STARTTLS required, WebPKI certificate valid for the host.
    StsEnforce,
    /// MTA-STS `testing`: as `enforce`, but a failure is logged and the message goes out
    /// anyway with opportunistic TLS. `listed` is false when the host is not among the
    /// policy's MX patterns (also only logged).
    StsTesting { listed: bool },
    /// A plain mode: opportunistic (`may`), or a route's configured mode.
    Mode(TlsMode),
}

impl Security {
    /// A short label for logs and the connection pool key.
    pub fn label(&self) -> &'static str {
        match self {
            Security::Dane(..) => "dane",
            Security::StsEnforce => "mta-sts-enforce",
            Security::StsTesting { .. } => "mta-sts-testing",
            Security::Mode(TlsMode::None) => "none",
            Security::Mode(TlsMode::May) => "may",
            Security::Mode(TlsMode::Encrypt) => "encrypt",
            Security::Mode(TlsMode::Verify) => "verify",
            Security::Mode(TlsMode::Dane) => "dane",
        }
    }
}

/// The decision for one host: connect with `Security`, or skip the host with a
/// (transient) reply that explains why. `why` is for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Connect { security: Security, why: String },
    Skip { reply: Reply, why: String },
}

fn skip(text: String) -> Decision {
    Decision::Skip {
        reply: Reply::new(451, "4.7.5", text.clone()),
        why: text,
    }
}

/// The precedence rules (RFC 8461 §2, RFC 7672 §2.2).
pub fn decide(host: &str, origin: Origin<'_>, dane: &DaneStatus) -> Decision {
    let connect = |security, why: String| Decision::Connect { security, why };
    match origin {
        Origin::Route(TlsMode::Dane) => match dane {
            DaneStatus::Usable(records, names) => connect(
                Security::Dane(records.clone(), names.clone()),
                format!("DANE required by the route; {} usable TLSA records", records.len()),
            ),
            DaneStatus::Unusable(_) => connect(
                Security::Mode(TlsMode::Encrypt),
                "DANE required by the route; TLSA records exist but none is usable, so TLS is mandatory without authentication".into(),
            ),
            DaneStatus::NotApplicable(why) | DaneStatus::Off(why) => {
                skip(format!("DANE required for {host} but not available: {why}"))
            }
            DaneStatus::Failed(why) => skip(format!("DANE lookup for {host} failed: {why}")),
        },
        Origin::Route(mode) => connect(Security::Mode(mode), "route's TLS mode".into()),
        Origin::Mx { sts } => {
            match dane {
                DaneStatus::Usable(records, names) => {
                    return connect(
                        Security::Dane(records.clone(), names.clone()),
                        format!("DANE: {} usable TLSA records", records.len()),
                    );
                }
                DaneStatus::Unusable(_) => {
                    return connect(
                        Security::Mode(TlsMode::Encrypt),
                        "DANE: TLSA records exist but none is usable; TLS is mandatory without authentication".into(),
                    );
                }
                DaneStatus::Failed(why) => {
                    return skip(format!("DANE: {why}"));
                }
                DaneStatus::NotApplicable(_) | DaneStatus::Off(_) => {}
            }
            let dane_note = match dane {
                DaneStatus::NotApplicable(why) | DaneStatus::Off(why) => format!("no DANE ({why})"),
                _ => String::new(),
            };
            match sts {
                Some(found) if found.policy.mode == Mode::Enforce => {
                    if found.policy.matches(host) {
                        connect(
                            Security::StsEnforce,
                            format!("{dane_note}; MTA-STS enforce (policy id {})", found.id),
                        )
                    } else {
                        skip(format!(
                            "MTA-STS enforce: {host} does not match the policy's mx patterns ({})",
                            found.policy.mx.join(", ")
                        ))
                    }
                }
                Some(found) if found.policy.mode == Mode::Testing => {
                    let listed = found.policy.matches(host);
                    connect(
                        Security::StsTesting { listed },
                        format!("{dane_note}; MTA-STS testing (policy id {})", found.id),
                    )
                }
                Some(found) => connect(
                    Security::Mode(TlsMode::May),
                    format!("{dane_note}; MTA-STS policy mode none (id {}): opportunistic TLS", found.id),
                ),
                None => connect(
                    Security::Mode(TlsMode::May),
                    format!("{dane_note}; no MTA-STS policy: opportunistic TLS"),
                ),
            }
        }
    }
}

/// Why MTA-STS or DANE, turned on in the settings, could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("MTA-STS: {0}")]
    MtaSts(#[source] crate::mta_sts::HttpsClientError),
    #[error("DANE: {0}")]
    Dane(#[source] crate::dane::DaneSetupError),
}

/// RFC 8460 result types we count.
pub fn failure_kind(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if e.contains("does not offer starttls") || e.contains("starttls refused") {
        "starttls-not-supported"
    } else if e.contains("notvalidforname") || e.contains("not valid for") {
        "certificate-host-mismatch"
    } else if e.contains("expired") {
        "certificate-expired"
    } else if e.contains("unknownissuer") || e.contains("unknown issuer") {
        "certificate-not-trusted"
    } else if e.contains("tlsa") || e.contains("dane") {
        "tlsa-invalid"
    } else {
        "validation-failure"
    }
}

/// The RFC 8460 result type for an MTA-STS policy that was announced (TXT record) but
/// could not be had, from [`MtaSts::policy`]'s reason; None when no policy was announced.
pub fn sts_failure_kind(why: &str) -> Option<&'static str> {
    let rest = why.strip_prefix("policy fetch failed: ")?;
    let lower = rest.to_ascii_lowercase();
    Some(if rest.starts_with("invalid policy") {
        "sts-policy-invalid"
    } else if lower.contains("certificate") || lower.contains("unknownissuer") {
        "sts-webpki-invalid"
    } else {
        "sts-policy-fetch-error"
    })
}

/// The lines of an MTA-STS policy as TLS-RPT's `policy-string` lists them (RFC 8460
/// §4.4), rebuilt from the parsed policy: fields the parser ignored are not repeated.
pub fn sts_policy_lines(policy: &crate::mta_sts::Policy) -> Vec<String> {
    let mut lines = vec![
        "version: STSv1".to_string(),
        format!("mode: {}", policy.mode.as_str()),
    ];
    lines.extend(policy.mx.iter().map(|m| format!("mx: {m}")));
    lines.push(format!("max_age: {}", policy.max_age));
    lines
}

/// A TLSA record in presentation form: `3 1 1 <hex>`.
pub fn tlsa_string(t: &Tlsa) -> String {
    let hex: String = t.data.iter().map(|b| format!("{b:02x}")).collect();
    format!("{} {} {} {hex}", t.usage, t.selector, t.matching)
}

/// Longest policy string list kept per result (a policy with more lines is cut), so
/// that a hostile policy cannot grow the counters or the store's keys without bound.
const MAX_POLICY_STRINGS: usize = 32;
/// Longest single policy string or host name kept.
const MAX_STRING_LEN: usize = 255;
/// Distinct keys the counters hold between two flushes; more are dropped (and logged).
const MAX_KEYS: usize = 50_000;

fn bounded(items: impl IntoIterator<Item = String>) -> Vec<String> {
    items
        .into_iter()
        .take(MAX_POLICY_STRINGS)
        .map(|s| s.chars().take(MAX_STRING_LEN).collect())
        .collect()
}

/// The policy applied to a TLS session, as TLS-RPT reports it (RFC 8460 §4.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppliedPolicy {
    /// `sts`, `tlsa` or `no-policy-found`.
    pub kind: &'static str,
    /// The `policy-domain` when it is not the recipient domain: for DANE, the TLSA base
    /// domain (RFC 8460 §3, RFC 7672 §2.2.3). Empty: the recipient domain.
    pub domain: String,
    /// The MTA-STS policy lines, or the TLSA records in presentation form.
    pub strings: Vec<String>,
    /// MTA-STS: the policy's mx patterns; DANE: the MX host the records belong to.
    pub mx_hosts: Vec<String>,
}

impl AppliedPolicy {
    pub fn sts(policy: &crate::mta_sts::Policy) -> AppliedPolicy {
        AppliedPolicy {
            kind: "sts",
            domain: String::new(),
            strings: bounded(sts_policy_lines(policy)),
            mx_hosts: bounded(policy.mx.iter().cloned()),
        }
    }

    /// An MTA-STS policy that could not be had (fetch failed, invalid): no strings.
    pub fn sts_unavailable() -> AppliedPolicy {
        AppliedPolicy {
            kind: "sts",
            domain: String::new(),
            strings: Vec::new(),
            mx_hosts: Vec::new(),
        }
    }

    /// The TLSA records of the MX `host`; `names` as [`DaneLookup::Secure`] has them:
    /// the TLSA base domain first, the policy domain (the host itself when empty).
    pub fn tlsa(records: &[Tlsa], host: &str, names: &[String]) -> AppliedPolicy {
        let normal = |n: &str| n.trim_end_matches('.').to_ascii_lowercase();
        AppliedPolicy {
            kind: "tlsa",
            domain: bounded([normal(names.first().map_or(host, String::as_str))])
                .pop()
                .unwrap_or_default(),
            strings: bounded(records.iter().map(tlsa_string)),
            mx_hosts: bounded([normal(host)]),
        }
    }

    pub fn none() -> AppliedPolicy {
        AppliedPolicy {
            kind: "no-policy-found",
            domain: String::new(),
            strings: Vec::new(),
            mx_hosts: Vec::new(),
        }
    }
}

/// What one counter counts: sessions of one UTC day to one policy domain under one
/// policy with one result; for failures, also the receiving MX and its address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TlsResultKey {
    /// Unix seconds of 00:00 UTC of the day.
    pub day: i64,
    /// The recipient domain: its `_smtp._tls` record says where the report goes. The
    /// report's `policy-domain` is this too, unless `policy.domain` names another.
    pub domain: String,
    pub policy: AppliedPolicy,
    /// `success`, or a result type of RFC 8460 §4.3.
    pub result: &'static str,
    /// The receiving MX host name (failures only; empty when unknown).
    pub mx_host: String,
    /// The receiving MX address (failures only; empty when unknown).
    pub ip: String,
}

/// Where a failed session went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Receiver<'a> {
    pub host: Option<&'a str>,
    pub ip: Option<std::net::IpAddr>,
}

/// Start of the UTC day holding `unix`.
pub fn utc_day(unix: i64) -> i64 {
    unix - unix.rem_euclid(86_400)
}

/// Counts of TLS session results kept in memory for TLS reporting (RFC 8460), per UTC
/// day, policy domain, applied policy and result (with the receiving MX for failures).
/// Delivery only counts here; the binary moves the counts to the store now and then
/// ([`TlsCounters::take`]), never on the delivery path.
#[derive(Default)]
pub struct TlsCounters {
    counts: Mutex<HashMap<TlsResultKey, u64>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl TlsCounters {
    /// Counts one session at time `now` (unix seconds). `result` is `success` or a
    /// failure type of RFC 8460 §4.3; the receiver is kept for failures only.
    pub fn record(
        &self,
        now: i64,
        domain: &str,
        policy: &AppliedPolicy,
        result: &'static str,
        receiver: Receiver<'_>,
    ) {
        let failure = result != "success";
        let key = TlsResultKey {
            day: utc_day(now),
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            policy: policy.clone(),
            result,
            mx_host: match receiver.host {
                Some(h) if failure => bounded([h.trim_end_matches('.').to_ascii_lowercase()])
                    .pop()
                    .unwrap_or_default(),
                _ => String::new(),
            },
            ip: match receiver.ip {
                Some(ip) if failure => ip.to_string(),
                _ => String::new(),
            },
        };
        self.add_key(key, 1);
    }

    fn add_key(&self, key: TlsResultKey, n: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= MAX_KEYS && !counts.contains_key(&key) {
            let before = self
                .dropped
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            if before == 0 {
                tracing::warn!(
                    limit = MAX_KEYS,
                    "TLS result counters full; results are dropped until the next flush"
                );
            }
            return;
        }
        *counts.entry(key).or_default() += n;
    }

    /// Takes every count out (for the store), leaving the counters empty.
    pub fn take(&self) -> Vec<(TlsResultKey, u64)> {
        let taken = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()));
        self.dropped.store(0, std::sync::atomic::Ordering::Relaxed);
        let mut all: Vec<_> = taken.into_iter().collect();
        all.sort();
        all
    }

    /// Puts counts back that could not be stored, to be tried again.
    pub fn restore(&self, counts: Vec<(TlsResultKey, u64)>) {
        for (key, n) in counts {
            self.add_key(key, n);
        }
    }

    /// The counts now, sorted, without taking them.
    pub fn snapshot(&self) -> Vec<(TlsResultKey, u64)> {
        let mut all: Vec<_> = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        all.sort();
        all
    }
}

/// The transport security state shared by every delivery.
pub struct TransportSecurity {
    /// None: MTA-STS is off. Shared with the background refresher.
    pub mta_sts: Option<std::sync::Arc<MtaSts>>,
    /// None: DANE is off.
    pub dane: Option<Dane>,
    /// Shared with the task that moves the counts to the store.
    pub counters: std::sync::Arc<TlsCounters>,
}

/// How to set up [`TransportSecurity`].
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    pub mta_sts: bool,
    pub dane: bool,
    /// Port of the policy host's HTTPS server: 443, changed only by tests.
    pub mta_sts_port: u16,
    /// Limit for one policy fetch.
    pub mta_sts_timeout: Duration,
    /// Where the MTA-STS cache is kept across restarts (None: memory only).
    pub mta_sts_cache: Option<PathBuf>,
    /// Same nameservers as the main resolver (empty: the system's).
    pub nameservers: Vec<SocketAddr>,
    pub dns_timeout: Duration,
    /// DNSKEY records to trust instead of the root's (a test zone, a lab).
    pub trust_anchor: Option<PathBuf>,
}

impl TransportSecurity {
    /// Builds what the settings turn on. `tls` supplies the verifying client
    /// configuration (WebPKI roots plus extra CAs) used for policy fetches.
    pub fn new(
        settings: &SecuritySettings,
        resolver: &TokioResolver,
        tls: &TlsConfigs,
    ) -> Result<TransportSecurity, SecurityError> {
        let mta_sts = if settings.mta_sts {
            let source = HttpsSource::new(
                resolver.clone(),
                (*tls.verified()).clone(),
                settings.mta_sts_port,
                settings.mta_sts_timeout,
            )
            .map_err(SecurityError::MtaSts)?;
            Some(std::sync::Arc::new(MtaSts::new(
                StsCache::open(settings.mta_sts_cache.clone()),
                Box::new(source),
            )))
        } else {
            None
        };
        let dane = if settings.dane {
            Some(
                Dane::new(
                    &settings.nameservers,
                    settings.dns_timeout,
                    settings.trust_anchor.as_deref(),
                )
                .map_err(SecurityError::Dane)?,
            )
        } else {
            None
        };
        Ok(TransportSecurity {
            mta_sts,
            dane,
            counters: Default::default(),
        })
    }

    /// Neither MTA-STS nor DANE (tests of other things, and the old behaviour).
    pub fn off() -> TransportSecurity {
        TransportSecurity {
            mta_sts: None,
            dane: None,
            counters: Default::default(),
        }
    }

    /// DANE's view of `host`, or why it has none. `validated_addrs` receives the
    /// DNSSEC-validated addresses when there are usable records.
    pub async fn dane_status(
        &self,
        host: &str,
        port: u16,
        now: i64,
    ) -> (DaneStatus, Vec<std::net::IpAddr>) {
        let literal = host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok();
        let Some(dane) = &self.dane else {
            return (DaneStatus::Off("DANE is turned off".into()), Vec::new());
        };
        if literal {
            return (
                DaneStatus::NotApplicable("address literal".into()),
                Vec::new(),
            );
        }
        if !dane.available(now).await {
            return (
                DaneStatus::Off(
                    "DNSSEC validation is not available through the nameservers".into(),
                ),
                Vec::new(),
            );
        }
        let lookup = dane.lookup(host, port).await;
        let addrs = match &lookup {
            DaneLookup::Secure { addrs, .. } => addrs.clone(),
            _ => Vec::new(),
        };
        ((&lookup).into(), addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mta_sts::Policy;

    fn found(mode: Mode) -> Found {
        Found {
            policy: Policy {
                mode,
                mx: vec!["*.example.com".into()],
                max_age: 86400,
            },
            id: "1".into(),
            how: "fetched".into(),
        }
    }

    fn record() -> Tlsa {
        Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0; 32],
        }
    }

    fn security(d: Decision) -> Security {
        match d {
            Decision::Connect { security, .. } => security,
            Decision::Skip { why, .. } => panic!("skipped: {why}"),
        }
    }

    #[test]
    fn dane_wins_over_mta_sts() {
        let enforce = found(Mode::Enforce);
        let d = decide(
            "mx.other.test",
            Origin::Mx {
                sts: Some(&enforce),
            },
            &DaneStatus::Usable(vec![record()], vec![]),
        );
        // Even a host outside the STS policy is used when DANE authenticates it.
        assert_eq!(security(d), Security::Dane(vec![record()], vec![]));
        let d = decide(
            "mx1.example.com",
            Origin::Mx {
                sts: Some(&enforce),
            },
            &DaneStatus::Unusable(vec![]),
        );
        assert_eq!(security(d), Security::Mode(TlsMode::Encrypt));
        let d = decide(
            "mx1.example.com",
            Origin::Mx {
                sts: Some(&enforce),
            },
            &DaneStatus::Failed("bogus".into()),
        );
        assert!(
            matches!(d, Decision::Skip { .. }),
            "a bogus TLSA answer never downgrades"
        );
    }

    #[test]
    fn mta_sts_when_no_dane() {
        let none = DaneStatus::NotApplicable("unsigned".into());
        let enforce = found(Mode::Enforce);
        assert_eq!(
            security(decide(
                "mx1.example.com",
                Origin::Mx {
                    sts: Some(&enforce)
                },
                &none
            )),
            Security::StsEnforce
        );
        match decide(
            "a.b.example.com",
            Origin::Mx {
                sts: Some(&enforce),
            },
            &none,
        ) {
            Decision::Skip { reply, why } => {
                assert!(reply.is_transient(), "deferred, not bounced");
                assert!(why.contains("MTA-STS"), "{why}");
            }
            other => panic!("not skipped: {other:?}"),
        }
        let testing = found(Mode::Testing);
        assert_eq!(
            security(decide(
                "other.test",
                Origin::Mx {
                    sts: Some(&testing)
                },
                &none
            )),
            Security::StsTesting { listed: false }
        );
        assert_eq!(
            security(decide(
                "mx.example.com",
                Origin::Mx {
                    sts: Some(&found(Mode::None))
                },
                &none
            )),
            Security::Mode(TlsMode::May)
        );
        assert_eq!(
            security(decide(
                "mx.example.com",
                Origin::Mx { sts: None },
                &DaneStatus::Off("off".into())
            )),
            Security::Mode(TlsMode::May)
        );
    }

    #[test]
    fn routes_use_their_mode_and_dane_is_required_when_asked() {
        let usable = DaneStatus::Usable(vec![record()], vec![]);
        assert_eq!(
            security(decide(
                "relay.test",
                Origin::Route(TlsMode::Verify),
                &usable
            )),
            Security::Mode(TlsMode::Verify)
        );
        assert_eq!(
            security(decide("relay.test", Origin::Route(TlsMode::Dane), &usable)),
            Security::Dane(vec![record()], vec![])
        );
        for status in [
            DaneStatus::NotApplicable("no TLSA".into()),
            DaneStatus::Off("no DNSSEC".into()),
            DaneStatus::Failed("SERVFAIL".into()),
        ] {
            let d = decide("relay.test", Origin::Route(TlsMode::Dane), &status);
            match d {
                Decision::Skip { reply, .. } => assert_eq!(reply.code, 451),
                other => panic!("{status:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn failure_kinds() {
        assert_eq!(
            failure_kind("mx does not offer STARTTLS"),
            "starttls-not-supported"
        );
        assert_eq!(
            failure_kind("invalid peer certificate: NotValidForName"),
            "certificate-host-mismatch"
        );
        assert_eq!(
            failure_kind("invalid peer certificate: UnknownIssuer"),
            "certificate-not-trusted"
        );
        assert_eq!(
            failure_kind("DANE: certificate matches no TLSA record"),
            "tlsa-invalid"
        );
    }

    #[test]
    fn sts_failure_kinds() {
        assert_eq!(sts_failure_kind("no _mta-sts TXT record"), None);
        assert_eq!(sts_failure_kind("TXT lookup failed: timeout"), None);
        assert_eq!(
            sts_failure_kind("policy fetch failed: invalid policy: no mode field"),
            Some("sts-policy-invalid")
        );
        assert_eq!(
            sts_failure_kind(
                "policy fetch failed: https://mta-sts.x.test/.well-known/mta-sts.txt: error sending request: invalid peer certificate: UnknownIssuer"
            ),
            Some("sts-webpki-invalid")
        );
        assert_eq!(
            sts_failure_kind("policy fetch failed: https://mta-sts.x.test/: HTTP status 404"),
            Some("sts-policy-fetch-error")
        );
    }

    #[test]
    fn counters_key_by_day_domain_policy_and_receiver() {
        let c = TlsCounters::default();
        let day = 1_795_392_000;
        let sts = AppliedPolicy::sts(&found(Mode::Enforce).policy);
        let mx = Receiver {
            host: Some("MX1.example.com."),
            ip: Some("192.0.2.1".parse().unwrap()),
        };
        c.record(day + 10, "Example.com", &sts, "success", mx);
        c.record(day + 20, "example.com", &sts, "success", mx);
        c.record(day + 30, "example.com", &sts, "certificate-expired", mx);
        c.record(day + 86_400, "example.com", &sts, "success", mx);
        c.record(day, "example.com", &AppliedPolicy::none(), "success", mx);
        let all = c.take();
        assert!(c.snapshot().is_empty());
        assert_eq!(all.len(), 4);
        let (first, n) = all
            .iter()
            .find(|(k, _)| k.policy.kind == "sts" && k.day == day && k.result == "success")
            .unwrap();
        assert_eq!(
            (first.day, first.domain.as_str(), first.result, *n),
            (day, "example.com", "success", 2)
        );
        // Successes do not keep the receiver; failures do, normalized.
        assert_eq!((first.mx_host.as_str(), first.ip.as_str()), ("", ""));
        let failure = all.iter().find(|(k, _)| k.result != "success").unwrap();
        assert_eq!(failure.0.mx_host, "mx1.example.com");
        assert_eq!(failure.0.ip, "192.0.2.1");
        assert_eq!(
            failure.0.policy.strings,
            vec![
                "version: STSv1",
                "mode: enforce",
                "mx: *.example.com",
                "max_age: 86400"
            ]
        );
        // What could not be stored goes back.
        c.restore(all);
        assert_eq!(c.snapshot().iter().map(|(_, n)| n).sum::<u64>(), 5);
        let tlsa = AppliedPolicy::tlsa(&[record()], "mx.example.com", &[]);
        assert_eq!(tlsa.strings, vec![format!("3 1 1 {}", "00".repeat(32))]);
        assert_eq!(tlsa.mx_hosts, vec!["mx.example.com"]);
        assert_eq!(tlsa.domain, "mx.example.com");
        // An MX name that is an alias: the policy domain is the TLSA base domain, the
        // name it expands to; the session is still counted for the recipient domain.
        let alias = AppliedPolicy::tlsa(
            &[record()],
            "Alias.Example.com.",
            &["mx.hosting.test.".into(), "alias.example.com".into()],
        );
        assert_eq!(alias.domain, "mx.hosting.test");
        assert_eq!(alias.mx_hosts, vec!["alias.example.com"]);
        c.record(day, "example.com", &alias, "success", mx);
        let all = c.take();
        let (key, _) = all.iter().find(|(k, _)| k.policy.kind == "tlsa").unwrap();
        assert_eq!(
            (key.domain.as_str(), key.policy.domain.as_str()),
            ("example.com", "mx.hosting.test")
        );
    }
}
