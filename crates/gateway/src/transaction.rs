//! One mail transaction on the message path: who may send (MAIL), to whom (RCPT: relay
//! control, lists, greylisting, one policy per transaction), where the body goes (a spool
//! writer). At the end of the data come the scan (`scan`) and what is done with
//! the message (`disposition`, which adds `data_end`: the arrows point from the later
//! steps to this one, never back). It takes a plain [`Client`] at each step, not a
//! protocol session, so SMTP, collection and a re-scan share it.

use crate::dmarc_reports::Collector;
use crate::logwriter::LogWriter;
use crate::metrics::{Check, timed};
use crate::policy::Policy;
use crate::submission::{Client, Peer};
use crate::users;
use portcullis_filter::auth::{Authenticator, SpfVerdict, TokioResolver};
use portcullis_filter::clamd;
use portcullis_filter::content::ContentScanner;
use portcullis_filter::dmarc_report::DmarcPending;
use portcullis_filter::dnsbl;
use portcullis_filter::external;
use portcullis_filter::finding::{self, Finding};
use portcullis_filter::greylist::{GreylistMode, Triplet};
use portcullis_filter::sign::SharedKeyRing;
use portcullis_queue::Queue;
use portcullis_queue::spool::{SpoolWriter, new_id, now};
use portcullis_smtp::{MailFrom, RcptTo, Reply};
use portcullis_store::{LogEntry, MessageRecord, RecipientRecord, Store};
use std::sync::Arc;
use std::time::Instant;

/// Refused recipients of one transaction written to the message log at the most (a
/// dictionary attack's thousandth guess says nothing the first hundred did not).
const MAX_REFUSED_LOGGED: usize = 100;

/// Marks a recipient let through while its directory could not answer.
const UNVERIFIED: &str = "(unavailable, accepted unverified)";

/// The message-log finding for an accepted recipient that a directory source decided:
/// `directory.known` (the source vouched for it) or `directory.unverified` (accepted
/// while the source was down, `on_unavailable = "accept"`).
fn directory_finding(address: &str, decided_by: Option<String>) -> Option<(&'static str, String)> {
    let source = decided_by?;
    Some(match source.strip_suffix(UNVERIFIED) {
        Some(name) => (
            "directory.unverified",
            format!("{address} by {}", name.trim_end()),
        ),
        None => ("directory.known", format!("{address} by {source}")),
    })
}

/// What every transaction of a running gateway shares: the checks, the policy, the store,
/// the queue and the message log.
pub struct Gateway {
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
    pub dmarc_results: Collector,
    /// Recipient verification and logins per domain (`[directory.*]`, `[domain.*]`).
    pub directories: Arc<portcullis_directory::Directories>,
}

impl Gateway {
    /// Greylisting, DNSBL and FCrDNS settings in force (the file's, with the store's
    /// changes; reloaded with the policy).
    pub fn checks(&self) -> Arc<crate::checks::Checks> {
        self.policy.current().checks.clone()
    }
}

/// The state of one connection's current transaction.
pub struct Transaction {
    pub(crate) gw: Arc<Gateway>,
    pub(crate) peer: Peer,
    pub(crate) mail: Option<MailFrom>,
    pub(crate) recipients: Vec<RcptTo>,
    pub(crate) writer: Option<SpoolWriter>,
    /// SPF from MAIL time, for inbound mail when authentication is on.
    pub(crate) spf: Option<SpfVerdict>,
    /// An allow list entry matched a recipient of this transaction: spam checks stand down.
    pub(crate) allowed: bool,
    /// What the connection checks (DNSBL, FCrDNS) found; None until they ran, once per
    /// connection, at the first MAIL of an outside client.
    pub(crate) conn_findings: Option<Vec<Finding>>,
    /// What every recipient of this transaction must share: allowed or not, and the
    /// rules in scope.
    policy_key: Option<(bool, Vec<usize>)>,
    /// The message's contribution to a DMARC aggregate report, from the message checks
    /// until the gateway has decided what to do with it.
    pub(crate) dmarc: Option<DmarcPending>,
    /// Recipients refused at RCPT in this transaction, with the client's HELO name, login
    /// and direction: one message-log record for them when the transaction ends, so that
    /// "why did it not arrive?" has an answer for mail that never got to DATA.
    refused: Vec<RecipientRecord>,
    refused_client: Option<(String, Option<String>, bool)>,
    /// Which directory source vouched for each accepted recipient (or let it through
    /// unverified while down): findings of score 0, for the message log.
    pub(crate) directory_findings: Vec<Finding>,
}

