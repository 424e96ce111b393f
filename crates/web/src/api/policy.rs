//! `/api/v1/domains`, `networks`, `users`, `rules`, `lists`: the policy that the command
//! line edits, read and changed as JSON (rules as the TOML the command line takes).

use super::{Done, ListPage, Paging};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use axum::extract::{Path, Query};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use portcullis_ops::policy::RoutesSpec;
use portcullis_store::ListEntry;
use serde::{Deserialize, Serialize};

/// A domain and its routes (never a route's AUTH password).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DomainView {
    pub name: String,
    pub routes: Vec<RouteView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteView {
    pub host: String,
    pub port: u16,
    pub priority: u32,
    pub tls: String,
    pub auth_user: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/domains", tag = "policy", params(Paging),
    responses((status = 200, body = Object)))]
pub async fn domains(
    Extension(caller): Extension<Caller>,
    Query(p): Query<Paging>,
) -> ApiResult<Json<ListPage<DomainView>>> {
    let list = caller
        .ops
        .list_domains()
        .await?
        .into_iter()
        .map(|d| DomainView {
            name: d.name,
            routes: d
                .routes
                .into_iter()
                .map(|r| RouteView {
                    host: r.host,
                    port: r.port,
                    priority: r.priority,
                    tls: r.tls,
                    auth_user: r.auth_user,
                })
                .collect(),
        })
        .collect();
    Ok(Json(p.cut(list)))
}

/// A domain to accept mail for and its routes (`host:port`, in order).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewDomain {
    pub name: String,
    pub routes: Vec<String>,
    /// none, may, encrypt, verify or dane (default may).
    #[serde(default)]
    pub tls: Option<String>,
    pub auth_user: Option<String>,
    pub auth_password: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/domains", tag = "policy", request_body = NewDomain,
    responses((status = 200, body = Done), (status = 400, body = crate::error::ErrorBody)))]
pub async fn add_domain(
    Extension(caller): Extension<Caller>,
    Json(d): Json<NewDomain>,
) -> ApiResult<Json<Done>> {
    let spec = RoutesSpec {
        routes: d.routes,
        tls: d.tls.unwrap_or_else(|| "may".into()),
        auth_user: d.auth_user,
        auth_password: d.auth_password,
    };
    Ok(Done::new(caller.ops.add_domain(&d.name, &spec).await?))
}

#[utoipa::path(delete, path = "/api/v1/domains/{name}", tag = "policy",
    params(("name" = String, Path)), responses((status = 200, body = Done)))]
pub async fn remove_domain(
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Done>> {
    caller.ops.remove_domain(&name).await?;
    Ok(Done::new(format!("{name} removed")))
}

/// One route's test: the dialogue, the TLS session, the time, the error if it failed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteTestView {
    pub host: String,
    pub port: u16,
    pub priority: u32,
    pub tls_mode: String,
    /// The address connected to.
    pub address: Option<String>,
    /// `{"side": "client"|"server"|"note", "text": "..."}` in order.
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<portcullis_queue::probe::Line>,
    #[schema(value_type = Option<Object>)]
    pub tls: Option<portcullis_queue::probe::TlsFacts>,
    pub elapsed_ms: u64,
    /// Why the test stopped early; null: the dialogue went as far as QUIT.
    pub error: Option<String>,
}

impl From<portcullis_ops::route_test::RouteTest> for RouteTestView {
    fn from(t: portcullis_ops::route_test::RouteTest) -> RouteTestView {
        RouteTestView {
            host: t.report.host,
            port: t.report.port,
            priority: t.priority,
            tls_mode: t.tls_mode,
            address: t.report.address.map(|a| a.to_string()),
            lines: t.report.lines,
            tls: t.report.tls,
            elapsed_ms: t.report.elapsed_ms,
            error: t.report.error,
        }
    }
}

/// Connect to each route of a domain (EHLO, STARTTLS as the route's TLS mode asks, QUIT;
/// no mail is sent) and answer the whole dialogue per route. A failed route is a 200 with
/// its `error` set.
#[utoipa::path(post, path = "/api/v1/domains/{name}/test", tag = "policy",
    params(("name" = String, Path)),
    responses((status = 200, body = Vec<RouteTestView>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn test_domain(
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<RouteTestView>>> {
    let tests = caller.ops.test_route(&name).await?;
    Ok(Json(tests.into_iter().map(RouteTestView::from).collect()))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Network {
    /// `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`.
    pub cidr: String,
    #[serde(default)]
    pub comment: String,
}

#[utoipa::path(get, path = "/api/v1/networks", tag = "policy", params(Paging),
    responses((status = 200, body = Object)))]
pub async fn networks(
    Extension(caller): Extension<Caller>,
    Query(p): Query<Paging>,
) -> ApiResult<Json<ListPage<Network>>> {
    let list = caller
        .ops
        .list_networks()
        .await?
        .into_iter()
        .map(|(net, comment)| Network {
            cidr: net.to_string(),
            comment,
        })
        .collect();
    Ok(Json(p.cut(list)))
}

#[utoipa::path(post, path = "/api/v1/networks", tag = "policy", request_body = Network,
    responses((status = 200, body = Done)))]
