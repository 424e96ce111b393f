//! Console and API accounts, their sessions and API tokens: who may log in, with which
//! role, and how a cookie or a bearer token becomes an [`Actor`]. Passwords are argon2id
//! hashes; session and token secrets are stored only as hashes, so a copy of the store
//! does not log anyone in.
//!
//! CONTRACT (filled in by the accounts work; the web crate codes against these
//! signatures, whose bodies are not written yet).

use crate::{Actor, Ops, OpsError, Result, Role};
use std::net::IpAddr;

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

fn unwritten<T>() -> Result<T> {
    Err(OpsError::Failed {
        what: "accounts".into(),
        reason: "not built yet".into(),
    })
}

impl Ops {
    /// At first start only: when no account exists, make `admin` with a random password
    /// and return the password (to print once). None when any account exists.
    pub async fn bootstrap_admin(&self) -> Result<Option<String>> {
        unwritten()
    }

    pub async fn account_add(
        &self,
        _name: &str,
        _role: Role,
        _domains: &[String],
        _password: &str,
    ) -> Result<Account> {
        unwritten()
    }

    pub async fn account_list(&self) -> Result<Vec<Account>> {
        unwritten()
    }

    pub async fn account_remove(&self, _name: &str) -> Result<()> {
        unwritten()
    }

    /// The actor's own password (`old` required), or anyone's for an administrator
    /// (`old` None).
    pub async fn account_set_password(
        &self,
        _name: &str,
        _old: Option<&str>,
        _new: &str,
    ) -> Result<()> {
        unwritten()
    }

    /// Check a password (and TOTP code) and open a session. Wrong credentials, a locked
    /// account and too many attempts from `remote` are errors with status 401 or 429.
    pub async fn login(
        &self,
        _name: &str,
        _password: &str,
        _totp: Option<&str>,
        _remote: Option<IpAddr>,
    ) -> Result<Login> {
        unwritten()
    }

    /// The session of a cookie's secret, if it is valid; extends its idle time.
    pub async fn session(&self, _secret: &str) -> Result<Option<SessionActor>> {
        unwritten()
    }

    pub async fn logout(&self, _secret: &str) -> Result<()> {
        unwritten()
    }

    /// End every session of the actor's own account.
    pub async fn logout_everywhere(&self) -> Result<u64> {
        unwritten()
    }

    /// Start TOTP enrolment for the actor's own account (not active until confirmed).
    pub async fn totp_enrol(&self) -> Result<TotpEnrolment> {
        unwritten()
    }

    /// Confirm enrolment with a current code; returns the recovery codes (shown once).
    pub async fn totp_confirm(&self, _code: &str) -> Result<Vec<String>> {
        unwritten()
    }

    /// A new API token of the actor's own account; the secret is returned once.
    pub async fn token_create(&self, _spec: &TokenSpec) -> Result<(TokenInfo, String)> {
        unwritten()
    }

    pub async fn token_list(&self) -> Result<Vec<TokenInfo>> {
        unwritten()
    }

    pub async fn token_revoke(&self, _id: i64) -> Result<()> {
        unwritten()
    }

    /// The actor of a bearer token's secret, if it is valid (not expired, not revoked);
    /// records its last use.
    pub async fn token_actor(
        &self,
        _secret: &str,
        _remote: Option<IpAddr>,
    ) -> Result<Option<Actor>> {
        unwritten()
    }
}
