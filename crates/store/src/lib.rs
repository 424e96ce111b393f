//! The one SQL store of Portcullis: opening the database, the embedded schema migrations, and typed
//! queries for policy (domains, internal networks, users) and the message log. It knows nothing of SMTP
//! or HTTP; callers hand it plain values.
//!
//! Two engines, one schema: SQLite (one file, WAL; the default) and PostgreSQL (a cluster of
//! nodes sharing one database). Every query is written once and runs on both (see `engine`):
//! `$N` placeholders, integer unix-second times, `ON CONFLICT` instead of `INSERT OR IGNORE`, no
//! engine-specific functions. Only the DDL is per engine, in `migrations/sqlite` and
//! `migrations/postgres`, with the same numbering.

// The unit tests share the integration tests' helpers, which name the crate as they do.
#[cfg(test)]
extern crate self as portcullis_store;
#[cfg(test)]
#[macro_use]
mod testing;

mod accounts;
mod audit;
mod bayes;
mod digests;
mod dkim;
mod dmarc_results;
mod domains;
mod dump;
mod engine;
mod error;
mod greylist;
mod log;
mod log_search;
mod networks;
mod quarantine;
mod rates;
mod reports;
mod retention;
mod rules;
mod sessions;
mod settings;
mod stats;
mod tls_results;
mod tokens;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgConnection};

use engine::{Engines, Pool, on_pool};

pub use accounts::AccountRow;
pub use audit::{AuditEntry, AuditQuery, MAX_AUDIT_LIMIT};
pub use bayes::{BayesCounts, BayesSummary};
pub use digests::DigestSchedule;
pub use dkim::{DKIM_ALGORITHMS, DKIM_STATES, DkimKey};
pub use dmarc_results::{DMARC_CLAIM_SECS, DmarcResultRow};
pub use domains::{Domain, Route, TLS_MODES};
pub use dump::{Cell, DumpInfo, TableReader, table_file};
pub use error::StoreError;
pub use greylist::{GreylistClient, GreylistCounts, GreylistEntry, GreylistPurged};
pub use log::{
    DIRECTIONS, LogEntry, MAX_SEARCH_LIMIT, MessageRecord, RECIPIENT_STATUSES, RecipientRecord,
    Sees, StatusUpdate,
};
pub use log_search::{LogPage, LogQuery, TEXT_MATCHES_CAP};
pub use quarantine::{HeldMessage, QUARANTINE_STATES, QuarantineItem, QuarantineQuery};
pub use reports::{MAX_REPORT_LIMIT, REPORT_KINDS, ReportQuery, ReportSummary, StoredReport};
pub use retention::Purge;
pub use rules::{ContentRow, LIST_FIELDS, LIST_KINDS, ListEntry};
pub use sessions::SessionRow;
pub use settings::ConfigOverride;
pub use stats::{BucketCount, TopEntry};
pub use tls_results::{TlsClaim, TlsResultRow};
pub use tokens::TokenRow;

/// Schema migrations, compiled into the binary so a node needs no files beside it at run time.
/// One set per engine, same numbers and same tables; the SQLite files are the ones earlier
/// releases applied, unchanged, so their recorded checksums still match.
static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The newest schema version this build's migrations make (the same on both engines).
pub fn newest_schema_version() -> i64 {
    SQLITE_MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// How long a writer waits for another writer's lock before giving up. Log writes are short, so a
/// few seconds covers any real contention without hanging an SMTP session forever.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Upper bound on pooled SQLite connections: WAL lets readers run beside the single writer, and more
/// connections than this only queue on the write lock.
const MAX_SQLITE_CONNECTIONS: u32 = 8;

/// Pooled PostgreSQL connections per node. The server runs writers side by side, so this bounds
/// what one node may take of the server's `max_connections` (100 by default) rather than
/// contention; several nodes share the server.
const MAX_POSTGRES_CONNECTIONS: u32 = 10;

/// How long connecting to PostgreSQL may take before the store gives up with a clear error: a
/// firewall that drops packets would otherwise hold start-up for the system's TCP timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on the store. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// An in-memory database: one connection holds it, so no second pool can reach it.
    in_memory: bool,
}

