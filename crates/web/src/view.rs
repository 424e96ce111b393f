//! What every page shares: the layout (title, who is logged in, the CSRF token for the
//! forms), rendering a template into an answer, error pages, times and sizes as people
//! read them, and the static assets (one stylesheet, no script).

use crate::AppState;
use askama::Template;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use portcullis_ops::OpsError;

/// The frame of every page.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    /// Empty on the login page.
    pub user: String,
    pub role: String,
    pub csrf: String,
}

impl Layout {
    pub fn anonymous(title: &str) -> Layout {
        Layout {
            title: title.to_string(),
            user: String::new(),
            role: String::new(),
            csrf: String::new(),
        }
    }
}

/// A rendered template as an HTML answer (a template that fails to render is a 500).
pub fn html(rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page not rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "page not rendered").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    l: Layout,
    text: String,
}

/// A page with a title and one sentence (errors, confirmations).
pub fn message_page(title: &str, text: &str) -> askama::Result<String> {
    MessagePage {
        l: Layout::anonymous(title),
        text: text.to_string(),
    }
    .render()
}

/// An error of a page handler: the operation's error as a page with its status.
pub struct PageError(pub OpsError);

impl From<OpsError> for PageError {
    fn from(e: OpsError) -> PageError {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "operation failed");
        }
        let title = status.canonical_reason().unwrap_or("Error");
        (status, html(message_page(title, &self.0.to_string()))).into_response()
    }
}

pub type PageResult = Result<Response, PageError>;

/// `2026-12-07 12:00:05` (UTC).
pub fn time(unix: i64) -> String {
    portcullis_gateway::dates::iso(unix)
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

pub fn size(bytes: i64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / (1 << 10) as f64),
        b => format!("{b} B"),
    }
}

const STYLE: &str = include_str!("../assets/style.css");

/// htmx, vendored (assets/README.md): the console's pages work without it; with it the
/// dashboard loads the service checks after the page and refreshes them.
const HTMX: &str = include_str!("../assets/htmx.min.js");

/// A compiled-in asset, cached by browsers for an hour.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

pub fn asset_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/assets/htmx.min.js",
            get(|| async { asset("text/javascript; charset=utf-8", HTMX) }),
        )
}
