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
    /// Usable validated TLSA records.
    Usable(Vec<Tlsa>),
    /// Validated TLSA records exist but none is usable: TLS without authentication.
    Unusable,
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
            DaneLookup::Secure { records, .. } if records.is_empty() => DaneStatus::Unusable,
            DaneLookup::Secure { records, .. } => DaneStatus::Usable(records.clone()),
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
    /// STARTTLS required, the certificate must match these TLSA records.
    Dane(Vec<Tlsa>),
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
            Security::Dane(_) => "dane",
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
            DaneStatus::Usable(records) => connect(
                Security::Dane(records.clone()),
                format!("DANE required by the route; {} usable TLSA records", records.len()),
            ),
            DaneStatus::Unusable => connect(
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
                DaneStatus::Usable(records) => {
                    return connect(
                        Security::Dane(records.clone()),
                        format!("DANE: {} usable TLSA records", records.len()),
                    );
                }
                DaneStatus::Unusable => {
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

/// Counts of TLS results per policy domain, policy type and result, for TLS-RPT.
#[derive(Default)]
pub struct TlsCounters {
    counts: Mutex<HashMap<(String, &'static str, &'static str), u64>>,
}

impl TlsCounters {
    /// `policy` is `sts`, `tlsa` or `no-policy-found`; `result` is `success` or a
    /// failure type of RFC 8460 §4.3.
    pub fn add(&self, domain: &str, policy: &'static str, result: &'static str) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((domain.to_string(), policy, result))
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> Vec<((String, &'static str, &'static str), u64)> {
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
    /// None: MTA-STS is off.
    pub mta_sts: Option<MtaSts>,
    /// None: DANE is off.
    pub dane: Option<Dane>,
    pub counters: TlsCounters,
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
    ) -> Result<TransportSecurity, String> {
        let mta_sts = if settings.mta_sts {
            let source = HttpsSource::new(
                resolver.clone(),
                (*tls.verified()).clone(),
                settings.mta_sts_port,
                settings.mta_sts_timeout,
            )?;
            Some(MtaSts::new(
                StsCache::open(settings.mta_sts_cache.clone()),
                Box::new(source),
            ))
        } else {
            None
        };
        let dane = if settings.dane {
            Some(Dane::new(
                &settings.nameservers,
                settings.dns_timeout,
                settings.trust_anchor.as_deref(),
            )?)
        } else {
            None
        };
        Ok(TransportSecurity {
            mta_sts,
            dane,
            counters: TlsCounters::default(),
        })
    }

    /// Neither MTA-STS nor DANE (tests of other things, and the old behaviour).
    pub fn off() -> TransportSecurity {
        TransportSecurity {
            mta_sts: None,
            dane: None,
            counters: TlsCounters::default(),
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
            &DaneStatus::Usable(vec![record()]),
        );
        // Even a host outside the STS policy is used when DANE authenticates it.
        assert_eq!(security(d), Security::Dane(vec![record()]));
        let d = decide(
            "mx1.example.com",
            Origin::Mx {
                sts: Some(&enforce),
            },
            &DaneStatus::Unusable,
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
        let usable = DaneStatus::Usable(vec![record()]);
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
            Security::Dane(vec![record()])
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
}
