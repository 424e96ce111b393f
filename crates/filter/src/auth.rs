//! Inbound mail authentication: SPF for HELO and MAIL FROM at MAIL time (viaspf, see
//! `spf.rs`), DKIM, ARC and DMARC on mail-auth when the message is complete, one
//! `Authentication-Results` header with our authserv-id, and the decision they lead to. DNS failures never become a
//! permanent refusal: a verdict that depends on a failed lookup is a `451 4.4.3`.

use crate::org_domain::OrgDomain;
use mail_auth::common::cache::NoCache;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    Parameters, SpfOutput, SpfResult,
};
use portcullis_smtp::Reply;
use std::net::IpAddr;

pub use mail_auth::hickory_resolver::TokioResolver;

/// The authentication settings of `[auth]`.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Verify inbound mail at all.
    pub enabled: bool,
    /// Our authserv-id in `Authentication-Results` (RFC 8601), normally the host name.
    pub authserv_id: String,
    /// Refuse mail whose MAIL FROM fails SPF (`-all`) at MAIL time.
    pub spf_reject_fail: bool,
    /// Refuse mail that fails DMARC of a domain publishing `p=reject`.
    pub dmarc_reject: bool,
    /// ARC sealers (the `d=` of the newest ARC-Seal) whose valid chain overrides a DMARC
    /// failure: mailing lists and forwarders that break DKIM and SPF on the way.
    pub trusted_arc_sealers: Vec<String>,
    /// How DMARC finds organizational domains: the public suffix list (RFC 7489) or the
    /// DNS tree walk (DMARCbis).
    pub org_domain: crate::org_domain::OrgDomain,
}

/// The longest one SPF evaluation may take (RFC 7208 §4.6.4 suggests at least 20 s).
const SPF_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// SPF results kept from MAIL time for the message checks.
#[derive(Debug, Clone)]
pub struct SpfVerdict {
    helo: SpfOutput,
    mail_from: SpfOutput,
}

impl SpfVerdict {
    /// The MAIL FROM domain authorised the client (SPF pass).
    pub fn mail_from_pass(&self) -> bool {
        self.mail_from.result() == SpfResult::Pass
    }
}

