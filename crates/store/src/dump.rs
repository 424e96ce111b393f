//! An engine-neutral copy of every table, for backups (`portcullis backup|restore`).
//!
//! A dump is one file per table, `<table>.jsonl`: the first line a JSON array of the column
//! names, then one JSON array per row. A value is `null`, an integer, a real (a JSON number
//! with a fraction or exponent), a string, or `{"base64": "..."}` for bytes. Both engines
//! store only these kinds (the schema has no booleans, dates or JSON columns: see the
//! migrations), so a dump made on SQLite loads into PostgreSQL and the other way round.
//!
//! Consistency while the gateway runs: on SQLite the database is first copied online with
//! `VACUUM INTO` (one read transaction of SQLite's own) and the copy is read; on
//! PostgreSQL every table is read inside one `REPEATABLE READ READ ONLY` transaction, one
//! snapshot for all of them, as pg_dump does.
//!
//! Loading happens in one transaction: every table of the dump is emptied (children first)
//! and filled (parents first, by the target's foreign keys), so a failure changes nothing.
//! Tables the target derives itself are left to it: SQLite's full-text index
//! (`message_text`, kept by triggers) is not dumped and refills as messages are inserted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Row, TypeInfo, ValueRef};

use crate::engine::Engines;
use crate::{Store, StoreError};

/// The migrations' own table: the schema version is recorded in the manifest instead.
const SKIPPED: &[&str] = &["_sqlx_migrations"];

/// Tables that triggers write as others are filled (the dashboard's counters, kept by
/// triggers on `message_recipients`): loaded last, emptied again just before, so that the
/// dump's counts (the history, including messages since removed) replace what the
/// triggers counted while the log was loaded.
const FILLED_BY_TRIGGERS: &[&str] = &["message_counts", "message_domain_counts"];

/// Tables whose rows decide whether a store is in use: a restore refuses to overwrite
/// one that has any unless forced.
const IN_USE_TABLES: &[&str] = &[
    "domains",
    "users",
    "accounts",
    "dkim_keys",
    "rules",
    "quarantine_messages",
    "messages",
];

/// One value of a row, in the dump's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    fn to_json(&self) -> Result<Value, String> {
        Ok(match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => Value::from(*i),
            Cell::Real(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .ok_or_else(|| format!("{f} cannot be written (not finite)"))?,
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Blob(b) => serde_json::json!({
                "base64": base64::engine::general_purpose::STANDARD.encode(b)
            }),
        })
    }

    fn from_json(value: Value) -> Result<Cell, String> {
        Ok(match value {
            Value::Null => Cell::Null,
            Value::Number(n) => match n.as_i64() {
                Some(i) => Cell::Int(i),
                None if n.is_f64() => Cell::Real(n.as_f64().unwrap_or_default()),
                None => return Err(format!("integer {n} out of range")),
            },
            Value::String(s) => Cell::Text(s),
            Value::Object(mut o) if o.len() == 1 => match o.remove("base64") {
                Some(Value::String(b)) => Cell::Blob(
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|e| format!("bad base64: {e}"))?,
                ),
                _ => return Err("an object value must be {\"base64\": \"...\"}".into()),
            },
            other => return Err(format!("unexpected value {other}")),
        })
    }
}

/// What [`Store::dump`] wrote.
#[derive(Debug, Clone)]
pub struct DumpInfo {
    /// `sqlite` or `postgres`.
    pub engine: &'static str,
    pub schema_version: i64,
    /// Table name and row count, in name order; each in `<dir>/<table>.jsonl`.
    pub tables: Vec<(String, u64)>,
}

/// One table's file in a dump directory.
pub fn table_file(dir: &Path, table: &str) -> PathBuf {
    dir.join(format!("{table}.jsonl"))
}

/// Writes one table's file as rows arrive.
struct TableWriter {
    out: BufWriter<File>,
    table: String,
    rows: u64,
}

impl TableWriter {
    fn create(dir: &Path, table: &str, columns: &[String]) -> Result<TableWriter, StoreError> {
        let file = File::create(table_file(dir, table)).map_err(dump_io(table))?;
        let mut writer = TableWriter {
            out: BufWriter::new(file),
            table: table.to_string(),
            rows: 0,
        };
        writer.line(&Value::from(columns.to_vec()))?;
        Ok(writer)
    }

