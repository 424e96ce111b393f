//! Opening the store: URL forms, file creation, migrations on an existing database, refused
//! URLs and unreachable servers.

#[macro_use]
#[path = "../src/testing.rs"]
mod testing;

use portcullis_store::{Store, StoreError};
use testing::TestDb;

#[tokio::test]
async fn creates_file_and_parent_dir() {
    let db = TestDb::sqlite();
    let store = db.open().await;
    store
        .add_user("a@example.com", "$argon2id$x")
        .await
        .unwrap();
    let TestDb::Sqlite { dir, .. } = &db else {
        unreachable!()
    };
    assert!(dir.join("data").join("portcullis.db").exists());
}

db_test! {
    async fn reopening_reruns_migrations_and_keeps_data(db) {
        let first = db.open().await;
        first.add_user("a@example.com", "hash").await.unwrap();
        first.close().await;

        let second = db.open().await;
        assert_eq!(
            second.user_password_hash("a@example.com").await.unwrap(),
            Some("hash".to_string())
        );
        // A second pool on the same database at the same time must also open cleanly.
        let third = db.open().await;
        assert_eq!(third.list_users().await.unwrap(), vec!["a@example.com"]);
    }
}

#[tokio::test]
async fn absolute_triple_slash_url() {
    let db = TestDb::sqlite();
    let TestDb::Sqlite { dir, .. } = &db else {
        unreachable!()
    };
    let path = dir.join("abs.db");
    assert!(path.is_absolute());
    let url = format!("sqlite://{}", path.display());
    assert!(url.starts_with("sqlite:///"));
    let store = Store::open(&url).await.unwrap();
    store.add_domain("example.com", &[]).await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn memory_store_shares_one_database() {
    let store = testing::sqlite_memory().await;
    let clone = store.clone();
    store.add_user("x@example.com", "h").await.unwrap();
    assert_eq!(clone.list_users().await.unwrap(), vec!["x@example.com"]);
}

/// Both URL schemes reach PostgreSQL; nothing listens on port 1, so the error must say where
/// we tried and why it failed, and never show the password.
#[tokio::test]
async fn unreachable_postgres_is_reported_precisely() {
    for url in [
        "postgres://portcullis:secret@127.0.0.1:1/portcullis",
        "postgresql://portcullis:secret@127.0.0.1:1/portcullis?sslmode=disable",
    ] {
        let err = Store::open(url).await.unwrap_err();
        assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("PostgreSQL at 127.0.0.1:1"), "{msg}");
        assert!(
            msg.contains("database portcullis, user portcullis"),
            "{msg}"
        );
        assert!(msg.to_lowercase().contains("refused"), "{msg}");
        assert!(!msg.contains("secret"), "password leaked: {msg}");
    }
}

#[tokio::test]
async fn malformed_postgres_url_is_refused_without_its_password() {
    let err = Store::open("postgres://u:secret@db:notaport/x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BadUrl { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(!msg.contains("secret"), "password leaked: {msg}");
    assert!(msg.contains("postgres://u:***@db:notaport/x"), "{msg}");
}

/// The server's own reason reaches the operator: here, a database that does not exist.
#[tokio::test]
async fn postgres_server_reason_is_reported() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let url = testing::with_database(db.url(), "portcullis_no_such_database");
    let msg = Store::open(&url).await.unwrap_err().to_string();
    assert!(msg.contains("the server says"), "{msg}");
    assert!(msg.contains("portcullis_no_such_database"), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
}

#[tokio::test]
async fn unknown_scheme_is_refused() {
    let err = Store::open("mysql://db/x").await.unwrap_err();
    assert!(matches!(err, StoreError::BadUrl { .. }));
    assert!(err.to_string().contains("mysql://db/x"));
    assert!(err.to_string().contains("postgres://"));
}
