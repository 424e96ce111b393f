//! Outgoing DMARC aggregate reports (RFC 7489 §7.2; docs/authentication.md, "Outgoing
//! DMARC aggregate reports"). Connections hand each inbound message's contribution to
//! a background writer ([`Collector`]), so the store never delays an SMTP reply; once a
//! day (`[reports] dmarc_aggregate`, after `send_hour_utc`) and on `portcullis report
//! send-dmarc`, the contributions of past days are claimed, aggregated into one report
//! per policy domain and day, and queued as mail to the domain's `mailto:` destinations.
//!
//! Order of work, for crash safety: claim the rows, write each report message durably to
//! the spool, then delete the rows. A crash before the delete leaves the rows claimed; the
//! claim expires after an hour and a later run sends the same report again (the same
//! report id, as it derives from the rows, so a receiver can tell it is a repeat). Rows are
//! never deleted before their report is queued, except when it has nowhere to go.

use crate::batcher::Batcher;
use crate::config::Config;
use crate::inject::Injector;
use anyhow::{Context, Result};
use mail_auth::MessageAuthenticator;
use portcullis_filter::dmarc_report::{self, DmarcEntry};
use portcullis_queue::spool::{Direction, Envelope, new_id, now};
use portcullis_store::{DmarcResultRow, LogEntry, Store};
use std::time::Duration;

/// Days a contribution is kept at most, reported or not: a gateway that was down over a
/// weekend still sends Friday's reports on Monday.
pub const KEEP_DAYS: i64 = 4;

/// Contributions waiting for the writer at most; beyond that they are dropped (logged).
const BACKLOG: usize = 10_000;

/// Rows written per transaction at most.
const BATCH: usize = 256;

/// After the first row of a batch, how long to let more pile up.
const GATHER: Duration = Duration::from_millis(50);

/// How often the gateway looks for reports to send.
const EVERY: Duration = Duration::from_secs(600);

/// Hands contributions to the one task that writes them to the store.
#[derive(Clone)]
pub struct Collector {
    /// None: reporting is off, and nothing about other domains' mail is kept.
    batcher: Option<Batcher<DmarcResultRow>>,
}

impl Collector {
    pub fn spawn(store: Store, enabled: bool) -> Collector {
        if !enabled {
            return Collector { batcher: None };
        }
        let batcher = Batcher::spawn(GATHER, BATCH, BACKLOG, move |rows: Vec<DmarcResultRow>| {
            let store = store.clone();
            async move {
                if let Err(e) = store.dmarc_results_insert(&rows).await {
                    tracing::error!(error = %e, rows = rows.len(), "DMARC report results not stored");
                }
            }
        });
        Collector {
            batcher: Some(batcher),
        }
    }

    /// Wait until every contribution kept before this call is in the store.
    pub async fn flush(&self) {
        if let Some(b) = &self.batcher {
            b.flush().await;
        }
    }

    /// Keep a message's contribution; never waits, never fails the caller.
    pub fn record(&self, entry: DmarcEntry, at: i64) {
        let Some(batcher) = &self.batcher else {
            return;
        };
        let result = match serde_json::to_string(&entry) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(error = %e, domain = %entry.domain, "DMARC report result not kept");
                return;
            }
        };
        let row = DmarcResultRow {
            id: format!("{}{:08X}", new_id(), rand::random::<u32>()),
            domain: entry.domain,
            received_at: at,
            result,
        };
        let domain = row.domain.clone();
        if !batcher.push(row) {
            tracing::warn!(%domain, "DMARC report results backlog full; one dropped");
        }
    }
}

/// One report message queued.
#[derive(Debug, Clone)]
pub struct Queued {
    pub queue_id: String,
    pub domain: String,
    /// Start of the day reported, unix seconds.
    pub day: i64,
    pub rua: String,
    pub report_id: String,
    pub records: usize,
    pub messages: u64,
    pub size: usize,
    /// In the spool, but the running gateway could not be told (it goes at its restart).
    pub not_announced: Option<String>,
}

/// Report the contributions received in `begin..end` (whole UTC days): claim them, queue
/// one report per policy domain and day to each of its destinations, delete what was
/// reported. The messages are in the spool and announced to the queue.
pub async fn send(
    config: &Config,
    store: &Store,
    inject: &Injector,
    resolver: &MessageAuthenticator,
    begin: i64,
    end: i64,
) -> Result<Vec<Queued>> {
    let token = format!("{}{:08X}", new_id(), rand::random::<u32>());
    let rows = store.dmarc_results_claim(begin, end, &token, now()).await?;
    let mut groups: Vec<(String, i64, Vec<DmarcResultRow>)> = Vec::new();
    for row in rows {
        let day = row.received_at.div_euclid(86_400) * 86_400;
        match groups.last_mut() {
            Some((domain, d, rows)) if *domain == row.domain && *d == day => rows.push(row),
            _ => groups.push((row.domain.clone(), day, vec![row])),
        }
    }
    let mut queued = Vec::new();
    let mut groups = groups.into_iter();
    while let Some((domain, day, rows)) = groups.next() {
        match send_one(config, store, inject, resolver, &domain, day, &rows).await {
            Ok(Some(list)) => {
                store
                    .dmarc_results_delete(&token, &domain, day, day + 86_400)
                    .await?;
                queued.extend(list);
            }
            Ok(None) => {
                // Try again at the next run.
                store
                    .dmarc_results_release(&token, &domain, day, day + 86_400)
                    .await?;
            }
            Err(e) => {
                // The spool failed: leave every claimed row to a later run.
                store
                    .dmarc_results_release(&token, &domain, day, day + 86_400)
                    .await?;
                for (domain, day, _) in groups {
                    store
                        .dmarc_results_release(&token, &domain, day, day + 86_400)
                        .await?;
                }
                return Err(e.context(format!("DMARC aggregate report for {domain}")));
            }
        }
    }
    Ok(queued)
}

