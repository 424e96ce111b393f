//! Console and API accounts, their sessions and API tokens: who may log in, with which
//! role, and how a cookie or a bearer token becomes an [`Actor`]. Passwords are argon2id
//! hashes; session and token secrets are stored only as hashes, so a copy of the store
//! does not log anyone in.
//!
//! Logins are throttled twice: an account is locked for [`LOCK_SECS`] after
//! [`MAX_ACCOUNT_FAILURES`] failures in a row, and a client address that failed
//! [`MAX_REMOTE_FAILURES`] times within [`REMOTE_WINDOW_SECS`] is refused until its
//! failures age out. Logins, sessions and TOTP are in `sessions.rs`, API tokens in
//! `tokens.rs`, the secrets themselves in `credentials.rs`.

use crate::credentials;
use crate::{Access, Actor, Ops, OpsError, Result, Role, Scope, Via};
use portcullis_gateway::policy::split_address;
use portcullis_queue::spool::now;
use portcullis_store::AccountRow;
use serde_json::json;
use std::net::IpAddr;

/// Failed logins in a row after which an account is locked.
pub const MAX_ACCOUNT_FAILURES: i64 = 5;
/// How long a locked account stays locked.
pub const LOCK_SECS: i64 = 15 * 60;
/// Failed logins from one client address within [`REMOTE_WINDOW_SECS`] after which its
/// attempts are refused.
pub const MAX_REMOTE_FAILURES: i64 = 20;
pub const REMOTE_WINDOW_SECS: i64 = 10 * 60;

/// A console or API account.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Account {
    pub name: String,
    pub role: String,
    /// A domain-admin's domains.
    pub domains: Vec<String>,
    /// A user's own mailbox (for role `user`; the name otherwise).
    pub address: String,
    pub totp_enabled: bool,
    pub created: i64,
    pub last_login: Option<i64>,
    /// Locked by failed logins until then (unix seconds).
    pub locked_until: Option<i64>,
}

/// A new console session: the secret goes into the cookie, never into a log.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub secret: String,
    /// The CSRF token every state-changing request of this session must carry.
    pub csrf: String,
    pub expires: i64,
}

/// What a login attempt came to.
#[derive(Debug, Clone)]
pub enum Login {
    /// Logged in.
    Session(NewSession),
    /// The password was right; the account has TOTP and no (or a wrong) code was given.
    /// The handle names this pending login for [`Ops::login_totp`] (once, for five
    /// minutes, on any node).
    NeedTotp(String),
}

/// A session found by its cookie.
#[derive(Debug, Clone)]
pub struct SessionActor {
    pub actor: Actor,
    pub csrf: String,
    pub expires: i64,
}

/// TOTP enrolment: the secret to show as a QR code (`otpauth://` URL) and as text.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TotpEnrolment {
    pub secret_base32: String,
    pub otpauth_url: String,
    /// The QR code of `otpauth_url` as an SVG document.
    pub qr_svg: String,
}

/// An API token as listed (never its secret).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub account: String,
    pub role: String,
    pub domains: Vec<String>,
    pub read_only: bool,
    pub created: i64,
    pub expires: Option<i64>,
    pub last_used: Option<i64>,
    pub revoked: bool,
}

/// What a new token is allowed: at most what its creator may do.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub name: String,
    pub role: Role,
    pub domains: Vec<String>,
    pub read_only: bool,
    /// Unix seconds; None: does not expire.
    pub expires: Option<i64>,
}

/// The scopes an account's role covers: what a manager of the account must be allowed.
pub(crate) fn account_scopes(role: Role, domains: &[String], address: &str) -> Vec<Scope> {
    match role {
        Role::User => vec![Scope::address(address)],
        Role::DomainAdmin if !domains.is_empty() => {
            domains.iter().map(|d| Scope::domain(d)).collect()
        }
        _ => vec![Scope::Global],
    }
}

pub(crate) fn parse_stored_role(account: &str, role: &str) -> Result<Role> {
    Role::parse(role).map_err(|_| OpsError::State {
        name: format!("account {account}"),
        state: format!("stored with unknown role {role:?}"),
        hint: "remove the account and add it again".into(),
    })
}

