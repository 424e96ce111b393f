//! `portcullis serve`: starts the node (store, spool, queue, control socket, background
//! work), finishes interrupted quarantine releases, listens for mail and, beside it, the
//! HTTPS console and API and the metrics listener; runs until SIGINT or SIGTERM, which
//! drain it (see [`Node::drain`]). SIGHUP reloads the configuration file.

use crate::config::Config;
use anyhow::Result;
use portcullis_gateway::node::Node;
use portcullis_ops::Ops;

pub async fn run(config: Config, file: Option<std::path::PathBuf>) -> Result<()> {
    // What the running settings were read from, to name the keys a reload cannot apply.
    let running = file
        .as_deref()
        .and_then(|f| std::fs::read_to_string(f).ok());
    // Before anything listens: a SIGTERM as soon as the ports answer drains, not kills.
    let mut signals = Signals::new()?;
    let metrics = crate::metrics::install();
    let node = Node::start(config).await?;
    crate::metrics::spawn_queue_gauges(node.queue.spool().clone());
    portcullis_gateway::backup::schedule::spawn(
        node.config.clone(),
        file.clone(),
        node.store.clone(),
    );
    portcullis_ops::quarantine::resume_releases(&node.store, &node.inject).await?;
    let ops = Ops::new(node.store.clone(), node.config.clone())
        .with_injector(node.inject.clone())
        .with_config_file(file.clone());
    let ops = match metrics {
        Some(render) => ops.with_metrics(render),
        None => ops,
    };
    // Before anything listens, so that the line is there once the ports answer.
    let https = node.config.listen.https.parse().ok();
    first_admin(&ops, &node.config.hostname, https).await;
    node.listen().await?;
    let listen = &node.config.listen;
    let console = portcullis_web::serve(
        portcullis_web::Listeners {
            https: &listen.https,
            http: &listen.http,
            metrics: &listen.metrics,
        },
        node.tls.clone(),
        ops,
    )
    .await?;
    while let Signal::Reload = signals.next().await {
        reload(&node, file.as_deref(), running.as_deref());
    }
    tracing::info!("shutting down");
    node.drain().await;
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

enum Signal {
    Reload,
    Stop,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = tokio::signal::ctrl_c() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

/// SIGHUP: read the configuration file again. An invalid file changes nothing (the error
/// names the file, line and key). A valid one replaces the TLS certificate (its files are
/// read again even when their names did not change, as after a renewal); the other keys
/// it changes are named, as they take effect at the next start. Policy, domains, users and
/// the settings changed in the console are in the store and reach the gateway without this.
fn reload(node: &Node, file: Option<&std::path::Path>, running: Option<&str>) {
    let Some(path) = file else {
        tracing::warn!(
            "SIGHUP: no configuration file to read again (running on the embedded defaults)"
        );
        return;
    };
    let origin = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(file = %origin, error = %e, "configuration not reloaded: cannot read the file; still running on the previous settings");
            return;
        }
    };
    let config = match crate::config::parse(&text, &origin) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "configuration not reloaded; still running on the previous settings");
            return;
        }
    };
    match node.reload_certificate(&config) {
        Ok(()) => tracing::info!("TLS certificate read again"),
        Err(e) => tracing::error!(error = %e, "TLS certificate not reloaded; the one in use stays"),
    }
    let pending: Vec<String> = changed_keys(running.unwrap_or(""), &text)
        .into_iter()
        .filter(|k| !RELOADED.contains(&k.as_str()))
        .collect();
    if pending.is_empty() {
        tracing::info!(file = %origin, "configuration reloaded");
    } else {
        tracing::warn!(
            file = %origin,
            keys = %pending.join(", "),
            "configuration reloaded; these changed keys take effect at the next start"
        );
    }
}

/// The keys a reload applies.
const RELOADED: [&str; 2] = ["tls.cert", "tls.key"];

/// The dotted keys whose values differ between two configuration texts (added, removed
/// or changed), tables followed down to their leaves. A text that does not parse counts
/// as empty.
fn changed_keys(old: &str, new: &str) -> Vec<String> {
    fn walk(prefix: &str, a: Option<&toml::Value>, b: Option<&toml::Value>, out: &mut Vec<String>) {
        let empty = toml::Value::Table(Default::default());
        // A table added or removed as a whole: its keys one by one.
        let (a, b) = match (a, b) {
            (None, Some(t @ toml::Value::Table(_))) => (Some(&empty), Some(t)),
            (Some(t @ toml::Value::Table(_)), None) => (Some(t), Some(&empty)),
            other => other,
        };
        match (a, b) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in keys {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, a.get(k), b.get(k), out);
                }
            }
            (a, b) if a != b => out.push(prefix.to_string()),
            _ => {}
        }
    }
    let parse = |t: &str| {
        t.parse::<toml::Table>()
            .map(toml::Value::Table)
            .unwrap_or(toml::Value::Table(Default::default()))
    };
    let mut out = Vec::new();
    walk("", Some(&parse(old)), Some(&parse(new)), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::changed_keys;

    #[test]
    fn changed_keys_are_named_down_to_the_leaves() {
        let old = "hostname = \"a\"\n[delivery]\nconcurrency = 5\n[tls]\ncert = \"x\"\n";
        let new = "hostname = \"a\"\n[delivery]\nconcurrency = 9\nmx_port = 2525\n[dns]\ntimeout_secs = 3\n";
        assert_eq!(
            changed_keys(old, new),
            [
                "delivery.concurrency",
                "delivery.mx_port",
                "dns.timeout_secs",
                "tls.cert"
            ]
        );
        assert!(changed_keys(old, old).is_empty());
    }
}
