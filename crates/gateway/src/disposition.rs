//! What becomes of a message once it is scanned: one function per outcome ([`refuse`],
//! [`discard`], [`quarantine`], [`deliver`]). Each writes the message log, keeps the
//! message's DMARC report contribution with what was applied, and answers only once what
//! it decided is durable (spool fsync, or the store's synchronous commit).

use crate::actions;
use crate::logwriter::log_record;
use crate::metrics::Accepted;
use crate::scan::Checked;
use crate::submission::Client;
use crate::transaction::Transaction;
use portcullis_filter::dmarc_report::{Applied, DmarcPending};
use portcullis_filter::rules::{Disposition, Verdict};
use portcullis_queue::spool::{Direction, Envelope, EnvelopeRecipient, SpoolWriter, now};
use portcullis_smtp::Reply;
use portcullis_store::{HeldMessage, LogEntry, MessageRecord, RecipientRecord};

/// A scanned message and everything its outcome needs.
struct Decided {
    id: String,
    writer: SpoolWriter,
    internal: bool,
    /// The message as received.
    raw: Vec<u8>,
    /// The message as it leaves (forged fields removed, the rules' changes made), when
    /// it differs from `raw`.
    rewritten: Option<Vec<u8>>,
    envelope: Envelope,
    /// The recipients the client gave (a redirect replaces them in `envelope`).
    original: Vec<EnvelopeRecipient>,
    record: MessageRecord,
    verdict: Verdict,
    findings_json: String,
    subject: Option<String>,
    dmarc: Option<DmarcPending>,
    /// The first recipient's domain, for the DMARC report.
    envelope_to: Option<String>,
}

impl Decided {
    fn body(&self) -> &[u8] {
        self.rewritten.as_deref().unwrap_or(&self.raw)
    }

    /// Anything but delivery: nothing goes to the queue, the log says why.
    fn final_status(&mut self, status: &str, reply: &str) {
        let at = self.envelope.received_at;
        self.record.recipients = self
            .original
            .iter()
            .map(|r| RecipientRecord {
                address: r.address.clone(),
                status: status.into(),
                reply: Some(reply.to_string()),
                remote_host: None,
                updated_at: at,
                attempts: 0,
            })
            .collect();
    }

    /// Keep the message's contribution to its From domain's DMARC aggregate report, with
    /// what was finally done with it; in the background, never delaying the reply.
    fn report_dmarc(&mut self, tx: &Transaction, applied: Applied) {
        report_dmarc(
            tx,
            self.dmarc.take(),
            applied,
            self.verdict.rule.as_deref(),
            self.envelope_to.as_deref(),
        );
    }
}

fn report_dmarc(
    tx: &Transaction,
    pending: Option<DmarcPending>,
    applied: Applied,
    rule: Option<&str>,
    envelope_to: Option<&str>,
) {
    if let Some(pending) = pending {
        tx.gw
            .dmarc_results
            .record(pending.finish(applied, rule, envelope_to), now());
    }
}

impl Transaction {
    /// The body is complete: scan it, decide, act, and reply only once what was decided
    /// is durable.
    pub async fn data_end(&mut self, client: &Client<'_>, size: usize) -> Reply {
        finish(self, client, size).await
    }
}

