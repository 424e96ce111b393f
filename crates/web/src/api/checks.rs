//! `/api/v1/content` and `/api/v1/settings/checks`: content lists (words and patterns
//! with scores, as `portcullis content` edits them), and the connection checks' settings
//! in force (greylisting, DNSBL, URIBL, FCrDNS): the configuration file's values with the
//! keys changed through the API, the console or `portcullis settings`, which the store
//! keeps over the file's.

use super::{Done, ListPage, Paging};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use axum::extract::{Path, Query};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use portcullis_store::ContentRow;
use serde::{Deserialize, Serialize};

/// One entry of a content list.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContentEntry {
    /// The list's name (`spam-words`).
    pub list: String,
    pub pattern: String,
    /// subject, body, headers or any (default any).
    #[serde(default = "any")]
    pub field: String,
    /// `pattern` is a regular expression, not words.
    #[serde(default)]
    pub regex: bool,
    /// The score a match adds (ignored when removing).
    #[serde(default)]
    pub score: f64,
}

fn any() -> String {
    "any".into()
}

impl From<ContentRow> for ContentEntry {
    fn from(r: ContentRow) -> ContentEntry {
        ContentEntry {
            list: r.list,
            pattern: r.pattern,
            field: r.field,
            regex: r.regex,
            score: r.score,
        }
    }
}

/// Which content entries to show.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContentFilter {
    /// One list by name.
    pub list: Option<String>,
    /// Part of the pattern (any case).
    pub q: Option<String>,
}

impl ContentFilter {
    pub fn keeps(&self, r: &ContentRow) -> bool {
        let q = self.q.as_deref().unwrap_or("").trim().to_lowercase();
        self.list
            .as_deref()
            .is_none_or(|l| l.is_empty() || l == r.list)
            && (q.is_empty() || r.pattern.to_lowercase().contains(&q))
    }
}

#[utoipa::path(get, path = "/api/v1/content", tag = "policy", params(Paging, ContentFilter),
    responses((status = 200, body = Object)))]
pub async fn content(
    Extension(caller): Extension<Caller>,
    Query(p): Query<Paging>,
    Query(f): Query<ContentFilter>,
) -> ApiResult<Json<ListPage<ContentEntry>>> {
    let rows = caller.ops.list_content().await?;
    Ok(Json(
        p.cut(
            rows.into_iter()
                .filter(|r| f.keeps(r))
                .map(ContentEntry::from)
                .collect(),
        ),
    ))
}

/// Add a pattern to a content list, or change its score.
#[utoipa::path(post, path = "/api/v1/content", tag = "policy", request_body = ContentEntry,
    responses((status = 200, body = Done), (status = 400, body = crate::error::ErrorBody)))]
pub async fn add_content(
    Extension(caller): Extension<Caller>,
    Json(e): Json<ContentEntry>,
) -> ApiResult<Json<Done>> {
    let row = ContentRow {
        list: e.list,
        pattern: e.pattern,
        field: e.field,
        regex: e.regex,
        score: e.score,
    };
    caller.ops.add_content(&row).await?;
    Ok(Done::new("added"))
}

/// Remove the pattern given in the body (`list`, `pattern`, `field`).
#[utoipa::path(delete, path = "/api/v1/content", tag = "policy", request_body = ContentEntry,
    responses((status = 200, body = Done), (status = 404, body = crate::error::ErrorBody)))]
pub async fn remove_content(
    Extension(caller): Extension<Caller>,
    Json(e): Json<ContentEntry>,
) -> ApiResult<Json<Done>> {
    caller
        .ops
        .remove_content(&e.list, &e.pattern, &e.field)
        .await?;
    Ok(Done::new("removed"))
}

/// Greylisting, DNSBL/URIBL zones and FCrDNS in force, each with the configuration key
/// that sets it, the file it was read from (`null`: defaults), and who changed the keys
/// the store holds (`changed`).
#[utoipa::path(get, path = "/api/v1/settings/checks", tag = "policy",
    responses((status = 200, body = Object)))]
pub async fn check_settings(
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<portcullis_ops::check_settings::CheckSettings>> {
    Ok(Json(caller.ops.check_settings().await?))
}

/// The new value of a setting: `value`, JSON of the key's type (`60`, `"always"`,
/// `false`, a list of zone tables), or `text`, read as the key's type the way the command
/// line reads it (`"60"`, `"off"`, a list in TOML's inline syntax). One of the two.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewValue {
    pub value: Option<serde_json::Value>,
    pub text: Option<String>,
}

/// Change one key (`greylist` `delay_secs`), checked as the configuration file's would
/// be; the store keeps it over the file's value and every node applies it within seconds.
#[utoipa::path(put, path = "/api/v1/settings/checks/{section}/{key}", tag = "policy",
    params(("section" = String, Path, description = "greylist, dnsbl or fcrdns"),
           ("key" = String, Path, description = "a key of the section, as the file names it")),
    request_body = NewValue,
    responses((status = 200, body = Done), (status = 400, body = crate::error::ErrorBody)))]
pub async fn set_check_setting(
    Extension(caller): Extension<Caller>,
    Path((section, key)): Path<(String, String)>,
    Json(v): Json<NewValue>,
) -> ApiResult<Json<Done>> {
    match (v.value, v.text) {
        (Some(value), None) => caller.ops.set_check_setting(&section, &key, value).await?,
        (None, Some(text)) => {
            caller
                .ops
                .set_check_setting_text(&section, &key, &text)
                .await?
        }
        _ => {
            return Err(crate::error::ApiError::invalid(
                "value",
                "give either `value` (JSON) or `text`",
            ));
        }
    }
    Ok(Done::new(format!("{section}.{key} changed")))
}

/// Give a changed key back to the configuration file.
#[utoipa::path(delete, path = "/api/v1/settings/checks/{section}/{key}", tag = "policy",
    params(("section" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = Done), (status = 404, body = crate::error::ErrorBody)))]
pub async fn reset_check_setting(
    Extension(caller): Extension<Caller>,
    Path((section, key)): Path<(String, String)>,
) -> ApiResult<Json<Done>> {
    caller.ops.reset_check_setting(&section, &key).await?;
    Ok(Done::new(format!(
        "{section}.{key} reset to the file's value"
    )))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/content",
            get(content).post(add_content).delete(remove_content),
        )
        .route("/api/v1/settings/checks", get(check_settings))
        .route(
            "/api/v1/settings/checks/{section}/{key}",
            put(set_check_setting).delete(reset_check_setting),
        )
}
