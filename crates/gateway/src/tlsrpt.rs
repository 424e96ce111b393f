//! Outgoing TLS-RPT reports (RFC 8460) about our own deliveries. Delivery counts its TLS
//! sessions in memory (`portcullis_queue::tls_policy::TlsCounters`); the gateway moves
//! those counts to the store every minute and at shutdown ([`flush`]), never on the
//! delivery path. Once a day, after `[reports] send_hour_utc`, and when `tls_rpt` is on,
//! each policy domain with results for a finished UTC day gets one report at the
//! addresses of its `_smtp._tls` TXT record: gzipped JSON, mailed through our own queue
//! (`mailto:`, RFC 8460 §5.3) or posted (`https:`, §5.4). `portcullis report
//! send-tlsrpt` does the same for one day at once.
//!
//! A report claims the rows it covers in the store before it goes out, so that a day is
//! reported once even with several nodes or the command line beside a gateway; when
//! nothing could take the report (every address failed, or DNS did), the claim is given
//! back and the next daily run tries again, for up to [`RETRY_DAYS`] days.

use crate::config::Config;
use crate::inject::{InjectError, Injector};
use anyhow::{Context, Result, anyhow};
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::mta_sts::{ReportUri, TlsRpt};
use mail_auth::report::tlsrpt::{
    DateRange, FailureDetails, Policy, PolicyDetails, PolicyType, ResultType, Summary, TlsReport,
};
use portcullis_queue::client::TlsConfigs;
use portcullis_queue::mx::TokioResolver;
use portcullis_queue::spool::{Direction, Envelope, new_id, now};
use portcullis_queue::tls_policy::{TlsCounters, TlsResultKey, utc_day};
use portcullis_queue::tlsrpt::{RecordLookup, ReportPoster, lookup_record};
use portcullis_store::{Store, TlsResultRow};
use std::sync::Arc;
use std::time::Duration;

use crate::dates::DAY;

/// How often the gateway moves its counts to the store (and looks whether reports are due).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(60);
/// Days before today whose unsent reports a daily run still tries.
pub const RETRY_DAYS: i64 = 7;
/// Days of results kept in the store.
pub const KEEP_DAYS: i64 = 14;
/// Reporting addresses used per report; a record listing more is cut.
const MAX_RUA: usize = 5;
/// Policies and failure details per report (RFC 8460 sets no limit; we do).
const MAX_POLICIES: usize = 1_000;
const MAX_FAILURE_DETAILS: usize = 1_000;

/// Moves the counts gathered in memory to the store; on failure they are kept in memory
/// for the next try.
pub async fn flush(counters: &TlsCounters, store: &Store) {
    let taken = counters.take();
    if taken.is_empty() {
        return;
    }
    let rows: Vec<TlsResultRow> = taken.iter().map(|(k, n)| row(k, *n)).collect();
    match store.tls_results_add(&rows).await {
        Ok(()) => tracing::debug!(rows = rows.len(), "TLS results stored"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot store TLS results; keeping them for the next try");
            counters.restore(taken);
        }
    }
}

fn row(k: &TlsResultKey, sessions: u64) -> TlsResultRow {
    TlsResultRow {
        day: k.day,
        domain: k.domain.clone(),
        policy_type: k.policy.kind.to_string(),
        policy_domain: k.policy.domain.clone(),
        policy_strings: k.policy.strings.clone(),
        mx_hosts: k.policy.mx_hosts.clone(),
        result: k.result.to_string(),
        receiving_mx: k.mx_host.clone(),
        receiving_ip: k.ip.clone(),
        sessions: i64::try_from(sessions).unwrap_or(i64::MAX),
    }
}

// ---------------------------------------------------------------------------------------
// Days

// ---------------------------------------------------------------------------------------
// The report

