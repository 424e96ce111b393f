//! The audit log: every operation that changes something writes one row here, whoever
//! called it (CLI, API or console), with the actor, the action (`domain.add`), its target,
//! and the item before and after where that is cheap to have. Nothing secret is ever
//! written: no password, no session or token secret, no TOTP secret or recovery code.

use crate::{Access, Actor, Ops, Result, Scope};
use portcullis_queue::spool::now;
use portcullis_store::{AuditEntry, AuditQuery, Store};
use serde_json::Value;

impl Ops {
    /// Writes the audit row of a change made by this handle's actor.
    pub(crate) async fn audit(
        &self,
        action: &str,
        target: &str,
        before: Option<Value>,
        after: Option<Value>,
    ) -> Result<()> {
        self.audit_as(self.actor(), action, target, before, after)
            .await
    }

    /// Writes an audit row for `actor` (a login, whose actor is the account logging in).
    pub(crate) async fn audit_as(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        before: Option<Value>,
        after: Option<Value>,
    ) -> Result<()> {
        append(&self.store, actor, action, target, before, after).await
    }

    /// The audit log, newest first.
    pub async fn audit_list(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        self.actor().require(Access::ReadAudit, &Scope::Global)?;
        Ok(self.store.audit_list(query).await?)
    }
}

/// Writes the audit row of work the command line does beside the operations layer on the
/// store itself (`backup.create`, `backup.restore`), as the command line's actor.
pub async fn append_cli(
    store: &Store,
    action: &str,
    target: &str,
    after: Option<Value>,
) -> Result<()> {
    append(store, &Actor::cli(), action, target, None, after).await
}

/// Appends one row to the audit log of `store`.
pub(crate) async fn append(
    store: &Store,
    actor: &Actor,
    action: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<()> {
    let entry = AuditEntry {
        id: 0,
        at: now(),
        actor: actor.name.clone(),
        role: actor.role.as_str().to_string(),
        via: actor.via.as_str().to_string(),
        remote: actor.remote.map(|r| r.to_string()),
        action: action.to_string(),
        target: target.to_string(),
        before_json: before.map(|v| v.to_string()),
        after_json: after.map(|v| v.to_string()),
    };
    store.audit_append(&entry).await?;
    Ok(())
}
