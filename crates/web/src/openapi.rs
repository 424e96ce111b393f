//! The OpenAPI 3.1 document of the REST API (generated from the handlers' annotations) at
//! `/api/v1/openapi.json`, and a reference page made from that same document by our own
//! template, so that the page can never disagree with the API and needs no script.

use crate::AppState;
use crate::api;
use crate::view::{Layout, html};
use askama::Template;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Portcullis API",
        description = "The operations of a Portcullis gateway. Authenticate with \
                       `Authorization: Bearer <token>` (tokens are made on the console's \
                       API tokens page or with POST /api/v1/tokens)."
    ),
    paths(
        api::messages::search,
        api::messages::export,
        api::messages::retention_run,
        api::messages::show,
        api::messages::dashboard,
        api::messages::services,
        api::quarantine::list,
        api::quarantine::show,
        api::quarantine::raw,
        api::quarantine::release,
        api::quarantine::release_and_allow,
        api::quarantine::report_spam,
        api::quarantine::digest_frequency,
        api::quarantine::set_digest_frequency,
        api::quarantine::delete,
        api::queue::list,
        api::queue::show,
        api::queue::act,
        api::queue::delete,
        api::queue::flush,
        api::policy::domains,
        api::policy::add_domain,
        api::policy::remove_domain,
        api::policy::test_domain,
        api::policy::networks,
        api::policy::add_network,
        api::policy::remove_network,
        api::policy::users,
        api::policy::add_user,
        api::policy::remove_user,
        api::policy::rules,
        api::policy::add_rules,
        api::policy::dry_run,
        api::policy::remove_rule,
        api::policy::lists,
        api::policy::add_entry,
        api::policy::remove_entry,
        api::checks::content,
        api::checks::add_content,
        api::checks::remove_content,
        api::checks::check_settings,
        api::checks::set_check_setting,
        api::checks::reset_check_setting,
        api::policy::export,
        api::policy::import,
        api::dkim::list,
        api::dkim::act,
        api::dkim::retire,
        api::dkim::delete,
        api::dkim::check,
        api::reports::list,
        api::reports::trend,
        api::reports::show,
        api::accounts::list,
        api::accounts::add,
        api::accounts::remove,
        api::accounts::set_password,
        api::accounts::tokens,
        api::accounts::create_token,
        api::accounts::revoke_token,
        api::accounts::audit,
    ),
    tags(
        (name = "messages", description = "The message log and the dashboard"),
        (name = "quarantine", description = "Held mail"),
        (name = "queue", description = "Mail waiting for delivery"),
        (name = "policy", description = "Domains, networks, users, rules, lists, content lists"),
        (name = "dkim", description = "Outbound DKIM keys and their DNS records"),
        (name = "reports", description = "DMARC aggregate and TLS-RPT reports received"),
        (name = "accounts", description = "Console accounts and API tokens"),
    )
)]
pub struct ApiDoc;

pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}

async fn openapi_json() -> Response {
    axum::Json(document()).into_response()
}

/// One operation as the reference page lists it.
pub struct Operation {
    pub method: String,
    pub path: String,
    pub summary: String,
    pub tag: String,
    pub params: Vec<(String, String, String)>,
    pub anchor: String,
}

/// The operations of the document, in path order.
pub fn operations(doc: &serde_json::Value) -> Vec<Operation> {
    let mut out = Vec::new();
    let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) else {
        return out;
    };
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let text = |k: &str| op.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let summary = match text("summary") {
                s if s.is_empty() => text("description"),
                s => s,
            };
            let params = op
                .get("parameters")
                .and_then(|p| p.as_array())
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let f = |k: &str| {
                                p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string()
                            };
                            (f("name"), f("in"), f("description"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let tag = op
                .get("tags")
                .and_then(|t| t.get(0))
                .and_then(|t| t.as_str())
                .unwrap_or("")
                .to_string();
            let anchor = format!("{method}-{path}")
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            out.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                summary,
                tag,
                params,
                anchor,
            });
        }
    }
    out
}

#[derive(Template)]
#[template(path = "api.html")]
struct ReferencePage {
    l: Layout,
    operations: Vec<Operation>,
}

async fn reference() -> Response {
    let page = ReferencePage {
        l: Layout::anonymous("API reference"),
        operations: operations(&document()),
    };
    html(page.render())
}

pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api", get(reference))
}