/// Who we are in reports.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// `organization-name`: `[reports] org_name`, else the hostname.
    pub org_name: String,
    /// `TLS-Report-Submitter` and the domain of report ids: the hostname.
    pub submitter: String,
    /// `contact-info`: `postmaster@<hostname>`.
    pub contact: String,
    /// From of report messages: `[reports] from`, else `noreply-reports@<hostname>`.
    pub from: String,
}

impl Reporter {
    pub fn new(config: &Config) -> Reporter {
        Reporter {
            org_name: config.report_org(),
            submitter: config.hostname.clone(),
            contact: format!("postmaster@{}", config.hostname),
            from: config.report_from(),
        }
    }
}

fn policy_type(kind: &str) -> PolicyType {
    match kind {
        "sts" => PolicyType::Sts,
        "tlsa" => PolicyType::Tlsa,
        "no-policy-found" => PolicyType::NoPolicyFound,
        _ => PolicyType::Other,
    }
}

fn result_type(result: &str) -> ResultType {
    // The enum's serde names are RFC 8460's; unknown names become `Other`.
    serde_json::from_value(serde_json::Value::String(result.to_string()))
        .unwrap_or(ResultType::Other)
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// The report about `domain` for the UTC day starting at `day`, from its rows: one
/// policy entry per applied policy, with its successful and failed session counts and
/// one failure detail per result type, receiving MX and address. The report is about
/// mail to `domain` and goes to its `_smtp._tls` record; each policy names its own
/// policy domain, which for DANE is the TLSA base domain (RFC 8460 §3), not `domain`.
pub fn build_report(
    me: &Reporter,
    report_id: &str,
    day: i64,
    domain: &str,
    rows: &[TlsResultRow],
) -> TlsReport {
    let mut policies: Vec<Policy> = Vec::new();
    let mut sorted: Vec<&TlsResultRow> = rows.iter().filter(|r| r.domain == domain).collect();
    sorted.sort();
    for r in sorted {
        let details = PolicyDetails {
            policy_type: policy_type(&r.policy_type),
            policy_string: r.policy_strings.clone(),
            policy_domain: if r.policy_domain.is_empty() {
                domain.to_string()
            } else {
                r.policy_domain.clone()
            },
            mx_host: r.mx_hosts.clone(),
        };
        let index = match policies.iter().position(|p| p.policy == details) {
            Some(i) => i,
            None if policies.len() < MAX_POLICIES => {
                policies.push(Policy {
                    policy: details,
                    summary: Summary {
                        total_success: 0,
                        total_failure: 0,
                    },
                    failure_details: Vec::new(),
                });
                policies.len() - 1
            }
            None => continue,
        };
        let p = &mut policies[index];
        let n = count(r.sessions);
        if r.result == "success" {
            p.summary.total_success = p.summary.total_success.saturating_add(n);
            continue;
        }
        p.summary.total_failure = p.summary.total_failure.saturating_add(n);
        let mut detail = FailureDetails::new(result_type(&r.result));
        if !r.receiving_mx.is_empty() {
            detail.receiving_mx_hostname = Some(r.receiving_mx.clone());
        }
        detail.receiving_ip = r.receiving_ip.parse().ok();
        let same = p.failure_details.iter().position(|d| {
            d.result_type == detail.result_type
                && d.receiving_mx_hostname == detail.receiving_mx_hostname
                && d.receiving_ip == detail.receiving_ip
        });
        match same {
            Some(i) => {
                let d = &mut p.failure_details[i];
                d.failed_session_count = d.failed_session_count.saturating_add(n);
            }
            None if p.failure_details.len() < MAX_FAILURE_DETAILS => {
                detail.failed_session_count = n;
                p.failure_details.push(detail);
            }
            None => {}
        }
    }
    TlsReport {
        organization_name: Some(me.org_name.clone()),
        date_range: DateRange::from_timestamps(day, day + DAY - 1),
        contact_info: Some(me.contact.clone()),
        report_id: report_id.to_string(),
        policies,
    }
}

/// The report as JSON, without the `null` members mail-auth writes for absent optional
/// fields (RFC 8460 leaves them out).
pub fn report_json(report: &TlsReport) -> String {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(list) => list.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(report).unwrap_or_default();
    strip(&mut value);
    value.to_string()
}

pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use mail_auth::flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data)?;
    e.finish()
}

