//! What the message path counts for Prometheus (`/metrics`), through the `metrics` facade:
//! the binary installs the exporter; without one (the command line, unit tests) every
//! call here does nothing. Every name and label value is a literal, so that each call
//! finds a key made at compile time: recording costs a registry lookup and an atomic
//! add, never an allocation. The names are listed in `docs/operations.md`.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram};
use portcullis_smtp::Reply;
use std::time::Instant;

/// Where in the dialogue a reply was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Auth,
    Mail,
    Rcpt,
    Data,
}

/// A new SMTP connection on the listener `listener` (`smtp`, `submission`, `submissions`).
pub fn connection(listener: &str) {
    match listener {
        "smtp" => counter!("portcullis_smtp_connections_total", "listener" => "smtp").increment(1),
        "submission" => {
            counter!("portcullis_smtp_connections_total", "listener" => "submission").increment(1)
        }
        "submissions" => {
            counter!("portcullis_smtp_connections_total", "listener" => "submissions").increment(1)
        }
        _ => counter!("portcullis_smtp_connections_total", "listener" => "other").increment(1),
    }
}

/// A reply of the gateway's checks: counted when it refuses (4xx or 5xx), by stage and
/// reply code (the common codes by name, the rest as `4xx`/`5xx`).
pub fn replied(stage: Stage, reply: &Reply) {
    if reply.code < 400 {
        return;
    }
    macro_rules! count {
        ($stage:literal) => {
            match reply.code {
                421 => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "421"),
                450 => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "450"),
                451 => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "451"),
                452 => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "452"),
                454 => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "454"),
                501 => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "501"),
                535 => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "535"),
                550 => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "550"),
                552 => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "552"),
                553 => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "553"),
                554 => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "554"),
                400..=499 => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "4xx"),
                _ => counter!("portcullis_smtp_rejections_total", "stage" => $stage, "code" => "5xx"),
            }
            .increment(1)
        };
    }
    match stage {
        Stage::Connect => count!("connect"),
        Stage::Auth => count!("auth"),
        Stage::Mail => count!("mail"),
        Stage::Rcpt => count!("rcpt"),
        Stage::Data => count!("data"),
    }
}

/// What was done with a message the gateway answered 250 for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Deliver,
    Quarantine,
    Discard,
}

/// A message accepted (250 after the data), by direction and verdict.
pub fn accepted(inbound: bool, verdict: Accepted) {
    use Accepted::*;
    match (inbound, verdict) {
        (true, Deliver) => counter!("portcullis_messages_accepted_total", "direction" => "inbound", "verdict" => "deliver"),
        (true, Quarantine) => counter!("portcullis_messages_accepted_total", "direction" => "inbound", "verdict" => "quarantine"),
        (true, Discard) => counter!("portcullis_messages_accepted_total", "direction" => "inbound", "verdict" => "discard"),
        (false, Deliver) => counter!("portcullis_messages_accepted_total", "direction" => "outbound", "verdict" => "deliver"),
        (false, Quarantine) => counter!("portcullis_messages_accepted_total", "direction" => "outbound", "verdict" => "quarantine"),
        (false, Discard) => counter!("portcullis_messages_accepted_total", "direction" => "outbound", "verdict" => "discard"),
    }
    .increment(1);
}

/// A check whose time is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// DNSBL lookups of the client's address.
    Dnsbl,
    /// The client's reverse and forward DNS.
    Fcrdns,
    /// SPF at MAIL FROM (DNS).
    Spf,
    /// DKIM, DMARC and ARC of the message (DNS).
    Authentication,
    /// clamd's INSTREAM scan.
    Clamd,
    /// The external scanner (`[external]`).
    External,
    /// The content pipeline: MIME parse, spam classifier and heuristics, attachment facts,
    /// content lists.
    Content,
    /// URIBL lookups of the message's links.
    Uribl,
}

/// The time `check` took since `started`, in seconds.
pub fn timed(check: Check, started: Instant) {
    let h = match check {
        Check::Dnsbl => histogram!("portcullis_check_duration_seconds", "check" => "dnsbl"),
        Check::Fcrdns => histogram!("portcullis_check_duration_seconds", "check" => "fcrdns"),
        Check::Spf => histogram!("portcullis_check_duration_seconds", "check" => "spf"),
        Check::Authentication => {
            histogram!("portcullis_check_duration_seconds", "check" => "authentication")
        }
        Check::Clamd => histogram!("portcullis_check_duration_seconds", "check" => "clamd"),
        Check::External => histogram!("portcullis_check_duration_seconds", "check" => "external"),
        Check::Content => histogram!("portcullis_check_duration_seconds", "check" => "content"),
        Check::Uribl => histogram!("portcullis_check_duration_seconds", "check" => "uribl"),
    };
    h.record(started.elapsed());
}

/// The time one batch of message-log rows took to write (the store's busiest path).
pub fn log_batch(started: Instant) {
    histogram!("portcullis_store_query_duration_seconds", "query" => "log_batch")
        .record(started.elapsed());
}

/// The help texts of this crate's metrics (once, when the exporter is installed).
pub fn describe() {
    describe_counter!(
        "portcullis_smtp_connections_total",
        "SMTP connections accepted, by listener"
    );
    describe_counter!(
        "portcullis_smtp_rejections_total",
        "SMTP commands refused by the gateway's checks (4xx, 5xx), by stage and reply code"
    );
    describe_counter!(
        "portcullis_messages_accepted_total",
        "Messages answered 250 after the data, by direction and verdict"
    );
    describe_histogram!(
        "portcullis_check_duration_seconds",
        metrics::Unit::Seconds,
        "Time taken by each check of a connection or message"
    );
    describe_histogram!(
        "portcullis_store_query_duration_seconds",
        metrics::Unit::Seconds,
        "Time taken by the store's busiest queries"
    );
    describe_gauge!(
        "portcullis_queue_messages",
        "Messages in the delivery queue (spool)"
    );
    describe_gauge!(
        "portcullis_queue_oldest_age_seconds",
        "Age of the oldest message in the queue, 0 when it is empty"
    );
}

/// Every `interval`, the queue's size and the age of its oldest message as gauges (from
/// the spool's directory listing, on a blocking thread).
pub fn spawn_queue_gauges(
    spool: std::sync::Arc<portcullis_queue::spool::Spool>,
    interval: std::time::Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let spool = spool.clone();
            let census = tokio::task::spawn_blocking(move || spool.census()).await;
            match census {
                Ok(Ok((count, oldest))) => {
                    metrics::gauge!("portcullis_queue_messages").set(count as f64);
                    let age = oldest.map_or(0, |at| (portcullis_queue::spool::now() - at).max(0));
                    metrics::gauge!("portcullis_queue_oldest_age_seconds").set(age as f64);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "queue gauges: cannot list the spool"),
                Err(_) => {}
            }
        }
    });
}