/// Queue the report about `domain` for the day starting at `day` to each destination.
/// Some(queued), possibly none when no destination may have it (its rows are done with);
/// None when a destination could not be checked now (try again later).
async fn send_one(
    config: &Config,
    store: &Store,
    inject: &Injector,
    resolver: &MessageAuthenticator,
    domain: &str,
    day: i64,
    rows: &[DmarcResultRow],
) -> Result<Option<Vec<Queued>>> {
    let entries = rows
        .iter()
        .filter_map(|r| match serde_json::from_str::<DmarcEntry>(&r.result) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(id = %r.id, domain, error = %e, "unreadable DMARC report result skipped");
                None
            }
        });
    let Some(aggregate) = dmarc_report::aggregate(entries) else {
        return Ok(Some(Vec::new()));
    };
    // The same rows make the same report id: a report sent again after a crash is
    // recognizably a repeat.
    let first = rows.iter().map(|r| r.id.as_str()).min().unwrap_or("0");
    let report_id = format!("{}.{}", crate::dates::ymd(day).replace('-', ""), first);
    let org = config.report_org();
    let from = config.report_from();
    let submitter = from
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| config.hostname.clone());
    let report = aggregate.report(&org, &from, &report_id, day as u64, (day + 86_399) as u64);
    let keys = crate::reports::report_keys(store).await;
    let mut queued = Vec::new();
    let mut deferred = false;
    for dest in dmarc_report::destinations(domain, &aggregate.rua) {
        let address = dest.rua.address.as_str();
        if dest.external {
            match dmarc_report::authorized(resolver, domain, address).await {
                Some(true) => {}
                Some(false) => {
                    tracing::info!(
                        domain,
                        rua = address,
                        "DMARC report destination not authorized by its domain; skipped"
                    );
                    continue;
                }
                None => {
                    tracing::warn!(
                        domain,
                        rua = address,
                        "DMARC report destination could not be checked (DNS); will try again"
                    );
                    deferred = true;
                    continue;
                }
            }
        }
        let message = report
            .to_rfc5322(
                &submitter,
                (org.as_str(), from.as_str()),
                std::iter::once(address),
            )
            .context("building the report message")?
            .into_bytes();
        let message = crate::reports::dkim_signed(keys.as_ref(), &from, message);
        if !dmarc_report::fits(&dest.rua, message.len()) {
            tracing::info!(
                domain,
                rua = address,
                size = message.len(),
                limit = dest.rua.max_size,
                "DMARC report larger than its destination accepts; skipped"
            );
            continue;
        }
        let envelope = Envelope::notice(
            format!("{}R", new_id()),
            &config.hostname,
            Direction::Outbound,
            &[address.to_string()],
        );
        let size = message.len();
        let spooled = inject
            .write(&envelope, message)
            .await
            .with_context(|| format!("writing the report to {address}"))?;
        // In the message log before it is handed to the queue, so its delivery is logged.
        let subject = Some(format!("(DMARC aggregate report for {domain})"));
        let record = crate::log_record(&envelope, size, subject, None);
        if let Err(e) = store.log_batch(&[LogEntry::Message(record)]).await {
            tracing::warn!(id = %envelope.id, error = %e, "report not in the message log");
        }
        let not_announced = match inject.announce(&spooled.0).await {
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(id = %envelope.id, error = %e, "DMARC report not announced");
                Some(e.to_string())
            }
        };
        tracing::info!(
            domain,
            rua = address,
            report_id = %report_id,
            day = %crate::dates::ymd(day),
            records = aggregate.records.len(),
            messages = aggregate.messages,
            size,
            id = %envelope.id,
            "DMARC aggregate report queued"
        );
        queued.push(Queued {
            queue_id: envelope.id,
            domain: domain.to_string(),
            day,
            rua: address.to_string(),
            report_id: report_id.clone(),
            records: aggregate.records.len(),
            messages: aggregate.messages,
            size,
            not_announced,
        });
    }
    if deferred && queued.is_empty() {
        return Ok(None);
    }
    if queued.is_empty() {
        tracing::info!(domain, day = %crate::dates::ymd(day), messages = aggregate.messages, "DMARC aggregate report has no usable destination; dropped");
    }
    Ok(Some(queued))
}

/// Purge old contributions and, when `[reports] dmarc_aggregate` is on, send the reports
/// of past days once the hour `send_hour_utc` has come.
pub fn spawn(
    config: Config,
    store: Store,
    inject: Injector,
    resolver: mail_auth::hickory_resolver::TokioResolver,
) {
    tokio::spawn(async move {
        let resolver = MessageAuthenticator(resolver);
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let t = now();
            let today = t.div_euclid(86_400) * 86_400;
            match store.dmarc_results_purge(today - KEEP_DAYS * 86_400).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "old DMARC report results purged"),
                Err(e) => tracing::warn!(error = %e, "DMARC report results purge failed"),
            }
            if !config.reports.dmarc_aggregate
                || (t - today) / 3600 < i64::from(config.reports.send_hour_utc)
            {
                continue;
            }
            let since = today - KEEP_DAYS * 86_400;
            match send(&config, &store, &inject, &resolver, since, today).await {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "DMARC aggregate reports failed")
                }
            }
        }
    });
}
