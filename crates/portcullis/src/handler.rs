//! The gateway's answer to each SMTP event: who may send, to whom (relay control), where
//! the body goes (the spool, with a Received header first), when 250 may be said (after
//! the commit is durable), and what the message log records.

use crate::logwriter::LogWriter;
use crate::policy::Policy;
use crate::{rfc5322_date, users};
use portcullis_filter::auth::TokioResolver;
use portcullis_filter::auth::{AuthAction, Authenticator, SpfVerdict};
use portcullis_filter::clamd::{self, ScanResult};
use portcullis_filter::content::ContentScanner;
use portcullis_filter::dmarc_report::{Applied, DmarcPending};
use portcullis_filter::dnsbl::{self, DnsblSettings, FcrdnsSettings};
use portcullis_filter::external;
use portcullis_filter::finding::{self, Finding};
use portcullis_filter::greylist::{Greylist, GreylistMode, Triplet};
use portcullis_filter::rules::{Disposition, Subject, Verdict};
use portcullis_filter::sign::SharedKeyRing;
use portcullis_queue::Queue;
use portcullis_queue::spool::{Direction, Envelope, EnvelopeRecipient, SpoolWriter, new_id, now};
use portcullis_smtp::server::{ConnInfo, Handler};
use portcullis_smtp::{MailFrom, RcptTo, Reply, Session};
use portcullis_store::{HeldMessage, LogEntry, MessageRecord, RecipientRecord, Store};
use std::net::IpAddr;
use std::sync::Arc;

/// Messages up to this size are content-scanned on the async worker itself.
const INLINE_SCAN_MAX: usize = 64 * 1024;

/// What every connection shares.
pub struct Shared {
    pub hostname: String,
    pub auth: Authenticator,
    pub policy: Policy,
    pub store: Store,
    pub queue: Queue,
    pub log: LogWriter,
    /// The content pipeline; replaced whole when the classifier's model changes.
    pub content: std::sync::RwLock<Arc<ContentScanner>>,
    pub quarantine_expiry_secs: i64,
    pub resolver: TokioResolver,
    pub antivirus: Option<clamd::Scanner>,
    pub antivirus_fail_open: bool,
    pub dnsbl: DnsblSettings,
    pub fcrdns: FcrdnsSettings,
    pub greylist: Greylist,
    /// New connections per address and minute, across the cluster; 0: no limit.
    pub connection_rate: u32,
    /// Messages per client and hour, across the cluster; 0: no limit.
    pub message_rate: u32,
    pub external: external::ExternalSettings,
    /// DKIM keys for signing outbound mail, reloaded with the policy.
    pub dkim: SharedKeyRing,
    /// ARC-seal inbound mail with this domain's DKIM key (`[auth] arc_seal_domain`).
    pub arc_seal_domain: Option<String>,
    /// Keeps what inbound messages contribute to outgoing DMARC aggregate reports.
    pub dmarc_results: crate::dmarc_reports::Collector,
}

/// What the message checks found and the rules decided.
struct Checked {
    /// Header fields to add (authentication results).
    headers: String,
    findings: Vec<Finding>,
    verdict: Verdict,
    subject: Option<String>,
    message_id: Option<String>,
    /// The mail-authentication summary (spf=… dkim=… dmarc=…), when it ran.
    auth: Option<String>,
}

pub struct GatewayHandler {
    shared: Arc<Shared>,
    conn: ConnInfo,
    /// The client's address, IPv4-mapped IPv6 shown as IPv4.
    ip: IpAddr,
    mail: Option<MailFrom>,
    recipients: Vec<RcptTo>,
    writer: Option<SpoolWriter>,
    /// SPF from MAIL time, for inbound mail when authentication is on.
    spf: Option<SpfVerdict>,
    /// An allow list entry matched a recipient of this transaction: spam checks stand down.
    allowed: bool,
    /// What the connection checks (DNSBL, FCrDNS) found; None until they ran, once per
    /// connection, at the first MAIL of an outside client.
    conn_findings: Option<Vec<Finding>>,
    /// What every recipient of this transaction must share: allowed or not, and the
    /// rules in scope.
    policy_key: Option<(bool, Vec<usize>)>,
    /// The message's contribution to a DMARC aggregate report, from the message checks
    /// until the gateway has decided what to do with it.
    dmarc: Option<DmarcPending>,
}

