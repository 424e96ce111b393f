//! The reports received: a filtered, paged table of DMARC aggregate and TLS-RPT reports,
//! one report's rows (DMARC: source, count, disposition, DKIM and SPF results; TLS-RPT:
//! policies, counts and failure details), and for one domain its pass and fail per day
//! and per reporter as SVG charts. Everything in a report came from a stranger: it reaches
//! the markup only through the templates' escaping, charts included.

use crate::api::reports::ReportFilter;
use crate::auth::Caller;
use crate::view::{Layout, PageResult, html, time};
use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query};
use mail_auth::report::Report;
use mail_auth::report::tlsrpt::TlsReport;
use portcullis_ops::reports::{ReportTrend, report_word};
use portcullis_store::{ReportSummary, StoredReport};
use serde::Serialize;

const PAGE: i64 = 50;
/// Days the charts of a domain cover.
const CHART_DAYS: i64 = 30;

struct Row {
    s: ReportSummary,
    period: String,
    received: String,
}

/// One day's bar: pass stacked under fail; all numbers ours.
struct DayBar {
    x: i64,
    pass_y: i64,
    pass_h: i64,
    fail_y: i64,
    fail_h: i64,
    label: String,
}

/// One reporter's bar: its name as text, pass then fail side by side.
struct OrgBar {
    y: i64,
    text_y: i64,
    org: String,
    pass_w: i64,
    fail_x: i64,
    fail_w: i64,
    label: String,
}

struct Chart {
    kind: &'static str,
    title: String,
    days: Vec<DayBar>,
    bar: i64,
    max: i64,
    orgs: Vec<OrgBar>,
    org_height: i64,
}

const W: i64 = 600;
const H: i64 = 160;
const PAD: i64 = 20;
/// Room for the reporters' names left of their bars.
const NAME_W: i64 = 200;
const ORG_ROW: i64 = 18;
/// Reporters charted at most (the busiest).
const MAX_ORGS: usize = 12;

fn chart(t: &ReportTrend) -> Chart {
    let unit = if t.kind == "tlsrpt" {
        "sessions"
    } else {
        "messages"
    };
    let max = t
        .days
        .iter()
        .map(|d| d.pass + d.fail)
        .max()
        .unwrap_or(0)
        .max(1);
    let n = t.days.len().max(1) as i64;
    let slot = (W - 2 * PAD) / n;
    let bar = (slot * 3 / 4).max(1);
    let span = H - 2 * PAD;
    let days = t
        .days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let pass_h = if d.pass > 0 {
                (d.pass * span / max).max(1)
            } else {
                0
            };
            let fail_h = if d.fail > 0 {
                (d.fail * span / max).max(1)
            } else {
                0
            };
            let pass_y = H - PAD - pass_h;
            DayBar {
                x: PAD + i as i64 * slot,
                pass_y,
                pass_h,
                fail_y: pass_y - fail_h,
                fail_h,
                label: format!(
                    "{}: {} {unit} pass, {} fail",
                    portcullis_gateway::dates::ymd(d.day),
                    d.pass,
                    d.fail
                ),
            }
        })
        .collect();
    let org_max = t
        .orgs
        .iter()
        .map(|o| o.pass + o.fail)
        .max()
        .unwrap_or(0)
        .max(1);
    let room = W - NAME_W - PAD;
    let orgs = t
        .orgs
        .iter()
        .take(MAX_ORGS)
        .enumerate()
        .map(|(i, o)| {
            let y = PAD / 2 + i as i64 * ORG_ROW;
            let pass_w = o.pass * room / org_max;
            let fail_w = o.fail * room / org_max;
            OrgBar {
                y,
                text_y: y + ORG_ROW - 6,
                org: o.org.chars().take(30).collect(),
                pass_w,
                fail_x: NAME_W + pass_w,
                fail_w,
                label: format!("{}: {} {unit} pass, {} fail", o.org, o.pass, o.fail),
            }
        })
        .collect::<Vec<_>>();
    Chart {
        kind: if t.kind == "tlsrpt" {
            "tlsrpt"
        } else {
            "dmarc"
        },
        title: if t.kind == "tlsrpt" {
            format!(
                "TLS-RPT: sessions to {} per day, last {CHART_DAYS} days",
                t.domain
            )
        } else {
            format!(
                "DMARC: messages from {} per day, last {CHART_DAYS} days",
                t.domain
            )
        },
        days,
        bar,
        max,
        org_height: PAD + orgs.len() as i64 * ORG_ROW,
        orgs,
    }
}

