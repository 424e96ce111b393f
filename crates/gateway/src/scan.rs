//! The scan of one message: the connection checks (DNSBL, FCrDNS, once per connection),
//! rate limits and greylisting, then at the end of the data every message check side by
//! side (mail authentication, antivirus, an external scanner), the content pipeline and
//! URI lists, and the rules that turn the findings into one verdict.

use crate::metrics::{Check, timed};
use crate::submission::Client;
use crate::transaction::Transaction;
use portcullis_filter::auth::{AuthAction, SpfVerdict};
use portcullis_filter::clamd::ScanResult;
use portcullis_filter::dmarc_report::DmarcPending;
use portcullis_filter::dnsbl;
use portcullis_filter::external;
use portcullis_filter::finding::Finding;
use portcullis_filter::greylist::GreylistMode;
use portcullis_filter::rules::{Disposition, Subject, Verdict};
use portcullis_smtp::Reply;
use std::time::Instant;

/// Messages up to this size are content-scanned on the async worker itself.
const INLINE_SCAN_MAX: usize = 64 * 1024;

/// What the message checks found and the rules decided.
pub(crate) struct Checked {
    /// Header fields to add (authentication results).
    pub(crate) headers: String,
    pub(crate) findings: Vec<Finding>,
    pub(crate) verdict: Verdict,
    pub(crate) subject: Option<String>,
    pub(crate) message_id: Option<String>,
    /// The mail-authentication summary (spf=… dkim=… dmarc=…), when it ran.
    pub(crate) auth: Option<String>,
}

impl Transaction {
    /// Run the message checks of mail authentication; the header fields to add, or the
    /// reply that refuses the message; and the message's contribution to a DMARC
    /// aggregate report, either way.
    pub(crate) async fn authenticate(
        &self,
        id: &str,
        raw: &[u8],
        client: &Client<'_>,
        sender: &str,
        spf: &SpfVerdict,
    ) -> (
        Result<(String, Option<Finding>, String), Reply>,
        Option<DmarcPending>,
    ) {
        let helo = client.helo;
        let started = Instant::now();
        let verdict = self
            .gw
            .auth
            .check_message(raw, self.peer.ip, helo, sender, spf)
            .await;
        timed(Check::Authentication, started);
        tracing::debug!(id, client = %self.peer.addr, from = %sender, auth = %verdict.summary, "authentication");
        let result = match verdict.action {
            AuthAction::Accept => Ok((verdict.header, None, verdict.summary)),
            AuthAction::Quarantine => Ok((
                verdict.header,
                Some(Finding::new(
                    "dmarc.quarantine",
                    0.0,
                    verdict.summary.clone(),
                )),
                verdict.summary,
            )),
            AuthAction::DmarcReject(_) if self.allowed => {
                // The administrator's allow entry for this client or sender is the local
                // override: a partner behind a broken forwarder, say. Held to the rules
                // like any allowed mail, and said in the log and the findings.
                tracing::info!(id, client = %self.peer.addr, from = %sender, auth = %verdict.summary, "DMARC reject overridden by the allow list");
                Ok((
                    verdict.header,
                    Some(Finding::new(
                        "dmarc.override",
                        0.0,
                        format!("{}; p=reject overridden by the allow list", verdict.summary),
                    )),
                    format!("{} override=allow-list", verdict.summary),
                ))
            }
            AuthAction::Reject(reply)
            | AuthAction::DmarcReject(reply)
            | AuthAction::TempFail(reply) => {
                tracing::info!(id, client = %self.peer.addr, from = %sender, auth = %verdict.summary, reply = %reply, "message refused by authentication");
                Err(reply)
            }
        };
        (result, verdict.dmarc)
    }

