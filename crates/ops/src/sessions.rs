//! Logging in and the console sessions it opens: password check (a dummy hash for an
//! unknown name, one answer for both mistakes), the two throttles, the second factor (TOTP,
//! each time step once, or a single-use recovery code), and the session's idle and
//! absolute ends. TOTP enrolment is here too: it is what a login asks for later.

use crate::accounts::{
    LOCK_SECS, Login, MAX_ACCOUNT_FAILURES, MAX_REMOTE_FAILURES, NewSession, REMOTE_WINDOW_SECS,
    SessionActor, TotpEnrolment,
};
use crate::credentials::{self, secret_hash};
use crate::{Actor, Ops, OpsError, Result, Role, Via};
use portcullis_queue::spool::now;
use portcullis_store::{AccountRow, SessionRow};
use serde_json::json;
use std::net::IpAddr;

/// The one answer to a wrong name or a wrong password, so that it does not tell which.
const WRONG_CREDENTIALS: &str = "wrong name or password";

/// How long a login that passed its password waits for its second factor.
const PENDING_SECS: i64 = 300;

impl Ops {
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
        self.remote_throttle(remote_key.as_deref(), at).await?;
        let row = self.store.account_get(&name).await?;
        // A locked account answers as a wrong password does (after as long a check), so
        // that locking tells nobody the name exists; `account list` shows the lock.
        if let Some(until) = row.as_ref().and_then(|r| r.locked_until)
            && until > at
        {
            credentials::verify_password(None, password).await;
            tracing::info!(account = %name, seconds = until - at, "login to a locked account refused");
            return Err(OpsError::Unauthorized(WRONG_CREDENTIALS.into()));
        }
        let attempt = self.attempt(&name, row.as_ref(), remote);
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
        if row.totp_secret.is_some() {
            let Some(code) = totp.map(str::trim).filter(|c| !c.is_empty()) else {
                return Ok(Login::NeedTotp(self.pending_login(&row.name, at).await?));
            };
            return self.totp_step(&row, &attempt, code, remote_key, at).await;
        }
        self.logged_in(&row, &attempt, remote_key, at).await
    }

    /// The second step of a login that [`Ops::login`] answered with
    /// [`Login::NeedTotp`]: its handle (used once, whatever the outcome) and a TOTP or
    /// recovery code. A wrong code is a failed login and gives a new handle.
    pub async fn login_totp(
        &self,
        handle: &str,
        code: &str,
        remote: Option<IpAddr>,
    ) -> Result<Login> {
        let at = now();
        let remote_key = remote.map(|r| r.to_string());
        self.remote_throttle(remote_key.as_deref(), at).await?;
        let expired = || OpsError::Unauthorized("that login took too long; start again".into());
        let Some(name) = self
            .store
            .login_pending_take(&secret_hash(handle.trim()), at)
            .await?
        else {
            return Err(expired());
        };
        let Some(row) = self.store.account_get(&name).await? else {
            return Err(expired());
        };
        let attempt = self.attempt(&name, Some(&row), remote);
        if row.locked_until.is_some_and(|until| until > at) {
            return Err(OpsError::Unauthorized(WRONG_CREDENTIALS.into()));
        }
        self.totp_step(&row, &attempt, code.trim(), remote_key, at)
            .await
    }

    /// Too many failed logins from `remote` of late: refused before any check.
    async fn remote_throttle(&self, remote: Option<&str>, at: i64) -> Result<()> {
        let Some(key) = remote else { return Ok(()) };
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
        Ok(())
    }

    /// Who is trying to log in, for the audit log. An unknown name is not written down:
    /// it may be a password typed in the wrong field.
    fn attempt(&self, name: &str, row: Option<&AccountRow>, remote: Option<IpAddr>) -> Actor {
        let via = match self.actor().via {
            Via::Api => Via::Api,
            _ => Via::Console,
        };
        Actor {
            name: if row.is_some() {
                name.to_string()
            } else {
                "(unknown account)".into()
            },
            role: row
                .and_then(|r| Role::parse(&r.role).ok())
                .unwrap_or(Role::User),
            domains: Vec::new(),
            address: String::new(),
            read_only: false,
            via,
            remote,
        }
    }

    /// A new handle for a login waiting for its second factor.
    async fn pending_login(&self, account: &str, at: i64) -> Result<String> {
        let handle = credentials::random_secret();
        self.store
            .login_pending_put(&secret_hash(&handle), account, at + PENDING_SECS, at)
            .await?;
        Ok(handle)
    }

    /// Check the second factor of an account whose password was right.
    async fn totp_step(
        &self,
        row: &AccountRow,
        attempt: &Actor,
        code: &str,
        remote: Option<String>,
        at: i64,
    ) -> Result<Login> {
        let Some(secret) = &row.totp_secret else {
            // TOTP was removed between the steps: the password step stands.
            return self.logged_in(row, attempt, remote, at).await;
        };
        if code.is_empty() || !self.second_factor(row, secret, code, at).await? {
            self.login_failed(attempt, Some(row), remote.as_deref(), at)
                .await?;
            return Ok(Login::NeedTotp(self.pending_login(&row.name, at).await?));
        }
        self.logged_in(row, attempt, remote, at).await
    }

    async fn logged_in(
        &self,
        row: &AccountRow,
        attempt: &Actor,
        remote: Option<String>,
        at: i64,
    ) -> Result<Login> {
        self.store.account_login_succeeded(&row.name, at).await?;
        self.store.session_purge(at).await?;
        let session = self.open_session(&row.name, remote, at).await?;
        self.audit_as(attempt, "account.login", &row.name, None, None)
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
