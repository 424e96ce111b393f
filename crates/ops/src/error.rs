//! The one error of the operations layer. Each variant says what is wrong and, where
//! there is one, how to fix it, in words for the person at the terminal or the console;
//! the REST API maps them to status codes ([`OpsError::status`]).

use portcullis_gateway::InjectError;
use portcullis_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A value given by the caller is not acceptable.
    #[error("{what} {value:?}: {hint}")]
    Invalid {
        what: &'static str,
        value: String,
        hint: String,
    },
    /// A document (rules, policy) that does not parse or validate; `origin` names it.
    #[error("{origin}: {reason}")]
    Document { origin: String, reason: String },
    /// Nothing of that kind and name.
    #[error("no {kind} {name}")]
    NotFound { kind: &'static str, name: String },
    /// The item exists, but not in a state that allows this.
    #[error("{name} is {state}: {hint}")]
    State {
        name: String,
        state: String,
        hint: String,
    },
    /// Not allowed for this caller (a digest link for mail only an administrator may
    /// release).
    #[error("{0}")]
    Forbidden(String),
    /// Wrong or missing credentials (password, TOTP code, session, token). The text says
    /// no more than that, so that it does not tell which part was wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// Too many attempts (logins from one address, or on one account): try again after
    /// `retry_after` seconds.
    #[error("{what}: try again in {retry_after} s")]
    Throttled { what: String, retry_after: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Inject(#[from] InjectError),
    #[error(transparent)]
    Dkim(#[from] portcullis_filter::sign::SignError),
    /// A task of several steps (sending reports or digests) failed; `reason` has the
    /// chain of causes.
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
    /// The spool (queue files) could not be read or changed.
    #[error("{context}: {source}")]
    Spool {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl OpsError {
    pub(crate) fn invalid(what: &'static str, value: &str, hint: impl Into<String>) -> OpsError {
        OpsError::Invalid {
            what,
            value: value.to_string(),
            hint: hint.into(),
        }
    }

    pub(crate) fn not_found(kind: &'static str, name: impl Into<String>) -> OpsError {
        OpsError::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub(crate) fn spool(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> OpsError {
        let context = context.into();
        move |source| OpsError::Spool { context, source }
    }

    pub(crate) fn failed(what: impl Into<String>) -> impl FnOnce(anyhow::Error) -> OpsError {
        let what = what.into();
        move |e| OpsError::Failed {
            what,
            reason: format!("{e:#}"),
        }
    }

    /// The HTTP status a REST handler answers with.
    pub fn status(&self) -> u16 {
        match self {
            OpsError::Invalid { .. } | OpsError::Document { .. } => 400,
            OpsError::Unauthorized(_) => 401,
            OpsError::Forbidden(_) => 403,
            OpsError::Throttled { .. } => 429,
            OpsError::NotFound { .. } => 404,
            OpsError::State { .. } => 409,
            OpsError::Store(StoreError::Invalid { .. }) => 400,
            OpsError::Store(_) | OpsError::Inject(_) | OpsError::Spool { .. } => 503,
            OpsError::Dkim(_) | OpsError::Failed { .. } => 500,
        }
    }
}

pub type Result<T, E = OpsError> = std::result::Result<T, E>;