/// A reporting address of a `_smtp._tls` record that we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rua {
    Mail(String),
    Https(String),
}

impl std::fmt::Display for Rua {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rua::Mail(a) => write!(f, "mailto:{a}"),
            Rua::Https(u) => f.write_str(u),
        }
    }
}

/// The usable reporting addresses of a TLS-RPT record (mail-auth parses it).
pub fn parse_rua(record: &str) -> Result<Vec<Rua>, String> {
    let parsed = TlsRpt::parse(record.as_bytes()).map_err(|e| format!("invalid record: {e}"))?;
    let mut out = Vec::new();
    for uri in parsed.rua {
        let rua = match uri {
            ReportUri::Mail(a) => {
                // A mailto: URI may carry `?subject=…`; only the address is used.
                let a = a.split('?').next().unwrap_or("").trim().to_string();
                let ok = a.len() <= 254
                    && a.split_once('@')
                        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
                    && !a.bytes().any(|b| {
                        b.is_ascii_control() || matches!(b, b' ' | b'<' | b'>' | b',' | b'"')
                    });
                if !ok {
                    continue;
                }
                Rua::Mail(a)
            }
            ReportUri::Http(u) if u.len() <= 2048 && u.starts_with("https://") => Rua::Https(u),
            ReportUri::Http(_) => continue,
        };
        if !out.contains(&rua) && out.len() < MAX_RUA {
            out.push(rua);
        }
    }
    if out.is_empty() {
        return Err("no usable mailto: or https: address".into());
    }
    Ok(out)
}

