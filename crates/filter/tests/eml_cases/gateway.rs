//! The message checks composed as the gateway composes them at the end of DATA
//! (`crates/portcullis/src/handler.rs`, `check_message` and `data_end`): SPF at MAIL time,
//! then mail authentication, clamd and the content pipeline, then the administrator's
//! rules and the defaults, then greylisting of doubtful mail; the verdict and the reply
//! the client gets. Kept in step with the handler by hand: when the order or the inputs
//! change there, they change here.
//!
//! Not composed, because they live outside this crate or need a network: connection
//! checks (DNSBL, FCrDNS), URIBL, the external spam scanner, allow/block lists (an allow
//! entry is given as `allowed`), relay control, the removal of forged header fields and
//! the changes a verdict makes (tagging, stripping).

use portcullis_filter::auth::{AuthAction, Authenticator, SpfVerdict};
use portcullis_filter::clamd::{self, ScanResult};
use portcullis_filter::content::ContentScanner;
use portcullis_filter::finding::Finding;
use portcullis_filter::greylist::{Greylist, GreylistMode, Triplet};
use portcullis_filter::lexical::ContentLists;
use portcullis_filter::rules::{Disposition, RuleSet, Subject};
use portcullis_smtp::Reply;
use portcullis_store::Store;
use std::net::IpAddr;

/// One gateway, set up for one case.
pub struct Gateway {
    pub auth: Authenticator,
    pub antivirus: Option<clamd::Scanner>,
    pub antivirus_fail_open: bool,
    pub content: ContentScanner,
    pub rules: RuleSet,
    pub lists: ContentLists,
    pub greylist: Greylist,
    /// A store of its own, empty: every case is a client's first attempt.
    pub store: Store,
    pub ip: IpAddr,
    /// The client is an authenticated user or on an internal network.
    pub internal: bool,
    /// An allow-list entry matched (the handler's `allowed`).
    pub allowed: bool,
}

/// What the gateway decided about one message.
#[derive(Debug, Default)]
pub struct Decision {
    /// `deliver`, `reject`, `tempfail`, `discard` or `quarantine:<class>`, as the
    /// message log says; a refusal before the rules ran is `reject` or `tempfail` by
    /// the class of its reply.
    pub verdict: String,
    pub rule: Option<String>,
    pub findings: Vec<Finding>,
    /// Paths of the attachment facts (`a.zip/b.exe`).
    pub attachments: Vec<String>,
    /// The authentication summary (`spf=pass dkim=none …`), when authentication ran.
    pub auth: Option<String>,
    pub score: f64,
}

impl Gateway {
    /// MAIL FROM: SPF for outside clients (`Handler::mail`). The reply, and the SPF
    /// result kept for the message checks.
    pub async fn mail(&self, helo: &str, sender: &str) -> (Reply, Option<SpfVerdict>) {
        if self.auth.enabled() && !self.internal {
            let (spf, refuse) = self.auth.check_spf(self.ip, helo, sender).await;
            if let Some(reply) = refuse {
                return (reply, None);
            }
            return (Reply::new(250, "2.1.0", "Sender ok"), Some(spf));
        }
        (Reply::new(250, "2.1.0", "Sender ok"), None)
    }

    /// The end of DATA (`Handler::check_message`, then the disposition of `data_end`).
    pub async fn data_end(
        &self,
        raw: &[u8],
        helo: &str,
        sender: &str,
        recipients: &[String],
        spf: Option<&SpfVerdict>,
        size: usize,
    ) -> (Reply, Decision) {
        let mut decision = Decision::default();
        let mut findings: Vec<Finding> = Vec::new();
        let auth = match spf {
            Some(spf) => {
                let verdict = self
                    .auth
                    .check_message(raw, self.ip, helo, sender, spf)
                    .await;
                decision.auth = Some(verdict.summary.clone());
                match verdict.action {
                    AuthAction::Accept => Ok(None),
                    AuthAction::Quarantine => {
                        Ok(Some(Finding::new("dmarc.quarantine", 0.0, verdict.summary)))
                    }
                    AuthAction::DmarcReject(_) if self.allowed => Ok(Some(Finding::new(
                        "dmarc.override",
                        0.0,
                        format!("{}; p=reject overridden by the allow list", verdict.summary),
                    ))),
                    AuthAction::Reject(reply)
                    | AuthAction::DmarcReject(reply)
                    | AuthAction::TempFail(reply) => Err(reply),
                }
            }
            None => Ok(None),
        };
        let scanned = match &self.antivirus {
            Some(scanner) => Some(scanner.scan(raw).await),
            None => None,
        };
        // The content pipeline runs in any case here, so that a refused message still
        // shows what the checks found.
        let report = self.content.scan(raw);
        decision.attachments = report.attachments.iter().map(|a| a.path()).collect();
        let refuse = |mut decision: Decision, findings: Vec<Finding>, reply: Reply| {
            decision.verdict = if reply.is_permanent() {
                "reject"
            } else {
                "tempfail"
            }
            .into();
            decision.findings = findings;
            (reply, decision)
        };
        match auth {
            Ok(f) => findings.extend(f),
            Err(reply) => return refuse(decision, findings, reply),
        }
        match scanned {
            Some(ScanResult::Unavailable(why)) => {
                if !self.antivirus_fail_open {
                    let reply = Reply::new(
                        451,
                        "4.7.0",
                        "Error: virus scanner unavailable, try again later",
                    );
                    return refuse(decision, findings, reply);
                }
                findings.push(Finding::new("av.unscanned", 0.0, why.to_string()));
            }
            Some(result) => findings.extend(result.finding()),
            None => {}
        }
        let listed = self.lists.check(&report.text);
        findings.extend(report.findings);
        findings.extend(listed);
        if self.allowed {
            findings.push(Finding::new("list.allow", -100.0, "allow list"));
        }
        let inbound = !self.internal;
        let verdict = self.rules.evaluate(&Subject {
            inbound,
            sender,
            recipients,
            findings: &findings,
            attachments: &report.attachments,
            headers: &report.text.headers,
            size: size as u64,
        });
        decision.score = verdict.score;
        decision.rule = verdict.rule.clone();
        if self.greylist.settings().mode == GreylistMode::Suspicious
            && inbound
            && !self.allowed
            && verdict.disposition == Disposition::Deliver
            && verdict.rule.is_none()
            && let Some(reply) = self.greylisted(recipients, sender, verdict.score).await
        {
            return refuse(decision, findings, reply);
        }
        decision.findings = findings;
        let queued = Reply::new(250, "2.0.0", "Ok: queued as CASE");
        let (verdict, reply) = match verdict.disposition {
            Disposition::Deliver => ("deliver".to_string(), queued),
            Disposition::Reject(reply) => ("reject".into(), reply),
            Disposition::TempFail(reply) => ("tempfail".into(), reply),
            Disposition::Discard => ("discard".into(), queued),
            Disposition::Quarantine(class) => (format!("quarantine:{class}"), queued),
        };
        decision.verdict = verdict;
        (reply, decision)
    }

    /// `Handler::greylisted`: every triplet recorded, the first deferral returned.
    async fn greylisted(&self, recipients: &[String], sender: &str, score: f64) -> Option<Reply> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut deferred = None;
        for r in recipients {
            let triplet = Triplet::new(self.ip, sender, r);
            let decision = self
                .greylist
                .check(&self.store, &triplet, score, now)
                .await
                .expect("the in-memory greylist store answers");
            if let Some(reply) = decision.reply() {
                deferred.get_or_insert(reply);
            }
        }
        deferred
    }
}
