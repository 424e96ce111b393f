//! `/api/v1/messages`: the message log, searched and one message's story; and the
//! dashboard's numbers.

use super::{ListPage, Paging, blank};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query};
use axum::routing::get;
use axum::{Extension, Json, Router};
use portcullis_ops::dashboard::Dashboard;
use portcullis_ops::tracking::MessageStory;
use portcullis_queue::spool::now;
use portcullis_store::{LogQuery, MessageRecord};
use serde::Deserialize;

/// The filters of a message search. Text filters match anywhere, without regard to case.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Search {
    /// The search box: found in the sender, any recipient, the subject or the Message-ID.
    pub q: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub subject: Option<String>,
    /// The Message-ID, whole (with or without angle brackets).
    pub message_id: Option<String>,
    /// The client's address, exactly.
    pub client_ip: Option<String>,
    /// `deliver`, `reject`, `tempfail`, `discard`, `quarantine` (any class).
    pub verdict: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    /// Unix seconds, or a span back from now: `30m`, `2h`, `7d`.
    pub since: Option<String>,
    /// Unix seconds, or a span back from now.
    pub until: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Search {
    pub fn paging(&self) -> Paging {
        Paging {
            limit: self.limit,
            offset: self.offset,
        }
    }

    pub fn filter(&self) -> Result<LogQuery, ApiError> {
        let t = now();
        let time = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
            match blank(v) {
                None => Ok(None),
                Some(v) => portcullis_ops::log::parse_since(&v, t)
                    .map(Some)
                    .map_err(|e| ApiError::invalid(name, e.to_string())),
            }
        };
        if let Some(d) = blank(&self.direction)
            && d != "inbound"
            && d != "outbound"
        {
            return Err(ApiError::invalid(
                "direction",
                format!("direction {d:?}: expected inbound or outbound"),
            ));
        }
        let paging = self.paging();
        Ok(LogQuery {
            text: blank(&self.q),
            sender: blank(&self.sender),
            recipient: blank(&self.recipient),
            subject: blank(&self.subject),
            message_id: blank(&self.message_id),
            client_ip: blank(&self.client_ip),
            verdict: blank(&self.verdict),
            direction: blank(&self.direction),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            limit: paging.limit(),
            offset: paging.offset(),
        })
    }
}

/// Search the message log, newest first.
#[utoipa::path(get, path = "/api/v1/messages", tag = "messages", params(Search),
    responses((status = 200, description = "A page of messages", body = Object),
              (status = 400, body = crate::error::ErrorBody)))]
pub async fn search(
    Extension(caller): Extension<Caller>,
    Query(q): Query<Search>,
) -> ApiResult<Json<ListPage<MessageRecord>>> {
    let found = caller.ops.log_search_page(&q.filter()?).await?;
    Ok(Json(q.paging().page(found.messages)))
}

/// One message's whole story: findings, deciding rule, quarantine, delivery.
#[utoipa::path(get, path = "/api/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "The gateway's queue id")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show(
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageStory>> {
    Ok(Json(caller.ops.message_story(&id).await?))
}

/// Mail in and out over the last hour, day and 30 days; the queue; the busiest senders,
/// recipients and rejection reasons.
#[utoipa::path(get, path = "/api/v1/dashboard", tag = "messages",
    responses((status = 200, body = Object)))]
pub async fn dashboard(Extension(caller): Extension<Caller>) -> ApiResult<Json<Dashboard>> {
    Ok(Json(caller.ops.dashboard().await?))
}

/// Check the store, DNS, each clamd endpoint and each downstream route (and the
/// smarthost) now, side by side; each check is bounded at 5 s.
#[utoipa::path(get, path = "/api/v1/services", tag = "messages",
    responses((status = 200, body = Object)))]
pub async fn services(
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<portcullis_ops::health::ServiceHealth>> {
    Ok(Json(caller.ops.service_health().await?))
}

/// The range and format of a message-log export.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportRange {
    /// Received at or after: unix seconds, a span back from now (`7d`), a day
    /// (`2026-12-01`) or a UTC time (`2026-12-01T08:30:00Z`); default: the beginning.
    pub from: Option<String>,
    /// Received before (as `from`); default: now.
    pub to: Option<String>,
    /// `csv` (one row per recipient, a header first) or `jsonl` (one message a line);
    /// default `jsonl`.
    pub format: Option<String>,
}

/// The message log of a time range, oldest first, streamed as it is read (CSV or JSON
/// lines). Whole-gateway roles export everything, a domain administrator the mail of
/// their domains; user accounts may not.
#[utoipa::path(get, path = "/api/v1/log/export", tag = "messages", params(ExportRange),
    responses((status = 200, description = "CSV (text/csv) or JSON lines (application/x-ndjson)", content_type = "application/x-ndjson"),
              (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody)))]
pub async fn export(
    Extension(caller): Extension<Caller>,
    Query(q): Query<ExportRange>,
) -> ApiResult<axum::response::Response> {
    use portcullis_ops::log_export::{ExportFormat, parse_time};
    let t = now();
    let time = |name: &'static str, v: &Option<String>, default: i64| match blank(v) {
        None => Ok(default),
        Some(v) => parse_time(&v, t).map_err(|e| ApiError::invalid(name, e.to_string())),
    };
    let from = time("from", &q.from, 0)?;
    let to = time("to", &q.to, t + 1)?;
    let format = match blank(&q.format) {
        None => ExportFormat::Jsonl,
        Some(f) => {
            ExportFormat::parse(&f).map_err(|e| ApiError::invalid("format", e.to_string()))?
        }
    };
    let export = caller.ops.log_export(from, to, format)?;
    // One page in memory at a time: each chunk is read when the client takes the last.
    let chunks = futures_util::stream::try_unfold(export, |mut export| async move {
        match export.next_chunk().await {
            Ok(Some(text)) => Ok(Some((axum::body::Bytes::from(text), export))),
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "message-log export failed midway");
                Err(std::io::Error::other(e.to_string()))
            }
        }
    });
    let extension = if format == ExportFormat::Csv {
        "csv"
    } else {
        "jsonl"
    };
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, format.content_type())
        .header(
            axum::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"portcullis-log-{from}-{to}.{extension}\""),
        )
        .body(axum::body::Body::from_stream(chunks))
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Delete what is older than the `[retention]` settings now (what the gateway's job does
/// every `interval_secs`): how many messages of the log, held messages, reports and audit
/// rows. Administrators only; audited.
#[utoipa::path(post, path = "/api/v1/retention/run", tag = "messages",
    responses((status = 200, body = Object), (status = 403, body = crate::error::ErrorBody)))]
pub async fn retention_run(
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<portcullis_gateway::retention::Purged>> {
    Ok(Json(caller.ops.retention_run().await?))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/log/export", get(export))
        .route("/api/v1/retention/run", axum::routing::post(retention_run))
        .route("/api/v1/messages", get(search))
        .route("/api/v1/messages/{id}", get(show))
        .route("/api/v1/dashboard", get(dashboard))
        .route("/api/v1/services", get(services))
}
