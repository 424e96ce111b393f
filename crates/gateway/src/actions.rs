//! What is done to a message the gateway keeps, in one explicit order:
//!
//! 1. the trace field (`Received`) and the authentication results go on top;
//! 2. the verdict's content changes ([`content_changes`]): attachments stripped, the
//!    subject tagged, header fields added, in the order of the rule's actions;
//! 3. (encryption, when it comes, goes here: after every change, before signing);
//! 4. on delivery only ([`seal`]): outbound mail is DKIM-signed with its From domain's
//!    keys, inbound mail ARC-sealed for the domain's own servers, over the message
//!    exactly as it will leave.
//!
//! Held (quarantined) and dropped messages get steps 1 and 2, never 4: a signature is
//! made when a message leaves, and a released one leaves later.

use crate::dates::rfc5322_date;
use crate::filtering::{Changed, apply_changes};
use crate::submission::Client;
use crate::transaction::Transaction;
use portcullis_filter::rules::{Disposition, Verdict};
use portcullis_queue::spool::{Envelope, EnvelopeRecipient, now};
use portcullis_smtp::Reply;

/// Steps 1 and 2. A rule that said to remove attachments that could not be removed turns
/// delivery into quarantine: fail closed.
pub fn content_changes(
    id: &str,
    received: String,
    auth_headers: &str,
    base: &[u8],
    verdict: &mut Verdict,
) -> (String, Changed) {
    let changed = apply_changes(base, &verdict.changes);
    if !changed.not_stripped.is_empty() && verdict.disposition == Disposition::Deliver {
        tracing::warn!(id, files = ?changed.not_stripped, "attachments could not be removed; quarantined instead");
        verdict.disposition = Disposition::Quarantine("policy".into());
        verdict.rule = changed.strip_rule.clone();
    }
    let mut prepend = received;
    prepend.push_str(auth_headers);
    prepend.push_str(&changed.headers);
    (prepend, changed)
}

/// Step 4, for a message about to be queued for delivery.
pub async fn seal(
    tx: &mut Transaction,
    client: &Client<'_>,
    internal: bool,
    envelope: &mut Envelope,
    received: &[u8],
    body: &[u8],
) {
    if internal {
        dkim_sign(tx, envelope, body);
    } else {
        arc_seal(tx, envelope, received, body, client).await;
    }
}

/// The `Received` field of a message taken in (RFC 5321 §4.4), with the protocol as
/// RFC 3848 names it.
pub fn received_header(
    hostname: &str,
    client: &Client<'_>,
    ip: std::net::IpAddr,
    only_recipient: Option<&str>,
    id: &str,
) -> String {
    let with = match (client.tls, client.auth_user.is_some()) {
        (false, false) => "ESMTP",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (true, true) => "ESMTPSA",
    };
    let helo = sanitize(if client.helo.is_empty() {
        "unknown"
    } else {
        client.helo
    });
    let mut h = format!(
        "Received: from {helo} ([{ip}])\r\n\tby {hostname} (Portcullis) with {with} id {id}"
    );
    if let Some(only) = only_recipient {
        h.push_str(&format!("\r\n\tfor <{}>", sanitize(only)));
    }
    h.push_str(&format!("; {}\r\n", rfc5322_date(now())));
    h
}

/// Keep header text to printable ASCII so nothing a client sends can break the header.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .take(255)
        .collect()
}

/// The `copy` recipients (archive mailboxes) of a message that is held or dropped still
/// get it: queued durably before the reply, under an id of its own.
pub fn archive_copies(
    tx: &Transaction,
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
    let spool = tx.gw.queue.spool().clone();
    match tokio::task::block_in_place(|| spool.store_message(&copy, body)) {
        Ok(()) => {
            tx.gw.queue.enqueue(&copy.id);
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

/// Sign outbound mail with the DKIM keys of its From domain, over the message exactly as
/// it will leave (added headers and all); the signature goes in front. A signing failure
/// sends the message unsigned, logged: it is no reason to refuse mail.
fn dkim_sign(tx: &Transaction, envelope: &mut Envelope, body: &[u8]) {
    let ring = tx.gw.dkim.current();
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
/// arc_seal_domain`), over the message as it leaves, so that they can trust the results
/// we saw even after our changes. A failure is logged, the mail goes unsealed.
async fn arc_seal(
    tx: &mut Transaction,
    envelope: &mut Envelope,
    received: &[u8],
    body: &[u8],
    client: &Client<'_>,
) {
    let (Some(domain), Some(spf)) = (tx.gw.arc_seal_domain.clone(), tx.spf.take()) else {
        return;
    };
    let ring = tx.gw.dkim.current();
    let Some(signer) = ring.signer(&domain) else {
        tracing::warn!(id = %envelope.id, domain, "no active DKIM key for the ARC sealing domain; not sealed");
        return;
    };
    let outgoing = [envelope.prepend.as_bytes(), body].concat();
    let sealed = tx
        .gw
        .auth
        .arc_seal(
            signer,
            received,
            &outgoing,
            tx.peer.ip,
            client.helo,
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

/// A recipient a rule added (redirect, archive copy): the sender never asked for it, so
/// no delivery notices about it go back to them.
pub fn policy_recipient(address: &str) -> EnvelopeRecipient {
    EnvelopeRecipient {
        address: address.to_string(),
        orcpt: None,
        notify: Some(vec!["NEVER".into()]),
    }
}
