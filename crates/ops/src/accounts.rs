//! Console and API accounts, their sessions and API tokens: who may log in, with which
//! role, and how a cookie or a bearer token becomes an [`Actor`]. Passwords are argon2id
//! hashes; session and token secrets are stored only as hashes, so a copy of the store
//! does not log anyone in.
//!
//! Logins are throttled twice: an account is locked for [`LOCK_SECS`] after
//! [`MAX_ACCOUNT_FAILURES`] failures in a row, and a client address that failed
//! [`MAX_REMOTE_FAILURES`] times within [`REMOTE_WINDOW_SECS`] is refused until its
//! failures age out. API tokens are in `tokens.rs`, the secrets themselves in
//! `credentials.rs`.

use crate::credentials::{self, secret_hash};
use crate::{Access, Actor, Ops, OpsError, Result, Role, Scope, Via};
use portcullis_gateway::policy::split_address;
use portcullis_queue::spool::now;
use portcullis_store::{AccountRow, SessionRow};
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

/// The one answer to a wrong name or a wrong password, so that it does not tell which.
const WRONG_CREDENTIALS: &str = "wrong name or password";

/// A console or API account.
#[derive(Debug, Clone, serde::Serialize)]
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
    NeedTotp,
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
#[derive(Debug, Clone, serde::Serialize)]
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
    async fn own_account(&self) -> Result<AccountRow> {
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

    /// Check a password (and TOTP code) and open a session. Wrong credentials, a locked
    /// account and too many attempts from `remote` are errors with status 401 or 429.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        totp: Option<&str>,
        remote: Option<IpAddr>,
    ) -> Result<Login> {
        let name = name.trim().to_ascii_lowercase();
        let at = now();
        let remote_key = remote.map(|r| r.to_string());
        if let Some(key) = &remote_key {
            let failures = self
                .store
                .login_failures_since(key, at - REMOTE_WINDOW_SECS)
                .await?;
            if failures >= MAX_REMOTE_FAILURES {
                return Err(OpsError::Throttled {
                    what: format!("too many failed logins from {key}"),
                    retry_after: REMOTE_WINDOW_SECS as u64,
                });
            }
        }
        let row = self.store.account_get(&name).await?;
        if let Some(until) = row.as_ref().and_then(|r| r.locked_until)
            && until > at
        {
            return Err(OpsError::Throttled {
                what: format!("account {name} is locked after failed logins"),
                retry_after: (until - at) as u64,
            });
        }
        let via = match self.actor().via {
            Via::Api => Via::Api,
            _ => Via::Console,
        };
        // An unknown name is not written down: it may be a password typed in the wrong
        // field.
        let attempt = Actor {
            name: if row.is_some() {
                name.clone()
            } else {
                "(unknown account)".into()
            },
            role: row
                .as_ref()
                .and_then(|r| Role::parse(&r.role).ok())
                .unwrap_or(Role::User),
            domains: Vec::new(),
            address: String::new(),
            read_only: false,
            via,
            remote,
        };
        let hash = row.as_ref().map(|r| r.password_hash.clone());
        let Some(row) = row else {
            credentials::verify_password(None, password).await;
            self.login_failed(&attempt, None, remote_key.as_deref(), at)
                .await?;
            return Err(OpsError::Unauthorized(WRONG_CREDENTIALS.into()));
        };
        if !credentials::verify_password(hash, password).await {
            self.login_failed(&attempt, Some(&row), remote_key.as_deref(), at)
                .await?;
            return Err(OpsError::Unauthorized(WRONG_CREDENTIALS.into()));
        }
        if let Some(secret) = &row.totp_secret {
            let Some(code) = totp.map(str::trim).filter(|c| !c.is_empty()) else {
                return Ok(Login::NeedTotp);
            };
            if !self.second_factor(&row, secret, code, at).await? {
                self.login_failed(&attempt, Some(&row), remote_key.as_deref(), at)
                    .await?;
                return Ok(Login::NeedTotp);
            }
        }
        self.store.account_login_succeeded(&row.name, at).await?;
        self.store.session_purge(at).await?;
        let session = self.open_session(&row.name, remote_key, at).await?;
        self.audit_as(&attempt, "account.login", &row.name, None, None)
            .await?;
        Ok(Login::Session(session))
    }

    /// A TOTP code (each time step once) or an unused recovery code.
    async fn second_factor(
        &self,
        row: &AccountRow,
        secret: &str,
        code: &str,
        at: i64,
    ) -> Result<bool> {
        let totp = credentials::totp(secret, &row.name)?;
        if let Some(step) = credentials::totp_step(&totp, code, at) {
            return Ok(self.store.account_use_totp_step(&row.name, step).await?);
        }
        let hash = credentials::recovery_hash(code);
        Ok(self
            .store
            .account_use_recovery_code(&row.name, &hash)
            .await?)
    }

    async fn login_failed(
        &self,
        attempt: &Actor,
        row: Option<&AccountRow>,
        remote: Option<&str>,
        at: i64,
    ) -> Result<()> {
        if let Some(remote) = remote {
            self.store
                .login_failure(remote, at, at - REMOTE_WINDOW_SECS)
                .await?;
        }
        if let Some(row) = row {
            self.store
                .account_login_failed(&row.name, MAX_ACCOUNT_FAILURES, at + LOCK_SECS)
                .await?;
        }
        self.audit_as(attempt, "account.login_failed", &attempt.name, None, None)
            .await
    }

    async fn open_session(
        &self,
        account: &str,
        remote: Option<String>,
        at: i64,
    ) -> Result<NewSession> {
        let secret = credentials::random_secret();
        let csrf = credentials::random_secret();
        let settings = &self.config.accounts;
        let expires = at + settings.session_idle_secs.min(settings.session_max_secs) as i64;
        self.store
            .session_insert(&SessionRow {
                id: secret_hash(&secret),
                account: account.to_string(),
                csrf: csrf.clone(),
                created: at,
                last_seen: at,
                expires,
                remote,
            })
            .await?;
        Ok(NewSession {
            secret,
            csrf,
            expires,
        })
    }

    /// The session of a cookie's secret, if it is valid; extends its idle time.
    pub async fn session(&self, secret: &str) -> Result<Option<SessionActor>> {
        let id = secret_hash(secret);
        let Some(session) = self.store.session_get(&id).await? else {
            return Ok(None);
        };
        let at = now();
        let settings = &self.config.accounts;
        let end = session.created + settings.session_max_secs as i64;
        if session.expires <= at || end <= at {
            self.store.session_delete(&id).await?;
            return Ok(None);
        }
        let Some(row) = self.store.account_get(&session.account).await? else {
            self.store.session_delete(&id).await?;
            return Ok(None);
        };
        let expires = (at + settings.session_idle_secs as i64).min(end);
        self.store.session_touch(&id, at, expires).await?;
        let remote = session.remote.as_deref().and_then(|r| r.parse().ok());
        Ok(Some(SessionActor {
            actor: self.account_actor(&row, Via::Console, remote)?,
            csrf: session.csrf,
            expires,
        }))
    }

    pub async fn logout(&self, secret: &str) -> Result<()> {
        let id = secret_hash(secret);
        let Some(session) = self.store.session_get(&id).await? else {
            return Ok(());
        };
        self.store.session_delete(&id).await?;
        self.audit("account.logout", &session.account, None, None)
            .await
    }

    /// End every session of the actor's own account.
    pub async fn logout_everywhere(&self) -> Result<u64> {
        let row = self.own_account().await?;
        let ended = self.store.session_delete_account(&row.name).await?;
        self.audit(
            "account.logout_everywhere",
            &row.name,
            None,
            Some(json!({ "sessions_ended": ended })),
        )
        .await?;
        Ok(ended)
    }

    /// Start TOTP enrolment for the actor's own account (not active until confirmed).
    pub async fn totp_enrol(&self) -> Result<TotpEnrolment> {
        let row = self.own_account().await?;
        let secret = credentials::new_totp_secret();
        let totp = credentials::totp(&secret, &row.name)?;
        let otpauth_url = totp.to_url().map_err(|e| OpsError::Failed {
            what: "the TOTP enrolment URL".into(),
            reason: e.to_string(),
        })?;
        let qr_svg = credentials::qr_svg(&otpauth_url)?;
        self.store
            .account_set_totp_pending(&row.name, Some(&secret))
            .await?;
        self.audit("account.totp_enrol", &row.name, None, None)
            .await?;
        Ok(TotpEnrolment {
            secret_base32: secret,
            otpauth_url,
            qr_svg,
        })
    }

    /// Confirm enrolment with a current code; returns the recovery codes (shown once).
    pub async fn totp_confirm(&self, code: &str) -> Result<Vec<String>> {
        let row = self.own_account().await?;
        let Some(pending) = row.totp_pending.clone() else {
            return Err(OpsError::State {
                name: format!("account {}", row.name),
                state: "not enrolling TOTP".into(),
                hint: "start the enrolment first".into(),
            });
        };
        let totp = credentials::totp(&pending, &row.name)?;
        let Some(step) = credentials::totp_step(&totp, code, now()) else {
            return Err(OpsError::Unauthorized("wrong TOTP code".into()));
        };
        let codes = credentials::new_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| credentials::recovery_hash(c))
            .collect();
        if !self
            .store
            .account_confirm_totp(&row.name, &pending, step, &hashes)
            .await?
        {
            return Err(OpsError::State {
                name: format!("account {}", row.name),
                state: "enrolling again meanwhile".into(),
                hint: "confirm with a code of the newest enrolment".into(),
            });
        }
        self.audit("account.totp_enable", &row.name, None, None)
            .await?;
        Ok(codes)
    }
}
