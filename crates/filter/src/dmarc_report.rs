//! DMARC aggregate reports the gateway sends (RFC 7489 §7.2): what one inbound message
//! contributes to the report about its From domain (its authentication results and the
//! disposition the gateway finally applied), the aggregation of a day's contributions into
//! one report per policy domain, and the choice of the report's destinations (`mailto:`
//! URIs of `rua`, their `!size` limits, and the authorization of external destinations).
//! The record format is mail-auth's, which also writes the XML and the report message.

use mail_auth::common::cache::NoCache;
use mail_auth::dmarc::Policy;
use mail_auth::report::{
    ActionDisposition, Alignment, Discovery, Disposition, PolicyOverride, PolicyOverrideReason,
    PolicyPublished, Record, Report, SPFDomainScope,
};
use mail_auth::{ArcOutput, DkimOutput, DmarcOutput, DmarcResult, MessageAuthenticator, SpfOutput};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;

/// A destination from a `rua` tag: the address of a `mailto:` URI (mail-auth keeps only
/// those) and its `!size` limit in bytes, 0 for none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rua {
    pub address: String,
    pub max_size: u64,
}

/// One message's contribution to the report about its policy domain, as the store keeps it
/// until the day is reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DmarcEntry {
    /// The policy domain: the RFC5322.From domain DMARC was evaluated for.
    pub domain: String,
    /// The policy record as published when the message came.
    pub policy: PolicyPublished,
    pub rua: Vec<Rua>,
    /// The report record, its count 1.
    pub record: Record,
}

/// What the gateway finally did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Queued for delivery (a redirect or an accepting rule included).
    Delivered,
    /// Held in the quarantine.
    Quarantined,
    /// Refused with a permanent reply, or discarded: it never reaches its recipients.
    Rejected,
}

/// A contribution waiting for the gateway's final decision about the message.
#[derive(Debug, Clone)]
pub struct DmarcPending {
    entry: DmarcEntry,
    /// DMARC failed (no aligned pass).
    failed: bool,
    /// What the policy asks for a failure, `t=y` already taken into account.
    asked: ActionDisposition,
    /// The published policy is in test mode (`t=y`).
    testing: bool,
    /// A trusted ARC sealer whose valid chain overrode the failure: the chain described.
    forwarder: Option<String>,
}

/// The results of one message's checks, as [`DmarcPending::new`] needs them.
pub struct Evaluated<'a, 'x> {
    pub ip: IpAddr,
    /// The RFC5321.MailFrom domain, or the HELO name for the null sender.
    pub mail_from_domain: &'a str,
    /// The SPF result of that identity.
    pub spf: &'a SpfOutput,
    pub dkim: &'a [DkimOutput<'x>],
    pub arc: &'a ArcOutput<'x>,
    pub dmarc: &'a DmarcOutput,
    /// The trusted ARC sealer that overrides a DMARC failure, when there is one.
    pub trusted_sealer: Option<&'a str>,
}

