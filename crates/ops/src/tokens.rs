//! API tokens: bearer secrets that act for an account, with at most its rights (a role no
//! higher, domains within its own), optionally read-only and expiring. Only the SHA-256 of
//! a secret is stored; the secret is shown once, when the token is made.

use crate::accounts::{TokenInfo, TokenSpec, normalize_domains, parse_stored_role};
use crate::credentials::{self, secret_hash};
use crate::{Access, Actor, Ops, OpsError, Result, Role, Scope, Via};
use portcullis_queue::spool::now;
use portcullis_store::{AccountRow, TokenRow};
use serde_json::json;
use std::net::IpAddr;

/// Whether an account of role `owner` (with `owner_domains`) may hand out a token of role
/// `role` with `domains`: an administrator any; everyone else its own role only, and a
/// domain-admin only domains of its own.
fn within(owner: Role, owner_domains: &[String], role: Role, domains: &[String]) -> bool {
    match owner {
        Role::Admin => true,
        Role::DomainAdmin => {
            role == Role::DomainAdmin && domains.iter().all(|d| owner_domains.contains(d))
        }
        _ => role == owner,
    }
}

fn info(row: &TokenRow) -> TokenInfo {
    TokenInfo {
        id: row.id,
        name: row.name.clone(),
        account: row.account.clone(),
        role: row.role.clone(),
        domains: row.domains.clone(),
        read_only: row.read_only,
        created: row.created,
        expires: row.expires,
        last_used: row.last_used,
        revoked: row.revoked,
    }
}

fn audit_json(t: &TokenInfo) -> serde_json::Value {
    json!({
        "id": t.id,
        "name": t.name,
        "account": t.account,
        "role": t.role,
        "domains": t.domains,
        "read_only": t.read_only,
        "expires": t.expires,
    })
}

impl Ops {
    /// A new API token of the actor's own account; the secret is returned once.
    pub async fn token_create(&self, spec: &TokenSpec) -> Result<(TokenInfo, String)> {
        let name = self.actor().name.clone();
        let Some(row) = self
            .store
            .account_get(&name)
            .await?
            .filter(|_| matches!(self.actor().via, Via::Console | Via::Api))
        else {
            return Err(OpsError::Forbidden(format!(
                "{name} is not a console account; tokens of an account are made by it \
                 or by an administrator (`portcullis token create --account NAME`)"
            )));
        };
        self.make_token(&row, spec).await
    }

    /// A new API token of `account`, made by someone who manages that account (the
    /// command line's administrator); the secret is returned once.
    pub async fn token_create_for(
        &self,
        account: &str,
        spec: &TokenSpec,
    ) -> Result<(TokenInfo, String)> {
        let account = account.trim().to_ascii_lowercase();
        let Some(row) = self.store.account_get(&account).await? else {
            self.actor()
                .require(Access::ManageAccounts, &Scope::Global)?;
            return Err(OpsError::not_found("account", account));
        };
        self.require_account(&row)?;
        self.make_token(&row, spec).await
    }

    fn require_account(&self, row: &AccountRow) -> Result<()> {
        let role = parse_stored_role(&row.name, &row.role).unwrap_or(Role::Admin);
        for scope in crate::accounts::account_scopes(role, &row.domains, &row.address) {
            self.actor().require(Access::ManageAccounts, &scope)?;
        }
        Ok(())
    }