/// What the message checks found and decided.
#[derive(Debug, Clone)]
pub struct AuthVerdict {
    /// The `Authentication-Results` field, CRLF terminated, to put on the message.
    pub header: String,
    /// One line for logs: `spf=pass dkim=pass dmarc=pass`.
    pub summary: String,
    pub action: AuthAction,
    /// The message's contribution to the DMARC aggregate report about its From domain,
    /// when that domain publishes a policy with `rua`; the caller finishes it with the
    /// disposition finally applied.
    pub dmarc: Option<crate::dmarc_report::DmarcPending>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthAction {
    Accept,
    /// DMARC `p=quarantine` failed: accept, but hold or mark the message.
    Quarantine,
    Reject(Reply),
    /// DMARC `p=reject` failed (and `dmarc_reject` is on): refuse, unless a local allow
    /// entry for the client or sender says otherwise.
    DmarcReject(Reply),
    TempFail(Reply),
}

pub struct Authenticator {
    inner: MessageAuthenticator,
    settings: AuthSettings,
}

impl Authenticator {
    /// Share the process's one resolver.
    pub fn new(resolver: TokioResolver, settings: AuthSettings) -> Self {
        Authenticator {
            inner: MessageAuthenticator(resolver),
            settings,
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Our authserv-id in `Authentication-Results`.
    pub fn authserv_id(&self) -> &str {
        &self.settings.authserv_id
    }

    /// SPF for the HELO name and the MAIL FROM domain (RFC 7208 §2.3, §2.4). The
    /// second result is what a refusal and DMARC use.
    pub async fn check_spf(
        &self,
        ip: IpAddr,
        helo: &str,
        sender: &str,
    ) -> (SpfVerdict, Option<Reply>) {
        // viaspf, not mail-auth, evaluates SPF: it follows RFC 7208 on malformed records
        // (crates/filter/src/spf.rs). The HELO identity is postmaster@HELO (§2.3).
        let resolver = &self.inner.0;
        let helo_output = crate::spf::check_host(
            resolver,
            ip,
            helo,
            &format!("postmaster@{helo}"),
            SPF_TIMEOUT,
        )
        .await;
        let mail_from = if sender.is_empty() {
            // The null sender is checked as postmaster@HELO (RFC 7208 §2.4).
            helo_output.clone()
        } else {
            crate::spf::check_host(resolver, ip, helo, sender, SPF_TIMEOUT).await
        };
        let refuse =
            (self.settings.spf_reject_fail && mail_from.result() == SpfResult::Fail).then(|| {
                Reply::new(
                    550,
                    "5.7.23",
                    format!("SPF validation failed for {}", mail_from.domain()),
                )
            });
        (
            SpfVerdict {
                helo: helo_output,
                mail_from,
            },
            refuse,
        )
    }

    /// DKIM, ARC and DMARC over the complete message as received, and the decision.
    pub async fn check_message(
        &self,
        raw: &[u8],
        ip: IpAddr,
        helo: &str,
        sender: &str,
        spf: &SpfVerdict,
    ) -> AuthVerdict {
        let host = self.settings.authserv_id.as_str();
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return AuthVerdict {
                header: format!("Authentication-Results: {host}; none\r\n"),
                summary: "unparsable message".into(),
                action: AuthAction::Reject(Reply::new(
                    550,
                    "5.6.0",
                    "Message headers could not be parsed",
                )),
                dmarc: None,
            };
        };
        // DMARC needs exactly one author domain; mail-auth skips DMARC otherwise, which a
        // spoofer could use (From: ceo@victim, x@attacker). Refuse such messages as
        // OpenDMARC's RejectMultiValueFrom does.
        let from_fields = message
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"From"))
            .count();
        let mut from_domains: Vec<String> = message
            .from
            .iter()
            .filter_map(|a| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
            .collect();
        from_domains.sort();
        from_domains.dedup();
        if from_fields > 1 || from_domains.len() > 1 {
            return AuthVerdict {
                header: format!(
                    "Authentication-Results: {host}; dmarc=permerror (multiple From)\r\n"
                ),
                summary: "multiple From domains".into(),
                action: AuthAction::Reject(Reply::new(
                    550,
                    "5.7.1",
                    "Message rejected: more than one author (From) domain",
                )),
                dmarc: None,
            };
        }
        let (dkim, arc, dmarc) = self.verify(&message, helo, sender, spf).await;
        let results = results_of(host, &message, &dkim, &arc, &dmarc, spf, ip, helo, sender);

        let dkim_word = if dkim.iter().any(|d| *d.result() == DkimResult::Pass) {
            "pass"
        } else if dkim.is_empty() {
            "none"
        } else {
            "fail"
        };
        let dmarc_result = dmarc.result();
        let summary = format!(
            "spf={} dkim={dkim_word} arc={} dmarc={} policy={:?}",
            spf_word(spf.mail_from.result()),
            dkim_word_of(arc.result()),
            dmarc_word(&dmarc_result),
            dmarc.policy()
        );
        let dns_trouble = spf.mail_from.result() == SpfResult::TempError
            || dkim
                .iter()
                .any(|d| matches!(d.result(), DkimResult::TempError(_)));
        // A DMARC failure of mail that a trusted sealer forwarded with a valid chain is the
        // sealer's change, not a spoof (RFC 8617 §7.2): it is accepted, and said so.
        let trusted_sealer = (*arc.result() == DkimResult::Pass)
            .then(|| newest_arc_sealer(&message.headers))
            .flatten()
            .filter(|d| {
                self.settings
                    .trusted_arc_sealers
                    .iter()
                    .any(|t| t.trim_end_matches('.').eq_ignore_ascii_case(d))
            });
        let summary = match &trusted_sealer {
            Some(d) if matches!(dmarc_result, DmarcResult::Fail(_)) => {
                format!("{summary} arc-override={d}")
            }
            _ => summary,
        };
        let action = match (&dmarc_result, dmarc.policy()) {
            (DmarcResult::Fail(_), _) if trusted_sealer.is_some() => AuthAction::Accept,
            (DmarcResult::TempError(_), _) => AuthAction::TempFail(Reply::new(
                451,
                "4.4.3",
                format!(
                    "DMARC policy of {} could not be fetched, try again later",
                    dmarc.domain()
                ),
            )),
            (DmarcResult::Fail(_), Policy::Reject) if self.settings.dmarc_reject => {
                if dns_trouble {
                    // The failure may only be a lookup that failed: never refuse for good.
                    AuthAction::TempFail(Reply::new(
                        451,
                        "4.4.3",
                        "DNS lookups for authentication failed, try again later",
                    ))
                } else {
                    // No ARC override here: an untrusted sealer may be the spoofer.
                    AuthAction::DmarcReject(Reply::new(
                        550,
                        "5.7.1",
                        format!(
                            "Message rejected: DMARC policy of {} says reject",
                            dmarc.domain()
                        ),
                    ))
                }
            }
            (DmarcResult::Fail(_), Policy::Quarantine | Policy::Reject) => AuthAction::Quarantine,
            _ => AuthAction::Accept,
        };
        let dmarc_report =
            crate::dmarc_report::DmarcPending::new(&crate::dmarc_report::Evaluated {
                ip,
                mail_from_domain: sender.rsplit_once('@').map(|(_, d)| d).unwrap_or(helo),
                spf: &spf.mail_from,
                dkim: &dkim,
                arc: &arc,
                dmarc: &dmarc,
                trusted_sealer: trusted_sealer.as_deref(),
            });
        AuthVerdict {
            header: results.to_header(),
            summary,
            action,
            dmarc: dmarc_report,
        }
    }
}

impl Authenticator {
    /// ARC-seal a message the gateway forwards (RFC 8617 §5.1): `received` is the message
    /// as it arrived (its chain and results are verified again, from the DNS cache),
    /// `outgoing` the message as it leaves, with the fields we added and our changes. The
    /// `ARC-*` fields to put on top, or None when `signer` has no RSA key or the chain
    /// arrived broken.
    #[allow(clippy::too_many_arguments)]
    pub async fn arc_seal(
        &self,
        signer: &crate::sign::Signer,
        received: &[u8],
        outgoing: &[u8],
        ip: IpAddr,
        helo: &str,
        sender: &str,
        spf: &SpfVerdict,
    ) -> Result<Option<String>, ArcSealError> {
        let message =
            AuthenticatedMessage::parse(received).ok_or(ArcSealError::ReceivedUnparsable)?;
        let (dkim, arc, dmarc) = self.verify(&message, helo, sender, spf).await;
        let host = self.settings.authserv_id.as_str();
        let results = results_of(host, &message, &dkim, &arc, &dmarc, spf, ip, helo, sender);
        let out = AuthenticatedMessage::parse(outgoing).ok_or(ArcSealError::OutgoingUnparsable)?;
        signer
            .arc_seal(&out, &results, &arc)
            .map_err(ArcSealError::Sign)
    }
}

/// Why [`Authenticator::arc_seal`] could not seal a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArcSealError {
    #[error("the received message cannot be parsed")]
    ReceivedUnparsable,
    #[error("the outgoing message cannot be parsed")]
    OutgoingUnparsable,
    /// The seal could not be made (the key, the crypto layer).
    #[error(transparent)]
    Sign(crate::sign::SignError),
}