    fn line(&mut self, value: &Value) -> Result<(), StoreError> {
        serde_json::to_writer(&mut self.out, value)
            .map_err(io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(dump_io(&self.table))
    }

    fn row(&mut self, cells: &[Cell]) -> Result<(), StoreError> {
        let values = cells
            .iter()
            .map(Cell::to_json)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Dump(format!("table {}: {e}", self.table)))?;
        self.rows += 1;
        self.line(&Value::Array(values))
    }

    fn finish(mut self) -> Result<(String, u64), StoreError> {
        self.out
            .flush()
            .and_then(|()| self.out.get_ref().sync_all())
            .map_err(dump_io(&self.table))?;
        Ok((self.table, self.rows))
    }
}

fn dump_io(table: &str) -> impl Fn(io::Error) -> StoreError + '_ {
    move |e| StoreError::Dump(format!("table {table}: {e}"))
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sqlite_cells(row: &SqliteRow) -> Result<Vec<Cell>, sqlx::Error> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(Cell::Null);
            }
            // The value's own storage class: SQLite types values, not columns.
            let kind = raw.type_info().name().to_string();
            Ok(match kind.as_str() {
                "INTEGER" => Cell::Int(row.try_get(i)?),
                "REAL" => Cell::Real(row.try_get(i)?),
                "BLOB" => Cell::Blob(row.try_get(i)?),
                _ => Cell::Text(row.try_get(i)?),
            })
        })
        .collect()
}

fn postgres_cells(row: &PgRow) -> Result<Vec<Cell>, sqlx::Error> {
    (0..row.len())
        .map(|i| {
            let kind = row.column(i).type_info().name().to_string();
            let cell = match kind.as_str() {
                "INT8" => row.try_get::<Option<i64>, _>(i)?.map(Cell::Int),
                "INT4" => row
                    .try_get::<Option<i32>, _>(i)?
                    .map(|v| Cell::Int(v.into())),
                "INT2" => row
                    .try_get::<Option<i16>, _>(i)?
                    .map(|v| Cell::Int(v.into())),
                "FLOAT8" => row.try_get::<Option<f64>, _>(i)?.map(Cell::Real),
                "FLOAT4" => row
                    .try_get::<Option<f32>, _>(i)?
                    .map(|v| Cell::Real(v.into())),
                "BOOL" => row
                    .try_get::<Option<bool>, _>(i)?
                    .map(|v| Cell::Int(v.into())),
                "BYTEA" => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Cell::Blob),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => {
                    row.try_get::<Option<String>, _>(i)?.map(Cell::Text)
                }
                other => {
                    return Err(sqlx::Error::Protocol(format!(
                        "column {} has type {other}, which a backup cannot carry",
                        row.column(i).name()
                    )));
                }
            };
            Ok(cell.unwrap_or(Cell::Null))
        })
        .collect()
}

/// The kind of value a target column takes (for binding nulls and converting values).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Real,
    Text,
    Blob,
}

impl Kind {
    /// SQLite's affinity rules (section 3.1 of its datatype document) and PostgreSQL's
    /// type names, folded into four kinds.
    fn of(declared: &str) -> Kind {
        let t = declared.to_ascii_uppercase();
        if t.contains("INT") {
            Kind::Int
        } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
            Kind::Text
        } else if t.contains("BLOB") || t.contains("BYTEA") || t.is_empty() {
            Kind::Blob
        } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
            Kind::Real
        } else {
            Kind::Int
        }
    }
}

/// A cell turned into the target column's kind; the reason when it cannot be.
fn convert(cell: Cell, kind: Kind) -> Result<Cell, String> {
    let unfit = |shown: &dyn std::fmt::Debug| {
        let shown: String = format!("{shown:?}").chars().take(60).collect();
        format!("value {shown} does not fit a {kind:?} column")
    };
    Ok(match (cell, kind) {
        (Cell::Null, _) => Cell::Null,
        (Cell::Int(i), Kind::Real) => Cell::Real(i as f64),
        (Cell::Int(i), Kind::Text) => Cell::Text(i.to_string()),
        (Cell::Real(f), Kind::Text) => Cell::Text(f.to_string()),
        (Cell::Text(s), Kind::Blob) => Cell::Blob(s.into_bytes()),
        (Cell::Blob(b), Kind::Text) => {
            Cell::Text(String::from_utf8(b).map_err(|e| unfit(&e.into_bytes()))?)
        }
        (Cell::Text(s), Kind::Int) => Cell::Int(s.trim().parse().map_err(|_| unfit(&s))?),
        (Cell::Text(s), Kind::Real) => Cell::Real(s.trim().parse().map_err(|_| unfit(&s))?),
        (Cell::Real(f), Kind::Int) if f.fract() == 0.0 => Cell::Int(f as i64),
        (cell @ Cell::Int(_), Kind::Int)
        | (cell @ Cell::Real(_), Kind::Real)
        | (cell @ Cell::Text(_), Kind::Text)
        | (cell @ Cell::Blob(_), Kind::Blob) => cell,
        (cell, _) => return Err(unfit(&cell)),
    })
}

