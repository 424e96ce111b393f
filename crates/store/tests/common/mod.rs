//! Shared test fixtures: a throwaway SQLite file per test, removed when the test ends.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_store::Store;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique directory under the system temp dir; the store file lives in a subdirectory that does
/// not exist yet, so every test also exercises parent-directory creation.
pub struct TempDb {
    pub dir: PathBuf,
    pub url: String,
}

impl TempDb {
    pub fn new() -> TempDb {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "portcullis-store-test-{}-{}-{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = dir.join("data").join("portcullis.db");
        let url = format!("sqlite://{}", file.display());
        TempDb { dir, url }
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url).await.expect("open temp store")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn memory() -> Store {
    Store::open("sqlite::memory:")
        .await
        .expect("open memory store")
}
