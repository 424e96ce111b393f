//! The listeners: HTTPS with the gateway's certificate (`[listen] https`), and plain HTTP
//! that only redirects to it (`[listen] http`). Each connection gets its TLS handshake
//! under a time limit and the client's address for the audit log; shutdown stops
//! accepting and lets open requests finish for a few seconds. Beside them, the plain
//! metrics listener (`[listen] metrics`, [`crate::monitor`]).

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use portcullis_ops::Ops;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open HTTPS connections at most; one more is closed at once. An administrator's browser
/// opens a handful; this bounds what a flood can hold.
pub const MAX_CONNECTIONS: usize = 512;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The running console; [`Server::shutdown`] stops it.
pub struct Server {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Where HTTPS listens; None when `[listen] https` is "".
    pub https: Option<SocketAddr>,
}

impl Server {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), task).await;
        }
    }
}

/// The addresses to listen on; "" disables one.
pub struct Listeners<'a> {
    /// The console and API (with the gateway's certificate).
    pub https: &'a str,
    /// Redirects to `https`, and the health checks.
    pub http: &'a str,
    /// `/metrics` and the health checks, plain and without authentication.
    pub metrics: &'a str,
}

/// Listen on `https` (with `tls`), `http` (redirect and health checks) and `metrics`; ""
/// disables any. An address that cannot be bound is an error naming its key.
pub async fn serve(listen: Listeners<'_>, tls: TlsAcceptor, ops: Ops) -> anyhow::Result<Server> {
    let Listeners {
        https,
        http,
        metrics,
    } = listen;
    let (stop, stop_rx) = watch::channel(false);
    let mut server = Server {
        stop,
        tasks: Vec::new(),
        https: None,
    };
    if !metrics.is_empty() {
        let (_, task) =
            crate::monitor::serve_metrics(metrics, ops.clone(), stop_rx.clone()).await?;
        server.tasks.push(task);
    }
    if https.is_empty() {
        return Ok(server);
    }
    let listener = TcpListener::bind(https)
        .await
        .with_context(|| format!("listen.https: cannot listen on {https}"))?;
    let local = listener.local_addr().context("listen.https")?;
    server.https = Some(local);
    tracing::info!(listener = "https", address = %local, "listening");
    let tls = with_alpn(tls);
    let app = crate::router(ops.clone());
    server.tasks.push(tokio::spawn(accept_tls(
        listener,
        tls,
        app,
        stop_rx.clone(),
    )));

    if !http.is_empty() {
        let listener = TcpListener::bind(http)
            .await
            .with_context(|| format!("listen.http: cannot listen on {http}"))?;
        tracing::info!(
            listener = "http",
            address = http,
            "listening (redirects to https)"
        );
        let port = local.port();
        let redirect = Router::new()
            .merge(crate::monitor::health_routes())
            .with_state(crate::AppState::new(ops))
            .fallback(move |req: Request| redirect(req, port));
        let mut rx = stop_rx.clone();
        server.tasks.push(tokio::spawn(async move {
            let shutdown = async move { stopped(&mut rx).await };
            if let Err(e) = axum::serve(listener, redirect)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "http redirect listener failed");
            }
        }));
    }
    Ok(server)
}

/// The gateway's certificate, offering HTTP/2 and HTTP/1.1.
fn with_alpn(tls: TlsAcceptor) -> TlsAcceptor {
    let mut config = (**tls.config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

async fn accept_tls(
    listener: TcpListener,
    tls: TlsAcceptor,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "https accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(client = %peer, limit = MAX_CONNECTIONS, "https connection refused: too many open");
            drop(tcp);
            continue;
        };
        let tls = tls.clone();
        let app = app.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let svc = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // An idle keep-alive connection gives its slot back after a while.
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30));
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(svc),
            );
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn).await;
                }
            }
        });
    }
}

/// Waits until shutdown is asked for (or the server is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// 301 to the same path on the HTTPS port of the host the client asked for.
async fn redirect(req: Request, port: u16) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| match h.rsplit_once(':') {
            // An IPv6 literal without a port ends in `]`.
            Some((name, p)) if !p.contains(']') => name,
            _ => h,
        })
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
        })
        .unwrap_or("localhost")
        .to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let target = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, target)]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    async fn location(host: Option<&str>, path: &str, port: u16) -> (StatusCode, String) {
        let mut req = axum::http::Request::get(path);
        if let Some(h) = host {
            req = req.header(header::HOST, h);
        }
        let res = redirect(req.body(Body::empty()).expect("request"), port).await;
        let to = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (res.status(), to)
    }

    #[tokio::test]
    async fn plain_http_only_redirects() {
        assert_eq!(
            location(Some("gw.example:80"), "/messages?sender=a", 8443).await,
            (
                StatusCode::MOVED_PERMANENTLY,
                "https://gw.example:8443/messages?sender=a".into()
            )
        );
        assert_eq!(
            location(Some("gw.example"), "/", 443).await.1,
            "https://gw.example/"
        );
        assert_eq!(
            location(Some("[2001:db8::1]"), "/", 8443).await.1,
            "https://[2001:db8::1]:8443/"
        );
        // A Host header that is not a host name is not echoed.
        assert_eq!(
            location(Some("evil/\"x"), "/", 8443).await.1,
            "https://localhost:8443/"
        );
        assert_eq!(location(None, "/", 8443).await.1, "https://localhost:8443/");
    }
}