/// The message that carries a report to `to` (RFC 8460 §5.3, built by mail-auth).
pub fn build_message(
    me: &Reporter,
    report: &TlsReport,
    domain: &str,
    to: &[String],
    gzipped: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    report.write_rfc5322_from_bytes(
        domain,
        &me.submitter,
        me.from.as_str(),
        to.iter().map(String::as_str),
        gzipped,
        &mut out,
    )?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Sending

/// Everything a run of reports needs.
pub struct Sender {
    pub me: Reporter,
    pub hostname: String,
    pub store: Store,
    pub inject: Injector,
    pub resolver: TokioResolver,
    pub poster: ReportPoster,
}

/// What became of one domain's report.
#[derive(Debug)]
pub enum Outcome {
    /// Sent (or queued) to at least one address.
    Sent {
        report_id: String,
        /// One entry per address: `mailto:x queued as ID`, `https://… HTTP 200`, or the error.
        results: Vec<String>,
        /// Queue ids of report messages (in the spool, announced to the queue).
        queued: Vec<String>,
        sessions: (i64, i64),
    },
    /// Nothing sent, and nothing to retry (no record, already reported).
    Skipped(String),
    /// Nothing sent; the results stay unreported for a later try.
    Failed(String),
}

impl Sender {
    /// Builds what sending needs from the configuration (resolver, HTTPS client with the
    /// same trust as MTA-STS: WebPKI roots plus `delivery.extra_ca_file`).
    pub fn new(
        config: &Config,
        store: Store,
        inject: Injector,
        resolver: TokioResolver,
        tls: &TlsConfigs,
    ) -> Result<Sender> {
        let poster = ReportPoster::new(
            resolver.clone(),
            (*tls.verified()).clone(),
            Duration::from_secs(60),
        )
        .map_err(|e| anyhow!("TLS-RPT HTTPS client: {e}"))?;
        Ok(Sender {
            me: Reporter::new(config),
            hostname: config.hostname.clone(),
            store,
            inject,
            resolver,
            poster,
        })
    }

    /// Reports of one day: one per domain with unreported results.
    pub async fn send_day(&self, day: i64) -> Result<Vec<(String, Outcome)>> {
        let pending = self.store.tls_results_pending(day, day + DAY).await?;
        let mut out = Vec::new();
        for (_, domain) in pending {
            let outcome = self.send_domain(day, &domain).await?;
            log_outcome(day, &domain, &outcome);
            out.push((domain, outcome));
        }
        Ok(out)
    }

    /// The report about one domain for one day.
    pub async fn send_domain(&self, day: i64, domain: &str) -> Result<Outcome> {
        let report_id = format!(
            "{}.{}{:08x}@{}",
            crate::dates::ymd(day),
            new_id(),
            rand::random::<u32>(),
            self.hostname
        );
        let claim = self
            .store
            .tls_results_claim(day, domain, &report_id, now())
            .await?;
        if claim.rows.is_empty() {
            return Ok(Outcome::Skipped("nothing to report".into()));
        }
        let claim_id = report_id.as_str();
        if claim.reported_before {
            // Results that reached the store after the day's report went out.
            return Ok(Outcome::Skipped("this day was reported already".into()));
        }
        let release = |why: String| async move {
            if let Err(e) = self.store.tls_results_release(claim_id).await {
                tracing::warn!(error = %e, "cannot give back TLS results for a later report");
            }
            Ok(Outcome::Failed(why))
        };
        let ruas = match lookup_record(&self.resolver, domain).await {
            RecordLookup::Found(text) => match parse_rua(&text) {
                Ok(r) => r,
                Err(e) => return Ok(Outcome::Skipped(format!("_smtp._tls.{domain}: {e}"))),
            },
            RecordLookup::Absent => {
                return Ok(Outcome::Skipped(format!(
                    "no TLS-RPT record at _smtp._tls.{domain}"
                )));
            }
            RecordLookup::Failed(e) => return release(format!("DNS: {e}")).await,
        };
        let report = build_report(&self.me, &report_id, day, domain, &claim.rows);
        let sessions = report.policies.iter().fold((0i64, 0i64), |(s, f), p| {
            (
                s + i64::from(p.summary.total_success),
                f + i64::from(p.summary.total_failure),
            )
        });
        let gzipped = gzip(report_json(&report).as_bytes()).context("compressing the report")?;
        let mut results = Vec::new();
        let mut queued = Vec::new();
        let mailto: Vec<String> = ruas
            .iter()
            .filter_map(|r| match r {
                Rua::Mail(a) => Some(a.clone()),
                Rua::Https(_) => None,
            })
            .collect();
        if !mailto.is_empty() {
            let list = mailto
                .iter()
                .map(|a| format!("mailto:{a}"))
                .collect::<Vec<_>>()
                .join(",");
            match self.queue_message(&report, domain, &mailto, &gzipped).await {
                Ok((id, None)) => {
                    results.push(format!("{list} queued as {id}"));
                    queued.push(id);
                }
                Ok((id, Some(why))) => {
                    results.push(format!("{list} queued as {id} ({why})"));
                    queued.push(id);
                }
                Err(e) => results.push(format!("{list} failed: {e:#}")),
            }
        }
        for rua in &ruas {
            if let Rua::Https(url) = rua {
                match self.poster.post(url, gzipped.clone()).await {
                    Ok(status) => results.push(format!("{url} HTTP {status}")),
                    Err(e) => results.push(format!("{url} failed: {e}")),
                }
            }
        }
        let delivered = results.iter().any(|r| !r.contains(" failed: "));
        if !delivered {
            return release(results.join("; ")).await;
        }
        Ok(Outcome::Sent {
            report_id,
            results,
            queued,
            sessions,
        })
    }

    async fn queue_message(
        &self,
        report: &TlsReport,
        domain: &str,
        to: &[String],
        gzipped: &[u8],
    ) -> Result<(String, Option<String>)> {
        let message =
            build_message(&self.me, report, domain, to, gzipped).context("building the message")?;
        let keys = crate::reports::report_keys(&self.store).await;
        let message = crate::reports::dkim_signed(keys.as_ref(), &self.me.from, message);
        let envelope = Envelope::notice(
            format!("{}R", new_id()),
            &self.hostname,
            Direction::Outbound,
            to,
        );
        match self.inject.submit(&envelope, message).await {
            Ok(_) => Ok((envelope.id, None)),
            // In the spool all the same: it leaves when the gateway restarts, so this
            // day's results are reported, not tried again.
            Err(e @ InjectError::NotAnnounced { .. }) => Ok((envelope.id, Some(e.to_string()))),
            Err(e) => Err(e).context("writing the report to the spool"),
        }
    }

    /// A daily run: the reports of the finished days not yet reported (up to
    /// [`RETRY_DAYS`] back); the queue ids of report messages.
    pub async fn run_due(&self, today: i64) -> Result<Vec<String>> {
        let pending = self
            .store
            .tls_results_pending(today - RETRY_DAYS * DAY, today)
            .await?;
        let mut queued = Vec::new();
        for (day, domain) in pending {
            match self.send_domain(day, &domain).await {
                Ok(outcome) => {
                    log_outcome(day, &domain, &outcome);
                    if let Outcome::Sent { queued: ids, .. } = outcome {
                        queued.extend(ids);
                    }
                }
                Err(e) => {
                    tracing::warn!(domain = %domain, day = %crate::dates::ymd(day), error = %format!("{e:#}"), "TLS-RPT report failed")
                }
            }
        }
        Ok(queued)
    }
}

fn log_outcome(day: i64, domain: &str, outcome: &Outcome) {
    let day = crate::dates::ymd(day);
    match outcome {
        Outcome::Sent {
            report_id,
            results,
            sessions,
            ..
        } => tracing::info!(domain, day = %day, report_id = %report_id,
            successful = sessions.0, failed = sessions.1, to = %results.join("; "), "TLS-RPT report sent"),
        Outcome::Skipped(why) => {
            tracing::info!(domain, day = %day, reason = %why, "no TLS-RPT report sent")
        }
        Outcome::Failed(why) => {
            tracing::warn!(domain, day = %day, reason = %why, "TLS-RPT report not sent; will try again")
        }
    }
}

/// Whether the daily run is due at `t`: past `hour` (UTC) and not yet run today.
fn due(t: i64, hour: i64, last_run: Option<i64>) -> bool {
    let today = utc_day(t);
    (t - today) / 3600 >= hour && last_run != Some(today)
}

/// The gateway's task: every minute, move the counts to the store; once a day, after
/// `send_hour_utc`, send the due reports (when `tls_rpt` is on) and forget old results.
pub fn spawn(config: &Config, counters: Arc<TlsCounters>, sender: Sender) {
    let enabled = config.reports.tls_rpt;
    let hour = i64::from(config.reports.send_hour_utc);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_run: Option<i64> = None;
        let mut last_purge: Option<i64> = None;
        loop {
            tick.tick().await;
            flush(&counters, &sender.store).await;
            let t = now();
            let today = utc_day(t);
            if last_purge != Some(today) {
                last_purge = Some(today);
                match sender
                    .store
                    .tls_results_purge(today - KEEP_DAYS * DAY)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "old TLS results deleted"),
                    Err(e) => tracing::warn!(error = %e, "TLS result purge failed"),
                }
            }
            if enabled && due(t, hour, last_run) {
                last_run = Some(today);
                match sender.run_due(today).await {
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "TLS-RPT reports failed"),
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_queue::dane::Tlsa;
    use portcullis_queue::mta_sts::{Mode, Policy as StsPolicy};
    use portcullis_queue::tls_policy::{AppliedPolicy, Receiver};

    const DAY0: i64 = 1_795_392_000; // 2026-11-23T00:00:00Z

    fn me() -> Reporter {
        Reporter {
            org_name: "Example Org".into(),
            submitter: "gw.example.org".into(),
            contact: "postmaster@gw.example.org".into(),
            from: "noreply-reports@gw.example.org".into(),
        }
    }

    fn stored(counters: &TlsCounters) -> Vec<TlsResultRow> {
        counters.take().iter().map(|(k, n)| row(k, *n)).collect()
    }

    #[test]
    fn daily_run_after_the_hour_once_a_day() {
        assert!(!due(DAY0 + 3599, 1, None));
        assert!(due(DAY0 + 3600, 1, None));
        assert!(due(DAY0 + 23 * 3600, 1, Some(DAY0 - DAY)));
        assert!(!due(DAY0 + 23 * 3600, 1, Some(DAY0)));
        assert!(due(DAY0, 0, Some(DAY0 - DAY)));
    }

    #[test]
    fn counts_aggregate_into_one_report_per_domain_and_day() {
        let counters = TlsCounters::default();
        let sts = AppliedPolicy::sts(&StsPolicy {
            mode: Mode::Enforce,
            mx: vec!["mx1.secure.test".into(), "*.secure.test".into()],
            max_age: 86400,
        });
        let bad = Receiver {
            host: Some("mx1.secure.test"),
            ip: Some("192.0.2.7".parse().unwrap()),
        };
        let good = Receiver {
            host: Some("mx2.secure.test"),
            ip: Some("192.0.2.8".parse().unwrap()),
        };
        for i in 0..3 {
            counters.record(DAY0 + i, "Secure.Test.", &sts, "success", good);
        }
        counters.record(
            DAY0 + 5,
            "secure.test",
            &sts,
            "certificate-not-trusted",
            bad,
        );
        counters.record(
            DAY0 + 6,
            "secure.test",
            &sts,
            "certificate-not-trusted",
            bad,
        );
        counters.record(
            DAY0 + 7,
            "secure.test",
            &AppliedPolicy::none(),
            "success",
            good,
        );
        // Another day and another domain stay apart.
        counters.record(DAY0 + DAY, "secure.test", &sts, "success", good);
        counters.record(DAY0, "other.test", &AppliedPolicy::none(), "success", good);
        // A DANE session with an MX that is an alias of a host elsewhere.
        let tlsa = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0xab; 32],
        };
        let dane = AppliedPolicy::tlsa(
            &[tlsa],
            "mx3.secure.test",
            &["mx.hosting.test".into(), "mx3.secure.test".into()],
        );
        counters.record(DAY0 + 8, "secure.test", &dane, "success", good);
        let rows = stored(&counters);
        assert!(counters.take().is_empty(), "take empties the counters");
        assert_eq!(rows.len(), 6);
        let day_rows: Vec<TlsResultRow> = rows.into_iter().filter(|r| r.day == DAY0).collect();

        let report = build_report(&me(), "r-1", DAY0, "secure.test", &day_rows);
        assert_eq!(report.report_id, "r-1");
        assert_eq!(report.policies.len(), 3);
        let p = report
            .policies
            .iter()
            .find(|p| p.policy.policy_type == PolicyType::Sts)
            .unwrap();
        assert_eq!(p.policy.policy_domain, "secure.test");
        assert_eq!(
            p.policy.policy_string,
            vec![
                "version: STSv1",
                "mode: enforce",
                "mx: mx1.secure.test",
                "mx: *.secure.test",
                "max_age: 86400"
            ]
        );
        assert_eq!(p.policy.mx_host, vec!["mx1.secure.test", "*.secure.test"]);
        assert_eq!(p.summary.total_success, 3);
        assert_eq!(p.summary.total_failure, 2);
        assert_eq!(p.failure_details.len(), 1);
        let d = &p.failure_details[0];
        assert_eq!(d.result_type, ResultType::CertificateNotTrusted);
        assert_eq!(d.failed_session_count, 2);
        assert_eq!(d.receiving_mx_hostname.as_deref(), Some("mx1.secure.test"));
        assert_eq!(d.receiving_ip, Some("192.0.2.7".parse().unwrap()));
        let none = report
            .policies
            .iter()
            .find(|p| p.policy.policy_type == PolicyType::NoPolicyFound)
            .unwrap();
        assert_eq!(none.summary.total_success, 1);
        assert!(none.failure_details.is_empty());
        assert_eq!(none.policy.policy_domain, "secure.test");
        // The DANE policy names the TLSA base domain (RFC 8460 §3) in the report about
        // (and to) secure.test.
        let dane = report
            .policies
            .iter()
            .find(|p| p.policy.policy_type == PolicyType::Tlsa)
            .unwrap();
        assert_eq!(dane.policy.policy_domain, "mx.hosting.test");
        assert_eq!(
            dane.policy.policy_string,
            vec![format!("3 1 1 {}", "ab".repeat(32))]
        );
        assert_eq!(dane.policy.mx_host, vec!["mx3.secure.test"]);
        assert_eq!(dane.summary.total_success, 1);

        // The JSON is RFC 8460's, without nulls, and reads back.
        let json = report_json(&report);
        assert!(!json.contains("null"), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["organization-name"], "Example Org");
        assert_eq!(v["contact-info"], "postmaster@gw.example.org");
        assert_eq!(v["date-range"]["start-datetime"], "2026-11-23T00:00:00Z");
        assert_eq!(v["date-range"]["end-datetime"], "2026-11-23T23:59:59Z");
        let back = TlsReport::parse_json(json.as_bytes()).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn message_carries_the_gzipped_report() {
        let rows = vec![TlsResultRow {
            day: DAY0,
            domain: "secure.test".into(),
            policy_type: "tlsa".into(),
            policy_domain: "mx.hosting.test".into(),
            policy_strings: vec!["3 1 1 00ff".into()],
            mx_hosts: vec!["mx.secure.test".into()],
            result: "tlsa-invalid".into(),
            receiving_mx: "mx.secure.test".into(),
            receiving_ip: "192.0.2.9".into(),
            sessions: 4,
        }];
        let report = build_report(&me(), "r-2", DAY0, "secure.test", &rows);
        let gz = gzip(report_json(&report).as_bytes()).unwrap();
        let message = build_message(
            &me(),
            &report,
            "secure.test",
            &["tlsrpt@reports.test".to_string()],
            &gz,
        )
        .unwrap();
        let text = String::from_utf8_lossy(&message);
        assert!(text.contains("TLS-Report-Domain: secure.test"), "{text}");
        assert!(
            text.contains("TLS-Report-Submitter: gw.example.org"),
            "{text}"
        );
        assert!(text.contains("report-type=\"tlsrpt\""), "{text}");
        assert!(text.contains("application/tlsrpt+gzip"), "{text}");
        let parsed = TlsReport::parse_rfc5322(&message, 1 << 20).unwrap();
        assert_eq!(
            parsed.policies[0].failure_details[0].failed_session_count,
            4
        );
        assert_eq!(
            parsed.policies[0].failure_details[0].result_type,
            ResultType::TlsaInvalid
        );
        // Sent about (and to) the recipient domain, naming the TLSA base domain.
        assert_eq!(parsed.policies[0].policy.policy_domain, "mx.hosting.test");
        assert_eq!(parsed.policies[0].policy.policy_type, PolicyType::Tlsa);
    }

    #[test]
    fn reporting_addresses() {
        assert_eq!(
            parse_rua("v=TLSRPTv1; rua=mailto:tlsrpt@reports.test").unwrap(),
            vec![Rua::Mail("tlsrpt@reports.test".into())]
        );
        assert_eq!(
            parse_rua("v=TLSRPTv1;rua=mailto:a@r.test?subject=x,https://r.test:8443/v1").unwrap(),
            vec![
                Rua::Mail("a@r.test".into()),
                Rua::Https("https://r.test:8443/v1".into())
            ]
        );
        assert!(parse_rua("v=TLSRPTv1; rua=mailto:not-an-address").is_err());
        assert!(parse_rua("v=STSv1; id=1").is_err());
    }
}
