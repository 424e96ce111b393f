//! The two engines behind one handle. Every query of the store is written once, with `$N`
//! placeholders and integer seconds, and the macros below expand it once per engine, so each
//! copy is type-checked against its own driver (native types, native statements) while the
//! text stays single. `sqlx::Any` would do the same at run time, but it converts every row
//! into its own value type and cannot carry SQLite's typed connection options (WAL,
//! synchronous, busy timeout), which the durability contract depends on.

use std::ops::DerefMut;

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

/// A value of one role (a pool, a transaction, a connection) for whichever engine the store
/// runs on.
#[derive(Debug, Clone)]
pub(crate) enum Engines<S, P> {
    Sqlite(S),
    Postgres(P),
}

pub(crate) type Pool = Engines<SqlitePool, PgPool>;

/// A transaction (begun on the pool: `'static`); commits only when told to, dropping it rolls
/// back.
pub(crate) type Tx<'c> = Engines<Transaction<'c, Sqlite>, Transaction<'c, Postgres>>;

/// A connection taken from the pool for a few statements in a row.
pub(crate) type PoolConn = Engines<PoolConnection<Sqlite>, PoolConnection<Postgres>>;

/// A connection borrowed from a transaction or a pooled connection, for helpers that run
/// several statements inside their caller's transaction.
pub(crate) type Conn<'c> = Engines<&'c mut SqliteConnection, &'c mut PgConnection>;

/// Runs `$body` with `$p` bound to the engine's pool (`&SqlitePool` or `&PgPool`). Written
/// like a closure, `on_pool!(&self.pool, |p| query.fetch_all(p).await)`, so that rustfmt
/// formats the body; it is expanded in place, once per engine, not called.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::engine::Engines::Sqlite($p) => $body,
            $crate::engine::Engines::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` with `$c` bound to the engine's connection (`&mut SqliteConnection` or
/// `&mut PgConnection`), given a `&mut` [`Tx`] or [`Conn`]; written as `on_pool!` is.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::engine::Engines::Sqlite($c) => {
                let $c = &mut **$c;
                $body
            }
            $crate::engine::Engines::Postgres($c) => {
                let $c = &mut **$c;
                $body
            }
        }
    };
}

pub(crate) use {on_conn, on_pool};

/// How a SQLite transaction begins: with the write lock taken at once. A deferred one
/// that reads first (FTS5 reads its configuration when a statement is prepared) cannot
/// take the lock later when another connection wrote meanwhile, and fails with "database
/// is locked" instead of waiting its turn.
const SQLITE_BEGIN: &str = "BEGIN IMMEDIATE";

impl Pool {
    pub(crate) async fn begin(&self) -> Result<Tx<'static>, sqlx::Error> {
        Ok(match self {
            Engines::Sqlite(p) => Engines::Sqlite(p.begin_with(SQLITE_BEGIN).await?),
            Engines::Postgres(p) => Engines::Postgres(p.begin().await?),
        })
    }

    pub(crate) async fn acquire(&self) -> Result<PoolConn, sqlx::Error> {
        Ok(match self {
            Engines::Sqlite(p) => Engines::Sqlite(p.acquire().await?),
            Engines::Postgres(p) => Engines::Postgres(p.acquire().await?),
        })
    }

    pub(crate) async fn close(&self) {
        on_pool!(self, |p| p.close().await)
    }

    /// `sqlite` or `postgres`, for messages.
    pub(crate) fn engine_name(&self) -> &'static str {
        match self {
            Engines::Sqlite(_) => "sqlite",
            Engines::Postgres(_) => "postgres",
        }
    }
}

impl<S, P> Engines<S, P>
where
    S: DerefMut<Target = SqliteConnection>,
    P: DerefMut<Target = PgConnection>,
{
    /// The connection of a transaction or a pooled connection, for a helper.
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Engines::Sqlite(c) => Engines::Sqlite(&mut **c),
            Engines::Postgres(c) => Engines::Postgres(&mut **c),
        }
    }
}

impl Tx<'_> {
    /// Commits; the time it takes is the `portcullis_store_commit_duration_seconds`
    /// histogram (every write transaction of the store passes here).
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        let started = std::time::Instant::now();
        match self {
            Engines::Sqlite(t) => {
                let r = t.commit().await;
                metrics::histogram!("portcullis_store_commit_duration_seconds", "engine" => "sqlite")
                    .record(started.elapsed());
                r
            }
            Engines::Postgres(t) => {
                let r = t.commit().await;
                metrics::histogram!("portcullis_store_commit_duration_seconds", "engine" => "postgres")
                    .record(started.elapsed());
                r
            }
        }
    }
}

impl<'c> Conn<'c> {
    /// Begins a transaction on this connection.
    pub(crate) async fn begin(self) -> Result<Tx<'c>, sqlx::Error> {
        use sqlx::Connection;
        Ok(match self {
            Engines::Sqlite(c) => Engines::Sqlite(c.begin_with(SQLITE_BEGIN).await?),
            Engines::Postgres(c) => Engines::Postgres(c.begin().await?),
        })
    }
}
