//! The one error type of the store. Every variant says what was being done, so a message reads like
//! "adding domain example.com: UNIQUE constraint failed" at the terminal, not a bare driver error.

use std::path::PathBuf;

/// Anything that can go wrong opening or using the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL names an engine or form we cannot open.
    #[error("store URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },

    /// The PostgreSQL server could not be reached or refused us (wrong password, no such
    /// database). Names the server, database and user, never the password. The message ends
    /// with the reason, so `cause` is not also chained as a source (it would print twice).
    #[error(
        "cannot connect to PostgreSQL at {server} (database {database}, user {user}): {}",
        connect_reason(cause)
    )]
    Connect {
        /// `host:port`, or the socket directory.
        server: String,
        database: String,
        user: String,
        cause: sqlx::Error,
    },

    /// The directory that should hold the SQLite file could not be made.
    #[error("creating directory {} for the store: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Connecting to the database failed.
    #[error("opening store {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    /// The embedded schema migrations could not be applied.
    #[error("migrating store {url}: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// A query failed; `context` says which operation on which item.
    #[error("{context}: {source}")]
    Query {
        context: String,
        #[source]
        source: sqlx::Error,
    },

    /// The caller passed a value the store refuses to keep (bad TLS mode, empty domain, ...).
    #[error("{context}: {reason}")]
    Invalid { context: String, reason: String },

    /// A stored value could not be read back into its Rust type; the database was edited by hand
    /// or by a newer version.
    #[error("{context}: stored value is corrupt: {reason}")]
    Corrupt { context: String, reason: String },

    /// Writing or reading a backup's copy of the tables (`dump`) failed.
    #[error("{0}")]
    Dump(String),
}

impl StoreError {
    pub(crate) fn connect(
        options: &sqlx::postgres::PgConnectOptions,
        source: sqlx::Error,
    ) -> StoreError {
        let server = match options.get_socket() {
            Some(dir) => format!("{} (socket)", dir.display()),
            None => format!("{}:{}", options.get_host(), options.get_port()),
        };
        StoreError::Connect {
            server,
            database: options
                .get_database()
                .unwrap_or(options.get_username())
                .to_string(),
            user: options.get_username().to_string(),
            cause: source,
        }
    }

    pub(crate) fn query(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError {
        let context = context.into();
        move |source| match refused_value(&source) {
            Some(reason) => StoreError::Invalid { context, reason },
            None => StoreError::Query { context, source },
        }
    }

    pub(crate) fn invalid(context: impl Into<String>, reason: impl Into<String>) -> StoreError {
        StoreError::Invalid {
            context: context.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(context: impl Into<String>, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            context: context.into(),
            reason: reason.into(),
        }
    }
}

/// A value the engine refuses to store, said as the caller's mistake rather than a failing
/// store: PostgreSQL keeps no NUL character in text (SQLSTATE 22021, "invalid byte
/// sequence") and no character its encoding lacks (22P05). SQLite stores both.
fn refused_value(source: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(e) = source else {
        return None;
    };
    match e.code().as_deref() {
        Some("22021") | Some("22P05") => Some(format!(
            "a text value has a character that cannot be stored (such as NUL): {}",
            e.message()
        )),
        _ => None,
    }
}

/// The part of a connection error a person acts on: the server's own message (bad password,
/// no such database) or the system's (connection refused), without the driver's preamble.
fn connect_reason(source: &sqlx::Error) -> String {
    match source {
        sqlx::Error::Database(e) => format!("the server says: {}", e.message()),
        sqlx::Error::Io(e) => e.to_string(),
        sqlx::Error::Tls(e) => format!("TLS: {e}"),
        other => other.to_string(),
    }
}
