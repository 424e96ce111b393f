//! The retention job (`[retention]`): every `interval_secs`, the message log, held
//! messages, incoming reports and audit rows older than their setting are deleted, in
//! batches of `batch` rows; each run is logged with its counts. `portcullis retention
//! run` runs the same pass once, now.

use std::time::Duration;

use portcullis_store::{Purge, Store, StoreError};
use serde::Serialize;

use crate::config::Config;
use crate::dates::DAY;

/// How many rows one pass deleted, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Purged {
    pub log: u64,
    pub quarantine: u64,
    pub reports: u64,
    pub audit: u64,
}

impl Purged {
    pub fn total(&self) -> u64 {
        self.log + self.quarantine + self.reports + self.audit
    }
}

impl std::fmt::Display for Purged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deleted {} messages of the log, {} held messages, {} reports, {} audit rows",
            self.log, self.quarantine, self.reports, self.audit
        )
    }
}

/// One pass at `now` (unix seconds): each kind whose days are not 0.
pub async fn run(config: &Config, store: &Store, now: i64) -> Result<Purged, StoreError> {
    let r = &config.retention;
    let pass = |what: Purge, days: u64| async move {
        if days == 0 {
            return Ok(0);
        }
        let before = now.saturating_sub((days as i64).saturating_mul(DAY));
        store.purge_older(what, before, r.batch).await
    };
    Ok(Purged {
        log: pass(Purge::MessageLog, r.log_days).await?,
        // `[retention] quarantine_days` has been folded into `expiry_days` when read.
        quarantine: pass(Purge::Quarantine, config.quarantine.expiry_days).await?,
        reports: pass(Purge::Reports, r.reports_days).await?,
        audit: pass(Purge::Audit, r.audit_days).await?,
    })
}

/// The job: a first pass a minute after start (or at the interval, if shorter), then
/// one every `interval_secs`.
pub fn spawn(config: Config, store: Store) {
    tokio::spawn(async move {
        let every = Duration::from_secs(config.retention.interval_secs.max(1));
        tokio::time::sleep(every.min(Duration::from_secs(60))).await;
        loop {
            let started = std::time::Instant::now();
            match run(&config, &store, portcullis_queue::spool::now()).await {
                Ok(p) => tracing::info!(
                    log = p.log,
                    quarantine = p.quarantine,
                    reports = p.reports,
                    audit = p.audit,
                    millis = started.elapsed().as_millis() as u64,
                    "retention run: {p}"
                ),
                Err(e) => tracing::warn!(error = %e, "retention run failed"),
            }
            tokio::time::sleep(every).await;
        }
    });
}
