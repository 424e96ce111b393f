//! `/api/v1/quarantine`: held copies listed and shown, released (also with the sender
//! allowed), deleted; the raw message as text/plain.

use super::{Done, ListPage, Paging, blank};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::preview::{Preview, preview};
use axum::extract::{Path, Query};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use portcullis_ops::Ops;
use portcullis_ops::quarantine::Released;
use portcullis_ops::tracking::{Finding, findings};
use portcullis_store::{QuarantineItem, QuarantineQuery};
use serde::{Deserialize, Serialize};

/// Filters of the quarantine list.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Filter {
    /// The recipient, exactly.
    pub recipient: Option<String>,
    /// `held` (default), `released`, `deleted`.
    pub state: Option<String>,
    /// Part of the sender.
    pub sender: Option<String>,
    /// Part of the subject.
    pub subject: Option<String>,
    /// `spam`, `virus`, `policy`, ...
    pub class: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Filter {
    pub fn paging(&self) -> Paging {
        Paging {
            limit: self.limit,
            offset: self.offset,
        }
    }

    /// One page of the held copies that match, filtered by the store.
    pub async fn run(&self, ops: &Ops) -> ApiResult<ListPage<QuarantineItem>> {
        let paging = self.paging();
        let query = QuarantineQuery {
            recipient: blank(&self.recipient),
            state: blank(&self.state),
            sender: blank(&self.sender),
            subject: blank(&self.subject),
            class: blank(&self.class),
            limit: paging.limit(),
            offset: paging.offset(),
        };
        Ok(paging.page(ops.quarantine_list(&query).await?))
    }
}

/// List held copies (filters, pages).
#[utoipa::path(get, path = "/api/v1/quarantine", tag = "quarantine", params(Filter),
    responses((status = 200, body = Object)))]
pub async fn list(
    Extension(caller): Extension<Caller>,
    Query(f): Query<Filter>,
) -> ApiResult<Json<ListPage<QuarantineItem>>> {
    Ok(Json(f.run(&caller.ops).await?))
}

/// One held copy: the item, its findings and a safe preview.
#[derive(Debug, Serialize)]
pub struct Held {
    pub item: QuarantineItem,
    pub findings: Vec<Finding>,
    pub preview: Preview,
}

#[utoipa::path(get, path = "/api/v1/quarantine/{id}", tag = "quarantine",
    params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show(
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Held>> {
    let held = caller.ops.quarantine_show(&id).await?;
    Ok(Json(Held {
        findings: findings(Some(&held.findings)),
        preview: preview(&held.body),
        item: held.item,
    }))
}

/// The message as it was held, as text.
#[utoipa::path(get, path = "/api/v1/quarantine/{id}/raw", tag = "quarantine",
    params(("id" = String, Path)),
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn raw(
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let held = caller.ops.quarantine_show(&id).await?;
    Ok(raw_response(held.body))
}

/// A message's source, never to be read as anything but text.
pub fn raw_response(body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "inline"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox",
            ),
        ],
        String::from_utf8_lossy(&body).into_owned(),
    )
        .into_response()
}

/// What to do with held copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Release,
    ReleaseAndAllow,
    Delete,
    /// Delete, and teach the classifier that the message is spam.
    ReportSpam,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "release" => Some(Action::Release),
            "release-and-allow" => Some(Action::ReleaseAndAllow),
            "delete" => Some(Action::Delete),
            "report-spam" => Some(Action::ReportSpam),
            _ => None,
        }
    }

    pub async fn apply(self, ops: &Ops, id: &str) -> portcullis_ops::Result<String> {
        match self {
            Action::Release | Action::ReleaseAndAllow => {
                let r = ops
                    .quarantine_release(id, self == Action::ReleaseAndAllow)
                    .await?;
                Ok(released_text(id, &r))
            }
            Action::Delete => {
                ops.quarantine_delete(id).await?;
                Ok(format!("{id} deleted"))
            }
            Action::ReportSpam => {
                ops.quarantine_report_spam(id).await?;
                Ok(format!("{id} reported as spam and deleted"))
            }
        }
    }
}

/// A release in words, as the console and the API say it.
fn released_text(id: &str, r: &Released) -> String {
    let mut said = format!("{id} released as {}", r.queue_id);
    if let Some(sender) = &r.allowed_sender {
        said.push_str(&format!("; {sender} allowed"));
    }
    if let Some(w) = &r.warning {
        said.push_str(&format!(" ({w})"));
    }
    said
}

