//! `portcullis serve`: starts the node (store, spool, queue, control socket, background
//! work), finishes interrupted quarantine releases, listens for mail and, beside it, the
//! HTTPS console and API; runs until SIGINT or SIGTERM.

use crate::config::Config;
use anyhow::Result;
use portcullis_gateway::node::Node;
use portcullis_ops::Ops;

pub async fn run(config: Config, file: Option<std::path::PathBuf>) -> Result<()> {
    let node = Node::start(config).await?;
    portcullis_gateway::backup::schedule::spawn(
        node.config.clone(),
        file.clone(),
        node.store.clone(),
    );
    portcullis_ops::quarantine::resume_releases(&node.store, &node.inject).await?;
    let ops = Ops::new(node.store.clone(), node.config.clone())
        .with_injector(node.inject.clone())
        .with_config_file(file);
    // Before anything listens, so that the line is there once the ports answer.
    let https = node.config.listen.https.parse().ok();
    first_admin(&ops, &node.config.hostname, https).await;
    node.listen().await?;
    let console = portcullis_web::serve(
        &node.config.listen.https,
        &node.config.listen.http,
        node.tls.clone(),
        ops,
    )
    .await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    console.shutdown().await;
    node.shutdown().await;
    Ok(())
}

/// At first start, the console's first account; its password is printed once. A failure
/// here leaves the mail flowing: the console just has no account yet.
async fn first_admin(ops: &Ops, hostname: &str, https: Option<std::net::SocketAddr>) {
    let ops = ops.acting_as(portcullis_ops::Actor::system("bootstrap"));
    match ops.bootstrap_admin().await {
        Ok(Some(password)) => {
            let Some(addr) = https else {
                println!(
                    "console: off ([listen] https is empty) — user admin, password {password} (shown once)"
                );
                return;
            };
            let host = match addr.ip() {
                ip if ip.is_loopback() => "localhost".to_string(),
                ip if ip.is_unspecified() => hostname.to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            println!(
                "console: https://{host}:{}/ — user admin, password {password} (shown once)",
                addr.port()
            );
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "console: first administrator not made"),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
