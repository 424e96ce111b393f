//! Quarantine digests and their links: sending digests on demand, what a signed link
//! names and does (release, delete or allow one message; release everything a digest
//! listed; a recipient's digest frequency), and each recipient's digest frequency as the
//! portal, the API and the command line set it.

use crate::quarantine::Released;
use crate::{Access, Actor, Ops, OpsError, Result, Scope};
use portcullis_filter::token::LinkAction;
use portcullis_gateway::digest::{self, FREQUENCIES};
use portcullis_queue::spool::now;
use portcullis_store::QuarantineItem;
use serde_json::json;

/// What a digest link did.
#[derive(Debug, Clone)]
pub enum Redeemed {
    Released(String, Released),
    Deleted(String),
    /// "Release all": the copies released, and how many of the digest's were no longer
    /// held (released or deleted since, or expired).
    ReleasedAll(Vec<(String, Released)>, usize),
}

/// What a valid digest link names, before anything is done.
#[derive(Debug, Clone)]
pub struct DigestLink {
    pub action: LinkAction,
    /// The one copy (release, delete, allow), or every copy the digest listed.
    pub items: Vec<QuarantineItem>,
    pub recipient: String,
}

/// The copies a link may act on: inbound spam, the only mail digests list. Anything else
/// is the administrator's to release, whatever a token says.
fn for_users(item: &QuarantineItem) -> bool {
    item.direction == "inbound" && item.class == "spam"
}

/// The stored interval of a frequency's name, or a precise error.
pub fn parse_frequency(name: &str) -> Result<Option<i64>> {
    digest::parse_frequency(name).ok_or_else(|| {
        let names: Vec<&str> = FREQUENCIES.iter().map(|(n, _)| *n).collect();
        OpsError::invalid(
            "frequency",
            name,
            format!("expected one of {}", names.join(", ")),
        )
    })
}

impl Ops {
    /// Send the digests now, to every recipient with newly held mail except those who
    /// chose never; their queue ids.
    pub async fn quarantine_digest(&self) -> Result<Vec<String>> {
        self.actor()
            .require(Access::ManageMessages, &Scope::Global)?;
        let sent = digest::send(&self.config, &self.store, &self.injector()?, true)
            .await
            .map_err(OpsError::failed("sending digests"))?;
        self.audit(
            "quarantine.digest",
            "all",
            None,
            Some(json!({ "queued": sent })),
        )
        .await?;
        Ok(sent)
    }

    /// What a digest link's token names; an error when it is forged, expired, or names
    /// nothing a link may act on.
    pub async fn digest_link(&self, token: &str) -> Result<DigestLink> {
        let signer = digest::signer(&self.store)
            .await
            .map_err(OpsError::failed("reading the link key"))?;
        let (id, action) = signer
            .verify(token.trim(), now())
            .map_err(|e| OpsError::invalid("link", "(token)", e.to_string()))?;
        let items = match action {
            LinkAction::ReleaseAll | LinkAction::Settings => self.store.digest_items(&id).await?,
            LinkAction::Release | LinkAction::AllowSender | LinkAction::Delete => self
                .store
                .quarantine_get(&id)
                .await?
                .map(|(item, ..)| vec![item])
                .unwrap_or_default(),
        };
        let Some(first) = items.first() else {
            return Err(OpsError::not_found("quarantined message", id));
        };
        if !items.iter().all(for_users) {
            return Err(OpsError::Forbidden(format!(
                "{id} can only be released by an administrator"
            )));
        }
        Ok(DigestLink {
            action,
            recipient: first.recipient.clone(),
            items,
        })
    }

    /// Act on a digest link's token, as the portal does (the settings link is
    /// [`Ops::digest_frequency_by_link`]'s).
    pub async fn quarantine_redeem(&self, token: &str) -> Result<Redeemed> {
        let link = self.digest_link(token).await?;
        // The signed link is the authority here, whoever follows it.
        let mut system = Actor::system("digest-link");
        system.remote = self.actor().remote;
        let ops = self.acting_as(system);
        let id = link.items[0].id.clone();
        Ok(match link.action {
            LinkAction::Release => {
                Redeemed::Released(id.clone(), ops.quarantine_release(&id, false).await?)
            }
            LinkAction::AllowSender => {
                Redeemed::Released(id.clone(), ops.quarantine_release(&id, true).await?)
            }
            LinkAction::Delete => {
                ops.quarantine_delete(&id).await?;
                Redeemed::Deleted(id)
            }
            LinkAction::ReleaseAll => {
                let mut released = Vec::new();
                let mut gone = 0;
                for item in &link.items {
                    if item.state != "held" {
                        gone += 1;
                        continue;
                    }
                    // One that another click released meanwhile counts as gone.
                    match ops.quarantine_release(&item.id, false).await {
                        Ok(r) => released.push((item.id.clone(), r)),
                        Err(OpsError::State { .. }) => gone += 1,
                        Err(e) => return Err(e),
                    }
                }
                if released.is_empty() {
                    return Err(OpsError::State {
                        name: "digest".into(),
                        state: "not held (every message was released or deleted already)".into(),
                        hint: "nothing is left to release".into(),
                    });
                }
                Redeemed::ReleasedAll(released, gone)
            }
            LinkAction::Settings => {
                return Err(OpsError::invalid(
                    "link",
                    "(token)",
                    "this link changes the digest frequency, it releases nothing",
                ));
            }
        })
    }

    /// A recipient's digest frequency (`default`, `hourly`, `daily`, `weekly`, `never`).
    pub async fn digest_frequency(&self, address: &str) -> Result<String> {
        let address = address.trim().to_ascii_lowercase();
        self.actor()
            .require(Access::ReadPolicy, &Scope::Address(address.clone()))?;
        let schedule = self.store.digest_schedule(&address).await?;
        Ok(digest::frequency_name(schedule.every_secs))
    }

    /// Set a recipient's digest frequency (a user their own, an administrator anyone's in
    /// their scope).
    pub async fn set_digest_frequency(&self, address: &str, frequency: &str) -> Result<()> {
        let address = address.trim().to_ascii_lowercase();
        self.actor()
            .require(Access::WritePolicy, &Scope::Address(address.clone()))?;
        let every = parse_frequency(frequency)?;
        if !address.contains('@') {
            return Err(OpsError::invalid(
                "address",
                &address,
                "expected user@domain",
            ));
        }
        let before = self.store.digest_schedule(&address).await?;
        self.store.digest_set_every(&address, every).await?;
        self.audit(
            "digest.frequency",
            &address,
            Some(json!({ "frequency": digest::frequency_name(before.every_secs) })),
            Some(json!({ "frequency": digest::frequency_name(every) })),
        )
        .await
    }

    /// Set the frequency of the recipient a digest's settings link names.
    pub async fn digest_frequency_by_link(&self, token: &str, frequency: &str) -> Result<String> {
        let link = self.digest_link(token).await?;
        if link.action != LinkAction::Settings {
            return Err(OpsError::invalid(
                "link",
                "(token)",
                "this link does not change digest settings",
            ));
        }
        let mut system = Actor::system("digest-link");
        system.remote = self.actor().remote;
        self.acting_as(system)
            .set_digest_frequency(&link.recipient, frequency)
            .await?;
        Ok(link.recipient)
    }
}
