//! What every answer carries and every request is bounded by: the security headers (a
//! strict Content-Security-Policy, HSTS, no sniffing, no referrer, no caching of pages),
//! the body limit, the request timeout, and one log line per request that names the
//! method, the path, the status, the time taken and the actor, never a cookie, a password
//! or a token.

use crate::auth::ActorName;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tower_http::timeout::TimeoutLayer;

/// The console's policy: nothing from elsewhere, no inline script or style, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
                       form-action 'self'";

pub fn apply(router: Router) -> Router {
    router
        .layer(DefaultBodyLimit::max(crate::BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            crate::REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn(headers))
        .layer(axum::middleware::from_fn(log))
}

async fn headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(
        h,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::CACHE_CONTROL, "no-store");
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    res
}

/// The path as it may be logged: a digest link's path is its token.
fn loggable(path: &str) -> &str {
    if path.starts_with("/q/") {
        "/q/…"
    } else {
        path
    }
}

async fn log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = loggable(req.uri().path()).to_string();
    let res = next.run(req).await;
    let actor = res
        .extensions()
        .get::<ActorName>()
        .map_or("-", |a| a.0.as_str());
    tracing::info!(
        target: "portcullis_web",
        %method,
        path,
        status = res.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        actor,
        "request"
    );
    res
}