impl Transaction {
    pub fn new(gw: Arc<Gateway>, peer: Peer) -> Self {
        Transaction {
            gw,
            peer,
            mail: None,
            recipients: Vec::new(),
            writer: None,
            spf: None,
            allowed: false,
            conn_findings: None,
            policy_key: None,
            dmarc: None,
            refused: Vec::new(),
            refused_client: None,
            directory_findings: Vec::new(),
        }
    }

    /// Mail from an authenticated user or an internal network is outbound; the rest is
    /// inbound and held to every check.
    pub(crate) fn internal(&self, client: &Client) -> bool {
        client.auth_user.is_some() || self.gw.policy.is_internal_ip(self.peer.ip)
    }

    /// A new connection, before the greeting: Some reply turns it away (rate limit).
    pub async fn connect(&mut self) -> Option<Reply> {
        if self.gw.connection_rate == 0 {
            return None;
        }
        let key = format!("conn:{}", self.peer.ip);
        self.over_rate(&key, 60, self.gw.connection_rate)
            .await
            .then(|| {
                Reply::new(
                    421,
                    "4.7.0",
                    "Too many connections from your address in a short time, try again later",
                )
            })
    }

    /// A password check for SMTP AUTH (or any protocol's login): the directory of the
    /// login's domain when one is set (`[domain.*] auth`), else the store's users. The
    /// password is never logged.
    pub async fn auth(&mut self, username: &str, password: &str) -> Reply {
        use portcullis_directory::LoginCheck;
        let checked = match self.gw.directories.authenticate(username, password).await {
            Some(LoginCheck::Accepted { source }) => Ok((true, source)),
            Some(LoginCheck::Refused { source }) => Ok((false, source)),
            Some(LoginCheck::Unavailable { source, reason }) => Err(format!("{source}: {reason}")),
            None => users::verify(&self.gw.store, username, password)
                .await
                .map(|ok| (ok, portcullis_directory::domains::STORE_SOURCE.to_string()))
                .map_err(|e| e.to_string()),
        };
        match checked {
            Ok((true, source)) => {
                tracing::info!(client = %self.peer.addr, user = username, source = %source, "authenticated");
                Reply::new(235, "2.7.0", "Authentication successful")
            }
            Ok((false, source)) => {
                tracing::warn!(client = %self.peer.addr, user = username, source = %source, "authentication failed");
                Reply::new(535, "5.7.8", "Authentication credentials invalid")
            }
            Err(e) => {
                tracing::error!(error = %e, user = username, "user lookup failed");
                Reply::new(454, "4.7.0", "Temporary authentication failure")
            }
        }
    }

    /// The sender: address syntax, rate limit, connection checks and SPF for outsiders.
    pub async fn mail(&mut self, client: &Client<'_>, mail: &MailFrom) -> Reply {
        self.log_refused();
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
        if self.gw.message_rate > 0 {
            let key = match client.auth_user {
                Some(user) => format!("msg:user:{user}"),
                None => format!("msg:ip:{}", self.peer.ip),
            };
            if self.over_rate(&key, 3600, self.gw.message_rate).await {
                return Reply::new(
                    450,
                    "4.7.1",
                    "Error: too many messages, slow down and try again later",
                );
            }
        }
        let internal = self.internal(client);
        if !internal {
            self.connection_checks().await;
        }
        if self.gw.auth.enabled() && !internal {
            let started = Instant::now();
            let (spf, refuse) = self
                .gw
                .auth
                .check_spf(self.peer.ip, client.helo, &mail.address)
                .await;
            timed(Check::Spf, started);
            if let Some(reply) = refuse {
                tracing::info!(client = %self.peer.addr, from = %mail.address, reply = %reply, "sender refused by SPF");
                return reply;
            }
            self.spf = Some(spf);
        }
        self.mail = Some(mail.clone());
        self.recipients.clear();
        self.directory_findings.clear();
        self.allowed = false;
        self.policy_key = None;
        Reply::new(250, "2.1.0", "Sender ok")
    }

