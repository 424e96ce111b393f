//! `/api/v1/accounts` and `/api/v1/tokens`: console accounts and API tokens. A token's
//! secret is in the answer that creates it, and nowhere else ever again.

use super::{Done, ListPage, Paging};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use axum::extract::{Path, Query};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use portcullis_ops::Role;
use portcullis_ops::accounts::{Account, TokenInfo, TokenSpec};
use serde::{Deserialize, Serialize};

#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts", params(Paging),
    responses((status = 200, body = Object)))]
pub async fn list(
    Extension(caller): Extension<Caller>,
    Query(p): Query<Paging>,
) -> ApiResult<Json<ListPage<Account>>> {
    Ok(Json(p.cut(caller.ops.account_list().await?)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewAccount {
    pub name: String,
    /// admin, domain-admin, helpdesk, auditor or user.
    pub role: String,
    #[serde(default)]
    pub domains: Vec<String>,
    pub password: String,
}

#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = NewAccount,
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)))]
pub async fn add(
    Extension(caller): Extension<Caller>,
    Json(a): Json<NewAccount>,
) -> ApiResult<Json<Account>> {
    let role = Role::parse(&a.role)?;
    Ok(Json(
        caller
            .ops
            .account_add(&a.name, role, &a.domains, &a.password)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{name}", tag = "accounts",
    params(("name" = String, Path)), responses((status = 200, body = Done)))]
pub async fn remove(
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Done>> {
    caller.ops.account_remove(&name).await?;
    Ok(Done::new(format!("{name} removed")))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewPassword {
    /// The current password; needed for one's own account unless an administrator.
    pub old: Option<String>,
    pub new: String,
}

#[utoipa::path(post, path = "/api/v1/accounts/{name}/password", tag = "accounts",
    params(("name" = String, Path)), request_body = NewPassword,
    responses((status = 200, body = Done)))]
pub async fn set_password(
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(p): Json<NewPassword>,
) -> ApiResult<Json<Done>> {
    caller
        .ops
        .account_set_password(&name, p.old.as_deref(), &p.new)
        .await?;
    Ok(Done::new("password changed"))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "accounts", params(Paging),
    responses((status = 200, body = Object)))]
pub async fn tokens(
    Extension(caller): Extension<Caller>,
    Query(p): Query<Paging>,
) -> ApiResult<Json<ListPage<TokenInfo>>> {
    Ok(Json(p.cut(caller.ops.token_list().await?)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    /// The account the token acts as (default: the creator's own); another's needs the
    /// right to manage that account, as `portcullis token create --account` does.
    pub account: Option<String>,
    pub name: String,
    /// At most the creator's role (default: the creator's).
    pub role: Option<String>,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub read_only: bool,
    /// Unix seconds; none: never expires.
    pub expires: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct CreatedToken {
    pub token: TokenInfo,
    /// Shown once: keep it now.
    pub secret: String,
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "accounts", request_body = NewToken,
    responses((status = 200, body = Object)))]
pub async fn create_token(
    Extension(caller): Extension<Caller>,
    Json(t): Json<NewToken>,
) -> ApiResult<Json<CreatedToken>> {
    let role = match t.role.as_deref() {
        Some(r) => Role::parse(r)?,
        None => caller.ops.actor().role,
    };
    let spec = TokenSpec {
        name: t.name,
        role,
        domains: t.domains,
        read_only: t.read_only,
        expires: t.expires,
    };
    let (token, secret) = match t.account.as_deref().map(str::trim) {
        Some(account) if !account.is_empty() => caller.ops.token_create_for(account, &spec).await?,
        _ => caller.ops.token_create(&spec).await?,
    };
    Ok(Json(CreatedToken { token, secret }))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "accounts",
    params(("id" = i64, Path)), responses((status = 200, body = Done)))]
pub async fn revoke_token(
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> ApiResult<Json<Done>> {
    caller.ops.token_revoke(id).await?;
    Ok(Done::new(format!("token {id} revoked")))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/accounts", get(list).post(add))
        .route("/api/v1/accounts/{name}", delete(remove))
        .route("/api/v1/accounts/{name}/password", post(set_password))
        .route("/api/v1/tokens", get(tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
}

/// Filters of the audit log.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Exactly this actor (`alice@example.com`, `token:backup`, `cli:root`).
    pub actor: Option<String>,
    /// Actions starting with this (`domain.` or `quarantine.release`).
    pub action: Option<String>,
    /// Unix seconds, or a span back from now: `30m`, `2h`, `7d`.
    pub since: Option<String>,
    /// Unix seconds, or a span back from now.
    pub until: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl AuditFilter {
    pub fn paging(&self) -> Paging {
        Paging {
            limit: self.limit,
            offset: self.offset,
        }
    }

    pub fn query(&self) -> Result<portcullis_store::AuditQuery, crate::error::ApiError> {
        let t = portcullis_queue::spool::now();
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let time = |name: &str, v: &Option<String>| match text(v) {
            None => Ok(None),
            Some(v) => portcullis_ops::log::parse_since(&v, t)
                .map(Some)
                .map_err(|e| crate::error::ApiError::invalid(name, e.to_string())),
        };
        let paging = self.paging();
        Ok(portcullis_store::AuditQuery {
            actor: text(&self.actor),
            action: text(&self.action),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            limit: paging.limit().max(1),
            offset: paging.offset(),
        })
    }
}

/// Who changed what, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "accounts", params(AuditFilter),
    responses((status = 200, body = Object), (status = 403, body = crate::error::ErrorBody)))]
pub async fn audit(
    Extension(caller): Extension<Caller>,
    Query(f): Query<AuditFilter>,
) -> ApiResult<Json<ListPage<portcullis_store::AuditEntry>>> {
    let entries = caller.ops.audit_list(&f.query()?).await?;
    Ok(Json(f.paging().page(entries)))
}

pub fn audit_routes() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(audit))
}