/// What [`Store::migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// `sqlite` or `postgres`.
    pub engine: &'static str,
    /// The schema version before (0: a new database).
    pub previous: i64,
    /// The schema version now: the newest migration this build knows.
    pub current: i64,
}

impl Store {
    /// Opens (creating if missing) the store at `url` and brings its schema up to date.
    ///
    /// Accepted: `sqlite:///abs/path/portcullis.db`, `sqlite://relative/path.db`, `sqlite::memory:`,
    /// and `postgres://user:password@host:port/database` (or `postgresql://`, with the
    /// parameters libpq's URLs take, such as `?sslmode=require`). A PostgreSQL database must
    /// exist; its tables are made by the migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Ok(Store::open_migrated(url).await?.0)
    }

    /// Opens the store at `url`, brings its schema up to date and closes it again: what
    /// `portcullis store migrate` does before the nodes of a cluster are upgraded.
    pub async fn migrate(url: &str) -> Result<Migrated, StoreError> {
        let (store, migrated) = Store::open_migrated(url).await?;
        store.close().await;
        Ok(migrated)
    }

    async fn open_migrated(url: &str) -> Result<(Store, Migrated), StoreError> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            open_postgres(url).await
        } else if url.starts_with("sqlite:") {
            open_sqlite(url).await
        } else {
            Err(StoreError::BadUrl {
                url: redact_password(url),
                reason: "expected sqlite:///absolute/path.db, sqlite://relative/path.db, \
                         sqlite::memory: or postgres://user:password@host:port/database"
                    .to_string(),
            })
        }
    }

    /// A handle with one connection of its own, for a task that writes all the time (the
    /// message log): its page cache stays warm and its statements always go to the same
    /// worker thread, instead of rotating through the shared pool's connections. An
    /// in-memory store has only one connection, so there it is a clone.
    pub async fn dedicated(&self) -> Result<Store, StoreError> {
        if self.in_memory {
            return Ok(self.clone());
        }
        let context = "(the same database, a dedicated connection)".to_string();
        let pool = match &self.pool {
            Engines::Sqlite(p) => Engines::Sqlite(
                one_connection(SqlitePoolOptions::new())
                    .connect_with((*p.connect_options()).clone())
                    .await
                    .map_err(|source| StoreError::Open {
                        url: context,
                        source,
                    })?,
            ),
            Engines::Postgres(p) => {
                let options = (*p.connect_options()).clone();
                Engines::Postgres(
                    one_connection(PgPoolOptions::new())
                        .connect_with(options.clone())
                        .await
                        .map_err(|source| StoreError::connect(&options, source))?,
                )
            }
        };
        Ok(Store {
            pool,
            in_memory: false,
        })
    }

    /// Closes every pooled connection, letting SQLite checkpoint its WAL. Clones become unusable.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// `sqlite` or `postgres`.
    pub fn engine(&self) -> &'static str {
        self.pool.engine_name()
    }

    /// The schema version: the newest migration applied (0 if none).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let table = match &self.pool {
            Engines::Sqlite(_) => &SQLITE_MIGRATOR.table_name,
            Engines::Postgres(_) => &POSTGRES_MIGRATOR.table_name,
        };
        let sql = format!("SELECT COALESCE(MAX(version), 0) FROM {table} WHERE success");
        let (version,): (i64,) = on_pool!(&self.pool, |p| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(p).await
        })
        .map_err(StoreError::query("reading the schema version"))?;
        Ok(version)
    }
}

fn one_connection<DB: sqlx::Database>(
    options: sqlx::pool::PoolOptions<DB>,
) -> sqlx::pool::PoolOptions<DB> {
    options
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
}