    /// Every message check, then the rules: the headers to add (authentication results),
    /// the findings, and the verdict. Err is a reply that refuses the message before any
    /// rule runs (authentication refusals, an unavailable check that fails closed).
    pub(crate) async fn check_message(
        &mut self,
        id: &str,
        raw: &[u8],
        content_input: &[u8],
        client: &Client<'_>,
        sender: &str,
        size: usize,
    ) -> Result<Checked, Reply> {
        let mut headers = String::new();
        let mut findings: Vec<Finding> = self.conn_findings.clone().unwrap_or_default();
        findings.extend(self.directory_findings.iter().cloned());
        // Kept for the ARC seal at the end, when there is one to make.
        let spf = if self.gw.arc_seal_domain.is_some() {
            self.spf.clone()
        } else {
            self.spf.take()
        };
        let av = self.gw.antivirus.clone();
        let recipients_now: Vec<String> =
            self.recipients.iter().map(|r| r.address.clone()).collect();
        let ext_ctx = external::ExternalContext {
            ip: Some(self.peer.ip),
            helo: client.helo,
            sender,
            recipients: &recipients_now,
            id,
        };
        let ext_settings = &self.gw.external;
        let (auth, scanned, ext) = tokio::join!(
            async {
                match &spf {
                    Some(spf) => {
                        let (result, dmarc) = self.authenticate(id, raw, client, sender, spf).await;
                        (result.map(Some), dmarc)
                    }
                    None => (Ok(None), None),
                }
            },
            async {
                match &av {
                    Some(scanner) => {
                        let started = Instant::now();
                        let result = scanner.scan(raw).await;
                        timed(Check::Clamd, started);
                        Some(result)
                    }
                    None => None,
                }
            },
            async {
                if ext_settings.enabled() {
                    let started = Instant::now();
                    let report = external::check(ext_settings, &ext_ctx, content_input).await;
                    timed(Check::External, started);
                    Some(report)
                } else {
                    None
                }
            }
        );
        let (auth, dmarc) = auth;
        self.dmarc = dmarc;
        if let Some(report) = ext {
            if report.should_tempfail(ext_settings) {
                return Err(Reply::new(
                    451,
                    "4.7.0",
                    "Error: spam scanner unavailable, try again later",
                ));
            }
            findings.extend(report.findings);
        }
        let mut auth_summary = None;
        if let Some((h, f, summary)) = auth? {
            headers.push_str(&h);
            findings.extend(f);
            auth_summary = Some(summary);
        }
        match scanned {
            Some(ScanResult::Unavailable(why)) => {
                tracing::error!(id, reason = %why, fail_open = self.gw.antivirus_fail_open, "virus scanner unavailable");
                if !self.gw.antivirus_fail_open {
                    return Err(Reply::new(
                        451,
                        "4.7.0",
                        "Error: virus scanner unavailable, try again later",
                    ));
                }
                findings.push(Finding::new("av.unscanned", 0.0, why.to_string()));
            }
            Some(result) => findings.extend(result.finding()),
            None => {}
        }
        let snapshot = self.gw.policy.current();
        let scan = || {
            let started = Instant::now();
            let scanner = self
                .gw
                .content
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let report = scanner.scan(content_input);
            let listed = snapshot.filter.content.check(&report.text);
            timed(Check::Content, started);
            (report, listed)
        };
        // A scan of a small message takes tens of microseconds, less than handing the
        // worker thread over (block_in_place); large ones may take milliseconds.
        let (report, listed) = if content_input.len() <= INLINE_SCAN_MAX {
            scan()
        } else {
            tokio::task::block_in_place(scan)
        };
        findings.extend(report.findings);
        findings.extend(listed);
        let checks = self.gw.checks();
        if !checks.dnsbl.uribl.is_empty() && !self.allowed {
            let started = Instant::now();
            let listed =
                dnsbl::check_urls(&self.gw.resolver, &checks.dnsbl, &report.text.urls).await;
            timed(Check::Uribl, started);
            for u in &listed.unavailable {
                tracing::warn!(id, zone = %u.zone, reason = %u.reason, "URIBL unavailable");
            }
            findings.extend(listed.findings);
        }
        if self.allowed {
            findings.push(Finding::new("list.allow", -100.0, "allow list"));
        }
        let inbound = !self.internal(client);
        let recipients: Vec<String> = self.recipients.iter().map(|r| r.address.clone()).collect();
        let header_fields = report.text.headers;
        let verdict = snapshot.filter.rules.evaluate(&Subject {
            inbound,
            sender,
            recipients: &recipients,
            findings: &findings,
            attachments: &report.attachments,
            headers: &header_fields,
            size: size as u64,
        });
        // Greylisting of doubtful mail (`suspicious`), by the whole message's score, as
        // rspamd does: the band from `greylist.suspicious_score` up to what the rules
        // hold or refuse anyway. A rule that decided (even to accept) is not second-guessed.
        if checks.greylist.settings().mode == GreylistMode::Suspicious
            && inbound
            && !self.allowed
            && verdict.disposition == Disposition::Deliver
            && verdict.rule.is_none()
            && let Some(reply) = self.greylisted(&recipients, sender, verdict.score).await
        {
            return Err(reply);
        }
        Ok(Checked {
            headers,
            findings,
            verdict,
            subject: Some(report.text.subject).filter(|s| !s.is_empty()),
            message_id: report.message_id,
            auth: auth_summary,
        })
    }
}