impl DmarcPending {
    /// The contribution of a message whose DMARC evaluation found a policy record with at
    /// least one `rua` destination; None otherwise (nobody to report to).
    pub fn new(e: &Evaluated<'_, '_>) -> Option<DmarcPending> {
        let record = e.dmarc.dmarc_record()?;
        let testing = record.t;
        let mut rua: Vec<Rua> = Vec::new();
        for uri in &record.rua {
            let address = uri.uri().trim().to_ascii_lowercase();
            if !address.contains('@') || rua.iter().any(|r| r.address == address) {
                continue;
            }
            rua.push(Rua {
                address,
                max_size: uri.max_size() as u64,
            });
        }
        if rua.is_empty() {
            return None;
        }
        let domain = e.dmarc.domain().trim_end_matches('.').to_ascii_lowercase();
        let policy = PolicyPublished {
            domain: domain.clone(),
            version_published: None,
            adkim: Alignment::from(&record.adkim),
            aspf: Alignment::from(&record.aspf),
            p: published(record.p),
            sp: published(record.sp),
            np: published(record.np),
            testing: record.t,
            // mail-auth finds the record by the DNS tree walk of DMARCbis.
            discovery_method: Discovery::Treewalk,
            fo: Some(
                match record.fo {
                    mail_auth::dmarc::Report::All => "0",
                    mail_auth::dmarc::Report::Any => "1",
                    mail_auth::dmarc::Report::Dkim => "d",
                    mail_auth::dmarc::Report::Spf => "s",
                    mail_auth::dmarc::Report::DkimSpf => "d:s",
                }
                .to_string(),
            ),
        };
        let record = Record::new()
            .with_source_ip(e.ip)
            .with_count(1)
            .with_header_from(domain.clone())
            .with_envelope_from(
                e.mail_from_domain
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
            )
            .with_dkim_output(e.dkim)
            // The null sender's identity is postmaster@HELO, checked as MAIL FROM
            // (RFC 7208 §2.4): its scope is still mfrom.
            .with_spf_output(e.spf, SPFDomainScope::MailFrom)
            .with_dmarc_output(e.dmarc);
        let failed = matches!(e.dmarc.result(), DmarcResult::Fail(_));
        let forwarder = match e.trusted_sealer {
            Some(sealer) if failed => {
                // mail-auth describes the chain (arc=pass as[2].d=… as[2].s=…).
                let described = Record::new().with_arc_output(e.arc);
                Some(
                    described
                        .policy_override_reason()
                        .first()
                        .and_then(|r| r.comment())
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("arc=pass sealer={sealer}")),
                )
            }
            _ => None,
        };
        Some(DmarcPending {
            entry: DmarcEntry {
                domain,
                policy,
                rua,
                record,
            },
            failed,
            asked: match e.dmarc.policy() {
                Policy::Quarantine => ActionDisposition::Quarantine,
                Policy::Reject => ActionDisposition::Reject,
                Policy::None | Policy::Unspecified => ActionDisposition::None,
            },
            testing,
            forwarder,
        })
    }

    /// The policy domain.
    pub fn domain(&self) -> &str {
        &self.entry.domain
    }

    /// The finished contribution: the disposition the gateway applied, and why it differs
    /// from what the policy asked when it does. A message that passed DMARC is reported
    /// with `none` whatever else happened to it (its spam verdict is no business of the
    /// domain owner's); a failing one with what was done: delivered `none`, held
    /// `quarantine`, refused or discarded `reject`. `rule` is the rule that decided.
    pub fn finish(
        self,
        applied: Applied,
        rule: Option<&str>,
        envelope_to: Option<&str>,
    ) -> DmarcEntry {
        let DmarcPending {
            mut entry,
            failed,
            asked,
            testing,
            forwarder,
        } = self;
        let disposition = match (failed, applied) {
            (false, _) | (true, Applied::Delivered) => ActionDisposition::None,
            (true, Applied::Quarantined) => ActionDisposition::Quarantine,
            (true, Applied::Rejected) => ActionDisposition::Reject,
        };
        let mut record = entry.record.with_action_disposition(disposition);
        if let Some(to) = envelope_to {
            record = record.with_envelope_to(to.trim_end_matches('.').to_ascii_lowercase());
        }
        if failed && disposition != asked {
            let reason = match (&forwarder, disposition) {
                (Some(chain), ActionDisposition::None) => {
                    PolicyOverrideReason::new(PolicyOverride::TrustedForwarder)
                        .with_comment(chain.clone())
                }
                _ => PolicyOverrideReason::new(PolicyOverride::LocalPolicy)
                    .with_comment(rule.unwrap_or("local policy").to_string()),
            };
            record = record.with_policy_override_reason(reason);
        }
        if failed && testing && disposition != strength(entry.policy.p) {
            record = record.with_policy_override_reason(PolicyOverrideReason::new(
                PolicyOverride::PolicyTestMode,
            ));
        }
        entry.record = record;
        entry
    }
}

fn published(p: Policy) -> Disposition {
    match p {
        Policy::None => Disposition::None,
        Policy::Quarantine => Disposition::Quarantine,
        Policy::Reject => Disposition::Reject,
        Policy::Unspecified => Disposition::Unspecified,
    }
}

fn strength(p: Disposition) -> ActionDisposition {
    match p {
        Disposition::Quarantine => ActionDisposition::Quarantine,
        Disposition::Reject => ActionDisposition::Reject,
        Disposition::None | Disposition::Unspecified => ActionDisposition::None,
    }
}

