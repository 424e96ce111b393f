//! `/api/v1/dkim`: the outbound DKIM keys (never their private halves), making, rotating,
//! activating, retiring and deleting them, and checking a key's record in DNS.

use super::{ListPage, Paging};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use portcullis_ops::dkim::{Changed, KeyView};
use portcullis_ops::dkim_check::DnsCheck;
use serde::{Deserialize, Serialize};

/// A key as shown: its record, not its private key.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub domain: String,
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: String,
    /// `active`, `pending` (staged), `retiring` or `retired`.
    pub state: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    /// `<selector>._domainkey.<domain>.`
    pub record_name: String,
    /// The TXT value to publish (absent when the stored public key is unreadable).
    pub txt: Option<String>,
    /// The zone-file line.
    pub zone_line: String,
    pub advice: String,
}

impl From<KeyView> for KeyInfo {
    fn from(v: KeyView) -> KeyInfo {
        KeyInfo {
            domain: v.key.domain,
            selector: v.key.selector,
            algorithm: v.key.algorithm,
            state: v.key.state,
            created_at: v.key.created_at,
            retired_at: v.key.retired_at,
            record_name: v.record_name,
            txt: v.txt,
            zone_line: v.zone_line,
            advice: v.advice,
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyFilter {
    /// Only this domain's keys.
    pub domain: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// The keys, by domain and selector.
#[utoipa::path(get, path = "/api/v1/dkim", tag = "dkim", params(KeyFilter),
    responses((status = 200, body = Object)))]
pub async fn list(
    Extension(caller): Extension<Caller>,
    Query(f): Query<KeyFilter>,
) -> ApiResult<Json<ListPage<KeyInfo>>> {
    let domain = f.domain.as_deref().filter(|d| !d.trim().is_empty());
    let keys = caller.ops.dkim_list(domain).await?;
    let paging = Paging {
        limit: f.limit,
        offset: f.offset,
    };
    Ok(Json(
        paging.cut(keys.into_iter().map(KeyInfo::from).collect()),
    ))
}

/// The body of generate (every field optional) and rotate (`stage` only).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Default `<algorithm>-<YYYYMM>`.
    pub selector: Option<String>,
    /// `rsa` (default) or `ed25519`.
    pub algorithm: Option<String>,
    /// Make the key pending: it signs once activated.
    #[serde(default)]
    pub stage: bool,
}

/// What a change did: the keys that changed and the records to publish or keep.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyChange {
    pub domain: String,
    /// Selectors made (generate, rotate) or that sign from now on (activate).
    pub selectors: Vec<String>,
    /// Zone-file lines to publish.
    pub new_records: Vec<String>,
    /// Zone-file lines of keys that stopped signing: keep them published a while.
    pub retiring_records: Vec<String>,
    /// generate only: the new key's algorithm, `rsa-sha256` or `ed25519-sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// generate only: the new key's state, `active` or `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// What retiring a key did.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyRetired {
    pub ok: bool,
    pub detail: String,
    /// The record name of the retired key, `<selector>._domainkey.<domain>.`: it may be
    /// removed from DNS.
    pub record: String,
    /// Whether the domain still has an active key (false: its mail goes unsigned).
    pub still_signed: bool,
}

/// What deleting a key did.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyDeleted {
    pub ok: bool,
    pub detail: String,
    /// The record name of the deleted key: remove it from DNS if it is still published.
    pub record: String,
}

impl From<Changed> for KeyChange {
    fn from(c: Changed) -> KeyChange {
        KeyChange {
            domain: c.domain,
            selectors: c.activated,
            new_records: c.new_records,
            retiring_records: c.retiring_records,
            algorithm: None,
            state: None,
        }
    }
}

fn spec(body: &Bytes) -> ApiResult<KeySpec> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(KeySpec::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid("body", e.to_string()))
}

