//! Test support shared by the unit tests (`crate::testing`) and the integration tests
//! (`tests/common`, which includes this file by path): a fresh database per test on each engine.
//!
//! SQLite always runs. PostgreSQL runs when `PORTCULLIS_TEST_POSTGRES_URL` names a server
//! (`postgres://user@127.0.0.1:port/postgres`, a role that may create databases): each test
//! gets a new database of its own there, so tests stay independent and run in parallel. When
//! the variable is set and the server cannot be reached, the test fails: CI always sets it,
//! and a run that skipped PostgreSQL silently would pass without testing it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_store::Store;
use sqlx::Connection;

pub const POSTGRES_URL_VAR: &str = "PORTCULLIS_TEST_POSTGRES_URL";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test of any process uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's database.
pub enum TestDb {
    /// A file in a directory of its own (removed when the test ends); the file lives in a
    /// subdirectory that does not exist yet, so every test also exercises its creation.
    Sqlite { dir: PathBuf, url: String },
    /// A new database on the test server (left there: the CI server is thrown away).
    Postgres { url: String },
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(unique("portcullis-store-test"));
        let file = dir.join("data").join("portcullis.db");
        let url = format!("sqlite://{}", file.display());
        TestDb::Sqlite { dir, url }
    }

    /// A new database on the test server; None when no server is configured.
    pub async fn postgres() -> Option<TestDb> {
        let admin = std::env::var(POSTGRES_URL_VAR)
            .ok()
            .filter(|u| !u.is_empty())?;
        let name = unique("portcullis_test");
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is set, but connecting failed: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let _ = conn.close().await;
        Some(TestDb::Postgres {
            url: with_database(&admin, &name),
        })
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url } => url,
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(self.url()).await.expect("open test store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Sqlite { dir, .. } = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `url` naming database `name` instead of its own (the path after the authority).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(q) => url.split_at(q),
        None => (url, ""),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}

/// The store of a test on SQLite: in memory, the fastest.
pub async fn sqlite_memory() -> Store {
    Store::open("sqlite::memory:")
        .await
        .expect("open memory store")
}

/// `store_test! { async fn name(store) { … } }`: the body once per engine, as tests
/// `name::sqlite` (an in-memory store) and `name::postgres` (a new database; passes without
/// running when no server is configured).
#[allow(unused_macros)]
macro_rules! store_test {
    ($(async fn $name:ident($store:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($store: portcullis_store::Store) $body

            #[tokio::test]
            async fn sqlite() {
                body($crate::testing::sqlite_memory().await).await
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(db) = $crate::testing::TestDb::postgres().await {
                    body(db.open().await).await
                }
            }
        }
    )*};
}

/// `db_test! { async fn name(db) { … } }`: as `store_test!`, for tests that open (and
/// reopen) the store themselves: `db` is a [`TestDb`], a new file on SQLite.
#[allow(unused_macros)]
macro_rules! db_test {
    ($(async fn $name:ident($db:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($db: &$crate::testing::TestDb) $body

            #[tokio::test]
            async fn sqlite() {
                body(&$crate::testing::TestDb::sqlite()).await
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(db) = $crate::testing::TestDb::postgres().await {
                    body(&db).await
                }
            }
        }
    )*};
}