async fn open_sqlite(url: &str) -> Result<(Store, Migrated), StoreError> {
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
        // the last log lines, and the spool (not the store) is what must survive that. The one
        // write a message is acknowledged on (quarantine) asks for FULL itself.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);

    let pool_options = if in_memory {
        // An in-memory database lives only as long as a connection to it, and shared-cache
        // connections report SQLITE_LOCKED instead of waiting; one long-lived connection avoids both.
        one_connection(SqlitePoolOptions::new())
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

    let migrate_error = |source| StoreError::Migrate {
        url: url.to_string(),
        source,
    };
    let mut conn = pool.acquire().await.map_err(|source| StoreError::Open {
        url: url.to_string(),
        source,
    })?;
    let previous = applied_version(&mut *conn, &SQLITE_MIGRATOR)
        .await
        .map_err(migrate_error)?;
    SQLITE_MIGRATOR
        .run(&mut *conn)
        .await
        .map_err(migrate_error)?;
    drop(conn);
    tracing::debug!(url, "store opened and migrated");
    let store = Store {
        pool: Engines::Sqlite(pool),
        in_memory,
    };
    Ok((store, migrated("sqlite", previous, &SQLITE_MIGRATOR)))
}

async fn open_postgres(url: &str) -> Result<(Store, Migrated), StoreError> {
    let shown = redact_password(url);
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::BadUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?
        // A server (or its database or role) may default to synchronous_commit = off, which
        // reports a commit before it is on disk; a write the gateway acknowledges mail on
        // (a quarantined message) must outlive a crash of the server, so every connection asks
        // for `on` itself. Startup options take precedence over those defaults.
        .options([("synchronous_commit", "on")]);

    // One connection of our own first: the pool retries a refused connection until its
    // acquire timeout and then reports only that it timed out, while this one reports the
    // server's reason (or the refusal) at once.
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| {
            StoreError::connect(
                &options,
                sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                )),
            )
        })?
        .map_err(|source| StoreError::connect(&options, source))?;
    let migrate_error = |source| StoreError::Migrate {
        url: shown.clone(),
        source,
    };
    let previous = applied_version(&mut conn, &POSTGRES_MIGRATOR)
        .await
        .map_err(migrate_error)?;
    // Several nodes starting at once is safe: the migrator holds an advisory lock.
    POSTGRES_MIGRATOR
        .run(&mut conn)
        .await
        .map_err(migrate_error)?;
    conn.close()
        .await
        .map_err(|source| StoreError::connect(&options, source))?;

    let pool = PgPoolOptions::new()
        .max_connections(MAX_POSTGRES_CONNECTIONS)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options.clone())
        .await
        .map_err(|source| StoreError::connect(&options, source))?;
    tracing::debug!(url = %shown, "store opened and migrated");
    let store = Store {
        pool: Engines::Postgres(pool),
        in_memory: false,
    };
    Ok((store, migrated("postgres", previous, &POSTGRES_MIGRATOR)))
}

/// The newest migration recorded as applied, making the migrations table if it is missing
/// (the migrator makes it anyway, just after).
async fn applied_version(
    conn: &mut (impl Migrate + ?Sized),
    migrator: &Migrator,
) -> Result<i64, sqlx::migrate::MigrateError> {
    conn.ensure_migrations_table(&migrator.table_name).await?;
    let applied = conn.list_applied_migrations(&migrator.table_name).await?;
    Ok(applied.iter().map(|m| m.version).max().unwrap_or(0))
}

fn migrated(engine: &'static str, previous: i64, migrator: &Migrator) -> Migrated {
    Migrated {
        engine,
        previous,
        current: migrator.iter().map(|m| m.version).max().unwrap_or(0),
    }
}