    async fn make_token(
        &self,
        owner: &AccountRow,
        spec: &TokenSpec,
    ) -> Result<(TokenInfo, String)> {
        let name = spec.name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(OpsError::invalid(
                "token name",
                name,
                "must be non-empty, without spaces",
            ));
        }
        let domains = normalize_domains(&spec.domains)?;
        if spec.role == Role::DomainAdmin && domains.is_empty() {
            return Err(OpsError::invalid(
                "token",
                name,
                "a domain-admin token needs at least one domain",
            ));
        }
        if spec.role != Role::DomainAdmin && !domains.is_empty() {
            return Err(OpsError::invalid(
                "token",
                name,
                format!("only a domain-admin token has domains, not a {}", spec.role),
            ));
        }
        let owner_role = parse_stored_role(&owner.name, &owner.role)?;
        if !within(owner_role, &owner.domains, spec.role, &domains) {
            return Err(OpsError::Forbidden(format!(
                "a token of {} ({owner_role}) may not have more rights than its account: \
                 role {} with domains [{}]",
                owner.name,
                spec.role,
                domains.join(", ")
            )));
        }
        let at = now();
        if spec.expires.is_some_and(|e| e <= at) {
            return Err(OpsError::invalid(
                "token expiry",
                &spec.expires.unwrap_or_default().to_string(),
                "is in the past",
            ));
        }
        let secret = credentials::random_secret();
        let mut row = TokenRow {
            id: 0,
            name: name.to_string(),
            account: owner.name.clone(),
            role: spec.role.as_str().to_string(),
            domains,
            read_only: spec.read_only,
            secret_hash: secret_hash(&secret),
            created: at,
            expires: spec.expires,
            last_used: None,
            last_remote: None,
            revoked: false,
        };
        row.id = self.store.token_insert(&row).await?;
        let token = info(&row);
        self.audit(
            "token.create",
            &format!("{} ({})", token.id, token.name),
            None,
            Some(audit_json(&token)),
        )
        .await?;
        Ok((token, secret))
    }

    /// Every token for an administrator or an auditor; an account's own otherwise.
    pub async fn token_list(&self) -> Result<Vec<TokenInfo>> {
        let actor = self.actor();
        let rows = if matches!(actor.role, Role::Admin | Role::Auditor) {
            self.store.token_list(None).await?
        } else {
            self.store.token_list(Some(&actor.name)).await?
        };
        Ok(rows.iter().map(info).collect())
    }

    /// Revoke a token: the account's own, or one of an account the actor manages.
    pub async fn token_revoke(&self, id: i64) -> Result<()> {
        let Some(token) = self.store.token_get(id).await? else {
            return Err(OpsError::not_found("API token", id.to_string()));
        };
        let own = token.account == self.actor().name
            && matches!(self.actor().via, Via::Console | Via::Api);
        if !own {
            match self.store.account_get(&token.account).await? {
                Some(owner) => self.require_account(&owner)?,
                None => self
                    .actor()
                    .require(Access::ManageAccounts, &Scope::Global)?,
            }
        }
        if !self.store.token_revoke(id).await? {
            return Err(OpsError::State {
                name: format!("API token {id}"),
                state: "revoked already".into(),
                hint: "nothing to do".into(),
            });
        }
        let before = audit_json(&info(&token));
        self.audit(
            "token.revoke",
            &format!("{id} ({})", token.name),
            Some(before),
            None,
        )
        .await
    }

    /// The actor of a bearer token's secret, if it is valid (not expired, not revoked);
    /// records its last use.
    pub async fn token_actor(&self, secret: &str, remote: Option<IpAddr>) -> Result<Option<Actor>> {
        let Some(token) = self.store.token_by_hash(&secret_hash(secret)).await? else {
            return Ok(None);
        };
        let at = now();
        if token.revoked || token.expires.is_some_and(|e| e <= at) {
            return Ok(None);
        }
        let Some(owner) = self.store.account_get(&token.account).await? else {
            return Ok(None);
        };
        let (Ok(role), Ok(owner_role)) = (
            Role::parse(&token.role),
            parse_stored_role(&owner.name, &owner.role),
        ) else {
            return Ok(None);
        };
        // An account demoted since keeps no token above its new rights.
        if !within(owner_role, &owner.domains, role, &token.domains) {
            return Ok(None);
        }
        self.store
            .token_used(token.id, at, remote.map(|r| r.to_string()).as_deref())
            .await?;
        Ok(Some(Actor {
            name: format!("token:{}", token.name),
            role,
            domains: token.domains.clone(),
            address: if role == Role::User {
                owner.address.clone()
            } else {
                String::new()
            },
            read_only: token.read_only,
            via: Via::Api,
            remote,
        }))
    }
}
