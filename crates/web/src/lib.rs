//! The HTTPS console and REST API of a gateway: server-rendered pages (askama) and a JSON
//! API under `/api/v1` with its OpenAPI document, both over the operations layer
//! ([`portcullis_ops::Ops`]) acting as the account or token that authenticated. This
//! crate holds HTTP only: who is calling (sessions, CSRF, bearer tokens), the mapping of
//! requests to operations and of errors to statuses, and the pages. It never touches the
//! SMTP path, and it decides nothing an operation does not decide itself.

mod api;
mod auth;
mod digest;
mod error;
mod monitor;
mod openapi;
mod pages;
mod preview;
mod security;
mod server;
mod view;

pub use server::{Listeners, Server, serve};

/// The REST API's answers as a client reads them (the command line with `--url`), so
/// that client and server share one definition.
pub mod answers {
    pub use crate::api::dkim::{KeyChange, KeyDeleted, KeyInfo, KeyRetired};
    pub use crate::api::reports::ReportView;
}

use axum::Router;
use portcullis_ops::Ops;
use std::time::Duration;

/// Largest request body, except where a route says otherwise.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Largest body of an import (a policy document).
pub const IMPORT_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// How long one request may take before it is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What every handler shares: the gateway's operations (acting as the gateway itself;
/// each request makes its own handle acting as its caller). Nothing else: sessions and
/// logins waiting for their second factor are in the store, so any node serves them.
#[derive(Clone)]
pub struct AppState {
    ops: Ops,
}

impl AppState {
    pub fn new(ops: Ops) -> AppState {
        AppState { ops }
    }
}

/// The whole application: console pages, API, assets, digest links, with authentication,
/// CSRF checks, security headers, limits and request logging.
pub fn router(ops: Ops) -> Router {
    let state = AppState::new(ops);
    let authenticated = Router::new()
        .merge(api::routes())
        .merge(pages::routes())
        .merge(monitor::metrics_routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let router = Router::new()
        .merge(authenticated)
        .merge(auth::routes())
        .merge(digest::routes())
        .merge(openapi::public_routes())
        .merge(view::asset_routes())
        .merge(monitor::health_routes())
        .with_state(state);
    security::apply(router)
}
