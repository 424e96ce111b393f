//! The engine-neutral dump of backups: a store dumped and loaded into a fresh one of each
//! engine (SQLite always, PostgreSQL when a test server is configured) holds the same rows,
//! the message log's derived tables (full-text index, counters) included; a load into a
//! store whose schema lacks a table of the dump is refused and changes nothing.

#[macro_use]
#[path = "../src/testing.rs"]
mod testing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use portcullis_store::{HeldMessage, LogQuery, MessageRecord, RecipientRecord, Route, Store};
use testing::TestDb;

fn dir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("portcullis-dump-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn populate(store: &Store) {
    store
        .add_domain(
            "example.com",
            &[Route {
                host: "127.0.0.1".into(),
                port: 2525,
                priority: 10,
                tls: "may".into(),
                auth_user: None,
                auth_password: None,
            }],
        )
        .await
        .unwrap();
    store
        .add_user("alice@example.com", "$argon2id$x")
        .await
        .unwrap();
    store
        .log_message(&MessageRecord {
            id: "M1".into(),
            received_at: 1_700_000_000,
            client_ip: "192.0.2.1".into(),
            helo: "client.example".into(),
            direction: "inbound".into(),
            sender: "carol@outside.test".into(),
            size: 1234,
            auth_user: None,
            message_id: Some("<m1@outside.test>".into()),
            subject: Some("quarterly numbers".into()),
            verdict: Some("deliver".into()),
            rule: None,
            score: Some(-1.5),
            findings: Some("[]".into()),
            recipients: vec![RecipientRecord {
                address: "bob@example.com".into(),
                status: "queued".into(),
                reply: None,
                remote_host: None,
                updated_at: 1_700_000_000,
                attempts: 0,
            }],
        })
        .await
        .unwrap();
    store
        .quarantine_hold(&HeldMessage {
            id: "Q1".into(),
            received_at: 1_700_000_000,
            expires_at: 1_700_086_400,
            sender: "spammer@outside.test".into(),
            subject: Some("Cheap pills".into()),
            class: "spam".into(),
            score: 12.5,
            rule: None,
            findings: "[]".into(),
            envelope: "{}".into(),
            body: vec![0, 1, 2, 255, b'\r', b'\n'],
            recipients: vec!["bob@example.com".into()],
            direction: "inbound".into(),
        })
        .await
        .unwrap();
}

/// Each table's rows, as JSON objects keyed by column (column order and row order are
/// the engine's), sorted.
fn rows(dir: &Path, tables: &[(String, u64)]) -> BTreeMap<String, Vec<String>> {
    tables
        .iter()
        .map(|(t, _)| {
            let text = std::fs::read_to_string(portcullis_store::table_file(dir, t)).unwrap();
            let mut lines = text
                .lines()
                .map(|l| serde_json::from_str::<Vec<serde_json::Value>>(l).unwrap());
            let columns = lines.next().unwrap();
            let mut rows: Vec<String> = lines
                .map(|row| {
                    let object: serde_json::Map<String, serde_json::Value> = columns
                        .iter()
                        .map(|c| c.as_str().unwrap().to_string())
                        .zip(row)
                        .collect();
                    serde_json::Value::Object(object).to_string()
                })
                .collect();
            rows.sort();
            (t.clone(), rows)
        })
        .collect()
}

async fn targets() -> Vec<TestDb> {
    let mut dbs = vec![TestDb::sqlite()];
    dbs.extend(TestDb::postgres().await);
    dbs
}

store_test! {
    async fn dump_and_load_onto_each_engine(store) {
        populate(&store).await;
        let source = dir("source");
        let dumped = store.dump(&source, &[], &|_| {}).await.unwrap();
        assert_eq!(dumped.schema_version, portcullis_store::newest_schema_version());
        let names: Vec<&str> = dumped.tables.iter().map(|(t, _)| t.as_str()).collect();
        assert!(names.contains(&"dkim_keys") && names.contains(&"messages"));
        assert!(!names.iter().any(|n| n.starts_with("message_text") || n.starts_with("_sqlx")));
        let expected = rows(&source, &dumped.tables);
        assert_eq!(expected["quarantine_messages"].len(), 1);

        for db in targets().await {
            let target = db.open().await;
            assert!(!target.in_use().await.unwrap());
            let tables: Vec<String> = dumped.tables.iter().map(|(t, _)| t.clone()).collect();
            target.load(&source, &tables, &|_| {}).await.unwrap();
            assert!(target.in_use().await.unwrap());
            let again = dir("again");
            let redumped = target.dump(&again, &[], &|_| {}).await.unwrap();
            assert_eq!(rows(&again, &redumped.tables), expected, "onto {}", target.engine());
            // The full-text index was rebuilt from the loaded log.
            let query = LogQuery {
                text: Some("quarterly".into()),
                ..LogQuery::default()
            };
            let found = target.search_log(&query).await.unwrap();
            assert_eq!(found.len(), 1, "search on {}", target.engine());
            // Loading twice replaces rather than duplicates.
            target.load(&source, &tables, &|_| {}).await.unwrap();
            let third = dir("third");
            let redumped = target.dump(&third, &[], &|_| {}).await.unwrap();
            assert_eq!(rows(&third, &redumped.tables), expected);

            // A table this schema lacks: refused, nothing changed.
            std::fs::write(portcullis_store::table_file(&source, "from_the_future"), "[\"x\"]\n").unwrap();
            let mut more = tables.clone();
            more.push("from_the_future".into());
            let err = target.load(&source, &more, &|_| {}).await.unwrap_err();
            assert!(err.to_string().contains("from_the_future"), "{err}");
            std::fs::remove_file(portcullis_store::table_file(&source, "from_the_future")).unwrap();
            target.close().await;
        }
    }
}
