//! The dashboard's numbers: mail in and out and what became of it over the last hour, day
//! and 30 days, the queue's size, and the busiest senders, recipients and rejection
//! reasons. Counts come from the message log; the queue from this node's spool. An
//! administrator, auditor or help desk sees the whole gateway; a domain administrator
//! sees its domains' mail (inbound to them, outbound from them).

use crate::{Access, Ops, Result, Scope};
use portcullis_queue::spool::now;
use portcullis_store::Sees;
use serde::Serialize;

/// One bar of a chart: the counts of one time bucket.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Bucket {
    /// Unix seconds of the bucket's start.
    pub start: i64,
    pub inbound: i64,
    pub outbound: i64,
    pub delivered: i64,
    pub rejected: i64,
    pub quarantined: i64,
    pub deferred: i64,
}

/// A span of time cut into buckets.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// `hour`, `day` or `month`.
    pub span: &'static str,
    pub width: i64,
    pub buckets: Vec<Bucket>,
}

impl Series {
    pub fn total(&self) -> Bucket {
        let mut t = Bucket::default();
        for b in &self.buckets {
            t.inbound += b.inbound;
            t.outbound += b.outbound;
            t.delivered += b.delivered;
            t.rejected += b.rejected;
            t.quarantined += b.quarantined;
            t.deferred += b.deferred;
        }
        t
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub now: i64,
    /// The last hour in 5-minute bars, the last day in hours, the last 30 days in days.
    pub series: Vec<Series>,
    /// Messages in this node's queue, and how many of them are held.
    pub queue_size: usize,
    pub queue_held: usize,
    /// Over the last day.
    pub top_senders: Vec<portcullis_store::TopEntry>,
    pub top_recipients: Vec<portcullis_store::TopEntry>,
    pub top_rejections: Vec<portcullis_store::TopEntry>,
    /// The domains the numbers are narrowed to; empty: the whole gateway.
    pub domains: Vec<String>,
}

impl Ops {
    pub async fn dashboard(&self) -> Result<Dashboard> {
        let sees = self.sees();
        let domains = match &sees {
            Sees::All => Vec::new(),
            Sees::Domains(d) => d.clone(),
            // One mailbox's numbers are its quarantine, not a dashboard.
            Sees::Address(_) => {
                self.actor().require(Access::ReadMessages, &Scope::Global)?;
                Vec::new()
            }
        };
        let t = now();
        let mut series = Vec::new();
        for (span, width, count) in [("hour", 300, 12), ("day", 3600, 24), ("month", 86400, 30)] {
            // Whole buckets, the last one holding now.
            let end = (t / width + 1) * width;
            let since = end - width * count;
            let mut buckets: Vec<Bucket> = (0..count)
                .map(|i| Bucket {
                    start: since + i * width,
                    ..Bucket::default()
                })
                .collect();
            for c in self
                .store()
                .message_counts(since, width, count, &sees)
                .await?
            {
                let Some(b) = usize::try_from(c.bucket)
                    .ok()
                    .and_then(|i| buckets.get_mut(i))
                else {
                    continue;
                };
                match c.direction.as_str() {
                    "outbound" => b.outbound += c.count,
                    _ => b.inbound += c.count,
                }
                match c.status.as_str() {
                    "delivered" => b.delivered += c.count,
                    "rejected" | "bounced" => b.rejected += c.count,
                    "quarantined" => b.quarantined += c.count,
                    "deferred" | "queued" => b.deferred += c.count,
                    _ => {}
                }
            }
            series.push(Series {
                span,
                width,
                buckets,
            });
        }
        let (queue_size, queue_held) = match self.queue().list() {
            Ok(items) => (items.len(), items.iter().filter(|i| i.held).count()),
            Err(e) => {
                tracing::warn!(error = %e, "dashboard: queue not read");
                (0, 0)
            }
        };
        let day = t - 86400;
        Ok(Dashboard {
            now: t,
            series,
            queue_size,
            queue_held,
            top_senders: self.store().message_top("sender", day, 10, &sees).await?,
            top_recipients: self
                .store()
                .message_top("recipient", day, 10, &sees)
                .await?,
            top_rejections: self
                .store()
                .message_top("rejection", day, 10, &sees)
                .await?,
            domains,
        })
    }
}
