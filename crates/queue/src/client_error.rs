//! The errors of an outbound SMTP session, [`ClientError`], in a module of their own so
//! that the two layers of the client share them without depending on each other. The
//! arrows point one way:
//!
//! - `client` (the SMTP dialogue) uses `tls` (the stream, the TLS configurations, reply
//!   framing) and `client_error`;
//! - `tls` uses `client_error` only, never `client`;
//! - `client_error` uses neither.
//!
//! The type's public path stays `client::ClientError` (a re-export).

use std::io;

use portcullis_smtp::Reply;

/// Why a session could not be opened or broke off: no connection, a refusal, a TLS or
/// protocol failure. A remote reply, when there is one, is kept as it came;
/// [`ClientError::as_reply`] gives the reply that logs and DSNs show.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection failed: {0}")]
    Connect(#[source] io::Error),
    #[error("timeout during {0}")]
    Timeout(&'static str),
    #[error("server greeting: {0}")]
    Greeting(Reply),
    /// The server refused the session after the greeting (EHLO and HELO both refused).
    #[error("{stage} refused: {reply}")]
    Rejected { stage: &'static str, reply: Reply },
    #[error("TLS: {0}")]
    Tls(String),
    /// The server refused our credentials.
    #[error("authentication failed: {0}")]
    Auth(Reply),
    /// We did not try: no TLS, or no mechanism we speak.
    #[error("authentication not possible: {0}")]
    AuthUnavailable(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
}

impl ClientError {
    /// Permanent errors fail the recipients; the rest are retried (maybe on another MX).
    pub fn is_permanent(&self) -> bool {
        // A refused AUTH is never permanent: wrong credentials are our own configuration
        // error, and mail waits for the fix instead of bouncing (as Postfix's
        // smtp_sasl_auth_soft_bounce).
        match self {
            ClientError::Greeting(r) => r.is_permanent(),
            ClientError::Rejected { reply, .. } => reply.is_permanent(),
            _ => false,
        }
    }

    /// A reply for logs and DSNs: the remote reply when there is one, else a synthetic one.
    pub fn as_reply(&self) -> Reply {
        match self {
            ClientError::Greeting(r) | ClientError::Auth(r) => r.clone(),
            ClientError::Rejected { reply, .. } => reply.clone(),
            ClientError::Connect(e) => Reply::new(451, "4.4.1", format!("connection failed: {e}")),
            ClientError::Timeout(stage) => {
                Reply::new(451, "4.4.2", format!("timeout after {stage}"))
            }
            ClientError::Tls(e) => Reply::new(451, "4.7.5", format!("TLS failure: {e}")),
            ClientError::AuthUnavailable(e) => {
                Reply::new(451, "4.7.0", format!("authentication not possible: {e}"))
            }
            ClientError::Protocol(e) => Reply::new(451, "4.5.0", format!("protocol error: {e}")),
            ClientError::Io(e) => Reply::new(451, "4.4.2", format!("connection lost: {e}")),
        }
    }
}
