//! The public suffix list a running gateway uses (`portcullis_filter::suffix`): the file
//! at `[auth] public_suffix_list` read at start and looked at again every minute, and the
//! control socket's `reload-psl` after `portcullis psl update`.

use portcullis_filter::suffix;
use std::path::Path;
use std::time::Duration;

/// How often a running gateway looks at the list file for a newer copy.
const WATCH_INTERVAL: Duration = Duration::from_secs(60);

/// At start of `serve`: read the list file when there is one, and look at it again every
/// minute (a copy put there by other means than `psl update` is picked up too).
pub fn watch(file: &Path) {
    match suffix::use_file(file) {
        Ok(Some(rules)) => {
            tracing::info!(file = %file.display(), rules, "public suffix list loaded")
        }
        Ok(None) => {
            tracing::debug!(file = %file.display(), "no public suffix list file; the built-in list is used")
        }
        Err(e) => {
            tracing::warn!(error = %e, "public suffix list not loaded; the built-in list is used")
        }
    }
    tokio::spawn(async {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Some(result) = tokio::task::spawn_blocking(suffix::reload_if_changed)
                .await
                .ok()
                .flatten()
            {
                log_reload(&result);
            }
        }
    });
}

/// The control socket's `reload-psl`.
pub fn reload() -> std::io::Result<String> {
    let result = suffix::reload();
    log_reload(&result);
    match result {
        Ok(_) => Ok(format!("ok {}", suffix::source())),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

fn log_reload(result: &Result<Option<usize>, suffix::LoadError>) {
    match result {
        Ok(Some(rules)) => tracing::info!(rules, "public suffix list reloaded"),
        Ok(None) => tracing::info!("public suffix list file gone; the built-in list is used"),
        Err(e) => {
            tracing::warn!(error = %e, "public suffix list not reloaded; the list in use stays")
        }
    }
}
