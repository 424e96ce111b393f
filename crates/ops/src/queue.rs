//! The mail queue: what is waiting and why, and the changes an administrator makes
//! (flush, hold, release, delete). A change goes to a running gateway through its control
//! socket, so its scheduler learns of it at once; when none runs, to the spool itself.

use crate::{Access, Actor, Ops, OpsError, Result, Scope};
use portcullis_gateway::config::Config;
use portcullis_gateway::control;
use portcullis_queue::scheduler::describe;
use portcullis_queue::spool::{DeliveryState, Envelope, RecipientStatus, Spool, now};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// One queued message, as `queue list` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct QueueItem {
    pub id: String,
    pub received_at: i64,
    pub sender: String,
    /// The recipients still pending.
    pub recipients: Vec<String>,
    pub size: u64,
    pub attempts: u32,
    pub next_attempt: i64,
    pub held: bool,
    pub direction: String,
    /// The last reply of a remote server, if any.
    pub last_reply: Option<String>,
}

/// A change to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueChange {
    /// Try every deferred message now.
    Flush,
    Hold(String),
    Release(String),
    /// Try one message now (not a held one: that is released).
    Retry(String),
    Delete(String),
}

impl QueueChange {
    fn request(&self) -> String {
        match self {
            QueueChange::Flush => "flush".into(),
            QueueChange::Hold(id) => format!("hold {id}"),
            QueueChange::Release(id) => format!("release {id}"),
            QueueChange::Retry(id) => format!("retry {id}"),
            QueueChange::Delete(id) => format!("delete {id}"),
        }
    }
}

/// The queue of one node: its spool, and the control socket of its gateway. It needs
/// no store, so it works while the store is down.
///
/// Changes are checked against the actor and written to the audit log when a store is at
/// hand (through [`Ops::queue`]); an audit row that cannot be written is logged, and does
/// not undo or refuse the change, so that the queue stays manageable while the store is
/// down.
#[derive(Debug, Clone)]
pub struct QueueOps {
    data_dir: PathBuf,
    actor: Arc<Actor>,
    store: Option<portcullis_store::Store>,
}

impl Ops {
    /// The queue, acting as this handle's actor.
    pub fn queue(&self) -> QueueOps {
        QueueOps {
            data_dir: self.config.data_dir.clone(),
            actor: self.actor.clone(),
            store: Some(self.store.clone()),
        }
    }
}

impl QueueOps {
    /// The queue for the command line's administrator, without an audit log.
    pub fn new(config: &Config) -> QueueOps {
        QueueOps {
            data_dir: config.data_dir.clone(),
            actor: Arc::new(Actor::cli()),
            store: None,
        }
    }

    /// Whether the actor may have `access` to a message of this envelope.
    fn may(&self, access: Access, env: &Envelope) -> bool {
        let mut addresses: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
        addresses.push(&env.sender);
        self.actor.may_any(access, &addresses)
    }

    /// Never `Spool::open` here: its clean-up would delete bodies a running gateway is
    /// receiving.
    fn spool(&self) -> Result<Arc<Spool>> {
        Spool::open_shared(&self.data_dir.join("spool"))
            .map_err(OpsError::spool("opening the spool"))
    }

    /// The queued messages the actor may see (a domain-admin: to or from its domains).
    pub fn list(&self) -> Result<Vec<QueueItem>> {
        let spool = self.spool()?;
        let mut rows = Vec::new();
        for id in spool.list().map_err(OpsError::spool("listing the queue"))? {
            // A message that leaves while we look is no longer in the queue.
            let Ok((env, state, size)) = describe(&spool, &id) else {
                continue;
            };
            if !self.may(Access::ReadMessages, &env) {
                continue;
            }
            let recipients = env
                .recipients
                .iter()
                .zip(&state.status)
                .filter(|(_, s)| **s == RecipientStatus::Pending)
                .map(|(r, _)| r.address.clone())
                .collect();
            rows.push(QueueItem {
                last_reply: state.last_reply.iter().flatten().last().cloned(),
                id,
                received_at: env.received_at,
                sender: env.sender,
                recipients,
                size,
                attempts: state.attempts,
                next_attempt: state.next_attempt,
                held: state.held,
                direction: env.direction.as_str().to_string(),
            });
        }
        Ok(rows)
    }

    /// One message: envelope, delivery state and the message as it will leave.
    pub fn show(&self, id: &str) -> Result<(Envelope, DeliveryState, Vec<u8>)> {
        let spool = self.spool()?;
        let (env, state, _) = describe(&spool, id)
            .ok()
            .filter(|(env, ..)| self.may(Access::ReadMessages, env))
            .ok_or_else(|| OpsError::not_found("message in the queue", id))?;
        let (_, body) = spool
            .read_message(id)
            .map_err(OpsError::spool(format!("reading message {id}")))?;
        Ok((env, state, body))
    }

