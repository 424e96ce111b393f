//! Monitoring over HTTP: `/health/live` (the process answers) and `/health/ready` (200, or
//! 503 with the reason when the store does not answer or the spool takes no file), open to
//! anyone on every listener; Prometheus `/metrics`, on the HTTPS listener for an
//! administrator's or auditor's session or API token, and on the plain metrics listener
//! (`[listen] metrics`, loopback by default) without authentication.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use anyhow::Context;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use portcullis_ops::{Actor, Ops};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Prometheus' text exposition format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `/health/live` and `/health/ready`: no authentication.
pub fn health_routes() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

/// `/metrics` for an authenticated caller (under the authentication middleware).
pub fn metrics_routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics_for_caller))
}

async fn live() -> Response {
    Json(serde_json::json!({"status": "live"})).into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    let readiness = state.ops.readiness().await;
    let status = if readiness.ready() {
        StatusCode::OK
    } else {
        tracing::warn!(
            reason = readiness.reason.as_deref().unwrap_or(""),
            "not ready"
        );
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

fn metrics_response(ops: &Ops) -> Response {
    match ops.metrics() {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_TYPE)], text).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn metrics_for_caller(Extension(caller): Extension<Caller>) -> Response {
    metrics_response(&caller.ops)
}

/// The plain listener's `/metrics`: whoever reaches the port reads them, as the gateway.
async fn metrics_open(State(state): State<AppState>) -> Response {
    metrics_response(&state.ops.acting_as(Actor::system("metrics")))
}

/// Listen on `addr` (`[listen] metrics`) for `/metrics` and the health checks until `stop`
/// turns true; an address that cannot be bound is an error naming its key.
pub async fn serve_metrics(
    addr: &str,
    ops: Ops,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen.metrics: cannot listen on {addr}"))?;
    let local = listener.local_addr().context("listen.metrics")?;
    tracing::info!(listener = "metrics", address = %local, "listening");
    let app = Router::new()
        .route("/metrics", get(metrics_open))
        .merge(health_routes())
        .with_state(AppState::new(ops))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            crate::REQUEST_TIMEOUT,
        ));
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "metrics listener failed");
        }
    });
    Ok((local, task))
}
