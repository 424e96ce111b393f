//! `/api/v1/content`: the content lists (words and patterns with the score a match adds),
//! as `portcullis content` edits them.

use super::{Done, ListPage, Paging};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use axum::extract::Query;
use axum::routing::get;
use axum::{Extension, Json, Router};
use portcullis_store::ContentRow;
use serde::Deserialize;

/// Every pattern of every content list.
#[utoipa::path(get, path = "/api/v1/content", tag = "policy", params(Paging),
    responses((status = 200, body = Object), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list(
    Extension(caller): Extension<Caller>,
    Query(p): Query<Paging>,
) -> ApiResult<Json<ListPage<ContentRow>>> {
    Ok(Json(p.cut(caller.ops.list_content().await?)))
}

/// A word or phrase (or a regular expression) of a content list.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewPattern {
    /// The content list's name.
    pub list: String,
    pub pattern: String,
    /// subject, body, headers or any (default any).
    #[serde(default)]
    pub field: Option<String>,
    /// A regular expression rather than a word or phrase.
    #[serde(default)]
    pub regex: bool,
    /// What a match adds to the message's score.
    pub score: f64,
}

/// Add a pattern, or change its score.
#[utoipa::path(post, path = "/api/v1/content", tag = "policy", request_body = NewPattern,
    responses((status = 200, body = Done), (status = 400, body = crate::error::ErrorBody)))]
pub async fn add(
    Extension(caller): Extension<Caller>,
    Json(p): Json<NewPattern>,
) -> ApiResult<Json<Done>> {
    let row = ContentRow {
        list: p.list,
        pattern: p.pattern,
        field: p.field.unwrap_or_else(|| "any".into()),
        regex: p.regex,
        score: p.score,
    };
    caller.ops.add_content(&row).await?;
    Ok(Done::new(format!("{} {:?} added", row.list, row.pattern)))
}

/// A pattern to remove.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct OldPattern {
    pub list: String,
    pub pattern: String,
    /// The field it was added for (default any).
    #[serde(default)]
    pub field: Option<String>,
}

/// Remove the pattern given in the body.
#[utoipa::path(delete, path = "/api/v1/content", tag = "policy", request_body = OldPattern,
    responses((status = 200, body = Done), (status = 404, body = crate::error::ErrorBody)))]
pub async fn remove(
    Extension(caller): Extension<Caller>,
    Json(p): Json<OldPattern>,
) -> ApiResult<Json<Done>> {
    let field = p.field.as_deref().unwrap_or("any");
    caller
        .ops
        .remove_content(&p.list, &p.pattern, field)
        .await?;
    Ok(Done::new("removed"))
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/content", get(list).post(add).delete(remove))
}
