//! The console's pages, rendered on the server (askama), with plain forms that work
//! without script. The one script is htmx, vendored and served from our own origin
//! (`/assets/htmx.min.js`), so the Content-Security-Policy still forbids every other
//! script, `eval` and inline style; it loads the dashboard's service checks after the
//! page. Each form carries the session's CSRF token.

mod access;
mod account;
mod checks;
mod dashboard;
mod dkim;
mod domains;
mod lists;
mod messages;
mod quarantine;
mod queue;
mod reports;
mod rules;

use crate::AppState;
use axum::Router;
use axum::routing::{get, post};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/services", get(dashboard::services))
        .route("/messages", get(messages::search))
        .route("/messages/{id}", get(messages::show))
        .route("/quarantine", get(quarantine::list).post(quarantine::bulk))
        .route(
            "/quarantine/{id}",
            get(quarantine::show).post(quarantine::act),
        )
        .route("/quarantine/{id}/preview", get(quarantine::frame))
        .route("/quarantine/{id}/raw", get(quarantine::raw))
        .route("/queue", get(queue::list).post(queue::act))
        .route("/dkim", get(dkim::page).post(dkim::act))
        .route("/reports", get(reports::list))
        .route("/reports/{id}", get(reports::show))
        .route("/rules", get(rules::page).post(rules::save))
        .route("/rules/delete", post(rules::delete))
        .route("/rules/dry-run", post(rules::dry_run))
        .route(
            "/policy",
            get(|| async { axum::response::Redirect::to("/policy/domains") }),
        )
        .route("/policy/domains", get(domains::page).post(domains::add))
        .route("/policy/domains/remove", post(domains::remove))
        .route("/policy/domains/test", post(domains::test))
        .route(
            "/policy/networks",
            get(access::networks).post(access::add_network),
        )
        .route("/policy/networks/remove", post(access::remove_network))
        .route("/policy/users", get(access::users).post(access::add_user))
        .route("/policy/users/remove", post(access::remove_user))
        .route("/policy/lists", get(lists::lists).post(lists::add_entry))
        .route("/policy/lists/remove", post(lists::remove_entry))
        .route(
            "/policy/content",
            get(lists::content).post(lists::add_content),
        )
        .route("/policy/content/remove", post(lists::remove_content))
        .route("/policy/checks", get(checks::page).post(checks::change))
        .route("/audit", get(account::audit))
        .route("/tokens", get(account::tokens).post(account::create_token))
        .route("/tokens/revoke", post(account::revoke_token))
        .route("/account", get(account::page))
        .route("/account/password", post(account::password))
        .route("/account/digest", post(account::digest))
        .route("/account/totp", post(account::totp_enrol))
        .route("/account/totp/confirm", post(account::totp_confirm))
        .route(
            "/account/logout-everywhere",
            post(account::logout_everywhere),
        )
        .route("/logout", post(account::logout))
}

/// The value of a form field given once.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Back to `path` after a change, with what happened in words (shown as a notice).
pub fn done_redirect(path: &str, said: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let target = format!(
        "{path}?{}",
        serde_urlencoded::to_string([("done", said)]).unwrap_or_default()
    );
    axum::response::Redirect::to(&target).into_response()
}