/// The end of the data: read the body back, scan it, and hand it to its outcome.
async fn finish(tx: &mut Transaction, client: &Client<'_>, size: usize) -> Reply {
    let (Some(mut writer), Some(mail)) = (tx.writer.take(), tx.mail.take()) else {
        return Reply::new(451, "4.3.0", "Error: no message in progress");
    };
    let id = writer.id().to_string();
    let internal = tx.internal(client);
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
                crate::filtering::remove_forged_fields(&raw, tx.gw.auth.authserv_id())
            };
            let scanned = cleaned.as_deref().unwrap_or(&raw);
            let result = tx
                .check_message(&id, &raw, scanned, client, &mail.address, size)
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
    let dmarc = tx.dmarc.take();
    let envelope_to = tx
        .recipients
        .first()
        .and_then(|r| r.address.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase());
    let (checked, raw, cleaned) = match checked {
        Ok(c) => c,
        Err(reply) => {
            writer.discard();
            tx.recipients.clear();
            if reply.is_permanent() {
                // Refused for good (a DMARC p=reject failure among others).
                report_dmarc(tx, dmarc, Applied::Rejected, None, envelope_to.as_deref());
            }
            return reply;
        }
    };
    let Checked {
        headers: auth_headers,
        findings,
        mut verdict,
        subject,
        message_id,
        auth,
    } = checked;
    let direction = if internal {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    let only = match tx.recipients.as_slice() {
        [only] => Some(only.address.as_str()),
        _ => None,
    };
    let received = actions::received_header(&tx.gw.hostname, client, tx.peer.ip, only, &id);
    let base = cleaned.as_deref().unwrap_or(&raw);
    let (prepend, changed) =
        actions::content_changes(&id, received, &auth_headers, base, &mut verdict);
    let rewritten = changed.body.or(cleaned);
    let original: Vec<EnvelopeRecipient> = tx
        .recipients
        .drain(..)
        .map(|r| EnvelopeRecipient {
            address: r.address,
            orcpt: r.orcpt,
            notify: r.notify,
        })
        .collect();
    let mut recipients = match &verdict.redirect {
        Some(to) => to.iter().map(|a| actions::policy_recipient(a)).collect(),
        None => original.clone(),
    };
    recipients.extend(verdict.copies.iter().map(|a| actions::policy_recipient(a)));
    let envelope = Envelope {
        id: id.clone(),
        received_at: now(),
        client_ip: tx.peer.ip.to_string(),
        helo: client.helo.to_string(),
        direction,
        auth_user: client.auth_user.map(str::to_string),
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
    let auth = auth.as_deref().unwrap_or("-");
    // Mail that is delivered gets one line ("queued", in `deliver`) with all of this.
    if verdict.disposition != Disposition::Deliver {
        tracing::info!(
            id,
            client = %tx.peer.addr,
            auth,
            score = verdict.score,
            verdict = record.verdict.as_deref().unwrap_or(""),
            rule = verdict.rule.as_deref().unwrap_or(""),
            findings = %finding_names,
            "checked"
        );
    }
    let disposition = verdict.disposition.clone();
    let d = Decided {
        id,
        writer,
        internal,
        raw,
        rewritten,
        envelope,
        original,
        record,
        verdict,
        findings_json,
        subject,
        dmarc,
        envelope_to,
    };
    let (reply, accepted) = match disposition {
        Disposition::Deliver => (
            deliver(tx, client, d, size, auth, &finding_names).await,
            Accepted::Deliver,
        ),
        Disposition::Reject(reply) | Disposition::TempFail(reply) => return refuse(tx, d, reply),
        Disposition::Discard => (discard(tx, d), Accepted::Discard),
        Disposition::Quarantine(class) => (quarantine(tx, d, class).await, Accepted::Quarantine),
    };
    if reply.is_positive() {
        crate::metrics::accepted(direction == Direction::Inbound, accepted);
    }
    reply
}

/// A rule refused the message: for good (logged as rejected, reported) or for now.
fn refuse(tx: &Transaction, mut d: Decided, reply: Reply) -> Reply {
    d.writer.discard();
    if reply.is_permanent() {
        d.final_status("rejected", &reply.to_string());
        d.report_dmarc(tx, Applied::Rejected);
        tx.gw.log.write(LogEntry::Message(d.record));
    }
    reply
}

/// Accepted and dropped (the archive copies still go).
fn discard(tx: &Transaction, mut d: Decided) -> Reply {
    d.writer.discard();
    if let Err(reply) = actions::archive_copies(tx, &d.envelope, &d.verdict.copies, d.body()) {
        return reply;
    }
    d.final_status("discarded", "discarded by policy");
    d.report_dmarc(tx, Applied::Rejected);
    tx.gw.log.write(LogEntry::Message(d.record));
    Reply::new(250, "2.0.0", format!("Ok: queued as {}", d.id))
}

/// Held in the store, one item per recipient; 250 once the store has committed.
async fn quarantine(tx: &Transaction, mut d: Decided, class: String) -> Reply {
    let mut body = d.envelope.prepend.clone().into_bytes();
    body.extend_from_slice(d.body());
    let held = HeldMessage {
        id: d.id.clone(),
        received_at: d.envelope.received_at,
        expires_at: d.envelope.received_at + tx.gw.quarantine_expiry_secs,
        sender: d.envelope.sender.clone(),
        subject: d.subject.clone(),
        class: class.clone(),
        score: d.verdict.score,
        rule: d.verdict.rule.clone(),
        findings: d.findings_json.clone(),
        envelope: serde_json::to_string(&Envelope {
            prepend: String::new(),
            recipients: d.original.clone(),
            ..d.envelope.clone()
        })
        .unwrap_or_default(),
        body,
        recipients: d.original.iter().map(|r| r.address.clone()).collect(),
        direction: d.envelope.direction.as_str().to_string(),
    };
    d.writer.discard();
    if let Err(reply) = actions::archive_copies(tx, &d.envelope, &d.verdict.copies, d.body()) {
        return reply;
    }
    // The store commits durably (a synchronous transaction) before we answer.
    if let Err(e) = tx.gw.store.quarantine_hold(&held).await {
        tracing::error!(id = %d.id, error = %e, "quarantine failed");
        return Reply::new(
            451,
            "4.3.0",
            "Error: quarantine unavailable, try again later",
        );
    }
    d.final_status("quarantined", &format!("quarantined ({class})"));
    d.report_dmarc(tx, Applied::Quarantined);
    tracing::info!(id = %d.id, class, "quarantined");
    let reply = Reply::new(250, "2.0.0", format!("Ok: queued as {}", d.id));
    tx.gw.log.write(LogEntry::Message(d.record));
    reply
}

/// Signed or sealed, committed to the spool, logged, handed to the scheduler; 250.
async fn deliver(
    tx: &mut Transaction,
    client: &Client<'_>,
    d: Decided,
    size: usize,
    auth: &str,
    finding_names: &str,
) -> Reply {
    let Decided {
        id,
        writer,
        internal,
        raw,
        rewritten,
        mut envelope,
        record,
        verdict,
        dmarc,
        envelope_to,
        ..
    } = d;
    actions::seal(
        tx,
        client,
        internal,
        &mut envelope,
        &raw,
        rewritten.as_deref().unwrap_or(&raw),
    )
    .await;
    let kept = match rewritten {
        Some(body) => {
            let mut writer = writer;
            writer.discard();
            let spool = tx.gw.queue.spool().clone();
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
    tx.gw.log.write(LogEntry::Message(record));
    report_dmarc(
        tx,
        dmarc,
        Applied::Delivered,
        verdict.rule.as_deref(),
        envelope_to.as_deref(),
    );
    tracing::info!(
        id,
        client = %tx.peer.addr,
        direction = envelope.direction.as_str(),
        from = %envelope.sender,
        to = ?envelope.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(),
        size,
        auth,
        score = verdict.score,
        rule = verdict.rule.as_deref().unwrap_or(""),
        findings = %finding_names,
        "queued"
    );
    let inbound = envelope.direction == Direction::Inbound;
    match kept {
        Some(message) => tx.gw.queue.enqueue_with(envelope, message),
        None => tx.gw.queue.enqueue(&id),
    }
    // DMARC aggregate and TLS-RPT reports to our domains are also kept for the
    // `report` commands; in the background, the message is queued either way. Only
    // messages that can be one (a cheap look at the header) are handed over.
    if inbound && crate::reports::may_be_report(&raw) {
        let store = tx.gw.store.clone();
        tokio::spawn(async move {
            crate::reports::intake(&store, &raw).await;
        });
    }
    Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
}
