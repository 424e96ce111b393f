//! `/api/v1/reports`: the DMARC aggregate and TLS-RPT reports received about our domains,
//! listed with filters, one whole, and a domain's trend; narrowed by the operations layer
//! to the domains the caller may read.

use super::{ListPage, Paging, blank};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query};
use axum::routing::get;
use axum::{Extension, Json, Router};
use portcullis_ops::reports::ReportTrend;
use portcullis_queue::spool::now;
use portcullis_store::{ReportQuery, ReportSummary, StoredReport};
use serde::{Deserialize, Serialize};

/// The filters of the report list.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportFilter {
    /// `dmarc` or `tlsrpt`.
    pub kind: Option<String>,
    /// The policy domain the reports are about.
    pub domain: Option<String>,
    /// The reporting organization (any part of its name).
    pub org: Option<String>,
    /// Reports covering time at or after this: `YYYY-MM-DD`, unix seconds, or a span back
    /// from now (`7d`).
    pub since: Option<String>,
    /// Reports covering time before this: `YYYY-MM-DD` (the start of that day), unix
    /// seconds, or a span.
    pub until: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// `YYYY-MM-DD`, unix seconds, or a span back from now.
pub fn report_time(name: &str, value: &str) -> ApiResult<i64> {
    if let Some(day) = portcullis_gateway::dates::parse_ymd(value) {
        return Ok(day);
    }
    portcullis_ops::log::parse_since(value, now()).map_err(|_| {
        ApiError::invalid(
            name,
            format!("{name} {value:?}: expected YYYY-MM-DD, unix time, or a span such as 7d"),
        )
    })
}

impl ReportFilter {
    pub fn paging(&self) -> Paging {
        Paging {
            limit: self.limit,
            offset: self.offset,
        }
    }

    pub fn query(&self) -> ApiResult<ReportQuery> {
        let time =
            |name: &str, v: &Option<String>| blank(v).map(|v| report_time(name, &v)).transpose();
        let kind = blank(&self.kind);
        if let Some(k) = &kind
            && !portcullis_store::REPORT_KINDS.contains(&k.as_str())
        {
            return Err(ApiError::invalid(
                "kind",
                format!("kind {k:?}: expected dmarc or tlsrpt"),
            ));
        }
        let paging = self.paging();
        Ok(ReportQuery {
            kind,
            domain: blank(&self.domain),
            org: blank(&self.org),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            domains: None,
            limit: paging.limit(),
            offset: paging.offset(),
        })
    }
}

/// Reports received, newest first.
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", params(ReportFilter),
    responses((status = 200, description = "A page of report summaries", body = Object),
              (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(
    Extension(caller): Extension<Caller>,
    Query(f): Query<ReportFilter>,
) -> ApiResult<Json<ListPage<ReportSummary>>> {
    let q = f.query()?;
    if q.limit == 0 {
        return Ok(Json(f.paging().page(Vec::new())));
    }
    Ok(Json(f.paging().page(caller.ops.report_list(&q).await?)))
}

/// A report: its summary and the report as parsed when it arrived.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReportView {
    #[serde(flatten)]
    pub summary: ReportSummary,
    /// DMARC: `report_metadata`, `policy_published`, `record`; TLS-RPT: RFC 8460's
    /// fields (`organization-name`, `policies`, ...).
    pub report: serde_json::Value,
}

impl From<StoredReport> for ReportView {
    fn from(r: StoredReport) -> ReportView {
        ReportView {
            report: serde_json::from_str(&r.report).unwrap_or(serde_json::Value::Null),
            summary: r.summary,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/reports/{id}", tag = "reports",
    params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show(
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<ReportView>> {
    Ok(Json(caller.ops.report_get(&id).await?.into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendFilter {
    pub domain: String,
    /// `dmarc` (default) or `tlsrpt`.
    pub kind: Option<String>,
    /// Days back, today included (default 30, at most 366).
    pub days: Option<i64>,
}

/// A domain's pass and fail per day and per reporting organization.
#[utoipa::path(get, path = "/api/v1/reports/trend", tag = "reports", params(TrendFilter),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)))]
pub async fn trend(
    Extension(caller): Extension<Caller>,
    Query(t): Query<TrendFilter>,
) -> ApiResult<Json<ReportTrend>> {
    let kind = t.kind.as_deref().unwrap_or("dmarc");
    Ok(Json(
        caller
            .ops
            .report_trend(&t.domain, kind, t.days.unwrap_or(30))
            .await?,
    ))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reports", get(list))
        .route("/api/v1/reports/trend", get(trend))
        .route("/api/v1/reports/{id}", get(show))
}
