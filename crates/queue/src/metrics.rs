//! What the queue counts for Prometheus through the `metrics` facade (a no-op until the
//! binary installs an exporter): delivery attempts per recipient by result, and the time
//! the spool's fsyncs take. Literal names and labels only: no allocation per message.

use crate::spool::RecipientStatus;
use metrics::{counter, describe_counter, describe_histogram, histogram};
use std::time::Instant;

/// One recipient's delivery attempt ended: delivered, deferred (tried again later) or
/// bounced.
pub fn delivery_attempt(status: RecipientStatus) {
    match status {
        RecipientStatus::Delivered => {
            counter!("portcullis_delivery_attempts_total", "result" => "delivered")
        }
        RecipientStatus::Pending => {
            counter!("portcullis_delivery_attempts_total", "result" => "deferred")
        }
        RecipientStatus::Failed => {
            counter!("portcullis_delivery_attempts_total", "result" => "bounced")
        }
    }
    .increment(1);
}

/// An fsync of a spool file, or of the queue directory (group commit: one covers the
/// renames of several messages).
pub fn fsync(directory: bool, started: Instant) {
    let h = if directory {
        histogram!("portcullis_spool_fsync_duration_seconds", "target" => "directory")
    } else {
        histogram!("portcullis_spool_fsync_duration_seconds", "target" => "file")
    };
    h.record(started.elapsed());
}

/// The help texts of the queue's metrics.
pub fn describe() {
    describe_counter!(
        "portcullis_delivery_attempts_total",
        "Delivery attempts per recipient, by result (delivered, deferred, bounced)"
    );
    describe_histogram!(
        "portcullis_spool_fsync_duration_seconds",
        metrics::Unit::Seconds,
        "Time taken by fsyncs of spool files and of the queue directory"
    );
}