impl GatewayHandler {
    pub fn new(shared: Arc<Shared>, conn: ConnInfo) -> Self {
        tracing::debug!(client = %conn.peer, listener = conn.listener, "connect");
        GatewayHandler {
            shared,
            ip: crate::policy::canonical_ip(conn.peer.ip()),
            conn,
            mail: None,
            recipients: Vec::new(),
            writer: None,
            spf: None,
            allowed: false,
            conn_findings: None,
            policy_key: None,
            dmarc: None,
        }
    }

    fn internal(&self, session: &Session) -> bool {
        session.authenticated().is_some() || self.shared.policy.is_internal_ip(self.ip)
    }

    fn received_header(&self, session: &Session, id: &str) -> String {
        let with = match (session.is_tls(), session.authenticated().is_some()) {
            (false, false) => "ESMTP",
            (true, false) => "ESMTPS",
            (false, true) => "ESMTPA",
            (true, true) => "ESMTPSA",
        };
        let helo = sanitize(session.helo().unwrap_or("unknown"));
        let ip = self.ip;
        let mut h = format!(
            "Received: from {helo} ([{ip}])\r\n\tby {} (Portcullis) with {with} id {id}",
            self.shared.hostname
        );
        if let [only] = self.recipients.as_slice() {
            h.push_str(&format!("\r\n\tfor <{}>", sanitize(&only.address)));
        }
        h.push_str(&format!("; {}\r\n", rfc5322_date(now())));
        h
    }