pub async fn add_network(
    Extension(caller): Extension<Caller>,
    Json(n): Json<Network>,
) -> ApiResult<Json<Done>> {
    let net = caller.ops.add_network(&n.cidr, &n.comment).await?;
    Ok(Done::new(format!("{net} added")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Cidr {
    pub cidr: String,
}

/// Remove an internal network (`?cidr=10.0.0.0/8`).
#[utoipa::path(delete, path = "/api/v1/networks", tag = "policy", params(Cidr),
    responses((status = 200, body = Done)))]
pub async fn remove_network(
    Extension(caller): Extension<Caller>,
    Query(c): Query<Cidr>,
) -> ApiResult<Json<Done>> {
    caller.ops.remove_network(&c.cidr).await?;
    Ok(Done::new(format!("{} removed", c.cidr)))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "policy", params(Paging),
    responses((status = 200, body = Object)))]
pub async fn users(
    Extension(caller): Extension<Caller>,
    Query(p): Query<Paging>,
) -> ApiResult<Json<ListPage<String>>> {
    Ok(Json(p.cut(caller.ops.list_users().await?)))
}

/// A mail user who may submit (SMTP AUTH).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    pub email: String,
    pub password: String,
}

#[utoipa::path(post, path = "/api/v1/users", tag = "policy", request_body = NewUser,
    responses((status = 200, body = Done)))]
pub async fn add_user(
    Extension(caller): Extension<Caller>,
    Json(u): Json<NewUser>,
) -> ApiResult<Json<Done>> {
    Ok(Done::new(caller.ops.add_user(&u.email, &u.password).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{email}", tag = "policy",
    params(("email" = String, Path)), responses((status = 200, body = Done)))]
pub async fn remove_user(
    Extension(caller): Extension<Caller>,
    Path(email): Path<String>,
) -> ApiResult<Json<Done>> {
    caller.ops.remove_user(&email).await?;
    Ok(Done::new(format!("{email} removed")))
}

/// The rules, in order, as stored.
#[utoipa::path(get, path = "/api/v1/rules", tag = "policy",
    responses((status = 200, body = Object)))]
pub async fn rules(
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    Ok(Json(caller.ops.list_rules_raw().await?))
}

/// Add or replace rules given as TOML (`[[rule]]` tables, as `portcullis rule add` takes).
#[utoipa::path(post, path = "/api/v1/rules", tag = "policy",
    request_body(content = String, content_type = "text/plain"),
    responses((status = 200, body = Done), (status = 400, body = crate::error::ErrorBody)))]
pub async fn add_rules(
    Extension(caller): Extension<Caller>,
    body: String,
) -> ApiResult<Json<Done>> {
    let names = caller.ops.add_rules(&body, "request body").await?;
    Ok(Done::new(format!("saved {}", names.join(", "))))
}

/// The held message to try rules on.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DryRunOn {
    /// A quarantined copy's id (`<message>.<n>`).
    pub item: String,
}

/// Try rules given as TOML against a held message: what the stored rules decide, and
/// what they would with these added (or replaced by name). Nothing is saved.
#[utoipa::path(post, path = "/api/v1/rules/dry-run", tag = "policy", params(DryRunOn),
    request_body(content = String, content_type = "text/plain"),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn dry_run(
    Extension(caller): Extension<Caller>,
    Query(on): Query<DryRunOn>,
    body: String,
) -> ApiResult<Json<portcullis_ops::filter::DryRun>> {
    Ok(Json(
        caller
            .ops
            .rule_dry_run(&body, "request body", &on.item)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/rules/{name}", tag = "policy",
    params(("name" = String, Path)), responses((status = 200, body = Done)))]
pub async fn remove_rule(
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Done>> {
    caller.ops.remove_rule(&name).await?;
    Ok(Done::new(format!("{name} removed")))
}

/// Which list entries to show.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListFilter {
    /// allow, block or valid.
    pub kind: Option<String>,
    /// ip, sender or recipient.
    pub field: Option<String>,
    /// Part of the value, scope or comment (any case).
    pub q: Option<String>,
}

impl ListFilter {
    pub fn keeps(&self, e: &ListEntry) -> bool {
        let same = |want: &Option<String>, have: &str| {
            want.as_deref()
                .is_none_or(|w| w.is_empty() || w.eq_ignore_ascii_case(have))
        };
        let q = self.q.as_deref().unwrap_or("").trim().to_lowercase();
        same(&self.kind, &e.kind)
            && same(&self.field, &e.field)
            && (q.is_empty()
                || [&e.value, &e.scope, &e.comment]
                    .iter()
                    .any(|t| t.to_lowercase().contains(&q)))
    }
}

#[utoipa::path(get, path = "/api/v1/lists", tag = "policy", params(Paging, ListFilter),
    responses((status = 200, body = Object)))]