    /// One recipient: relay control, lists, one policy per transaction, greylisting.
    pub async fn rcpt(&mut self, client: &Client<'_>, rcpt: &RcptTo) -> Reply {
        let internal = self.internal(client);
        let sender = self
            .mail
            .as_ref()
            .map(|m| m.address.clone())
            .unwrap_or_default();
        let snapshot = self.gw.policy.current();
        let checked = self
            .gw
            .policy
            .check_recipient(&rcpt.address, internal)
            .and_then(|()| {
                let allowed =
                    snapshot
                        .filter
                        .lists
                        .check(self.peer.ip, &sender, &rcpt.address, !internal)?;
                // An envelope sender can be forged: a sender entry counts only when SPF
                // vouches for it (or when authentication is off, the administrator's call).
                Ok(match allowed {
                    Some("sender") => {
                        internal
                            || !self.gw.auth.enabled()
                            || self.spf.as_ref().is_some_and(|s| s.mail_from_pass())
                    }
                    Some(_) => true,
                    None => false,
                })
            });
        // Recipient verification for outsiders, after the lists (a block still wins):
        // unknown is refused now, never bounced after DATA.
        let mut decided_by = None;
        let checked = match checked {
            Ok(allowed) if !internal && self.gw.directories.verifies_recipients() => self
                .verify_recipient(&rcpt.address, &mut decided_by)
                .await
                .map(|()| allowed),
            other => other,
        };
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
                    && self.gw.checks().greylist.settings().mode == GreylistMode::Always =>
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
                if let Some((name, detail)) = directory_finding(&rcpt.address, decided_by) {
                    self.directory_findings
                        .push(Finding::new(name, 0.0, detail));
                }
                self.recipients.push(rcpt.clone());
                Reply::new(250, "2.1.5", "Recipient ok")
            }
            Err(reply) => {
                tracing::info!(
                    client = %self.peer.addr,
                    from = %sender,
                    to = %rcpt.address,
                    reply = %reply,
                    "recipient refused"
                );
                if self.refused.len() < MAX_REFUSED_LOGGED {
                    let mut logged = reply.to_string().trim_end().replace("\r\n", " ");
                    if let Some(source) = &decided_by {
                        logged.push_str(&format!(" (directory {source})"));
                    }
                    self.refused.push(RecipientRecord {
                        address: rcpt.address.clone(),
                        status: "rejected".into(),
                        reply: Some(logged),
                        remote_host: None,
                        updated_at: now(),
                        attempts: 0,
                    });
                    self.refused_client = Some((
                        client.helo.to_string(),
                        client.auth_user.map(str::to_string),
                        internal,
                    ));
                }
                reply
            }
        }
    }

    /// Ask the recipient's directory: unknown is `550 5.1.1`; a source that cannot answer
    /// is `451 4.4.3` unless its domain says accept. `decided_by` names the source.
    async fn verify_recipient(
        &self,
        address: &str,
        decided_by: &mut Option<String>,
    ) -> Result<(), Reply> {
        use portcullis_directory::RecipientCheck;
        match self.gw.directories.check_recipient(address).await {
            RecipientCheck::NotChecked => Ok(()),
            RecipientCheck::Known { source } => {
                tracing::debug!(to = %address, directory = %source, "recipient known");
                *decided_by = Some(source);
                Ok(())
            }
            RecipientCheck::Unknown { source } => {
                tracing::info!(to = %address, directory = %source, "recipient unknown");
                *decided_by = Some(source);
                Err(Reply::new(
                    550,
                    "5.1.1",
                    "Recipient address rejected: user unknown",
                ))
            }
            RecipientCheck::Unavailable {
                source,
                reason,
                accept,
            } => {
                tracing::warn!(to = %address, directory = %source, error = %reason, accept, "directory unavailable");
                if accept {
                    *decided_by = Some(format!("{source} {UNVERIFIED}"));
                    Ok(())
                } else {
                    *decided_by = Some(source);
                    Err(Reply::new(
                        451,
                        "4.4.3",
                        "Directory unavailable, try again later",
                    ))
                }
            }
        }
    }

    /// The recipients refused in this transaction, as one message-log record with the
    /// verdict `reject`, an id of its own (`...X`, never a queue id) and the connection's
    /// findings; nothing when none was refused.
    fn log_refused(&mut self) {
        if self.refused.is_empty() {
            return;
        }
        let (helo, auth_user, internal) = self.refused_client.take().unwrap_or_default();
        let findings = self
            .conn_findings
            .as_deref()
            .filter(|f| !f.is_empty())
            .and_then(|f| serde_json::to_string(f).ok());
        let record = MessageRecord {
            id: format!("{}X", new_id()),
            received_at: now(),
            client_ip: self.peer.ip.to_string(),
            helo,
            direction: if internal { "outbound" } else { "inbound" }.into(),
            sender: self
                .mail
                .as_ref()
                .map(|m| m.address.clone())
                .unwrap_or_default(),
            size: 0,
            auth_user,
            message_id: None,
            subject: None,
            verdict: Some("reject".into()),
            rule: None,
            score: None,
            findings,
            recipients: std::mem::take(&mut self.refused),
        };
        self.gw.log.write(LogEntry::Message(record));
    }

    /// The body begins: a new spool writer under a new queue id.
    pub fn data_start(&mut self) -> Reply {
        self.log_refused();
        let id = new_id();
        if let Some(mut old) = self.writer.take() {
            old.discard();
        }
        self.writer = Some(self.gw.queue.spool().writer(id));
        Reply::new(354, "", "End data with <CR><LF>.<CR><LF>")
    }

    /// Body bytes, as they arrive.
    pub fn data_chunk(&mut self, bytes: &[u8]) {
        if let Some(w) = &mut self.writer {
            w.write(bytes);
        }
    }

    /// Throw away a partly received body.
    pub fn data_aborted(&mut self) {
        if let Some(mut w) = self.writer.take() {
            w.discard();
        }
    }

    /// Forget the current envelope (RSET, EHLO, STARTTLS, end of connection).
    pub fn reset(&mut self) {
        self.log_refused();
        if let Some(mut w) = self.writer.take() {
            w.discard();
        }
        self.spf = None;
        self.mail = None;
        self.recipients.clear();
        self.directory_findings.clear();
        self.allowed = false;
        self.policy_key = None;
        self.dmarc = None;
    }

    /// Count one hit against a cluster-wide limit; true when it is exceeded. A store
    /// failure lets the client through: a limit is not worth refusing all mail over.
    async fn over_rate(&self, key: &str, window_secs: i64, limit: u32) -> bool {
        match self.gw.store.rate_hit(key, window_secs, now()).await {
            Ok(hits) if hits > i64::from(limit) => {
                tracing::warn!(client = %self.peer.addr, key, hits, limit, "rate limit reached");
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
            let sh = &self.gw;
            let checks = sh.checks();
            let fcrdns_on = checks.fcrdns.enabled;
            let (listed, fcrdns) = tokio::join!(
                async {
                    let started = Instant::now();
                    let listed = dnsbl::check_ip(&sh.resolver, &checks.dnsbl, self.peer.ip).await;
                    if !checks.dnsbl.zones.is_empty() {
                        timed(Check::Dnsbl, started);
                    }
                    listed
                },
                async {
                    if fcrdns_on {
                        let started = Instant::now();
                        let f = dnsbl::fcrdns(&sh.resolver, self.peer.ip, &checks.fcrdns).await;
                        timed(Check::Fcrdns, started);
                        Some(f)
                    } else {
                        None
                    }
                }
            );
            for u in &listed.unavailable {
                tracing::warn!(client = %self.peer.addr, zone = %u.zone, reason = %u.reason, "DNSBL unavailable");
            }
            let mut findings = listed.findings;
            if let Some(f) = fcrdns {
                if let dnsbl::Fcrdns::TempError(e) = &f {
                    tracing::debug!(client = %self.peer.addr, error = %e, "FCrDNS not decided");
                }
                findings.extend(f.findings(self.peer.ip, &checks.fcrdns));
            }
            if !findings.is_empty() {
                tracing::info!(client = %self.peer.addr, findings = %findings.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(","), "connection checks");
            }
            self.conn_findings = Some(findings);
        }
        self.conn_findings.as_deref().unwrap_or_default()
    }

    /// Greylisting of every recipient; the reply when one must wait. A store failure lets
    /// the mail through: greylisting is a delay, never worth losing mail over.
    pub(crate) async fn greylisted(
        &self,
        recipients: &[String],
        sender: &str,
        score: f64,
    ) -> Option<Reply> {
        let now = now();
        // Every triplet is recorded before deferring once, so a message to several
        // recipients waits one round, not one per recipient.
        let mut deferred = None;
        let checks = self.gw.checks();
        for r in recipients {
            let triplet = Triplet::new(self.peer.ip, sender, r);
            match checks
                .greylist
                .check(&self.gw.store, &triplet, score, now)
                .await
            {
                Ok(decision) => {
                    if let Some(reply) = decision.reply() {
                        tracing::info!(client = %self.peer.addr, from = %sender, to = %r, score, "greylisted");
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
}
