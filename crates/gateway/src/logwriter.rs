//! The one writer of the message log. Connections and delivery attempts hand their log
//! entries to a channel; one task writes whatever has piled up in one transaction. SQLite
//! takes one writer at a time, so many small concurrent writes would wait on each other's
//! locks; a single ordered writer also keeps a message's record ahead of its updates.
//! The log is not the truth for mail in flight (the spool is), so a failed write is
//! logged and dropped, never retried at the cost of accepting mail.

use crate::batcher::Batcher;
use portcullis_queue::spool::Envelope;
use portcullis_store::{LogEntry, MessageRecord, RecipientRecord, Store};

/// Entries written per transaction at most.
const BATCH: usize = 512;

/// After the first entry of a batch, how long to let more pile up: some milliseconds of
/// delay in the log turns a busy gateway's stream of tiny transactions into few large ones.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

/// Entries waiting at most; beyond that (a store far behind) new ones are dropped, logged.
const BACKLOG: usize = 100_000;

#[derive(Clone)]
pub struct LogWriter {
    batcher: Batcher<LogEntry>,
}

impl LogWriter {
    /// The writer, on a connection of its own when the store allows one (its page cache
    /// stays warm and its statements go to one SQLite worker thread).
    pub async fn spawn(store: Store) -> LogWriter {
        let store = match store.dedicated().await {
            Ok(own) => own,
            Err(e) => {
                tracing::warn!(error = %e, "message log writer shares the store's pool");
                store
            }
        };
        let batcher = Batcher::spawn(GATHER, BATCH, BACKLOG, move |entries: Vec<LogEntry>| {
            let store = store.clone();
            async move {
                let started = std::time::Instant::now();
                let written = store.log_batch(&entries).await;
                crate::metrics::log_batch(started);
                if let Err(e) = written {
                    tracing::error!(error = %e, entries = entries.len(), "message log write failed");
                }
            }
        });
        LogWriter { batcher }
    }

    pub fn write(&self, entry: LogEntry) {
        if !self.batcher.push(entry) {
            tracing::error!("message log writer stopped or far behind; entry dropped");
        }
    }

    /// Wait until every entry written before this call is in the store (at shutdown:
    /// the last moments' entries would otherwise be lost with the process).
    pub async fn flush(&self) {
        self.batcher.flush().await;
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

/// The queue's journal: delivery results and generated notices (DSNs) to the message log.
pub struct StoreJournal(pub LogWriter);

impl portcullis_queue::Journal for StoreJournal {
    fn recipient_result(
        &self,
        id: &str,
        recipient: &str,
        status: &str,
        reply: Option<&str>,
        host: Option<&str>,
    ) {
        self.0
            .write(LogEntry::Status(portcullis_store::StatusUpdate {
                id: id.to_string(),
                address: recipient.to_string(),
                status: status.to_string(),
                reply: reply.map(str::to_string),
                remote_host: host.map(str::to_string),
                at: portcullis_queue::spool::now(),
            }));
    }

    fn generated(&self, envelope: &Envelope, size: usize) {
        let subject = Some("(delivery status notification)".to_string());
        self.0
            .write(LogEntry::Message(log_record(envelope, size, subject, None)));
    }
}