/// A day's contributions for one policy domain, aggregated: identical records counted once.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub domain: String,
    /// The policy as published with the latest contribution.
    pub policy: PolicyPublished,
    /// The destinations of the latest contribution.
    pub rua: Vec<Rua>,
    /// Distinct records with their counts, in the order first seen.
    pub records: Vec<Record>,
    /// Messages in all.
    pub messages: u64,
}

/// Aggregate the contributions (oldest first) of one policy domain; None for none.
pub fn aggregate(entries: impl IntoIterator<Item = DmarcEntry>) -> Option<Aggregate> {
    let mut out: Option<Aggregate> = None;
    let mut index: HashMap<Record, usize> = HashMap::new();
    for entry in entries {
        let DmarcEntry {
            domain,
            policy,
            rua,
            record,
        } = entry;
        let count = record.count().max(1);
        let key = record.with_count(0);
        let agg = out.get_or_insert_with(|| Aggregate {
            domain: domain.clone(),
            policy: policy.clone(),
            rua: rua.clone(),
            records: Vec::new(),
            messages: 0,
        });
        agg.policy = policy;
        agg.rua = rua;
        agg.messages += u64::from(count);
        match index.get(&key) {
            Some(&i) => {
                let r = &mut agg.records[i];
                *r = r.clone().with_count(r.count().saturating_add(count));
            }
            None => {
                index.insert(key.clone(), agg.records.len());
                agg.records.push(key.with_count(count));
            }
        }
    }
    out
}

impl Aggregate {
    /// The report for the period `begin..=end` (unix seconds).
    pub fn report(
        &self,
        org_name: &str,
        email: &str,
        report_id: &str,
        begin: u64,
        end: u64,
    ) -> Report {
        let mut report = Report::new()
            .with_version(1.0)
            .with_org_name(org_name)
            .with_email(email)
            .with_report_id(report_id)
            .with_date_range_begin(begin)
            .with_date_range_end(end)
            .with_generator(format!("Portcullis {}", env!("CARGO_PKG_VERSION")))
            .with_policy_published(self.policy.clone());
        for r in &self.records {
            report.add_record(r.clone());
        }
        report
    }
}

/// A destination of a report and whether it needs the authorization record: a `rua`
/// outside the policy domain's organizational domain (RFC 7489 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub rua: Rua,
    pub external: bool,
}

/// The destinations of a report about `policy_domain`, each address once.
pub fn destinations(policy_domain: &str, rua: &[Rua]) -> Vec<Destination> {
    let org = crate::suffix::organizational(policy_domain);
    let mut out: Vec<Destination> = Vec::new();
    for r in rua {
        let Some((_, domain)) = r.address.rsplit_once('@') else {
            continue;
        };
        if domain.is_empty() || out.iter().any(|d| d.rua.address == r.address) {
            continue;
        }
        out.push(Destination {
            rua: r.clone(),
            external: crate::suffix::organizational(domain) != org,
        });
    }
    out
}

/// Whether a report message of `size` bytes may go to `rua` (its `!size` limit).
pub fn fits(rua: &Rua, size: usize) -> bool {
    rua.max_size == 0 || size as u64 <= rua.max_size
}