/// `INSERT INTO table (columns) VALUES (...), (...)` for `rows` rows.
fn insert_sql(table: &str, columns: &[String], rows: usize) -> String {
    let list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>();
    let tuples = (0..rows)
        .map(|r| {
            let params = (1..=columns.len())
                .map(|i| format!("${}", r * columns.len() + i))
                .collect::<Vec<_>>();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>();
    format!(
        "INSERT INTO {} ({}) VALUES {}",
        quote(table),
        list.join(", "),
        tuples.join(", ")
    )
}

/// Rows per INSERT when loading: many rows per statement make a restore an order of
/// magnitude faster than one statement per row, within both engines' limits on bound
/// parameters (SQLite 32766, PostgreSQL 65535).
const LOAD_BATCH_PARAMS: usize = 30_000;
const LOAD_BATCH_ROWS: usize = 500;

/// Binds one cell to a query, typed by the target column (PostgreSQL wants a typed null).
macro_rules! bind_cell {
    ($query:expr, $cell:expr, $kind:expr) => {
        match ($cell, $kind) {
            (Cell::Int(i), _) => $query.bind(i),
            (Cell::Real(f), _) => $query.bind(f),
            (Cell::Text(s), _) => $query.bind(s),
            (Cell::Blob(b), _) => $query.bind(b),
            (Cell::Null, Kind::Int) => $query.bind(None::<i64>),
            (Cell::Null, Kind::Real) => $query.bind(None::<f64>),
            (Cell::Null, Kind::Text) => $query.bind(None::<String>),
            (Cell::Null, Kind::Blob) => $query.bind(None::<Vec<u8>>),
        }
    };
}

/// Reads one table's file: the column names, then rows one at a time.
pub struct TableReader {
    lines: io::Lines<BufReader<File>>,
    table: String,
    pub columns: Vec<String>,
    line: u64,
}

impl TableReader {
    pub fn open(dir: &Path, table: &str) -> Result<TableReader, StoreError> {
        let file = File::open(table_file(dir, table)).map_err(dump_io(table))?;
        let mut reader = TableReader {
            lines: BufReader::new(file).lines(),
            table: table.to_string(),
            columns: Vec::new(),
            line: 0,
        };
        let header = reader
            .next_value()?
            .ok_or_else(|| StoreError::Dump(format!("table {table}: empty file")))?;
        reader.columns = serde_json::from_value(header)
            .map_err(|e| StoreError::Dump(format!("table {table}: bad column list: {e}")))?;
        Ok(reader)
    }

    fn next_value(&mut self) -> Result<Option<Value>, StoreError> {
        let Some(line) = self.lines.next() else {
            return Ok(None);
        };
        self.line += 1;
        let line = line.map_err(dump_io(&self.table))?;
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| StoreError::Dump(format!("table {} line {}: {e}", self.table, self.line)))
    }

    /// The next row, as many cells as there are columns.
    pub fn next_row(&mut self) -> Result<Option<Vec<Cell>>, StoreError> {
        let Some(value) = self.next_value()? else {
            return Ok(None);
        };
        let bad = |why: String| {
            StoreError::Dump(format!("table {} line {}: {why}", self.table, self.line))
        };
        let Value::Array(values) = value else {
            return Err(bad("a row must be a JSON array".into()));
        };
        if values.len() != self.columns.len() {
            return Err(bad(format!(
                "{} values for {} columns",
                values.len(),
                self.columns.len()
            )));
        }
        values
            .into_iter()
            .map(Cell::from_json)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(bad)
    }
}

/// Parents before children: a table comes after every table its foreign keys name.
fn parents_first(tables: &[String], parents: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut done: Vec<String> = Vec::new();
    let mut left: Vec<String> = tables.to_vec();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|t| {
            let ready = parents.get(t).is_none_or(|ps| {
                ps.iter()
                    .all(|p| p == t || done.contains(p) || !tables.contains(p))
            });
            if ready {
                done.push(t.clone());
            }
            !ready
        });
        if left.len() == before {
            // A cycle: keep the remaining order (the schema has none).
            done.append(&mut left);
        }
    }
    done
}

