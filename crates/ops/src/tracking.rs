//! Message tracking: one message's whole story on one page: how it came (client, HELO,
//! login), what every check found, the rule that decided, its quarantine copies, and each
//! recipient's delivery with the remote server's reply. Read-only; finding messages is
//! [`Ops::log_search_page`](crate::Ops::log_search_page).

use crate::{Ops, Result};
use portcullis_queue::spool::RecipientStatus;
use portcullis_store::{MessageRecord, QuarantineItem};
use serde::Serialize;

/// One finding of a check, as the message log keeps it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Finding {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub score: f64,
    #[serde(default)]
    pub detail: String,
}

/// A message still in this node's queue.
#[derive(Debug, Clone, Serialize)]
pub struct InQueue {
    pub held: bool,
    pub attempts: u32,
    pub next_attempt: i64,
    /// Each recipient: address, `pending` / `delivered` / `failed`, the last reply.
    pub recipients: Vec<(String, String, Option<String>)>,
}

/// Everything known of one message.
#[derive(Debug, Clone, Serialize)]
pub struct MessageStory {
    pub record: MessageRecord,
    pub findings: Vec<Finding>,
    /// Its quarantined copies (one per recipient held).
    pub quarantine: Vec<QuarantineItem>,
    pub queue: Option<InQueue>,
    /// A failure notice went back to the sender (some recipient bounced, the sender is
    /// not the null sender).
    pub dsn_sent: bool,
}

/// The findings of a log record (a JSON array); what cannot be read is skipped.
pub fn findings(json: Option<&str>) -> Vec<Finding> {
    json.and_then(|j| serde_json::from_str::<Vec<Finding>>(j).ok())
        .unwrap_or_default()
}

impl Ops {
    /// One message's whole story; one the actor may not see is not found.
    pub async fn message_story(&self, id: &str) -> Result<MessageStory> {
        let record = self.log_get(id).await?;
        let mut quarantine = Vec::new();
        for n in 1..=record.recipients.len().max(1) {
            if let Some((item, ..)) = self.store().quarantine_get(&format!("{id}.{n}")).await? {
                quarantine.push(item);
            }
        }
        let queue = self.queue().show(id).ok().map(|(env, state, _)| InQueue {
            held: state.held,
            attempts: state.attempts,
            next_attempt: state.next_attempt,
            recipients: env
                .recipients
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let status = match state.status.get(i) {
                        Some(RecipientStatus::Delivered) => "delivered",
                        Some(RecipientStatus::Failed) => "failed",
                        _ => "pending",
                    };
                    let reply = state.last_reply.get(i).cloned().flatten();
                    (r.address.clone(), status.to_string(), reply)
                })
                .collect(),
        });
        let dsn_sent =
            !record.sender.is_empty() && record.recipients.iter().any(|r| r.status == "bounced");
        Ok(MessageStory {
            findings: findings(record.findings.as_deref()),
            record,
            quarantine,
            queue,
            dsn_sent,
        })
    }
}