    /// Make a change; what was done, in words (`3 messages scheduled`, the id).
    pub async fn change(&self, change: &QueueChange) -> Result<String> {
        self.require_change(change)?;
        let done = self.change_unchecked(change).await?;
        if let Some(store) = &self.store {
            let (action, target) = match change {
                QueueChange::Flush => ("queue.flush", "all"),
                QueueChange::Hold(id) => ("queue.hold", id.as_str()),
                QueueChange::Release(id) => ("queue.release", id.as_str()),
                QueueChange::Retry(id) => ("queue.retry", id.as_str()),
                QueueChange::Delete(id) => ("queue.delete", id.as_str()),
            };
            let after = serde_json::json!({ "result": done });
            if let Err(e) =
                crate::audit::append(store, &self.actor, action, target, None, Some(after)).await
            {
                tracing::warn!(action, target, error = %e, "queue change not written to the audit log");
            }
        }
        Ok(done)
    }

    /// Flushing is for whoever manages all messages; holding, releasing and deleting one
    /// for whoever manages a recipient or the sender of it (others are told it is not
    /// there).
    fn require_change(&self, change: &QueueChange) -> Result<()> {
        let id = match change {
            QueueChange::Flush => {
                return self.actor.require(Access::ManageMessages, &Scope::Global);
            }
            QueueChange::Hold(id)
            | QueueChange::Release(id)
            | QueueChange::Retry(id)
            | QueueChange::Delete(id) => id,
        };
        if self.actor.may(Access::ManageMessages, &Scope::Global) {
            return Ok(());
        }
        let spool = self.spool()?;
        match describe(&spool, id) {
            Ok((env, ..)) if self.may(Access::ManageMessages, &env) => Ok(()),
            Ok((env, ..)) if self.may(Access::ReadMessages, &env) => {
                self.actor.require(Access::ManageMessages, &Scope::Global)
            }
            _ => Err(OpsError::not_found("message in the queue", id.clone())),
        }
    }

    async fn change_unchecked(&self, change: &QueueChange) -> Result<String> {
        let reply = match control::ask(&self.data_dir, &change.request()).await {
            Ok(Some(reply)) => reply,
            Ok(None) => offline(&*self.spool()?, change)?,
            Err(e) => {
                return Err(OpsError::Spool {
                    context: "asking the running gateway".into(),
                    source: e,
                });
            }
        };
        match reply.strip_prefix("ok") {
            Some(rest) => Ok(rest.trim().to_string()),
            None => {
                let why = reply.trim_start_matches("error").trim().to_string();
                match change {
                    QueueChange::Hold(id)
                    | QueueChange::Release(id)
                    | QueueChange::Retry(id)
                    | QueueChange::Delete(id)
                        // A malformed id names no message either.
                        if why.starts_with("no message") || why.ends_with("bad queue id") =>
                    {
                        Err(OpsError::not_found("message in the queue", id.clone()))
                    }
                    QueueChange::Retry(id) if why.contains(" is held") => Err(OpsError::State {
                        name: id.clone(),
                        state: "held".into(),
                        hint: "release it to deliver it".into(),
                    }),
                    _ => Err(OpsError::Spool {
                        context: "the running gateway refused the change".into(),
                        source: std::io::Error::other(why),
                    }),
                }
            }
        }
    }
}

/// Queue changes when no gateway is running: straight to the spool.
fn offline(spool: &Spool, change: &QueueChange) -> Result<String> {
    let missing = |id: &str| format!("error no message {id} in the queue");
    let io = OpsError::spool("changing the spool");
    let result = (|| -> std::io::Result<String> {
        Ok(match change {
            QueueChange::Flush => {
                let mut n = 0;
                for id in spool.list()? {
                    n += usize::from(spool.make_due(&id, 0)?);
                }
                format!("ok {n} messages will be tried at the next start")
            }
            QueueChange::Delete(id) => {
                if spool.remove(id)? {
                    format!("ok {id}")
                } else {
                    missing(id)
                }
            }
            QueueChange::Retry(id) => {
                if spool.make_due(id, now())? {
                    format!("ok {id} will be tried at the next start")
                } else {
                    missing(id)
                }
            }
            QueueChange::Hold(id) | QueueChange::Release(id) => {
                let held = matches!(change, QueueChange::Hold(_));
                match spool.set_held(id, held, now())? {
                    Some(_) => format!("ok {id}"),
                    None => missing(id),
                }
            }
        })
    })();
    match (result, change) {
        // A malformed id names no message: answered as the running gateway answers it.
        (
            Err(e),
            QueueChange::Delete(id)
            | QueueChange::Hold(id)
            | QueueChange::Release(id)
            | QueueChange::Retry(id),
        ) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(missing(id)),
        (result, _) => result.map_err(io),
    }
}
