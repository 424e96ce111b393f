//! The one SQL store of Portcullis: opening the database, the embedded schema migrations, and typed
//! queries for policy (domains, internal networks, users) and the message log. It knows nothing of SMTP
//! or HTTP; callers hand it plain values.
//!
//! SQLite is the default engine (one file, WAL). Every query is written so that PostgreSQL can run the
//! same text later: `$N` placeholders, integer unix-second times, `ON CONFLICT` instead of
//! `INSERT OR IGNORE`, no engine-specific functions.

mod bayes;
mod dkim;
mod dmarc_results;
mod domains;
mod error;
mod greylist;
mod log;
mod networks;
mod quarantine;
mod rates;
mod reports;
mod rules;
mod settings;
mod tls_results;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use bayes::{BayesCounts, BayesSummary};
pub use dkim::{DKIM_ALGORITHMS, DKIM_STATES, DkimKey};
pub use dmarc_results::{DMARC_CLAIM_SECS, DmarcResultRow};
pub use domains::{Domain, Route, TLS_MODES};
pub use error::StoreError;
pub use greylist::{GreylistClient, GreylistCounts, GreylistEntry, GreylistPurged};
pub use log::{
    DIRECTIONS, LogEntry, LogQuery, MAX_SEARCH_LIMIT, MessageRecord, RECIPIENT_STATUSES,
    RecipientRecord, StatusUpdate,
};
pub use quarantine::{HeldMessage, QUARANTINE_STATES, QuarantineItem, QuarantineQuery};
pub use reports::{MAX_REPORT_LIMIT, REPORT_KINDS, ReportQuery, ReportSummary, StoredReport};
pub use rules::{ContentRow, LIST_FIELDS, LIST_KINDS, ListEntry};
pub use tls_results::{TlsClaim, TlsResultRow};

/// Schema migrations, compiled into the binary so a node needs no files beside it at run time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a writer waits for another writer's lock before giving up. Log writes are short, so a
/// few seconds covers any real contention without hanging an SMTP session forever.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Upper bound on pooled SQLite connections: WAL lets readers run beside the single writer, and more
/// connections than this only queue on the write lock.
const MAX_SQLITE_CONNECTIONS: u32 = 8;

/// A handle on the store. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// An in-memory database: one connection holds it, so no second pool can reach it.
    in_memory: bool,
}

impl Store {
    /// Opens (creating if missing) the store at `url` and brings its schema up to date.
    ///
    /// Accepted: `sqlite:///abs/path/portcullis.db`, `sqlite://relative/path.db`, `sqlite::memory:`.
    /// `postgres://` URLs are refused with [`StoreError::PostgresNotSupported`] until cluster mode.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(StoreError::PostgresNotSupported);
        }
        if !url.starts_with("sqlite:") {
            return Err(StoreError::BadUrl {
                url: url.to_string(),
                reason: "expected sqlite:///absolute/path.db, sqlite://relative/path.db or sqlite::memory:"
                    .to_string(),
            });
        }

        let options = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let in_memory = is_memory_url(url);
        if !in_memory {
            create_parent_dir(options.get_filename())?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode; only a power cut can lose
            // the last log lines, and the spool (not the store) is what must survive that.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);

        let pool_options = if in_memory {
            // An in-memory database lives only as long as a connection to it, and shared-cache
            // connections report SQLITE_LOCKED instead of waiting; one long-lived connection avoids both.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(MAX_SQLITE_CONNECTIONS)
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                url: url.to_string(),
                source,
            })?;

        MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: url.to_string(),
                source,
            })?;
        tracing::debug!(url, "store opened and migrated");
        Ok(Store { pool, in_memory })
    }

    /// A handle with one connection of its own, for a task that writes all the time (the
    /// message log): its page cache stays warm and its statements always go to the same
    /// worker thread, instead of rotating through the shared pool's connections. An
    /// in-memory store has only one connection, so there it is a clone.
    pub async fn dedicated(&self) -> Result<Store, StoreError> {
        if self.in_memory {
            return Ok(self.clone());
        }
        let options = (*self.pool.connect_options()).clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                url: "(the same database, a dedicated connection)".to_string(),
                source,
            })?;
        Ok(Store {
            pool,
            in_memory: false,
        })
    }

    /// Closes every pooled connection, letting SQLite checkpoint its WAL. Clones become unusable.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn is_memory_url(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

fn create_parent_dir(file: &Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filename(url: &str) -> std::path::PathBuf {
        SqliteConnectOptions::from_str(url)
            .expect("parse url")
            .get_filename()
            .to_path_buf()
    }

    #[test]
    fn url_forms_map_to_paths() {
        assert_eq!(
            filename("sqlite:///var/lib/portcullis/portcullis.db"),
            Path::new("/var/lib/portcullis/portcullis.db")
        );
        assert_eq!(
            filename("sqlite://data/portcullis.db"),
            Path::new("data/portcullis.db")
        );
        assert!(is_memory_url("sqlite::memory:"));
        assert!(!is_memory_url("sqlite://data/portcullis.db"));
    }

    #[tokio::test]
    async fn file_store_uses_wal_and_foreign_keys() {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-store-unit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let url = format!("sqlite://{}", dir.join("p.db").display());
        let store = Store::open(&url).await.expect("open");
        let (journal,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .expect("journal_mode");
        let (fk,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
            .fetch_one(&store.pool)
            .await
            .expect("foreign_keys");
        let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
            .fetch_one(&store.pool)
            .await
            .expect("synchronous");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(journal.to_ascii_lowercase(), "wal");
        assert_eq!(fk, 1);
        // 1 is NORMAL.
        assert_eq!(sync, 1);
    }

    #[test]
    fn migrations_avoid_sqlite_only_sql() {
        for migration in MIGRATOR.iter() {
            // Comments may name what is avoided; only statements count.
            let sql: String = migration
                .sql
                .as_str()
                .lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .to_ascii_uppercase();
            for banned in [
                "AUTOINCREMENT",
                "INSERT OR",
                "WITHOUT ROWID",
                "DATETIME",
                "PRAGMA",
            ] {
                assert!(
                    !sql.contains(banned),
                    "migration {} uses {banned}, which PostgreSQL would not accept",
                    migration.version
                );
            }
        }
    }
}