pub async fn lists(
    Extension(caller): Extension<Caller>,
    Query(p): Query<Paging>,
    Query(f): Query<ListFilter>,
) -> ApiResult<Json<ListPage<ListEntry>>> {
    let entries = caller.ops.list_entries().await?;
    Ok(Json(
        p.cut(entries.into_iter().filter(|e| f.keeps(e)).collect()),
    ))
}

/// An allow, block or valid-recipient list entry.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Entry {
    /// allow, block or valid.
    pub kind: String,
    /// ip, sender or recipient.
    pub field: String,
    pub value: String,
    /// Empty: global; else a domain or an address.
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub comment: String,
}

impl From<Entry> for ListEntry {
    fn from(e: Entry) -> ListEntry {
        ListEntry {
            kind: e.kind,
            field: e.field,
            value: e.value,
            scope: e.scope,
            comment: e.comment,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/lists", tag = "policy", request_body = Entry,
    responses((status = 200, body = Done)))]
pub async fn add_entry(
    Extension(caller): Extension<Caller>,
    Json(e): Json<Entry>,
) -> ApiResult<Json<Done>> {
    caller.ops.add_list_entry(&e.into()).await?;
    Ok(Done::new("added"))
}

/// Remove the entry given in the body.
#[utoipa::path(delete, path = "/api/v1/lists", tag = "policy", request_body = Entry,
    responses((status = 200, body = Done)))]
pub async fn remove_entry(
    Extension(caller): Extension<Caller>,
    Json(e): Json<Entry>,
) -> ApiResult<Json<Done>> {
    caller.ops.remove_list_entry(&e.into()).await?;
    Ok(Done::new("removed"))
}

/// The whole policy as one TOML document (`portcullis config export`).
#[utoipa::path(get, path = "/api/v1/policy", tag = "policy",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn export(Extension(caller): Extension<Caller>) -> ApiResult<String> {
    Ok(caller.ops.policy_export().await?)
}

/// How much an import brought in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportedView {
    pub domains: usize,
    pub networks: usize,
    pub rules: usize,
    pub list_entries: usize,
    pub content_patterns: usize,
}

/// Import a policy document (TOML, up to 16 MiB), as `portcullis config import` does.
#[utoipa::path(put, path = "/api/v1/policy", tag = "policy",
    request_body(content = String, content_type = "text/plain"),
    responses((status = 200, body = ImportedView), (status = 400, body = crate::error::ErrorBody)))]
pub async fn import(
    Extension(caller): Extension<Caller>,
    body: String,
) -> ApiResult<Json<ImportedView>> {
    let i = caller.ops.policy_import(&body, "request body").await?;
    Ok(Json(ImportedView {
        domains: i.domains,
        networks: i.networks,
        rules: i.rules,
        list_entries: i.list_entries,
        content_patterns: i.content_patterns,
    }))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/policy",
            get(export)
                .put(import)
                .layer(axum::extract::DefaultBodyLimit::max(
                    crate::IMPORT_BODY_LIMIT,
                )),
        )
        .route("/api/v1/domains", get(domains).post(add_domain))
        .route("/api/v1/domains/{name}", delete(remove_domain))
        .route("/api/v1/domains/{name}/test", post(test_domain))
        .route(
            "/api/v1/networks",
            get(networks).post(add_network).delete(remove_network),
        )
        .route("/api/v1/users", get(users).post(add_user))
        .route("/api/v1/users/{email}", delete(remove_user))
        .route("/api/v1/rules", get(rules).post(add_rules))
        .route("/api/v1/rules/{name}", delete(remove_rule))
        .route("/api/v1/rules/dry-run", axum::routing::post(dry_run))
        .route(
            "/api/v1/lists",
            get(lists).post(add_entry).delete(remove_entry),
        )
}