/// A release: what [`Done`] says, and its parts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReleasedView {
    pub ok: bool,
    pub detail: String,
    /// The id of the released copy in the queue.
    pub queue_id: String,
    /// The sender put on the recipient's allow list (release-and-allow).
    pub allowed_sender: Option<String>,
    /// The running gateway could not be told of it at once.
    pub warning: Option<String>,
}

async fn release_as(ops: &Ops, id: &str, allow: bool) -> ApiResult<Json<ReleasedView>> {
    let r = ops.quarantine_release(id, allow).await?;
    Ok(Json(ReleasedView {
        ok: true,
        detail: released_text(id, &r),
        queue_id: r.queue_id,
        allowed_sender: r.allowed_sender,
        warning: r.warning,
    }))
}

#[utoipa::path(post, path = "/api/v1/quarantine/{id}/release", tag = "quarantine",
    params(("id" = String, Path)),
    responses((status = 200, body = ReleasedView), (status = 409, body = crate::error::ErrorBody)))]
pub async fn release(
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<ReleasedView>> {
    release_as(&caller.ops, &id, false).await
}

/// Release, and put the sender on the recipient's allow list.
#[utoipa::path(post, path = "/api/v1/quarantine/{id}/release-and-allow", tag = "quarantine",
    params(("id" = String, Path)), responses((status = 200, body = ReleasedView)))]
pub async fn release_and_allow(
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<ReleasedView>> {
    release_as(&caller.ops, &id, true).await
}

#[utoipa::path(delete, path = "/api/v1/quarantine/{id}", tag = "quarantine",
    params(("id" = String, Path)), responses((status = 200, body = Done)))]
pub async fn delete(
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Done>> {
    Ok(Done::new(Action::Delete.apply(&caller.ops, &id).await?))
}

/// Delete, and teach the classifier that the message is spam (a release teaches it the
/// opposite).
#[utoipa::path(post, path = "/api/v1/quarantine/{id}/report-spam", tag = "quarantine",
    params(("id" = String, Path)),
    responses((status = 200, body = Done), (status = 409, body = crate::error::ErrorBody)))]
pub async fn report_spam(
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Done>> {
    Ok(Done::new(Action::ReportSpam.apply(&caller.ops, &id).await?))
}

/// How often a recipient gets quarantine digests: `default` (the configured interval),
/// `hourly`, `daily`, `weekly` or `never`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DigestFrequency {
    #[serde(default)]
    pub address: String,
    pub frequency: String,
}

#[utoipa::path(get, path = "/api/v1/digest-frequency/{address}", tag = "quarantine",
    params(("address" = String, Path)),
    responses((status = 200, body = DigestFrequency), (status = 403, body = crate::error::ErrorBody)))]
pub async fn digest_frequency(
    Extension(caller): Extension<Caller>,
    Path(address): Path<String>,
) -> ApiResult<Json<DigestFrequency>> {
    let frequency = caller.ops.digest_frequency(&address).await?;
    Ok(Json(DigestFrequency { address, frequency }))
}

#[utoipa::path(put, path = "/api/v1/digest-frequency/{address}", tag = "quarantine",
    params(("address" = String, Path)), request_body = DigestFrequency,
    responses((status = 200, body = Done), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn set_digest_frequency(
    Extension(caller): Extension<Caller>,
    Path(address): Path<String>,
    Json(f): Json<DigestFrequency>,
) -> ApiResult<Json<Done>> {
    caller
        .ops
        .set_digest_frequency(&address, &f.frequency)
        .await?;
    Ok(Done::new(format!(
        "quarantine digests for {address}: {}",
        f.frequency
    )))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/quarantine", get(list))
        .route("/api/v1/quarantine/{id}", get(show).delete(delete))
        .route("/api/v1/quarantine/{id}/raw", get(raw))
        .route("/api/v1/quarantine/{id}/release", post(release))
        .route(
            "/api/v1/quarantine/{id}/release-and-allow",
            post(release_and_allow),
        )
        .route("/api/v1/quarantine/{id}/report-spam", post(report_spam))
        .route(
            "/api/v1/digest-frequency/{address}",
            get(digest_frequency).put(set_digest_frequency),
        )
}