/// `generate` (body: selector, algorithm, stage), `rotate` (body: stage) or `activate`.
pub async fn change(
    caller: &Caller,
    domain: &str,
    action: &str,
    s: KeySpec,
) -> ApiResult<KeyChange> {
    let ops = &caller.ops;
    Ok(match action {
        "generate" => {
            let algorithm = s.algorithm.as_deref().unwrap_or("rsa");
            let g = ops
                .dkim_generate(domain, s.selector.as_deref(), algorithm, s.stage)
                .await?;
            KeyChange {
                domain: g.domain,
                selectors: vec![g.selector],
                new_records: vec![g.record],
                retiring_records: Vec::new(),
                algorithm: Some(g.algorithm),
                state: Some(g.state),
            }
        }
        "rotate" => ops.dkim_rotate(domain, s.stage).await?.into(),
        "activate" => ops.dkim_activate(domain).await?.into(),
        other => {
            return Err(ApiError::invalid(
                "action",
                format!("action {other:?}: expected generate, rotate or activate"),
            ));
        }
    })
}

/// Make a key (`generate`), replace the active keys (`rotate`), or sign with the pending
/// ones (`activate`).
#[utoipa::path(post, path = "/api/v1/dkim/{domain}/{action}", tag = "dkim",
    params(("domain" = String, Path),
           ("action" = String, Path, description = "generate, rotate or activate")),
    request_body(content = Option<KeySpec>, content_type = "application/json"),
    responses((status = 200, body = KeyChange), (status = 403, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)))]
pub async fn act(
    Extension(caller): Extension<Caller>,
    Path((domain, action)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<KeyChange>> {
    let s = spec(&body)?;
    Ok(Json(change(&caller, &domain, &action, s).await?))
}

/// Mark a key retired: it stops signing and its record may be removed.
#[utoipa::path(post, path = "/api/v1/dkim/{domain}/{selector}/retire", tag = "dkim",
    params(("domain" = String, Path), ("selector" = String, Path)),
    responses((status = 200, body = KeyRetired), (status = 404, body = crate::error::ErrorBody)))]
pub async fn retire(
    Extension(caller): Extension<Caller>,
    Path((domain, selector)): Path<(String, String)>,
) -> ApiResult<Json<KeyRetired>> {
    let (record, still_signed) = caller.ops.dkim_retire(&domain, &selector).await?;
    let mut detail = format!("retired; the record {record} may be removed from DNS");
    if !still_signed {
        detail.push_str(&format!(
            "; {domain} has no active key now: its mail goes unsigned"
        ));
    }
    Ok(Json(KeyRetired {
        ok: true,
        detail,
        record,
        still_signed,
    }))
}

/// Delete a key that does not sign.
#[utoipa::path(delete, path = "/api/v1/dkim/{domain}/{selector}", tag = "dkim",
    params(("domain" = String, Path), ("selector" = String, Path)),
    responses((status = 200, body = KeyDeleted), (status = 409, body = crate::error::ErrorBody)))]
pub async fn delete(
    Extension(caller): Extension<Caller>,
    Path((domain, selector)): Path<(String, String)>,
) -> ApiResult<Json<KeyDeleted>> {
    let record = caller.ops.dkim_delete(&domain, &selector).await?;
    Ok(Json(KeyDeleted {
        ok: true,
        detail: format!("deleted; remove the record {record} from DNS if it is still published"),
        record,
    }))
}

/// Look up the key's TXT record through the gateway's resolver: `matches`, `differs`
/// (with what is published), `not_found` or `error`.
#[utoipa::path(get, path = "/api/v1/dkim/{domain}/{selector}/check", tag = "dkim",
    params(("domain" = String, Path), ("selector" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn check(
    Extension(caller): Extension<Caller>,
    Path((domain, selector)): Path<(String, String)>,
) -> ApiResult<Json<DnsCheck>> {
    Ok(Json(caller.ops.dkim_check_dns(&domain, &selector).await?))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/dkim", get(list))
        // One pattern for both: the second segment is an action for POST, a selector
        // for DELETE.
        .route("/api/v1/dkim/{domain}/{name}", post(act).delete(delete))
        .route("/api/v1/dkim/{domain}/{name}/retire", post(retire))
        .route("/api/v1/dkim/{domain}/{name}/check", get(check))
}