#[derive(Template)]
#[template(path = "reports.html")]
struct ListPage {
    l: Layout,
    f: FilterEcho,
    rows: Vec<Row>,
    /// Domains of the listed reports, for their charts.
    domains: Vec<String>,
    charts: Vec<Chart>,
    prev: Option<String>,
    next: Option<String>,
    error: String,
}

/// The filters as typed, to show them again.
#[derive(Default, Serialize)]
struct FilterEcho {
    kind: String,
    domain: String,
    org: String,
    since: String,
    until: String,
}

fn query_string(f: &FilterEcho, offset: i64) -> String {
    let mut pairs: Vec<(&str, String)> = [
        ("kind", &f.kind),
        ("domain", &f.domain),
        ("org", &f.org),
        ("since", &f.since),
        ("until", &f.until),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k, v.clone()))
    .collect();
    if offset > 0 {
        pairs.push(("offset", offset.to_string()));
    }
    format!(
        "/reports?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

pub async fn list(
    Extension(caller): Extension<Caller>,
    Query(mut f): Query<ReportFilter>,
) -> PageResult {
    f.limit = Some(PAGE);
    let offset = f.offset.unwrap_or(0).max(0);
    let echo = FilterEcho {
        kind: f.kind.clone().unwrap_or_default(),
        domain: f.domain.clone().unwrap_or_default().trim().to_string(),
        org: f.org.clone().unwrap_or_default(),
        since: f.since.clone().unwrap_or_default(),
        until: f.until.clone().unwrap_or_default(),
    };
    let (summaries, error) = match f.query() {
        Ok(q) => (caller.ops.report_list(&q).await?, String::new()),
        Err(e) => (Vec::new(), e.message),
    };
    let mut domains: Vec<String> = summaries.iter().map(|s| s.domain.clone()).collect();
    domains.sort();
    domains.dedup();
    let mut charts = Vec::new();
    if !echo.domain.is_empty() && error.is_empty() {
        for kind in ["dmarc", "tlsrpt"] {
            // A domain filter that is no domain name lists nothing and charts nothing.
            match caller
                .ops
                .report_trend(&echo.domain, kind, CHART_DAYS)
                .await
            {
                Ok(t) if !t.orgs.is_empty() => charts.push(chart(&t)),
                Ok(_) => {}
                Err(e) if e.status() == 400 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let next = (summaries.len() as i64 == PAGE).then(|| query_string(&echo, offset + PAGE));
    let prev = (offset > 0).then(|| query_string(&echo, (offset - PAGE).max(0)));
    let rows = summaries
        .into_iter()
        .map(|s| Row {
            period: format!("{} .. {}", time(s.begin), time(s.end)),
            received: time(s.received_at),
            s,
        })
        .collect();
    let status = if error.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::BAD_REQUEST
    };
    let page = ListPage {
        l: caller.layout("Reports received"),
        f: echo,
        rows,
        domains,
        charts,
        prev,
        next,
        error,
    };
    Ok(axum::response::IntoResponse::into_response((
        status,
        html(page.render()),
    )))
}

/// One DMARC record as shown.
struct DmarcRow {
    source_ip: String,
    count: u32,
    disposition: String,
    dkim_aligned: String,
    spf_aligned: String,
    header_from: String,
    envelope_from: String,
    dkim: String,
    spf: String,
}

struct TlsFailure {
    result: String,
    sessions: u32,
    sending_ip: String,
    mx: String,
    mx_ip: String,
    code: String,
    info: String,
}

struct TlsPolicy {
    kind: String,
    domain: String,
    mx: String,
    policy: String,
    success: u32,
    failure: u32,
    failures: Vec<TlsFailure>,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ShowPage {
    l: Layout,
    s: ReportSummary,
    period: String,
    received: String,
    /// `p=... sp=... adkim=... aspf=...` of a DMARC report.
    policy: String,
    contact: String,
    dmarc: Vec<DmarcRow>,
    tls: Vec<TlsPolicy>,
    /// Why the stored report could not be read, with its text.
    unreadable: String,
    raw: String,
}

fn or_dash(v: Option<String>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into())
}

fn dmarc_rows(r: &Report) -> Vec<DmarcRow> {
    r.record
        .iter()
        .map(|rec| {
            let pe = &rec.row.policy_evaluated;
            let dkim: Vec<String> = rec
                .auth_results
                .dkim
                .iter()
                .map(|d| format!("{} ({}): {}", d.domain, d.selector, report_word(&d.result)))
                .collect();
            let spf: Vec<String> = rec
                .auth_results
                .spf
                .iter()
                .map(|s| format!("{}: {}", s.domain, report_word(&s.result)))
                .collect();
            DmarcRow {
                source_ip: or_dash(rec.row.source_ip.map(|ip| ip.to_string())),
                count: rec.row.count,
                disposition: report_word(&pe.disposition),
                dkim_aligned: report_word(&pe.dkim),
                spf_aligned: report_word(&pe.spf),
                header_from: rec.identifiers.header_from.clone(),
                envelope_from: rec.identifiers.envelope_from.clone(),
                dkim: or_dash(Some(dkim.join(", "))),
                spf: or_dash(Some(spf.join(", "))),
            }
        })
        .collect()
}

fn tls_policies(r: &TlsReport) -> Vec<TlsPolicy> {
    r.policies
        .iter()
        .map(|p| TlsPolicy {
            kind: report_word(&p.policy.policy_type),
            domain: p.policy.policy_domain.clone(),
            mx: or_dash(Some(p.policy.mx_host.join(", "))),
            policy: p.policy.policy_string.join("\n"),
            success: p.summary.total_success,
            failure: p.summary.total_failure,
            failures: p
                .failure_details
                .iter()
                .map(|f| TlsFailure {
                    result: report_word(&f.result_type),
                    sessions: f.failed_session_count,
                    sending_ip: or_dash(f.sending_mta_ip.map(|ip| ip.to_string())),
                    mx: or_dash(f.receiving_mx_hostname.clone()),
                    mx_ip: or_dash(f.receiving_ip.map(|ip| ip.to_string())),
                    code: or_dash(f.failure_reason_code.clone()),
                    info: or_dash(f.additional_information.clone()),
                })
                .collect(),
        })
        .collect()
}

pub async fn show(Extension(caller): Extension<Caller>, Path(id): Path<String>) -> PageResult {
    let StoredReport { summary: s, report } = caller.ops.report_get(&id).await?;
    let mut page = ShowPage {
        l: caller.layout(&format!("Report {}", s.id)),
        period: format!("{} .. {}", time(s.begin), time(s.end)),
        received: time(s.received_at),
        policy: String::new(),
        contact: String::new(),
        dmarc: Vec::new(),
        tls: Vec::new(),
        unreadable: String::new(),
        raw: String::new(),
        s,
    };
    if page.s.kind == "dmarc" {
        match serde_json::from_str::<Report>(&report) {
            Ok(r) => {
                let p = &r.policy_published;
                page.policy = format!(
                    "p={} sp={} adkim={} aspf={}",
                    report_word(&p.p),
                    report_word(&p.sp),
                    report_word(&p.adkim),
                    report_word(&p.aspf)
                );
                page.contact = r.report_metadata.email.clone();
                page.dmarc = dmarc_rows(&r);
            }
            Err(e) => {
                page.unreadable = e.to_string();
                page.raw = report;
            }
        }
    } else {
        match serde_json::from_str::<TlsReport>(&report) {
            Ok(r) => {
                page.contact = r.contact_info.clone().unwrap_or_default();
                page.tls = tls_policies(&r);
            }
            Err(e) => {
                page.unreadable = e.to_string();
                page.raw = report;
            }
        }
    }
    Ok(html(page.render()))
}