/// Domain names as kept: lower case, no trailing dot, sorted, once each.
pub(crate) fn normalize_domains(domains: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for d in domains {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty() || !d.contains('.') || d.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(OpsError::invalid(
                "domain",
                &d,
                "expected a domain such as example.com",
            ));
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out.sort();
    Ok(out)
}

impl Account {
    fn from_row(row: &AccountRow) -> Account {
        Account {
            name: row.name.clone(),
            role: row.role.clone(),
            domains: row.domains.clone(),
            address: row.address.clone(),
            totp_enabled: row.totp_secret.is_some(),
            created: row.created,
            last_login: row.last_login,
            locked_until: row.locked_until,
        }
    }

    /// What the audit log keeps of an account (no secret).
    fn audit_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "role": self.role,
            "domains": self.domains,
            "address": self.address,
            "totp_enabled": self.totp_enabled,
        })
    }
}

impl Ops {
    /// The actor an account acts as.
    pub(crate) fn account_actor(
        &self,
        row: &AccountRow,
        via: Via,
        remote: Option<IpAddr>,
    ) -> Result<Actor> {
        let role = parse_stored_role(&row.name, &row.role)?;
        Ok(Actor {
            name: row.name.clone(),
            role,
            domains: if role == Role::DomainAdmin {
                row.domains.clone()
            } else {
                Vec::new()
            },
            address: if role == Role::User {
                row.address.clone()
            } else {
                String::new()
            },
            read_only: false,
            via,
            remote,
        })
    }

    /// The actor may manage an account of this role and these domains.
    fn require_manage(&self, role: Role, domains: &[String], address: &str) -> Result<()> {
        for scope in account_scopes(role, domains, address) {
            self.actor().require(Access::ManageAccounts, &scope)?;
        }
        Ok(())
    }

    fn require_manage_row(&self, row: &AccountRow) -> Result<()> {
        let role = parse_stored_role(&row.name, &row.role).unwrap_or(Role::Admin);
        self.require_manage(role, &row.domains, &row.address)
    }

    /// The account of the actor itself (a console session's; not the CLI's, not a token's).
    pub(crate) async fn own_account(&self) -> Result<AccountRow> {
        let name = &self.actor().name;
        match self.store.account_get(name).await? {
            Some(row) if matches!(self.actor().via, Via::Console | Via::Api) => Ok(row),
            _ => Err(OpsError::Forbidden(format!(
                "{name} is not a console account; this is done by an account for itself"
            ))),
        }
    }

    fn breach_dir(&self) -> Option<&std::path::Path> {
        self.config.accounts.breached_passwords_dir.as_deref()
    }

    /// At first start only: when no account exists, make `admin` with a random password
    /// and return the password (to print once). None when any account exists.
    pub async fn bootstrap_admin(&self) -> Result<Option<String>> {
        self.actor()
            .require(Access::ManageAccounts, &Scope::Global)?;
        if self.store.account_count().await? > 0 {
            return Ok(None);
        }
        let password = credentials::random_password(20);
        let row = AccountRow {
            name: "admin".into(),
            role: Role::Admin.as_str().into(),
            domains: Vec::new(),
            address: "admin".into(),
            password_hash: credentials::hash_password(&password).await?,
            totp_secret: None,
            totp_pending: None,
            totp_last_step: None,
            recovery_codes: Vec::new(),
            created: now(),
            last_login: None,
            failed_count: 0,
            locked_until: None,
        };
        if !self.store.account_insert(&row).await? {
            return Ok(None);
        }
        let after = Account::from_row(&row).audit_json();
        self.audit("account.bootstrap", "admin", None, Some(after))
            .await?;
        Ok(Some(password))
    }

