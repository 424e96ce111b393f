//! The REST API, `/api/v1/...`: the command line's operations as JSON, for tokens
//! (`Authorization: Bearer`) and for the console's own session. Lists take `limit` and
//! `offset` and answer `{"items": [...], "limit": n, "offset": n}`; errors answer
//! [`crate::error::ErrorBody`].

pub mod accounts;
pub mod checks;
pub mod dkim;
pub mod messages;
pub mod policy;
pub mod quarantine;
pub mod queue;
pub mod reports;

use crate::AppState;
use axum::Router;
use serde::{Deserialize, Serialize};

/// A query parameter's value, trimmed; None when absent or blank.
pub fn blank(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The longest page of a list.
pub const MAX_LIMIT: i64 = 1000;
pub const DEFAULT_LIMIT: i64 = 50;

/// `limit` and `offset` of a list.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// At most this many items (default 50, at most 1000).
    pub limit: Option<i64>,
    /// Skip this many items first.
    pub offset: Option<i64>,
}

impl Paging {
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(0, MAX_LIMIT)
    }

    pub fn offset(&self) -> i64 {
        self.offset.unwrap_or(0).max(0)
    }

    /// One page of a list made whole in memory.
    pub fn cut<T>(&self, items: Vec<T>) -> ListPage<T> {
        let items = items
            .into_iter()
            .skip(self.offset() as usize)
            .take(self.limit() as usize)
            .collect();
        self.page(items)
    }

    /// A page of items already cut by the store.
    pub fn page<T>(&self, items: Vec<T>) -> ListPage<T> {
        ListPage {
            items,
            limit: self.limit(),
            offset: self.offset(),
        }
    }
}

/// One page of a list.
#[derive(Debug, Serialize)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub limit: i64,
    pub offset: i64,
}

/// What a change did, in words.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Done {
    pub ok: bool,
    pub detail: String,
}

impl Done {
    pub fn new(detail: impl Into<String>) -> axum::Json<Done> {
        axum::Json(Done {
            ok: true,
            detail: detail.into(),
        })
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(messages::routes())
        .merge(quarantine::routes())
        .merge(queue::routes())
        .merge(policy::routes())
        .merge(checks::routes())
        .merge(dkim::routes())
        .merge(reports::routes())
        .merge(accounts::routes())
        .merge(accounts::audit_routes())
        .layer(axum::middleware::map_response(as_error_body))
}

/// Every error of the API in the one JSON shape: what axum's extractors answer on their
/// own (a body that is not the JSON asked for, a bad path or query parameter, a wrong
/// method) is plain text, and becomes [`crate::error::ErrorBody`] with the same status.
async fn as_error_body(res: axum::response::Response) -> axum::response::Response {
    use axum::http::header::CONTENT_TYPE;
    let status = res.status();
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    // The texts of axum's rejections are short; a longer body is cut, not read whole.
    let text = match axum::body::to_bytes(res.into_body(), 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    axum::response::IntoResponse::into_response(crate::error::ApiError::new(status, message))
}