impl Store {
    /// The tables a dump holds on this engine, in name order.
    async fn dump_tables(&self) -> Result<Vec<String>, StoreError> {
        let names: Vec<(String,)> = match &self.pool {
            // Virtual tables (the full-text index) and their shadow tables are derived.
            Engines::Sqlite(p) => {
                sqlx::query_as(
                    "SELECT t.name FROM sqlite_master t WHERE t.type = 'table' \
                     AND t.name NOT LIKE 'sqlite_%' AND t.sql NOT LIKE 'CREATE VIRTUAL%' \
                     AND NOT EXISTS (SELECT 1 FROM sqlite_master v WHERE v.type = 'table' \
                       AND v.sql LIKE 'CREATE VIRTUAL%' AND t.name LIKE v.name || '\\_%' ESCAPE '\\') \
                     ORDER BY t.name",
                )
                .fetch_all(p)
                .await
            }
            Engines::Postgres(p) => {
                sqlx::query_as(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                     ORDER BY table_name",
                )
                .fetch_all(p)
                .await
            }
        }
        .map_err(StoreError::query("listing the tables"))?;
        Ok(names
            .into_iter()
            .map(|(n,)| n)
            .filter(|n| !SKIPPED.contains(&n.as_str()))
            .collect())
    }

    /// Writes every table but `skip` into `dir` (which must exist), consistently while the
    /// gateway keeps writing. `progress` hears each table's name as it starts.
    pub async fn dump(
        &self,
        dir: &Path,
        skip: &[&str],
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<DumpInfo, StoreError> {
        let schema_version = self.schema_version().await?;
        let tables: Vec<String> = self
            .dump_tables()
            .await?
            .into_iter()
            .filter(|t| !skip.contains(&t.as_str()))
            .collect();
        let mut written = Vec::new();
        match &self.pool {
            // An in-memory store (tests) has one connection, which serializes every
            // statement: read it directly (VACUUM INTO from it makes another in-memory
            // database, not a file).
            Engines::Sqlite(live) if self.in_memory => {
                written = sqlite_tables(live, dir, &tables, progress).await?;
            }
            Engines::Sqlite(live) => {
                let copy = dir.join("store-copy.db");
                let _ = std::fs::remove_file(&copy);
                let path = copy.to_string_lossy().replace('\'', "''");
                sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM INTO '{path}'")))
                    .execute(live)
                    .await
                    .map_err(StoreError::query("copying the database (VACUUM INTO)"))?;
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(SqliteConnectOptions::new().filename(&copy).read_only(true))
                    .await
                    .map_err(StoreError::query("opening the copy of the database"))?;
                let result = sqlite_tables(&pool, dir, &tables, progress).await;
                pool.close().await;
                let _ = std::fs::remove_file(&copy);
                written = result?;
            }
            Engines::Postgres(p) => {
                let mut tx = p
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
                    .map_err(StoreError::query("starting the backup transaction"))?;
                for table in &tables {
                    progress(table);
                    let columns = postgres_columns(&mut tx, table)
                        .await?
                        .into_iter()
                        .map(|(c, _)| c)
                        .collect::<Vec<_>>();
                    let mut writer = TableWriter::create(dir, table, &columns)?;
                    let list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>();
                    let sql = format!("SELECT {} FROM {}", list.join(", "), quote(table));
                    let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx);
                    while let Some(row) = rows
                        .try_next()
                        .await
                        .map_err(StoreError::query("reading a table"))?
                    {
                        writer.row(
                            &postgres_cells(&row).map_err(StoreError::query("reading a row"))?,
                        )?;
                    }
                    drop(rows);
                    written.push(writer.finish()?);
                }
                tx.commit()
                    .await
                    .map_err(StoreError::query("ending the backup transaction"))?;
            }
        }
        Ok(DumpInfo {
            engine: self.engine(),
            schema_version,
            tables: written,
        })
    }

