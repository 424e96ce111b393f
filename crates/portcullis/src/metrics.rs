//! The Prometheus exporter of `portcullis serve`: installed as the `metrics` recorder
//! before the node starts, so that every crate's counters land in it; rendered by the web
//! crate (`/metrics` on the HTTPS and metrics listeners) through the operations layer.
//! The exporter's own HTTP server is not used: axum already serves HTTP.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use portcullis_ops::monitoring::RenderMetrics;
use std::sync::Arc;
use std::time::Duration;

/// Histogram buckets (seconds) of every `*_seconds` metric: from half a millisecond (an
/// fsync on a fast disk, a cached DNS answer) to half a minute (a slow scanner).
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often the exporter drains its histogram samples, and the queue gauges are taken.
const UPKEEP: Duration = Duration::from_secs(5);

/// Install the exporter as the process's recorder and start its upkeep; None (with a
/// warning) if a recorder is already installed. Call within the runtime.
pub fn install() -> Option<RenderMetrics> {
    let builder = match PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: bad histogram buckets");
            return None;
        }
    };
    let handle = match builder.install_recorder() {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: exporter not installed");
            return None;
        }
    };
    portcullis_gateway::metrics::describe();
    portcullis_queue::metrics::describe();
    metrics::describe_histogram!(
        "portcullis_store_commit_duration_seconds",
        metrics::Unit::Seconds,
        "Time taken by commits of the store's write transactions"
    );
    metrics::describe_counter!(
        "portcullis_syslog_dropped_lines_total",
        "Log lines not sent to the syslog collector (queue full, collector unreachable, a failed write)"
    );
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tick.tick().await;
            // Counted by the syslog writer, which must not depend on the recorder.
            metrics::counter!("portcullis_syslog_dropped_lines_total")
                .absolute(crate::syslog::dropped());
            upkeep.run_upkeep();
        }
    });
    Some(Arc::new(move || handle.render()))
}

/// The queue gauges, taken every few seconds from the spool.
pub fn spawn_queue_gauges(spool: Arc<portcullis_queue::spool::Spool>) {
    portcullis_gateway::metrics::spawn_queue_gauges(spool, UPKEEP);
}