impl Authenticator {
    /// DKIM, ARC and DMARC of `message` as received.
    async fn verify<'x>(
        &self,
        message: &'x AuthenticatedMessage<'x>,
        helo: &str,
        sender: &str,
        spf: &SpfVerdict,
    ) -> (
        Vec<mail_auth::DkimOutput<'x>>,
        mail_auth::ArcOutput<'x>,
        mail_auth::DmarcOutput,
    ) {
        let dkim = self.inner.verify_dkim(message).await;
        let arc = self.inner.verify_arc(message).await;
        let mail_from_domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or(helo);
        let params = DmarcParameters::new(message, &dkim, mail_from_domain, &spf.mail_from);
        let dmarc = match self.settings.org_domain {
            OrgDomain::Psl => {
                let no_cache: Option<&NoCache<Box<str>, mail_auth::Txt>> = None;
                let answers = crate::org_domain::answers(
                    &self.inner,
                    no_cache,
                    message,
                    &dkim,
                    mail_from_domain,
                )
                .await;
                self.inner
                    .verify_dmarc(Parameters::new(params).with_txt_cache(&answers))
                    .await
            }
            OrgDomain::TreeWalk => self.inner.verify_dmarc(params).await,
        };
        (dkim, arc, dmarc)
    }
}

/// The results of the checks as `Authentication-Results` (and ARC's copy of it) say them.
#[allow(clippy::too_many_arguments)]
fn results_of<'x>(
    host: &'x str,
    message: &AuthenticatedMessage<'_>,
    dkim: &[mail_auth::DkimOutput<'_>],
    arc: &mail_auth::ArcOutput<'_>,
    dmarc: &mail_auth::DmarcOutput,
    spf: &SpfVerdict,
    ip: IpAddr,
    helo: &str,
    sender: &str,
) -> AuthenticationResults<'x> {
    let header_from = message.from.first().map(String::as_str).unwrap_or("");
    AuthenticationResults::new(host)
        .with_dkim_results(dkim, header_from)
        .with_spf_ehlo_result(&spf.helo, ip, helo)
        .with_spf_mailfrom_result(&spf.mail_from, ip, sender, helo)
        .with_arc_result(arc, ip)
        .with_dmarc_result(dmarc)
}

/// The `d=` of the ARC-Seal with the highest instance (`i=`), the last one to seal.
/// mail-auth validates the chain but keeps its sets private, so the tag is read here.
fn newest_arc_sealer(headers: &[(&[u8], &[u8])]) -> Option<String> {
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"ARC-Seal"))
        .filter_map(|(_, value)| {
            let value = std::str::from_utf8(value).ok()?;
            let mut instance = None;
            let mut domain = None;
            for tag in value.split(';') {
                let Some((k, v)) = tag.split_once('=') else {
                    continue;
                };
                let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
                match k.trim() {
                    "i" => instance = v.parse::<u32>().ok(),
                    "d" => domain = Some(v.to_ascii_lowercase()),
                    _ => {}
                }
            }
            Some((instance?, domain?))
        })
        .max_by_key(|(i, _)| *i)
        .map(|(_, d)| d)
}

fn spf_word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_word_of(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn dmarc_word(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn newest_sealer_is_the_highest_instance() {
        let h: Vec<(&[u8], &[u8])> = vec![
            (
                b"ARC-Seal",
                b" i=1; a=rsa-sha256; cv=none; d=first.test; s=s; b=AAA",
            ),
            (
                b"arc-seal",
                b" i=2; a=rsa-sha256; cv=pass;\r\n\td=Lists.Test; s=s; b=BBB",
            ),
            (b"ARC-Message-Signature", b" i=3; d=other.test"),
        ];
        assert_eq!(super::newest_arc_sealer(&h).as_deref(), Some("lists.test"));
        assert_eq!(super::newest_arc_sealer(&[]), None);
    }
}