    /// Whether the store holds policy, accounts, keys or mail already.
    pub async fn in_use(&self) -> Result<bool, StoreError> {
        let present = self.dump_tables().await?;
        for table in IN_USE_TABLES
            .iter()
            .filter(|t| present.iter().any(|p| p == *t))
        {
            let sql = format!("SELECT 1 FROM {} LIMIT 1", quote(table));
            let row: Option<(i32,)> = on_pool_query(&self.pool, sql).await?;
            if row.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Replaces the rows of every table in `tables` by the dump's in `dir`, in one
    /// transaction. A table or column the dump names that this store lacks is an error (a
    /// dump from a newer schema); columns this store has and the dump lacks take their
    /// defaults (a dump from an older one). `progress` hears each table's name.
    pub async fn load(
        &self,
        dir: &Path,
        tables: &[String],
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<u64, StoreError> {
        let present = self.dump_tables().await?;
        if let Some(missing) = tables.iter().find(|t| !present.contains(t)) {
            return Err(StoreError::Dump(format!(
                "the backup has a table {missing} that this version's store does not"
            )));
        }
        let parents = self.foreign_keys().await?;
        let mut order = parents_first(tables, &parents);
        order.sort_by_key(|t| FILLED_BY_TRIGGERS.contains(&t.as_str()));
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("starting the restore transaction"))?;
        for table in order.iter().rev() {
            empty(&mut tx, table).await?;
        }
        let mut total = 0;
        for table in &order {
            progress(table);
            if FILLED_BY_TRIGGERS.contains(&table.as_str()) {
                empty(&mut tx, table).await?;
            }
            let mut reader = TableReader::open(dir, table)?;
            let kinds: BTreeMap<String, Kind> = match &mut tx {
                Engines::Sqlite(c) => sqlite_declared(c, table).await?,
                Engines::Postgres(c) => postgres_columns(c, table).await?,
            }
            .into_iter()
            .map(|(name, declared)| (name, Kind::of(&declared)))
            .collect();
            let mut column_kinds = Vec::new();
            for column in &reader.columns {
                let kind = kinds.get(column).ok_or_else(|| {
                    StoreError::Dump(format!(
                        "the backup's table {table} has a column {column} that this version's store does not"
                    ))
                })?;
                column_kinds.push(*kind);
            }
            let batch = (LOAD_BATCH_PARAMS / column_kinds.len().max(1)).clamp(1, LOAD_BATCH_ROWS);
            let full_sql = insert_sql(table, &reader.columns, batch);
            let mut pending: Vec<Cell> = Vec::with_capacity(batch * column_kinds.len());
            let mut done = false;
            while !done {
                match reader.next_row()? {
                    Some(row) => {
                        for ((cell, kind), column) in
                            row.into_iter().zip(&column_kinds).zip(&reader.columns)
                        {
                            pending.push(convert(cell, *kind).map_err(|e| {
                                StoreError::Dump(format!("table {table} column {column}: {e}"))
                            })?);
                        }
                    }
                    None => done = true,
                }
                let rows = pending.len() / column_kinds.len().max(1);
                if rows == 0 || (rows < batch && !done) {
                    continue;
                }
                let sql = if rows == batch {
                    full_sql.clone()
                } else {
                    insert_sql(table, &reader.columns, rows)
                };
                let cells = std::mem::take(&mut pending);
                crate::engine::on_conn!(&mut tx, |c| {
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                    for (cell, kind) in cells.into_iter().zip(column_kinds.iter().cycle()) {
                        query = bind_cell!(query, cell, *kind);
                    }
                    query.execute(c).await.map(|_| ())
                })
                .map_err(|e| StoreError::Dump(format!("restoring table {table}: {e}")))?;
                total += rows as u64;
            }
        }
        tx.commit()
            .await
            .map_err(StoreError::query("committing the restore"))?;
        Ok(total)
    }

    /// For each table, the tables its foreign keys name.
    async fn foreign_keys(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError> {
        let pairs: Vec<(String, String)> = match &self.pool {
            Engines::Sqlite(p) => {
                sqlx::query_as(
                    "SELECT m.name, f.\"table\" FROM sqlite_master m, \
                     pragma_foreign_key_list(m.name) f WHERE m.type = 'table'",
                )
                .fetch_all(p)
                .await
            }
            Engines::Postgres(p) => {
                sqlx::query_as(
                    "SELECT c.relname::text, r.relname::text FROM pg_constraint k \
                     JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid \
                     WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace",
                )
                .fetch_all(p)
                .await
            }
        }
        .map_err(StoreError::query("reading the foreign keys"))?;
        let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (child, parent) in pairs {
            map.entry(child).or_default().insert(parent);
        }
        Ok(map)
    }
}

/// Writes each of `tables` of a SQLite database into `dir`.
async fn sqlite_tables(
    pool: &sqlx::SqlitePool,
    dir: &Path,
    tables: &[String],
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut written = Vec::new();
    for table in tables {
        progress(table);
        let sql = format!("SELECT * FROM {}", quote(table));
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
        let mut writer: Option<TableWriter> = None;
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(StoreError::query("reading a table"))?
        {
            let w = match writer.as_mut() {
                Some(w) => w,
                None => writer.insert(TableWriter::create(dir, table, &column_names(&row))?),
            };
            w.row(&sqlite_cells(&row).map_err(StoreError::query("reading a row"))?)?;
        }
        drop(rows);
        let writer = match writer {
            Some(w) => w,
            None => TableWriter::create(dir, table, &sqlite_columns(pool, table).await?)?,
        };
        written.push(writer.finish()?);
    }
    Ok(written)
}

/// Removes every row of `table` inside the restore's transaction.
async fn empty(tx: &mut crate::engine::Tx<'_>, table: &str) -> Result<(), StoreError> {
    let sql = format!("DELETE FROM {}", quote(table));
    crate::engine::on_conn!(tx, |c| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(c)
            .await
            .map(|_| ())
    })
    .map_err(StoreError::query("emptying a table"))
}

async fn on_pool_query(
    pool: &crate::engine::Pool,
    sql: String,
) -> Result<Option<(i32,)>, StoreError> {
    crate::engine::on_pool!(pool, |p| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_optional(p)
            .await
    })
    .map_err(StoreError::query("looking for rows"))
}

fn column_names<R: Row>(row: &R) -> Vec<String> {
    row.columns().iter().map(|c| c.name().to_string()).collect()
}

async fn sqlite_columns(pool: &sqlx::SqlitePool, table: &str) -> Result<Vec<String>, StoreError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(StoreError::query("reading the columns"))?;
    Ok(sqlite_declared(&mut conn, table)
        .await?
        .into_iter()
        .map(|(c, _)| c)
        .collect())
}

