//! The dashboard: mail over the last hour, day and 30 days as bar charts drawn on the
//! server (SVG), the queue, and the busiest senders, recipients and rejection reasons.

use crate::auth::Caller;
use crate::view::{Layout, PageResult, html, time};
use askama::Template;
use axum::Extension;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use portcullis_ops::dashboard::{Bucket, Dashboard, Series};
use portcullis_ops::health::ServiceHealth;

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Page {
    l: Layout,
    d: Dashboard,
    charts: Vec<Chart>,
    /// The service checks are the gateway's: for roles that see all of its mail.
    show_services: bool,
}

struct Chart {
    title: String,
    span: &'static str,
    total: Bucket,
    svg: String,
}

const W: i64 = 600;
const H: i64 = 160;
const PAD: i64 = 20;

/// One bar per bucket, stacked by outcome; each bar has a title for its numbers. Only our
/// own numbers and words go into the markup.
pub fn svg(series: &Series, title: &str) -> String {
    let max = series
        .buckets
        .iter()
        .map(|b| {
            (b.delivered + b.rejected + b.quarantined + b.deferred).max(b.inbound + b.outbound)
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let n = series.buckets.len().max(1) as i64;
    let slot = (W - 2 * PAD) / n;
    let bar = (slot * 3 / 4).max(1);
    let mut out = format!(
        "<svg class=\"chart\" data-span=\"{span}\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"{title}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <line class=\"axis\" x1=\"{PAD}\" y1=\"{base}\" x2=\"{end}\" y2=\"{base}\"/>",
        span = series.span,
        base = H - PAD,
        end = W - PAD,
    );
    for (i, b) in series.buckets.iter().enumerate() {
        let x = PAD + i as i64 * slot;
        let mut y = H - PAD;
        out.push_str(&format!(
            "<g class=\"bar\"><title>{}: {} in, {} out, {} delivered, {} rejected, {} quarantined, {} deferred</title>",
            time(b.start),
            b.inbound,
            b.outbound,
            b.delivered,
            b.rejected,
            b.quarantined,
            b.deferred
        ));
        for (class, count) in [
            ("delivered", b.delivered),
            ("rejected", b.rejected),
            ("quarantined", b.quarantined),
            ("deferred", b.deferred),
        ] {
            if count == 0 {
                continue;
            }
            let h = (count * (H - 2 * PAD) / max).max(1);
            y -= h;
            out.push_str(&format!(
                "<rect class=\"{class}\" x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{h}\"/>"
            ));
        }
        out.push_str("</g>");
    }
    out.push_str(&format!(
        "<text x=\"{PAD}\" y=\"{}\" class=\"label\">max {max}</text></svg>",
        PAD - 6
    ));
    out
}

pub async fn page(Extension(caller): Extension<Caller>) -> PageResult {
    // A domain administrator's numbers are its domains'; a user's view is its quarantine.
    let d = match caller.ops.dashboard().await {
        Ok(d) => d,
        Err(portcullis_ops::OpsError::Forbidden(_)) => {
            return Ok(Redirect::to("/quarantine").into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let charts = d
        .series
        .iter()
        .map(|s| {
            let title = match s.span {
                "hour" => "Last hour (5-minute bars)",
                "day" => "Last 24 hours (hourly bars)",
                _ => "Last 30 days (daily bars)",
            };
            Chart {
                title: title.to_string(),
                span: s.span,
                total: s.total(),
                svg: svg(s, title),
            }
        })
        .collect();
    Ok(html(
        Page {
            l: caller.layout("Dashboard"),
            d,
            charts,
            show_services: caller.ops.actor().may(
                portcullis_ops::Access::ReadMessages,
                &portcullis_ops::Scope::Global,
            ),
        }
        .render(),
    ))
}

/// The service checks alone, as htmx loads them into the dashboard.
#[derive(Template)]
#[template(path = "services.table.html")]
struct ServicesPart {
    h: ServiceHealth,
    checked: String,
}

/// The service checks as a page of their own (the dashboard's link without script).
#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage {
    l: Layout,
    h: ServiceHealth,
    checked: String,
}

/// `GET /services`: check the store, DNS, clamd and the routes now. An htmx request
/// (`HX-Request: true`) gets the table alone, to put into the dashboard.
pub async fn services(Extension(caller): Extension<Caller>, headers: HeaderMap) -> PageResult {
    let h = caller.ops.service_health().await?;
    let checked = time(h.checked_at);
    let fragment = headers
        .get("hx-request")
        .is_some_and(|v| v.as_bytes() == b"true");
    Ok(if fragment {
        html(ServicesPart { h, checked }.render())
    } else {
        html(
            ServicesPage {
                l: caller.layout("Services"),
                h,
                checked,
            }
            .render(),
        )
    })
}
