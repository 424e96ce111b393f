//! Opening the store: URL forms, file creation, migrations on an existing file, refused engines.

mod common;

use common::TempDb;
use portcullis_store::{Store, StoreError};

#[tokio::test]
async fn creates_file_and_parent_dir() {
    let db = TempDb::new();
    let store = db.open().await;
    store
        .add_user("a@example.com", "$argon2id$x")
        .await
        .unwrap();
    assert!(db.dir.join("data").join("portcullis.db").exists());
}

#[tokio::test]
async fn reopening_reruns_migrations_and_keeps_data() {
    let db = TempDb::new();
    let first = db.open().await;
    first.add_user("a@example.com", "hash").await.unwrap();
    first.close().await;

    let second = db.open().await;
    assert_eq!(
        second.user_password_hash("a@example.com").await.unwrap(),
        Some("hash".to_string())
    );
    // A second pool on the same file at the same time must also open cleanly.
    let third = db.open().await;
    assert_eq!(third.list_users().await.unwrap(), vec!["a@example.com"]);
}

#[tokio::test]
async fn absolute_triple_slash_url() {
    let db = TempDb::new();
    let path = db.dir.join("abs.db");
    assert!(path.is_absolute());
    let url = format!("sqlite://{}", path.display());
    assert!(url.starts_with("sqlite:///"));
    let store = Store::open(&url).await.unwrap();
    store.add_domain("example.com", &[]).await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
async fn memory_store_shares_one_database() {
    let store = common::memory().await;
    let clone = store.clone();
    store.add_user("x@example.com", "h").await.unwrap();
    assert_eq!(clone.list_users().await.unwrap(), vec!["x@example.com"]);
}

#[tokio::test]
async fn postgres_is_refused_clearly() {
    for url in [
        "postgres://user:secret@db/portcullis",
        "postgresql://db/portcullis",
    ] {
        let err = Store::open(url).await.unwrap_err();
        assert!(matches!(err, StoreError::PostgresNotSupported));
        let msg = err.to_string();
        assert!(msg.contains("PostgreSQL"), "{msg}");
        assert!(msg.contains("not yet supported"), "{msg}");
        assert!(!msg.contains("secret"), "password leaked: {msg}");
    }
}

#[tokio::test]
async fn unknown_scheme_is_refused() {
    let err = Store::open("mysql://db/x").await.unwrap_err();
    assert!(matches!(err, StoreError::BadUrl { .. }));
    assert!(err.to_string().contains("mysql://db/x"));
}