    pub async fn account_add(
        &self,
        name: &str,
        role: Role,
        domains: &[String],
        password: &str,
    ) -> Result<Account> {
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ':') {
            return Err(OpsError::invalid(
                "account name",
                &name,
                "must be non-empty, without spaces or colons",
            ));
        }
        let domains = normalize_domains(domains)?;
        match role {
            Role::User if split_address(&name).is_none() => {
                return Err(OpsError::invalid(
                    "account name",
                    &name,
                    "a user's account is named by its address, such as bob@example.com",
                ));
            }
            Role::DomainAdmin if domains.is_empty() => {
                return Err(OpsError::invalid(
                    "account",
                    &name,
                    "a domain-admin needs at least one domain",
                ));
            }
            Role::DomainAdmin => {}
            _ if !domains.is_empty() => {
                return Err(OpsError::invalid(
                    "account",
                    &name,
                    format!("only a domain-admin has domains, not a {role}"),
                ));
            }
            _ => {}
        }
        self.require_manage(role, &domains, &name)?;
        credentials::check_new_password(password, self.breach_dir())?;
        let row = AccountRow {
            name: name.clone(),
            role: role.as_str().into(),
            domains,
            address: name.clone(),
            password_hash: credentials::hash_password(password).await?,
            totp_secret: None,
            totp_pending: None,
            totp_last_step: None,
            recovery_codes: Vec::new(),
            created: now(),
            last_login: None,
            failed_count: 0,
            locked_until: None,
        };
        if !self.store.account_insert(&row).await? {
            return Err(OpsError::State {
                name: format!("account {name}"),
                state: "there already".into(),
                hint: "remove it first, or change its password".into(),
            });
        }
        let account = Account::from_row(&row);
        self.audit("account.add", &name, None, Some(account.audit_json()))
            .await?;
        Ok(account)
    }

    /// Every account for an administrator or an auditor; a domain-admin sees the accounts
    /// of its domains.
    pub async fn account_list(&self) -> Result<Vec<Account>> {
        let actor = self.actor();
        match actor.role {
            Role::Admin | Role::Auditor | Role::DomainAdmin => {}
            _ => actor.require(Access::ManageAccounts, &Scope::Global)?,
        }
        let rows = self.store.account_list().await?;
        Ok(rows
            .iter()
            .filter(|row| actor.role != Role::DomainAdmin || self.require_manage_row(row).is_ok())
            .map(Account::from_row)
            .collect())
    }

    pub async fn account_remove(&self, name: &str) -> Result<()> {
        let name = name.trim().to_ascii_lowercase();
        let Some(row) = self.store.account_get(&name).await? else {
            return Err(OpsError::not_found("account", name));
        };
        self.require_manage_row(&row)?;
        if row.role == Role::Admin.as_str() {
            let admins = self
                .store
                .account_list()
                .await?
                .iter()
                .filter(|a| a.role == Role::Admin.as_str())
                .count();
            if admins <= 1 {
                return Err(OpsError::State {
                    name: format!("account {name}"),
                    state: "the last administrator".into(),
                    hint: "add another admin account first".into(),
                });
            }
        }
        if !self.store.account_delete(&name).await? {
            return Err(OpsError::not_found("account", name));
        }
        let before = Account::from_row(&row).audit_json();
        self.audit("account.remove", &name, Some(before), None)
            .await
    }

    /// The actor's own password (`old` required), or anyone's for an administrator
    /// (`old` None).
    pub async fn account_set_password(
        &self,
        name: &str,
        old: Option<&str>,
        new: &str,
    ) -> Result<()> {
        let name = name.trim().to_ascii_lowercase();
        let own = name == self.actor().name && matches!(self.actor().via, Via::Console | Via::Api);
        let row = match old {
            Some(old) => {
                if !own {
                    return Err(OpsError::Forbidden(format!(
                        "{} may change only its own password with the old one",
                        self.actor().name
                    )));
                }
                let row = self.own_account().await?;
                if !credentials::verify_password(Some(row.password_hash.clone()), old).await {
                    return Err(OpsError::Unauthorized("wrong password".into()));
                }
                row
            }
            None => {
                let Some(row) = self.store.account_get(&name).await? else {
                    self.actor()
                        .require(Access::ManageAccounts, &Scope::Global)?;
                    return Err(OpsError::not_found("account", name));
                };
                self.require_manage_row(&row)?;
                row
            }
        };
        credentials::check_new_password(new, self.breach_dir())?;
        let hash = credentials::hash_password(new).await?;
        if !self.store.account_set_password(&row.name, &hash).await? {
            return Err(OpsError::not_found("account", name));
        }
        // A password set by someone else ends the sessions opened with the old one.
        if !own {
            self.store.session_delete_account(&row.name).await?;
        }
        self.audit("account.password", &row.name, None, None).await
    }
}