/// Whether the domain of `address` agreed to receive reports about `policy_domain`: a
/// `v=DMARC1` TXT record at `<policy_domain>._report._dmarc.<address domain>` (RFC 7489
/// §7.1). None when the lookup failed for now (try again later).
pub async fn authorized(
    resolver: &MessageAuthenticator,
    policy_domain: &str,
    address: &str,
) -> Option<bool> {
    let addresses = [address];
    let found = resolver
        .verify_dmarc_report_address(
            policy_domain,
            &addresses,
            None::<&NoCache<Box<str>, mail_auth::Txt>>,
        )
        .await?;
    Some(!found.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::report::DmarcResult as Outcome;

    fn rua(address: &str, max_size: u64) -> Rua {
        Rua {
            address: address.into(),
            max_size,
        }
    }

    fn policy(domain: &str, p: Disposition) -> PolicyPublished {
        PolicyPublished {
            domain: domain.into(),
            p,
            sp: p,
            ..Default::default()
        }
    }

    fn entry(
        ip: &str,
        disposition: ActionDisposition,
        dkim: Outcome,
        p: Disposition,
    ) -> DmarcEntry {
        DmarcEntry {
            domain: "sender.test".into(),
            policy: policy("sender.test", p),
            rua: vec![rua("dmarc@reports.test", 0)],
            record: Record::new()
                .with_source_ip(ip.parse().unwrap())
                .with_count(1)
                .with_header_from("sender.test")
                .with_envelope_from("sender.test")
                .with_action_disposition(disposition)
                .with_dmarc_dkim_result(dkim)
                .with_dmarc_spf_result(Outcome::Pass),
        }
    }

    #[test]
    fn identical_records_are_counted_once() {
        let a = entry(
            "192.0.2.1",
            ActionDisposition::None,
            Outcome::Pass,
            Disposition::None,
        );
        let b = entry(
            "192.0.2.2",
            ActionDisposition::Reject,
            Outcome::Fail,
            Disposition::None,
        );
        let mut last = a.clone();
        last.policy = policy("sender.test", Disposition::Reject);
        let agg = aggregate(vec![a.clone(), b.clone(), a.clone(), last]).unwrap();
        assert_eq!(agg.messages, 4);
        assert_eq!(agg.domain, "sender.test");
        // The latest policy applies to the report.
        assert_eq!(agg.policy.p, Disposition::Reject);
        let counts: Vec<(String, u32, ActionDisposition)> = agg
            .records
            .iter()
            .map(|r| {
                (
                    r.source_ip().unwrap().to_string(),
                    r.count(),
                    r.action_disposition(),
                )
            })
            .collect();
        assert_eq!(
            counts,
            vec![
                ("192.0.2.1".into(), 3, ActionDisposition::None),
                ("192.0.2.2".into(), 1, ActionDisposition::Reject),
            ]
        );
        assert!(aggregate(Vec::new()).is_none());
    }

    #[test]
    fn records_differing_in_a_result_stay_apart() {
        let a = entry(
            "192.0.2.1",
            ActionDisposition::None,
            Outcome::Pass,
            Disposition::None,
        );
        let b = entry(
            "192.0.2.1",
            ActionDisposition::None,
            Outcome::Fail,
            Disposition::None,
        );
        let agg = aggregate(vec![a, b]).unwrap();
        assert_eq!(agg.records.len(), 2);
        assert!(agg.records.iter().all(|r| r.count() == 1));
    }

    #[test]
    fn report_round_trips_through_xml() {
        let agg = aggregate(vec![
            entry(
                "192.0.2.1",
                ActionDisposition::None,
                Outcome::Pass,
                Disposition::Reject,
            ),
            entry(
                "192.0.2.1",
                ActionDisposition::None,
                Outcome::Pass,
                Disposition::Reject,
            ),
            entry(
                "203.0.113.9",
                ActionDisposition::Reject,
                Outcome::Fail,
                Disposition::Reject,
            ),
        ])
        .unwrap();
        let report = agg.report("gw.test", "noreply@gw.test", "r1", 86400, 172_799);
        let parsed = Report::parse_xml(report.to_xml().as_bytes()).unwrap();
        assert_eq!(parsed.domain(), "sender.test");
        assert_eq!(parsed.report_id(), "r1");
        assert_eq!(
            (parsed.date_range_begin(), parsed.date_range_end()),
            (86400, 172_799)
        );
        assert_eq!(parsed.p(), Disposition::Reject);
        let rows: Vec<(u32, ActionDisposition)> = parsed
            .records()
            .iter()
            .map(|r| (r.count(), r.action_disposition()))
            .collect();
        assert_eq!(
            rows,
            vec![(2, ActionDisposition::None), (1, ActionDisposition::Reject)]
        );
        // The message: a gzipped XML attachment.
        let message = report
            .to_rfc5322(
                "gw.test",
                ("gw.test", "noreply@gw.test"),
                ["dmarc@reports.test"].into_iter(),
            )
            .unwrap();
        assert!(message.contains("application/gzip"), "{message}");
        let back = Report::parse_rfc5322(message.as_bytes(), 1 << 20).unwrap();
        assert_eq!(back.records().len(), 2);
    }

    #[test]
    fn destinations_outside_the_organizational_domain_need_authorization() {
        let list = [
            rua("dmarc@sender.test", 0),
            rua("agg@reports.sender.test", 0),
            rua("dmarc@reports.test", 1000),
            rua("dmarc@reports.test", 0),
            rua("x@other.example.co.uk", 0),
        ];
        let d = destinations("mail.sender.test", &list);
        let seen: Vec<(&str, bool)> = d
            .iter()
            .map(|d| (d.rua.address.as_str(), d.external))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("dmarc@sender.test", false),
                ("agg@reports.sender.test", false),
                ("dmarc@reports.test", true),
                ("x@other.example.co.uk", true),
            ]
        );
        // Public suffixes: example.co.uk and other.example.co.uk are one organization.
        let d = destinations("example.co.uk", &[rua("x@other.example.co.uk", 0)]);
        assert!(!d[0].external);
        let d = destinations("a.co.uk", &[rua("x@b.co.uk", 0)]);
        assert!(d[0].external);
        assert_eq!(
            crate::suffix::organizational("Mail.Sender.Test."),
            "sender.test"
        );
    }

    #[test]
    fn size_limits() {
        assert!(fits(&rua("a@b.test", 0), 10_000_000));
        assert!(fits(&rua("a@b.test", 1024), 1024));
        assert!(!fits(&rua("a@b.test", 1024), 1025));
    }

    fn pending(failed: bool, asked: ActionDisposition, forwarder: Option<&str>) -> DmarcPending {
        let e = entry(
            "192.0.2.1",
            ActionDisposition::Unspecified,
            Outcome::Fail,
            Disposition::Quarantine,
        );
        DmarcPending {
            entry: e,
            failed,
            asked,
            testing: false,
            forwarder: forwarder.map(str::to_string),
        }
    }

    #[test]
    fn applied_disposition_and_override_reasons() {
        // Passed DMARC: none, whatever the spam rules did.
        let r = pending(false, ActionDisposition::Quarantine, None)
            .finish(Applied::Quarantined, Some("spam"), Some("Example.COM"))
            .record;
        assert_eq!(r.action_disposition(), ActionDisposition::None);
        assert!(r.policy_override_reason().is_empty());
        assert_eq!(r.envelope_to(), Some("example.com"));
        // Failed and held as the policy asked: no reason.
        let r = pending(true, ActionDisposition::Quarantine, None)
            .finish(
                Applied::Quarantined,
                Some("default: dmarc quarantine"),
                None,
            )
            .record;
        assert_eq!(r.action_disposition(), ActionDisposition::Quarantine);
        assert!(r.policy_override_reason().is_empty());
        // A trusted forwarder's chain let it through.
        let r = pending(
            true,
            ActionDisposition::Reject,
            Some("arc=pass as[1].d=lists.test"),
        )
        .finish(Applied::Delivered, None, None)
        .record;
        assert_eq!(r.action_disposition(), ActionDisposition::None);
        let reasons = r.policy_override_reason();
        assert_eq!(reasons.len(), 1);
        assert_eq!(
            reasons[0].policy_override(),
            PolicyOverride::TrustedForwarder
        );
        assert_eq!(reasons[0].comment(), Some("arc=pass as[1].d=lists.test"));
        // A rule delivered it anyway: local policy, named.
        let r = pending(true, ActionDisposition::Quarantine, None)
            .finish(Applied::Delivered, Some("allow partners"), None)
            .record;
        let reasons = r.policy_override_reason();
        assert_eq!(reasons[0].policy_override(), PolicyOverride::LocalPolicy);
        assert_eq!(reasons[0].comment(), Some("allow partners"));
        // Refused at SMTP time as p=reject asked.
        let r = pending(true, ActionDisposition::Reject, None)
            .finish(Applied::Rejected, None, None)
            .record;
        assert_eq!(r.action_disposition(), ActionDisposition::Reject);
        assert!(r.policy_override_reason().is_empty());
    }

    #[test]
    fn entries_survive_json() {
        let e = pending(true, ActionDisposition::Reject, Some("arc=pass")).finish(
            Applied::Delivered,
            None,
            Some("example.com"),
        );
        let json = serde_json::to_string(&e).unwrap();
        let back: DmarcEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }
}
