//! The one way to put locally made mail on the queue (quarantine releases, digests,
//! DMARC and TLS-RPT reports): the message is written to the spool durably (file and
//! directory fsynced), then announced to whoever schedules deliveries: the queue itself
//! inside the gateway, or the running gateway's control socket from a command. Every
//! failure is an error the caller must handle; a message that is in the spool but could
//! not be announced says so, since it will still leave when the gateway next starts.

use crate::control;
use portcullis_queue::Queue;
use portcullis_queue::spool::{Envelope, Spool};
use std::path::PathBuf;
use std::sync::Arc;

/// Who learns of a new message in the spool.
#[derive(Clone)]
pub enum Announce {
    /// Inside the gateway: straight to the scheduler.
    Queue(Queue),
    /// From a command: the running gateway through `<data_dir>/control.sock`.
    ControlSocket(PathBuf),
}

/// What became of a submitted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injected {
    /// In the spool and scheduled for delivery.
    Scheduled,
    /// In the spool; no gateway runs, so it goes when one starts.
    Spooled,
}

#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("message {id} could not be written to the spool: {source}")]
    Spool {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "message {id} is in the spool, but the running gateway was not told ({why}); it will be sent when the gateway restarts, or run `portcullis queue flush`"
    )]
    NotAnnounced { id: String, why: String },
}

/// A message durably in the spool, not yet announced.
#[must_use = "a spooled message waits until it is announced or the gateway restarts"]
#[derive(Debug)]
pub struct Spooled(pub String);

/// Writes locally made mail to the spool and announces it.
#[derive(Clone)]
pub struct Injector {
    spool: Arc<Spool>,
    announce: Announce,
}

impl Injector {
    /// Inside the gateway.
    pub fn in_process(queue: Queue) -> Injector {
        Injector {
            spool: queue.spool().clone(),
            announce: Announce::Queue(queue),
        }
    }

    /// From a command, beside a gateway that may or may not run on `data_dir`.
    pub fn for_command(spool: Arc<Spool>, data_dir: PathBuf) -> Injector {
        Injector {
            spool,
            announce: Announce::ControlSocket(data_dir),
        }
    }

    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// Write the message durably, then announce it.
    pub async fn submit(
        &self,
        envelope: &Envelope,
        body: Vec<u8>,
    ) -> Result<Injected, InjectError> {
        let spooled = self.write(envelope, body).await?;
        self.announce(&spooled.0).await
    }

    /// Only write the message durably, for a caller with something to do between the
    /// write and the announcement (its message-log record, which must precede the
    /// delivery updates). Hand the result to [`Injector::announce`].
    pub async fn write(&self, envelope: &Envelope, body: Vec<u8>) -> Result<Spooled, InjectError> {
        let spool = self.spool.clone();
        let env = envelope.clone();
        let id = envelope.id.clone();
        tokio::task::spawn_blocking(move || spool.store_message(&env, &body))
            .await
            .map_err(|e| InjectError::Spool {
                id: id.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| InjectError::Spool {
                id: id.clone(),
                source,
            })?;
        Ok(Spooled(id))
    }

    /// Announce a message that is already in the spool (a release finished after a crash).
    pub async fn announce(&self, id: &str) -> Result<Injected, InjectError> {
        match &self.announce {
            Announce::Queue(queue) => {
                queue.enqueue(id);
                Ok(Injected::Scheduled)
            }
            Announce::ControlSocket(data_dir) => {
                match control::ask(data_dir, &format!("load {id}")).await {
                    Ok(None) => Ok(Injected::Spooled),
                    Ok(Some(reply)) if reply.starts_with("ok") => Ok(Injected::Scheduled),
                    Ok(Some(reply)) => Err(InjectError::NotAnnounced {
                        id: id.to_string(),
                        why: reply,
                    }),
                    Err(e) => Err(InjectError::NotAnnounced {
                        id: id.to_string(),
                        why: e.to_string(),
                    }),
                }
            }
        }
    }
}