    /// Run the message checks of mail authentication; the header fields to add, or the
    /// reply that refuses the message; and the message's contribution to a DMARC
    /// aggregate report, either way.
    async fn authenticate(
        &self,
        id: &str,
        raw: &[u8],
        session: &Session,
        sender: &str,
        spf: &SpfVerdict,
    ) -> (
        Result<(String, Option<Finding>, String), Reply>,
        Option<DmarcPending>,
    ) {
        let helo = session.helo().unwrap_or("");
        let verdict = self
            .shared
            .auth
            .check_message(raw, self.ip, helo, sender, spf)
            .await;
        tracing::debug!(id, client = %self.conn.peer, from = %sender, auth = %verdict.summary, "authentication");
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
                tracing::info!(id, client = %self.conn.peer, from = %sender, auth = %verdict.summary, "DMARC reject overridden by the allow list");
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
                tracing::info!(id, client = %self.conn.peer, from = %sender, auth = %verdict.summary, reply = %reply, "message refused by authentication");
                Err(reply)
            }
        };
        (result, verdict.dmarc)
    }

    /// Keep the contribution of the message to its From domain's DMARC aggregate report,
    /// with what was finally done with it; in the background, never delaying the reply.
    fn report_dmarc(
        &self,
        pending: Option<DmarcPending>,
        applied: Applied,
        rule: Option<&str>,
        envelope_to: Option<&str>,
    ) {
        if let Some(pending) = pending {
            self.shared
                .dmarc_results
                .record(pending.finish(applied, rule, envelope_to), now());
        }
    }

    /// The `copy` recipients (archive mailboxes) of a message that is held or dropped
    /// still get it: queued durably before the reply, under an id of its own.
    fn archive_copies(
        &self,
        envelope: &Envelope,
        copies: &[String],
        body: &[u8],
    ) -> Result<(), Reply> {
        if copies.is_empty() {
            return Ok(());
        }
        let copy = Envelope {
            id: format!("{}C", envelope.id),
            recipients: copies.iter().map(|a| policy_recipient(a)).collect(),
            ..envelope.clone()
        };
        let spool = self.shared.queue.spool().clone();
        match tokio::task::block_in_place(|| spool.store_message(&copy, body)) {
            Ok(()) => {
                self.shared.queue.enqueue(&copy.id);
                Ok(())
            }
            Err(e) => {
                tracing::error!(id = %envelope.id, error = %e, "archive copy could not be queued");
                Err(Reply::new(
                    451,
                    "4.3.0",
                    "Error: queue file write error, try again later",
                ))
            }
        }
    }

    /// Sign outbound mail with the DKIM keys of its From domain, over the message exactly
    /// as it will leave (added headers and all); the signature goes in front. A signing
    /// failure sends the message unsigned, logged: it is no reason to refuse mail.
    fn dkim_sign(&self, envelope: &mut Envelope, body: &[u8]) {
        let ring = self.shared.dkim.current();
        let mut full = Vec::with_capacity(envelope.prepend.len() + body.len());
        full.extend_from_slice(envelope.prepend.as_bytes());
        full.extend_from_slice(body);
        match tokio::task::block_in_place(|| ring.sign(&full)) {
            Ok(Some(fields)) => envelope.prepend.insert_str(0, &fields),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(id = %envelope.id, error = %e, "DKIM signing failed; sent unsigned")
            }
        }
    }

    /// ARC-seal inbound mail as it is forwarded to the domain's servers (`[auth]
    /// arc_seal_domain`), over the message as it leaves, so that they can trust the
    /// results we saw even after our changes. A failure is logged, the mail goes unsealed.
    async fn arc_seal(
        &mut self,
        envelope: &mut Envelope,
        received: &[u8],
        body: &[u8],
        session: &Session,
    ) {
        let (Some(domain), Some(spf)) = (&self.shared.arc_seal_domain, self.spf.take()) else {
            return;
        };
        let ring = self.shared.dkim.current();
        let Some(signer) = ring.signer(domain) else {
            tracing::warn!(id = %envelope.id, domain, "no active DKIM key for the ARC sealing domain; not sealed");
            return;
        };
        let outgoing = [envelope.prepend.as_bytes(), body].concat();
        let sealed = self
            .shared
            .auth
            .arc_seal(
                signer,
                received,
                &outgoing,
                self.ip,
                session.helo().unwrap_or(""),
                &envelope.sender,
                &spf,
            )
            .await;
        match sealed {
            Ok(Some(fields)) => envelope.prepend.insert_str(0, &fields),
            Ok(None) => {
                tracing::info!(id = %envelope.id, domain, "not ARC-sealed: no RSA key, or the chain arrived broken")
            }
            Err(e) => {
                tracing::warn!(id = %envelope.id, error = %e, "ARC sealing failed; sent unsealed")
            }
        }
    }

    /// Count one hit against a cluster-wide limit; true when it is exceeded. A store
    /// failure lets the client through: a limit is not worth refusing all mail over.
    async fn over_rate(&self, key: &str, window_secs: i64, limit: u32) -> bool {
        match self.shared.store.rate_hit(key, window_secs, now()).await {
            Ok(hits) if hits > i64::from(limit) => {
                tracing::warn!(client = %self.conn.peer, key, hits, limit, "rate limit reached");
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "rate counter failed; letting the client through");
                false
            }
        }
    }

    /// DNSBL and FCrDNS for the client, once per connection.
    async fn connection_checks(&mut self) -> &[Finding] {
        if self.conn_findings.is_none() {
            let sh = &self.shared;
            let fcrdns_on = sh.fcrdns.enabled;
            let (listed, fcrdns) =
                tokio::join!(dnsbl::check_ip(&sh.resolver, &sh.dnsbl, self.ip), async {
                    if fcrdns_on {
                        Some(dnsbl::fcrdns(&sh.resolver, self.ip, &sh.fcrdns).await)
                    } else {
                        None
                    }
                });
            for u in &listed.unavailable {
                tracing::warn!(client = %self.conn.peer, zone = %u.zone, reason = %u.reason, "DNSBL unavailable");
            }
            let mut findings = listed.findings;
            if let Some(f) = fcrdns {
                if let dnsbl::Fcrdns::TempError(e) = &f {
                    tracing::debug!(client = %self.conn.peer, error = %e, "FCrDNS not decided");
                }
                findings.extend(f.findings(self.ip, &sh.fcrdns));
            }
            if !findings.is_empty() {
                tracing::info!(client = %self.conn.peer, findings = %findings.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(","), "connection checks");
            }
            self.conn_findings = Some(findings);
        }
        self.conn_findings.as_deref().unwrap_or_default()
    }

    /// Greylisting of every recipient; the reply when one must wait. A store failure lets
    /// the mail through: greylisting is a delay, never worth losing mail over.
    async fn greylisted(&self, recipients: &[String], sender: &str, score: f64) -> Option<Reply> {
        let now = now();
        // Every triplet is recorded before deferring once, so a message to several
        // recipients waits one round, not one per recipient.
        let mut deferred = None;
        for r in recipients {
            let triplet = Triplet::new(self.ip, sender, r);
            match self
                .shared
                .greylist
                .check(&self.shared.store, &triplet, score, now)
                .await
            {
                Ok(decision) => {
                    if let Some(reply) = decision.reply() {
                        tracing::info!(client = %self.conn.peer, from = %sender, to = %r, score, "greylisted");
                        deferred.get_or_insert(reply);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "greylist store failed; letting the mail through");
                    return None;
                }
            }
        }
        deferred
    }

    /// Every message check, then the rules: the headers to add (authentication results),
    /// the findings, and the verdict. Err is a reply that refuses the message before any
    /// rule runs (authentication refusals, an unavailable check that fails closed).
    async fn check_message(
        &mut self,
        id: &str,
        raw: &[u8],
        content_input: &[u8],
        session: &Session,
        sender: &str,
        size: usize,
    ) -> Result<Checked, Reply> {
        let mut headers = String::new();
        let mut findings: Vec<Finding> = self.conn_findings.clone().unwrap_or_default();
        // Kept for the ARC seal at the end, when there is one to make.
        let spf = if self.shared.arc_seal_domain.is_some() {
            self.spf.clone()
        } else {
            self.spf.take()
        };
        let av = self.shared.antivirus.clone();
        let recipients_now: Vec<String> =
            self.recipients.iter().map(|r| r.address.clone()).collect();
        let ext_ctx = external::ExternalContext {
            ip: Some(self.ip),
            helo: session.helo().unwrap_or(""),
            sender,
            recipients: &recipients_now,
            id,
        };
        let ext_settings = &self.shared.external;
        let (auth, scanned, ext) = tokio::join!(
            async {
                match &spf {
                    Some(spf) => {
                        let (result, dmarc) =
                            self.authenticate(id, raw, session, sender, spf).await;
                        (result.map(Some), dmarc)
                    }
                    None => (Ok(None), None),
                }
            },
            async {
                match &av {
                    Some(scanner) => Some(scanner.scan(raw).await),
                    None => None,
                }
            },
            async {
                if ext_settings.enabled() {
                    Some(external::check(ext_settings, &ext_ctx, content_input).await)
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
                tracing::error!(id, reason = %why, fail_open = self.shared.antivirus_fail_open, "virus scanner unavailable");
                if !self.shared.antivirus_fail_open {
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
        let snapshot = self.shared.policy.current();
        let scan = || {
            let scanner = self
                .shared
                .content
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let report = scanner.scan(content_input);
            let listed = snapshot.filter.content.check(&report.text);
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
        if !self.shared.dnsbl.uribl.is_empty() && !self.allowed {
            let listed =
                dnsbl::check_urls(&self.shared.resolver, &self.shared.dnsbl, &report.text.urls)
                    .await;
            for u in &listed.unavailable {
                tracing::warn!(id, zone = %u.zone, reason = %u.reason, "URIBL unavailable");
            }
            findings.extend(listed.findings);
        }
        if self.allowed {
            findings.push(Finding::new("list.allow", -100.0, "allow list"));
        }
        let inbound = !self.internal(session);
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
        if self.shared.greylist.settings().mode == GreylistMode::Suspicious
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

/// Keep header text to printable ASCII so nothing a client sends can break the header.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .take(255)
        .collect()
}

impl Handler for GatewayHandler {
    async fn connect(&mut self) -> Option<Reply> {
        if self.shared.connection_rate == 0 {
            return None;
        }
        let key = format!("conn:{}", self.ip);
        self.over_rate(&key, 60, self.shared.connection_rate)
            .await
            .then(|| {
                Reply::new(
                    421,
                    "4.7.0",
                    "Too many connections from your address in a short time, try again later",
                )
            })
    }

    async fn auth(&mut self, _session: &Session, username: &str, password: &str) -> Reply {
        match users::verify(&self.shared.store, username, password).await {
            Ok(true) => {
                tracing::info!(client = %self.conn.peer, user = username, "authenticated");
                Reply::new(235, "2.7.0", "Authentication successful")
            }
            Ok(false) => {
                tracing::warn!(client = %self.conn.peer, user = username, "authentication failed");
                Reply::new(535, "5.7.8", "Authentication credentials invalid")
            }
            Err(e) => {
                tracing::error!(error = %e, "user lookup failed");
                Reply::new(454, "4.7.0", "Temporary authentication failure")
            }
        }
    }

    async fn mail(&mut self, session: &Session, mail: &MailFrom) -> Reply {
        if !mail.address.is_empty() {
            match crate::policy::split_address(&mail.address) {
                None => return Reply::new(501, "5.1.7", "Bad sender address syntax"),
                Some((local, _)) if !crate::policy::forwardable_local_part(local) => {
                    return Reply::new(553, "5.1.7", "Sender address cannot be relayed intact");
                }
                Some(_) => {}
            }
        }
        self.spf = None;
        if self.shared.message_rate > 0 {
            let key = match session.authenticated() {
                Some(user) => format!("msg:user:{user}"),
                None => format!("msg:ip:{}", self.ip),
            };
            if self.over_rate(&key, 3600, self.shared.message_rate).await {
                return Reply::new(
                    450,
                    "4.7.1",
                    "Error: too many messages, slow down and try again later",
                );
            }
        }
        if !self.internal(session) {
            self.connection_checks().await;
        }
        if self.shared.auth.enabled() && !self.internal(session) {
            let helo = session.helo().unwrap_or("");
            let (spf, refuse) = self
                .shared
                .auth
                .check_spf(self.ip, helo, &mail.address)
                .await;
            if let Some(reply) = refuse {
                tracing::info!(client = %self.conn.peer, from = %mail.address, reply = %reply, "sender refused by SPF");
                return reply;
            }
            self.spf = Some(spf);
        }
        self.mail = Some(mail.clone());
        self.recipients.clear();
        self.allowed = false;
        self.policy_key = None;
        Reply::new(250, "2.1.0", "Sender ok")
    }

    async fn rcpt(&mut self, session: &Session, rcpt: &RcptTo) -> Reply {
        let internal = self.internal(session);
        let sender = self
            .mail
            .as_ref()
            .map(|m| m.address.clone())
            .unwrap_or_default();
        let snapshot = self.shared.policy.current();
        let checked = self
            .shared
            .policy
            .check_recipient(&rcpt.address, internal)
            .and_then(|()| {
                let allowed =
                    snapshot
                        .filter
                        .lists
                        .check(self.ip, &sender, &rcpt.address, !internal)?;
                // An envelope sender can be forged: a sender entry counts only when SPF
                // vouches for it (or when authentication is off, the administrator's call).
                Ok(match allowed {
                    Some("sender") => {
                        internal
                            || !self.shared.auth.enabled()
                            || self.spf.as_ref().is_some_and(|s| s.mail_from_pass())
                    }
                    Some(_) => true,
                    None => false,
                })
            });
        // One verdict serves every recipient of a transaction, so they must share the
        // same rules and lists; a recipient whose policy differs is asked for again in
        // a transaction of its own (452: the client sends it after this one).
        let checked = checked.and_then(|allowed| {
            let key = (
                allowed,
                snapshot
                    .filter
                    .rules
                    .scope_of(!internal, &sender, &rcpt.address),
            );
            match &self.policy_key {
                Some(first) if !self.recipients.is_empty() && *first != key => Err(Reply::new(
                    452,
                    "4.5.3",
                    "Recipient has a different policy, send it in a separate transaction",
                )),
                _ => {
                    self.policy_key = Some(key);
                    Ok(allowed)
                }
            }
        });
        let checked = match checked {
            Ok(allowed)
                if !internal
                    && !allowed
                    && self.shared.greylist.settings().mode == GreylistMode::Always =>
            {
                let score = finding::total_score(self.conn_findings.as_deref().unwrap_or_default());
                match self
                    .greylisted(std::slice::from_ref(&rcpt.address), &sender, score)
                    .await
                {
                    Some(reply) => Err(reply),
                    None => Ok(false),
                }
            }
            other => other,
        };
        match checked {
            Ok(allowed) => {
                self.allowed = allowed;
                self.recipients.push(rcpt.clone());
                Reply::new(250, "2.1.5", "Recipient ok")
            }
            Err(reply) => {
                tracing::info!(
                    client = %self.conn.peer,
                    from = %sender,
                    to = %rcpt.address,
                    reply = %reply,
                    "recipient refused"
                );
                reply
            }
        }
    }

    async fn data_start(&mut self, _session: &Session) -> Reply {
        let id = new_id();
        if let Some(mut old) = self.writer.take() {
            old.discard();
        }
        self.writer = Some(self.shared.queue.spool().writer(id));
        Reply::new(354, "", "End data with <CR><LF>.<CR><LF>")
    }

    async fn data_chunk(&mut self, bytes: &[u8]) {
        if let Some(w) = &mut self.writer {
            w.write(bytes);
        }
    }

    async fn data_end(&mut self, session: &Session, size: usize) -> Reply {
        let (Some(mut writer), Some(mail)) = (self.writer.take(), self.mail.take()) else {
            return Reply::new(451, "4.3.0", "Error: no message in progress");
        };
        let id = writer.id().to_string();
        let internal = self.internal(session);
        // Handing the worker to another thread costs more than reading a body that is
        // still in memory: only a spilled body is read back under block_in_place.
        let contents = if writer.spilled() {
            tokio::task::block_in_place(|| writer.contents())
        } else {
            writer.contents()
        };
        let checked = match contents {
            Ok(raw) => {
                let raw = raw.into_owned();
                // Fields an outsider may not set are removed before the content checks
                // and rules see the message (authentication still verifies the original).
                let cleaned = if internal {
                    None
                } else {
                    crate::filtering::remove_forged_fields(&raw, self.shared.auth.authserv_id())
                };
                let scanned = cleaned.as_deref().unwrap_or(&raw);
                let result = self
                    .check_message(&id, &raw, scanned, session, &mail.address, size)
                    .await;
                result.map(|c| (c, raw, cleaned))
            }
            Err(e) => {
                tracing::error!(id, error = %e, "spool read failed");
                Err(Reply::new(
                    451,
                    "4.3.0",
                    "Error: queue file read error, try again later",
                ))
            }
        };
        // What DMARC reporting needs, whatever comes of the message: only a final answer
        // (delivered, held, refused for good) is reported, never a 4xx the client retries.
        let dmarc = self.dmarc.take();
        let envelope_to = self
            .recipients
            .first()
            .and_then(|r| r.address.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        let (
            Checked {
                headers: added,
                findings,
                mut verdict,
                subject,
                message_id,
                auth,
            },
            raw,
            cleaned,
        ) = match checked {
            Ok(c) => c,
            Err(reply) => {
                writer.discard();
                self.recipients.clear();
                if reply.is_permanent() {
                    // Refused for good (a DMARC p=reject failure among others).
                    self.report_dmarc(dmarc, Applied::Rejected, None, envelope_to.as_deref());
                }
                return reply;
            }
        };
        let direction = if internal {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        let base = cleaned.as_deref().unwrap_or(&raw);
        let changed = crate::filtering::apply_changes(base, &verdict.changes);
        if !changed.not_stripped.is_empty() && verdict.disposition == Disposition::Deliver {
            // A rule said to remove them and they could not be: fail closed.
            tracing::warn!(id, files = ?changed.not_stripped, "attachments could not be removed; quarantined instead");
            verdict.disposition = Disposition::Quarantine("policy".into());
            verdict.rule = changed.strip_rule.clone();
        }
        let rewritten = changed.body.or(cleaned);
        let mut prepend = self.received_header(session, &id);
        prepend.push_str(&added);
        prepend.push_str(&changed.headers);
        let original_recipients: Vec<EnvelopeRecipient> = self
            .recipients
            .drain(..)
            .map(|r| EnvelopeRecipient {
                address: r.address,
                orcpt: r.orcpt,
                notify: r.notify,
            })
            .collect();
        let mut recipients = match &verdict.redirect {
            Some(to) => to.iter().map(|a| policy_recipient(a)).collect(),
            None => original_recipients.clone(),
        };
        recipients.extend(verdict.copies.iter().map(|a| policy_recipient(a)));
        let mut envelope = Envelope {
            id: id.clone(),
            received_at: now(),
            client_ip: self.ip.to_string(),
            helo: session.helo().unwrap_or("").to_string(),
            direction,
            auth_user: session.authenticated().map(str::to_string),
            sender: mail.address.clone(),
            eight_bit: mail.eight_bit,
            smtputf8: mail.smtputf8,
            ret: mail.ret,
            envid: mail.envid.clone(),
            recipients,
            prepend,
        };
        let findings_json = serde_json::to_string(&findings).unwrap_or_default();
        let mut record = log_record(&envelope, size, subject.clone(), message_id);
        record.score = Some(verdict.score);
        record.rule = verdict.rule.clone();
        record.findings = Some(findings_json.clone());
        record.verdict = Some(match &verdict.disposition {
            Disposition::Deliver => "deliver".to_string(),
            Disposition::Reject(_) => "reject".into(),
            Disposition::TempFail(_) => "tempfail".into(),
            Disposition::Discard => "discard".into(),
            Disposition::Quarantine(class) => format!("quarantine:{class}"),
        });
        let finding_names = findings
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        // Mail that is delivered gets one line ("queued", below) with all of this.
        if verdict.disposition != Disposition::Deliver {
            tracing::info!(
                id,
                client = %self.conn.peer,
                auth = auth.as_deref().unwrap_or("-"),
                score = verdict.score,
                verdict = record.verdict.as_deref().unwrap_or(""),
                rule = verdict.rule.as_deref().unwrap_or(""),
                findings = %finding_names,
                "checked"
            );
        }
        // Anything but delivery: nothing goes to the queue, the log says why.
        let final_status = |record: &mut MessageRecord, status: &str, reply: &str| {
            record.recipients = original_recipients
                .iter()
                .map(|r| RecipientRecord {
                    address: r.address.clone(),
                    status: status.into(),
                    reply: Some(reply.to_string()),
                    remote_host: None,
                    updated_at: envelope.received_at,
                    attempts: 0,
                })
                .collect();
        };
        match verdict.disposition {
            Disposition::Deliver => {}
            Disposition::Reject(reply) | Disposition::TempFail(reply) => {
                writer.discard();
                if reply.is_permanent() {
                    final_status(&mut record, "rejected", &reply.to_string());
                    self.shared.log.write(LogEntry::Message(record));
                    self.report_dmarc(
                        dmarc,
                        Applied::Rejected,
                        verdict.rule.as_deref(),
                        envelope_to.as_deref(),
                    );
                }
                return reply;
            }
            Disposition::Discard => {
                writer.discard();
                if let Err(reply) = self.archive_copies(
                    &envelope,
                    &verdict.copies,
                    rewritten.as_deref().unwrap_or(&raw),
                ) {
                    return reply;
                }
                final_status(&mut record, "discarded", "discarded by policy");
                self.shared.log.write(LogEntry::Message(record));
                self.report_dmarc(
                    dmarc,
                    Applied::Rejected,
                    verdict.rule.as_deref(),
                    envelope_to.as_deref(),
                );
                return Reply::new(250, "2.0.0", format!("Ok: queued as {id}"));
            }
            Disposition::Quarantine(class) => {
                let mut body = envelope.prepend.clone().into_bytes();
                body.extend_from_slice(rewritten.as_deref().unwrap_or(&raw));
                let held = HeldMessage {
                    id: id.clone(),
                    received_at: envelope.received_at,
                    expires_at: envelope.received_at + self.shared.quarantine_expiry_secs,
                    sender: envelope.sender.clone(),
                    subject: subject.clone(),
                    class: class.clone(),
                    score: verdict.score,
                    rule: verdict.rule.clone(),
                    findings: findings_json,
                    envelope: serde_json::to_string(&Envelope {
                        prepend: String::new(),
                        recipients: original_recipients.clone(),
                        ..envelope.clone()
                    })
                    .unwrap_or_default(),
                    body,
                    recipients: original_recipients
                        .iter()
                        .map(|r| r.address.clone())
                        .collect(),
                    direction: direction.as_str().to_string(),
                };
                writer.discard();
                if let Err(reply) = self.archive_copies(
                    &envelope,
                    &verdict.copies,
                    rewritten.as_deref().unwrap_or(&raw),
                ) {
                    return reply;
                }
                // The store commits durably (a synchronous transaction) before we answer.
                if let Err(e) = self.shared.store.quarantine_hold(&held).await {
                    tracing::error!(id, error = %e, "quarantine failed");
                    return Reply::new(
                        451,
                        "4.3.0",
                        "Error: quarantine unavailable, try again later",
                    );
                }
                final_status(
                    &mut record,
                    "quarantined",
                    &format!("quarantined ({class})"),
                );
                self.shared.log.write(LogEntry::Message(record));
                self.report_dmarc(
                    dmarc,
                    Applied::Quarantined,
                    verdict.rule.as_deref(),
                    envelope_to.as_deref(),
                );
                tracing::info!(id, class, "quarantined");
                return Reply::new(250, "2.0.0", format!("Ok: queued as {id}"));
            }
        }
        if internal {
            self.dkim_sign(&mut envelope, rewritten.as_deref().unwrap_or(&raw));
        } else {
            self.arc_seal(
                &mut envelope,
                &raw,
                rewritten.as_deref().unwrap_or(&raw),
                session,
            )
            .await;
        }
        let kept = match rewritten {
            Some(body) => {
                writer.discard();
                let spool = self.shared.queue.spool().clone();
                tokio::task::block_in_place(|| spool.store_message(&envelope, &body)).map(|()| None)
            }
            None => writer.commit(envelope.clone()).await,
        };
        let kept = match kept {
            Ok(kept) => kept,
            Err(e) => {
                tracing::error!(id, error = %e, "spool commit failed");
                return Reply::new(
                    451,
                    "4.3.0",
                    "Error: queue file write error, try again later",
                );
            }
        };
        // Queued before the message is enqueued, so its record precedes its updates.
        self.shared.log.write(LogEntry::Message(record));
        self.report_dmarc(
            dmarc,
            Applied::Delivered,
            verdict.rule.as_deref(),
            envelope_to.as_deref(),
        );
        tracing::info!(
            id,
            client = %self.conn.peer,
            direction = direction.as_str(),
            from = %envelope.sender,
            to = ?envelope.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(),
            size,
            auth = auth.as_deref().unwrap_or("-"),
            score = verdict.score,
            rule = verdict.rule.as_deref().unwrap_or(""),
            findings = %finding_names,
            "queued"
        );
        match kept {
            Some(message) => self.shared.queue.enqueue_with(envelope, message),
            None => self.shared.queue.enqueue(&id),
        }
        // DMARC aggregate and TLS-RPT reports to our domains are also kept for the
        // `report` commands; in the background, the message is queued either way. Only
        // messages that can be one (a cheap look at the header) are handed over.
        if direction == Direction::Inbound && crate::reports::may_be_report(&raw) {
            let store = self.shared.store.clone();
            tokio::spawn(async move {
                crate::reports::intake(&store, &raw).await;
            });
        }
        Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
    }

    async fn data_aborted(&mut self) {
        if let Some(mut w) = self.writer.take() {
            w.discard();
        }
    }

    fn reset(&mut self) {
        if let Some(mut w) = self.writer.take() {
            w.discard();
        }
        self.spf = None;
        self.mail = None;
        self.recipients.clear();
        self.allowed = false;
        self.policy_key = None;
        self.dmarc = None;
    }
}

/// A recipient a rule added (redirect, archive copy): the sender never asked for it, so
/// no delivery notices about it go back to them.
fn policy_recipient(address: &str) -> EnvelopeRecipient {
    EnvelopeRecipient {
        address: address.to_string(),
        orcpt: None,
        notify: Some(vec!["NEVER".into()]),
    }
}

/// The message-log record of a newly queued message, every recipient `queued`.
pub fn log_record(
    envelope: &Envelope,
    size: usize,
    subject: Option<String>,
    message_id: Option<String>,
) -> MessageRecord {
    MessageRecord {
        id: envelope.id.clone(),
        received_at: envelope.received_at,
        client_ip: envelope.client_ip.clone(),
        helo: envelope.helo.clone(),
        direction: envelope.direction.as_str().to_string(),
        sender: envelope.sender.clone(),
        size: size as i64,
        auth_user: envelope.auth_user.clone(),
        message_id,
        subject,
        verdict: None,
        rule: None,
        score: None,
        findings: None,
        recipients: envelope
            .recipients
            .iter()
            .map(|r| RecipientRecord {
                address: r.address.clone(),
                status: "queued".into(),
                reply: None,
                remote_host: None,
                updated_at: envelope.received_at,
                attempts: 0,
            })
            .collect(),
    }
}
