//! `portcullis report …`: the incoming DMARC and TLS-RPT reports in the store (list,
//! show, import) and sending the outgoing ones of a day now (send-dmarc, send-tlsrpt).
//! The reports themselves are the gateway library's (`reports`, `dmarc_reports`,
//! `tlsrpt`); this only reads arguments and prints. `list` and `show` act on a remote
//! gateway as well (`--url`), printing the same; the others run on the gateway's host.

use super::Target;
use anyhow::{Context, Result};
use clap::Subcommand;
use mail_auth::report::Report;
use mail_auth::report::tlsrpt::TlsReport;
use portcullis_gateway::dates::iso;
use portcullis_gateway::tlsrpt::Outcome;
use portcullis_ops::Ops;
use portcullis_ops::reports::{ImportedReport, report_day, report_word};
use portcullis_store::{ReportQuery, ReportSummary, StoredReport};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ReportCmd {
    /// Stored reports, newest first: id, kind, org, report id, domain, period, counts.
    List {
        #[arg(long, value_parser = ["dmarc", "tlsrpt"])]
        kind: Option<String>,
        /// Only reports about this policy domain.
        #[arg(long)]
        domain: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// One report: its summary, then each record (DMARC) or policy (TLS-RPT).
    Show {
        id: String,
        /// The stored report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take in a report message saved as a file (.eml, as received), as the gateway does.
    Import { file: PathBuf },
    /// Send the DMARC aggregate reports of a day now (outgoing, to other domains' rua).
    SendDmarc {
        /// The UTC day, YYYY-MM-DD; default yesterday.
        #[arg(long)]
        day: Option<String>,
    },
    /// Send the TLS-RPT reports about our deliveries of a day now (outgoing, to the
    /// `_smtp._tls` addresses of the domains we delivered to), whatever `tls_rpt` and
    /// `send_hour_utc` say. Works from the store, where a running gateway puts its
    /// counts every minute and at shutdown.
    #[command(name = "send-tlsrpt")]
    SendTlsrpt {
        /// The UTC day, YYYY-MM-DD; default yesterday.
        #[arg(long)]
        day: Option<String>,
    },
}

pub async fn report(target: &Target, cmd: ReportCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
    match cmd {
        ReportCmd::List {
            kind,
            domain,
            limit,
            json,
        } => {
            let rows = ops
                .report_list(&ReportQuery {
                    kind,
                    domain,
                    limit,
                    ..Default::default()
                })
                .await?;
            for r in &rows {
                if json {
                    println!("{}", serde_json::to_string(r)?);
                } else {
                    println!("{}", summary_line(r));
                }
            }
            if rows.is_empty() && !json {
                eprintln!("no reports");
            }
        }
        ReportCmd::Show { id, json } => show(&ops.report_get(&id).await?, json)?,
        ReportCmd::Import { file } => {
            let ops = ops.local("report import")?;
            let raw =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            match ops.report_import(&raw, &file.display().to_string()).await? {
                ImportedReport::Stored(id) => println!("stored report {id}"),
                ImportedReport::AlreadyStored(id) => println!("already stored as {id}"),
            }
        }
        ReportCmd::SendDmarc { day } => {
            let ops = ops.local("report send-dmarc")?;
            send_dmarc(ops, report_day(day.as_deref())?).await?
        }
        ReportCmd::SendTlsrpt { day } => {
            let ops = ops.local("report send-tlsrpt")?;
            return send_tlsrpt(ops, report_day(day.as_deref())?).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_line(s: &ReportSummary) -> String {
    format!(
        "{}  {:<6}  {}  {} .. {}  messages={} pass={} fail={}  org={:?} report-id={:?}",
        s.id,
        s.kind,
        s.domain,
        iso(s.begin),
        iso(s.end),
        s.messages,
        s.pass,
        s.fail,
        s.org,
        s.report_id
    )
}

fn show(stored: &StoredReport, json: bool) -> Result<()> {
    if json {
        println!("{}", stored.report);
        return Ok(());
    }
    let s = &stored.summary;
    println!("id:          {}", s.id);
    println!("kind:        {}", s.kind);
    println!("org:         {}", s.org);
    println!("report id:   {}", s.report_id);
    println!("domain:      {}", s.domain);
    println!("period:      {} .. {}", iso(s.begin), iso(s.end));
    println!("received:    {}", iso(s.received_at));
    let unit = if s.kind == "tlsrpt" {
        "sessions"
    } else {
        "messages"
    };
    println!(
        "{unit}:{:pad$}{} (pass {}, fail {})",
        "",
        s.messages,
        s.pass,
        s.fail,
        pad = 12 - unit.len()
    );
    match s.kind.as_str() {
        "dmarc" => match serde_json::from_str::<Report>(&stored.report) {
            Ok(r) => show_dmarc(&r),
            Err(e) => println!("(stored report unreadable: {e})\n{}", stored.report),
        },
        _ => match serde_json::from_str::<TlsReport>(&stored.report) {
            Ok(r) => show_tlsrpt(&r),
            Err(e) => println!("(stored report unreadable: {e})\n{}", stored.report),
        },
    }
    Ok(())
}

fn show_dmarc(r: &Report) {
    let p = &r.policy_published;
    println!(
        "policy:      p={} sp={} adkim={} aspf={}{}",
        report_word(&p.p),
        report_word(&p.sp),
        report_word(&p.adkim),
        report_word(&p.aspf),
        p.fo.as_deref()
            .map(|f| format!(" fo={f}"))
            .unwrap_or_default()
    );
    println!("records:     {}", r.record.len());
    for rec in &r.record {
        let row = &rec.row;
        let ip = row
            .source_ip
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "-".into());
        let pe = &row.policy_evaluated;
        let dkim: Vec<String> = rec
            .auth_results
            .dkim
            .iter()
            .map(|d| format!("{}={}", d.domain, report_word(&d.result)))
            .collect();
        let spf: Vec<String> = rec
            .auth_results
            .spf
            .iter()
            .map(|d| format!("{}={}", d.domain, report_word(&d.result)))
            .collect();
        println!(
            "  {ip}  count={}  disposition={}  dmarc-dkim={} dmarc-spf={}  header-from={}  dkim: {}  spf: {}",
            row.count,
            report_word(&pe.disposition),
            report_word(&pe.dkim),
            report_word(&pe.spf),
            rec.identifiers.header_from,
            if dkim.is_empty() {
                "-".into()
            } else {
                dkim.join(",")
            },
            if spf.is_empty() {
                "-".into()
            } else {
                spf.join(",")
            },
        );
    }
}

fn show_tlsrpt(r: &TlsReport) {
    if let Some(c) = &r.contact_info {
        println!("contact:     {c}");
    }
    println!("policies:    {}", r.policies.len());
    for p in &r.policies {
        println!(
            "  policy {} {}  success={} failure={}{}",
            report_word(&p.policy.policy_type),
            p.policy.policy_domain,
            p.summary.total_success,
            p.summary.total_failure,
            if p.policy.mx_host.is_empty() {
                String::new()
            } else {
                format!("  mx={}", p.policy.mx_host.join(","))
            }
        );
        for f in &p.failure_details {
            let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            println!(
                "    failure {} sessions={} sending-mta={} mx={} mx-ip={}{}{}",
                report_word(&f.result_type),
                f.failed_session_count,
                opt(f.sending_mta_ip.map(|ip| ip.to_string())),
                opt(f.receiving_mx_hostname.clone()),
                opt(f.receiving_ip.map(|ip| ip.to_string())),
                f.failure_reason_code
                    .as_deref()
                    .map(|c| format!(" code={c}"))
                    .unwrap_or_default(),
                f.additional_information
                    .as_deref()
                    .map(|i| format!(" info={i:?}"))
                    .unwrap_or_default(),
            );
        }
    }
}

/// `portcullis report send-tlsrpt [--day YYYY-MM-DD]`: the reports of one day now
/// (default yesterday, UTC), whatever `tls_rpt` and `send_hour_utc` say. It works from
/// the store: a running gateway stores its counts every minute and at shutdown.
async fn send_tlsrpt(ops: &Ops, day: i64) -> Result<ExitCode> {
    let outcomes = ops.report_send_tlsrpt(day).await?;
    let day_label = portcullis_gateway::dates::ymd(day);
    let mut failed = false;
    for (domain, outcome) in &outcomes {
        match outcome {
            Outcome::Sent {
                report_id,
                results,
                sessions,
                ..
            } => println!(
                "sent {domain} {day_label} report {report_id} successful={} failed={}: {}",
                sessions.0,
                sessions.1,
                results.join("; ")
            ),
            Outcome::Skipped(why) => eprintln!("skipped {domain} {day_label}: {why}"),
            Outcome::Failed(why) => {
                failed = true;
                eprintln!("failed {domain} {day_label}: {why} (left for a later run)");
            }
        }
    }
    if outcomes.is_empty() {
        eprintln!("no TLS results to report for {day_label}");
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `portcullis report send-dmarc [--day YYYY-MM-DD]`: the reports of that day (default
/// yesterday, UTC) now, whatever `dmarc_aggregate` and the hour say.
async fn send_dmarc(ops: &Ops, day: i64) -> Result<()> {
    let queued = ops.report_send_dmarc(day).await?;
    if queued.is_empty() {
        eprintln!(
            "no DMARC aggregate reports to send for {}",
            portcullis_gateway::dates::ymd(day)
        );
    }
    for q in &queued {
        if let Some(why) = &q.not_announced {
            eprintln!("warning: {why}");
        }
        println!(
            "queued {}  {}  {}  to {}  report-id {}  records={} messages={} bytes={}",
            q.queue_id,
            q.domain,
            portcullis_gateway::dates::ymd(q.day),
            q.rua,
            q.report_id,
            q.records,
            q.messages,
            q.size
        );
    }
    Ok(())
}