/// Column names and declared types of a SQLite table, in order.
async fn sqlite_declared(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    sqlx::query_as("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
        .bind(table)
        .fetch_all(conn)
        .await
        .map_err(StoreError::query("reading the columns"))
}

/// Column names and types of a PostgreSQL table, in order.
async fn postgres_columns(
    conn: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(conn)
    .await
    .map_err(StoreError::query("reading the columns"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_round_trip_through_json() {
        let cells = [
            Cell::Null,
            Cell::Int(-7),
            Cell::Int(i64::MAX),
            Cell::Real(1.0),
            Cell::Real(0.25),
            Cell::Text("héllo \"x\"\n".into()),
            Cell::Blob(vec![0, 255, 10]),
        ];
        for cell in cells {
            let json = cell.to_json().unwrap();
            let text = serde_json::to_string(&json).unwrap();
            let back = Cell::from_json(serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(back, cell, "{text}");
        }
        assert!(Cell::Real(f64::NAN).to_json().is_err());
        assert!(Cell::from_json(serde_json::json!({"x": 1})).is_err());
        assert!(Cell::from_json(serde_json::json!([1])).is_err());
    }

    #[test]
    fn kinds_follow_declared_types() {
        assert_eq!(Kind::of("BIGINT"), Kind::Int);
        assert_eq!(Kind::of("integer"), Kind::Int);
        assert_eq!(Kind::of("TEXT"), Kind::Text);
        assert_eq!(Kind::of("character varying"), Kind::Text);
        assert_eq!(Kind::of("bytea"), Kind::Blob);
        assert_eq!(Kind::of("BLOB"), Kind::Blob);
        assert_eq!(Kind::of("double precision"), Kind::Real);
        assert_eq!(convert(Cell::Int(3), Kind::Real), Ok(Cell::Real(3.0)));
        assert!(convert(Cell::Text("x".into()), Kind::Int).is_err());
        assert!(convert(Cell::Blob(vec![0xff]), Kind::Text).is_err());
        assert!(convert(Cell::Blob(vec![1]), Kind::Int).is_err());
        assert_eq!(
            insert_sql("t", &["a".into(), "b".into()], 2),
            "INSERT INTO \"t\" (\"a\", \"b\") VALUES ($1, $2), ($3, $4)"
        );
    }

    #[test]
    fn parents_come_first() {
        let tables: Vec<String> = ["a_child", "b_parent", "c"].map(String::from).to_vec();
        let mut parents = BTreeMap::new();
        parents.insert(
            "a_child".to_string(),
            BTreeSet::from(["b_parent".to_string()]),
        );
        assert_eq!(
            parents_first(&tables, &parents),
            ["b_parent", "c", "a_child"]
        );
    }
}
