//! The one writer of the message log. Connections and delivery attempts hand their log
//! entries to a channel; one task writes whatever has piled up in one transaction. SQLite
//! takes one writer at a time, so many small concurrent writes would wait on each other's
//! locks; a single ordered writer also keeps a message's record ahead of its updates.
//! The log is not the truth for mail in flight (the spool is), so a failed write is
//! logged and dropped, never retried at the cost of accepting mail.

use portcullis_store::{LogEntry, Store};
use tokio::sync::mpsc;

/// Entries written per transaction at most.
const BATCH: usize = 512;

/// After the first entry of a batch, how long to let more pile up: some milliseconds of
/// delay in the log turns a busy gateway's stream of tiny transactions into few large ones.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

/// What goes through the channel: entries, and requests to report once everything sent
/// before them is written. Nearly every message is an entry, so the small variant's
/// wasted space costs nothing that boxing each entry would not cost more.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Entry(LogEntry),
    Flush(tokio::sync::oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::UnboundedSender<Msg>,
}

impl LogWriter {
    pub fn spawn(store: Store) -> LogWriter {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        tokio::spawn(async move {
            let store = match store.dedicated().await {
                Ok(own) => own,
                Err(e) => {
                    tracing::warn!(error = %e, "message log writer shares the store's pool");
                    store
                }
            };
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let flushing = batch.iter().any(|m| matches!(m, Msg::Flush(_)));
                if batch.len() < BATCH && !flushing {
                    tokio::time::sleep(GATHER).await;
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(msg) => batch.push(msg),
                            Err(_) => break,
                        }
                    }
                }
                let mut waiting = Vec::new();
                let entries: Vec<LogEntry> = batch
                    .drain(..)
                    .filter_map(|m| match m {
                        Msg::Entry(e) => Some(e),
                        Msg::Flush(done) => {
                            waiting.push(done);
                            None
                        }
                    })
                    .collect();
                if !entries.is_empty()
                    && let Err(e) = store.log_batch(&entries).await
                {
                    tracing::error!(error = %e, entries = entries.len(), "message log write failed");
                }
                for done in waiting {
                    let _ = done.send(());
                }
            }
        });
        LogWriter { tx }
    }

    pub fn write(&self, entry: LogEntry) {
        if self.tx.send(Msg::Entry(entry)).is_err() {
            tracing::error!("message log writer has stopped");
        }
    }

    /// Wait until every entry written before this call is in the store (at shutdown:
    /// the last moments' entries would otherwise be lost with the process).
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}
