//! The quarantine: held messages, one item per recipient's copy, and what an
//! administrator or a recipient (through a digest link) does with them: release (once,
//! optionally allowing the sender), delete, report as spam (digests: `digests.rs`).
//! Releasing and reporting teach the spam classifier.

use crate::{Access, Ops, OpsError, Result, Role, Scope};
use portcullis_filter::bayes::{self, TrainingDelta};
use portcullis_filter::content::ContentScanner;
use portcullis_gateway::Injector;
use portcullis_gateway::inject::Injected;
use portcullis_queue::spool::{Envelope, now};
use portcullis_store::{ListEntry, QuarantineItem, QuarantineQuery, Store};
use serde_json::json;

/// One held copy with what was found and the message.
#[derive(Debug, Clone)]
pub struct HeldCopy {
    pub item: QuarantineItem,
    /// The findings as stored (JSON).
    pub findings: String,
    pub body: Vec<u8>,
}

/// A finished release.
#[derive(Debug, Clone)]
pub struct Released {
    pub queue_id: String,
    /// Scheduled at once, or left for the gateway's next start.
    pub injected: Injected,
    /// The sender now on the recipient's allow list.
    pub allowed_sender: Option<String>,
    /// The running gateway could not be told of it.
    pub warning: Option<String>,
}

impl Ops {
    /// The held copies the actor may see: all, a domain-admin's domains', a user's own.
    pub async fn quarantine_list(&self, query: &QuarantineQuery) -> Result<Vec<QuarantineItem>> {
        Ok(self.store.quarantine_list_seen(query, &self.sees()).await?)
    }

    /// One held copy; one the actor may not read is not found, so that its existence
    /// does not show.
    pub async fn quarantine_show(&self, id: &str) -> Result<HeldCopy> {
        let (item, findings, _, body) = self
            .store
            .quarantine_get(id)
            .await?
            .filter(|(item, ..)| {
                self.actor()
                    .may(Access::ReadMessages, &Scope::address(&item.recipient))
            })
            .ok_or_else(|| OpsError::not_found("quarantined message", id))?;
        Ok(HeldCopy {
            item,
            findings,
            body,
        })
    }

    /// Deliver one recipient's held copy (once). With `allow_sender`, the sender also goes
    /// on that recipient's allow list. A copy released from `spam` is learned as ham.
    pub async fn quarantine_release(&self, id: &str, allow_sender: bool) -> Result<Released> {
        let held = self.quarantine_show(id).await?;
        let item = held.item;
        self.actor()
            .require(Access::ReleaseMessages, &Scope::address(&item.recipient))?;
        self.user_may_act(&item)?;
        if !self
            .store
            .quarantine_transition(id, "held", "releasing", now())
            .await?
        {
            return Err(not_held(id, &item.state));
        }
        let inject = self.injector()?;
        let queue_id = match release_item(&self.store, &inject, id).await {
            Ok((queue_id, _)) => queue_id,
            Err(e) => {
                // Give the claim back so the release can be tried again.
                self.store
                    .quarantine_transition(id, "releasing", "held", now())
                    .await?;
                return Err(e);
            }
        };
        // In the spool and released either way: a gateway that was not told sends it
        // when it next starts.
        let (injected, warning) = match inject.announce(&queue_id).await {
            Ok(injected) => (injected, None),
            Err(e) => (Injected::Spooled, Some(e.to_string())),
        };
        // A person said this "spam" is not: the classifier learns from it.
        if item.class == "spam"
            && let Err(e) = learn(&self.store, &held.body, false).await
        {
            tracing::warn!(item = id, error = %e, "released message not learned as ham");
        }
        let mut allowed_sender = None;
        if allow_sender && !item.sender.is_empty() {
            self.store
                .add_list_entry(&ListEntry {
                    kind: "allow".into(),
                    field: "sender".into(),
                    value: item.sender.clone(),
                    scope: item.recipient.clone(),
                    comment: format!("released from quarantine ({id})"),
                })
                .await?;
            allowed_sender = Some(item.sender.clone());
        }
        self.audit(
            "quarantine.release",
            id,
            Some(item_json(&item)),
            Some(json!({ "state": "released", "queue_id": queue_id, "allowed_sender": allowed_sender })),
        )
        .await?;
        Ok(Released {
            queue_id,
            injected,
            allowed_sender,
            warning,
        })
    }

    pub async fn quarantine_delete(&self, id: &str) -> Result<()> {
        let item = self.quarantine_show(id).await?.item;
        // A user deletes their own spam, as a digest's link does; deleting anything else
        // is for those who manage messages.
        let access = if self.actor().role == Role::User {
            Access::ReleaseMessages
        } else {
            Access::ManageMessages
        };
        self.actor()
            .require(access, &Scope::address(&item.recipient))?;
        self.user_may_act(&item)?;
        if !self
            .store
            .quarantine_transition(id, "held", "deleted", now())
            .await?
        {
            let state = match self.store.quarantine_get(id).await? {
                Some((item, ..)) => item.state,
                None => "gone".into(),
            };
            return Err(not_held(id, &state));
        }
        self.audit(
            "quarantine.delete",
            id,
            Some(item_json(&item)),
            Some(json!({ "state": "deleted" })),
        )
        .await
    }