/// `url` with its passwords (in the authority or a `password=` parameter) replaced, so errors
/// and logs never show them.
fn redact_password(url: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(q) => url.split_at(q),
        None => (url, ""),
    };
    let mut out = match base.find("://") {
        Some(scheme_end) => {
            let rest = &base[scheme_end + 3..];
            let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
            match authority.rfind('@') {
                Some(at) if authority[..at].contains(':') => {
                    let colon = authority[..at].find(':').unwrap_or(at);
                    format!(
                        "{}{}:***{}",
                        &base[..scheme_end + 3],
                        &authority[..colon],
                        &rest[at..]
                    )
                }
                _ => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    for (i, pair) in query.trim_start_matches('?').split('&').enumerate() {
        if query.is_empty() {
            break;
        }
        out.push(if i == 0 { '?' } else { '&' });
        match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                out.push_str(key);
                out.push_str("=***");
            }
            _ => out.push_str(pair),
        }
    }
    out
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

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_password("postgres://portcullis:s3cret@db:5432/mail"),
            "postgres://portcullis:***@db:5432/mail"
        );
        assert_eq!(
            redact_password("postgresql://db/mail?sslmode=require"),
            "postgresql://db/mail?sslmode=require"
        );
        assert_eq!(
            redact_password("postgres://u:p%40ss@db/mail?password=x"),
            "postgres://u:***@db/mail?password=***"
        );
    }

    #[tokio::test]
    async fn file_store_uses_wal_and_foreign_keys() {
        let db = testing::TestDb::sqlite();
        let store = db.open().await;
        let Engines::Sqlite(pool) = &store.pool else {
            panic!("a sqlite URL opened {}", store.engine());
        };
        let (journal,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(pool)
            .await
            .expect("journal_mode");
        let (fk,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
            .fetch_one(pool)
            .await
            .expect("foreign_keys");
        let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .expect("synchronous");
        store.close().await;
        assert_eq!(journal.to_ascii_lowercase(), "wal");
        assert_eq!(fk, 1);
        // 1 is NORMAL.
        assert_eq!(sync, 1);
    }

    /// An operator's `synchronous_commit = off` (here the database's default) must not make
    /// the store's commits asynchronous.
    #[tokio::test]
    async fn postgres_commits_synchronously_whatever_the_default() {
        let Some(db) = testing::TestDb::postgres().await else {
            return;
        };
        let name = db.url().rsplit('/').next().unwrap().to_string();
        let store = db.open().await;
        on_pool!(&store.pool, |p| sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        )))
        .execute(p)
        .await
        .map(|_| ()))
        .expect("alter database");
        store.close().await;
        let store = db.open().await;
        let dedicated = store.dedicated().await.expect("dedicated");
        for s in [&store, &dedicated] {
            let (setting,): (String,) =
                on_pool!(&s.pool, |p| sqlx::query_as("SHOW synchronous_commit")
                    .fetch_one(p)
                    .await)
                .expect("show");
            assert_eq!(setting, "on");
        }
        assert_eq!(store.engine(), "postgres");
    }

    store_test! {
        async fn schema_is_at_the_newest_migration(store) {
            let newest = if store.engine() == "sqlite" { &SQLITE_MIGRATOR } else { &POSTGRES_MIGRATOR }
                .iter()
                .map(|m| m.version)
                .max()
                .unwrap();
            assert_eq!(store.schema_version().await.unwrap(), newest);
        }
    }

    db_test! {
        async fn migrate_reports_versions(db) {
            let first = Store::migrate(db.url()).await.expect("migrate");
            let newest = SQLITE_MIGRATOR.iter().map(|m| m.version).max().unwrap();
            assert_eq!(first.previous, 0);
            assert_eq!(first.current, newest);
            let again = Store::migrate(db.url()).await.expect("migrate again");
            assert_eq!((again.previous, again.current), (newest, newest));
            assert_eq!(first.engine, again.engine);
        }
    }

    /// Both engines have the same migrations (number and name), so a schema version means the
    /// same tables on either.
    #[test]
    fn migrations_match_across_engines() {
        let names = |m: &Migrator| -> Vec<(i64, String)> {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        assert_eq!(names(&SQLITE_MIGRATOR), names(&POSTGRES_MIGRATOR));
    }

    #[test]
    fn migrations_avoid_sqlite_only_sql() {
        for migration in SQLITE_MIGRATOR.iter().chain(POSTGRES_MIGRATOR.iter()) {
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
