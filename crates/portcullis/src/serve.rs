//! `portcullis serve`: starts the node (store, spool, queue, control socket, background
//! work), finishes interrupted quarantine releases, makes the first console account,
//! listens, and runs until SIGINT or SIGTERM.

use crate::config::Config;
use anyhow::Result;
use portcullis_gateway::node::Node;

pub async fn run(config: Config) -> Result<()> {
    let node = Node::start(config.clone()).await?;
    portcullis_ops::quarantine::resume_releases(&node.store, &node.inject).await?;
    // The first start makes the console's administrator; its password is shown this once.
    let ops = portcullis_ops::Ops::new(node.store.clone(), config)
        .acting_as(portcullis_ops::Actor::system("bootstrap"));
    if let Some(password) = ops.bootstrap_admin().await? {
        tracing::warn!("console account `admin` made; its password is printed on stdout once");
        println!("console account: admin, password: {password}");
    }
    node.listen().await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
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