    /// A `user` acts on their own inbound spam only, what digests list: mail held for a
    /// virus or by policy, or outbound, is for administrators and help desks.
    fn user_may_act(&self, item: &QuarantineItem) -> Result<()> {
        if self.actor().role == Role::User && !(item.direction == "inbound" && item.class == "spam")
        {
            return Err(OpsError::Forbidden(format!(
                "{} was held as {}: only an administrator can release or delete it",
                item.id, item.class
            )));
        }
        Ok(())
    }

    /// The held message is spam: the classifier learns so, and the copy is deleted.
    pub async fn quarantine_report_spam(&self, id: &str) -> Result<()> {
        let held = self.quarantine_show(id).await?;
        self.actor().require(
            Access::ReleaseMessages,
            &Scope::address(&held.item.recipient),
        )?;
        self.user_may_act(&held.item)?;
        if !self
            .store
            .quarantine_transition(id, "held", "deleted", now())
            .await?
        {
            return Err(not_held(id, &held.item.state));
        }
        learn(&self.store, &held.body, true).await?;
        self.audit(
            "quarantine.report_spam",
            id,
            Some(item_json(&held.item)),
            Some(json!({ "state": "deleted" })),
        )
        .await
    }
}

/// What the audit log keeps of a held copy.
fn item_json(item: &QuarantineItem) -> serde_json::Value {
    json!({
        "recipient": item.recipient,
        "sender": item.sender,
        "class": item.class,
        "state": item.state,
    })
}

fn not_held(id: &str, state: &str) -> OpsError {
    OpsError::State {
        name: id.to_string(),
        state: format!("not held (already {state})"),
        hint: "only a held copy can be released, deleted or reported".into(),
    }
}

/// The queue id of a released item: made from the item's id, so finishing a release
/// twice (after a crash) writes the same queue file, and never one the gateway makes
/// (its ids are hex only).
fn release_queue_id(item: &str) -> String {
    item.replace('.', "R")
}

/// Finish the releases that a crash interrupted between their claim and their queue file
/// (run at start, before mail is accepted). Each failure is logged; none stops the start.
pub async fn resume_releases(store: &Store, inject: &Injector) -> Result<()> {
    for id in store.quarantine_releasing().await? {
        match release_item(store, inject, &id).await {
            Ok((queue_id, _)) => {
                if let Err(e) = inject.announce(&queue_id).await {
                    tracing::error!(item = %id, error = %e, "released message not scheduled");
                }
            }
            Err(e) => {
                tracing::error!(item = %id, error = %e, "unfinished quarantine release failed")
            }
        }
    }
    Ok(())
}

/// Queue an item claimed for release (state `releasing`) for its recipient, log it, and
/// mark it released. The order makes a crash harmless: an item still `releasing` is
/// finished again at the gateway's start, writing the same queue file. Returns the queue
/// id and the message; the caller announces it.
pub async fn release_item(store: &Store, inject: &Injector, id: &str) -> Result<(String, Vec<u8>)> {
    let Some((item, findings, envelope_json, body)) = store.quarantine_get(id).await? else {
        return Err(OpsError::not_found("quarantined message", id));
    };
    let corrupt = |why: String| OpsError::State {
        name: id.to_string(),
        state: format!("damaged ({why})"),
        hint: "delete it; it cannot be released".into(),
    };
    let mut envelope: Envelope = serde_json::from_str(&envelope_json)
        .map_err(|e| corrupt(format!("stored envelope: {e}")))?;
    let Some(rcpt) = envelope
        .recipients
        .iter()
        .find(|r| r.address.eq_ignore_ascii_case(&item.recipient))
        .cloned()
    else {
        return Err(corrupt(format!(
            "stored envelope lacks recipient {}",
            item.recipient
        )));
    };
    envelope.id = release_queue_id(id);
    // Its time in the queue starts now, not when it was first received.
    envelope.received_at = now();
    envelope.recipients = vec![rcpt];
    envelope.prepend = String::new();
    let spooled = inject.write(&envelope, body.clone()).await?;
    let mut record = portcullis_gateway::log_record(&envelope, 0, item.subject.clone(), None);
    record.verdict = Some("deliver".into());
    record.rule = Some(format!("released from quarantine ({id})"));
    record.score = Some(item.score);
    record.findings = Some(findings);
    if let Err(e) = store.log_message(&record).await {
        tracing::warn!(id, error = %e, "released message not logged");
    }
    store
        .quarantine_transition(id, "releasing", "released", now())
        .await?;
    tracing::info!(item = id, queue_id = %spooled.0, "released from quarantine");
    Ok((spooled.0, body))
}

/// Teach the classifier one message (a person's verdict).
pub async fn learn(store: &Store, raw: &[u8], spam: bool) -> Result<()> {
    let tokens = bayes::tokenize(&ContentScanner::default().scan(raw).text);
    let mut delta = TrainingDelta::default();
    delta.train(&tokens, spam);
    let rows: Vec<(&str, i64, i64)> = delta
        .tokens
        .iter()
        .map(|(t, &(s, h))| (t.as_str(), s, h))
        .collect();
    store
        .apply_bayes_delta(delta.spam_messages, delta.ham_messages, &rows)
        .await?;
    Ok(())
}
