//! SMTP callout (`[directory.NAME] type = "callout"`): a recipient is asked of its
//! domain's own servers, the routes of `portcullis domain add --route`, with a probe that
//! says MAIL FROM (the null sender, or `sender`) and RCPT TO and never DATA. The routes'
//! TLS modes apply as in delivery; no credentials are sent.
//!
//! Their RCPT reply decides: 2xx exists, 5xx does not. A 4xx, a refused MAIL, a timeout
//! or a server that cannot be reached is a source that cannot answer (the next route is
//! tried, then `451 4.4.3` or accept, per `on_unavailable`): never a permanent refusal.

use crate::policy::{Policy, PolicyRouter};
use async_trait::async_trait;
use portcullis_directory::{Directory, DirectoryError, SourceConfig, domain_of};
use portcullis_queue::client::{ClientSettings, SmtpClient, TlsConfigs};
use portcullis_queue::{Destination, Router};
use std::time::Duration;

pub struct Callout {
    name: String,
    sender: String,
    policy: Policy,
    tls: TlsConfigs,
    settings: ClientSettings,
}

impl Callout {
    pub fn new(
        name: &str,
        cfg: &SourceConfig,
        hostname: &str,
        policy: Policy,
        tls: TlsConfigs,
    ) -> Self {
        let command = Duration::from_secs(cfg.timeout_secs);
        Callout {
            name: name.to_string(),
            sender: cfg.sender.clone(),
            policy,
            tls,
            settings: ClientSettings {
                helo_name: hostname.to_string(),
                connect_timeout: Duration::from_secs(cfg.connect_timeout_secs),
                command_timeout: command,
                data_timeout: command,
            },
        }
    }

    fn down(&self, reason: impl std::fmt::Display) -> DirectoryError {
        DirectoryError::unavailable(&self.name, reason)
    }

    /// One route's answer: Some(exists), or None with why it could not say.
    async fn ask(&self, host: &portcullis_queue::RouteHost, address: &str) -> Result<bool, String> {
        let target = format!("{}:{}", host.host, host.port);
        let addrs = tokio::time::timeout(
            self.settings.connect_timeout,
            tokio::net::lookup_host((host.host.as_str(), host.port)),
        )
        .await
        .map_err(|_| format!("{target}: name lookup timed out"))?
        .map_err(|e| format!("{target}: {e}"))?;
        let mut last = format!("{target}: no address");
        for addr in addrs {
            let connected =
                SmtpClient::connect(addr, &host.host, host.tls, None, &self.tls, &self.settings)
                    .await;
            let mut client = match connected {
                Ok(c) => c,
                Err(e) => {
                    last = format!("{target}: {e}");
                    continue;
                }
            };
            let reply = client.probe_recipient(&self.sender, address).await;
            client.quit().await;
            return match reply {
                Ok(r) if r.is_positive() => Ok(true),
                Ok(r) if r.code >= 500 => {
                    tracing::info!(directory = %self.name, to = %address, server = %target, reply = %r.to_string().trim_end(), "callout: recipient refused downstream");
                    Ok(false)
                }
                Ok(r) => Err(format!("{target}: {}", r.to_string().trim_end())),
                Err(e) => Err(format!("{target}: {e}")),
            };
        }
        Err(last)
    }
}

#[async_trait]
impl Directory for Callout {
    fn name(&self) -> &str {
        &self.name
    }

    async fn recipient_exists(&self, address: &str) -> Result<bool, DirectoryError> {
        let Some(domain) = domain_of(address) else {
            return Ok(false);
        };
        let own_routes = self
            .policy
            .current()
            .domains
            .get(&domain)
            .is_some_and(|d| !d.routes.is_empty());
        let hosts = match PolicyRouter(self.policy.clone()).route(&domain) {
            Destination::Hosts(hosts) if own_routes => hosts,
            _ => return Err(self.down(format!("{domain} has no route to ask"))),
        };
        let mut last = String::new();
        for host in &hosts {
            match self.ask(host, address).await {
                Ok(exists) => return Ok(exists),
                Err(e) => {
                    tracing::warn!(directory = %self.name, error = %e, "callout failed");
                    last = e;
                }
            }
        }
        Err(self.down(last))
    }

    async fn authenticate(&self, _login: &str, _password: &str) -> Result<bool, DirectoryError> {
        Err(DirectoryError::Unsupported {
            source_name: self.name.clone(),
            what: "check passwords (a callout)",
        })
    }

    fn can_authenticate(&self) -> bool {
        false
    }
}

/// The directory of a gateway: the configured sources, callouts built on `policy`.
pub fn directories(
    config: &crate::config::Config,
    store: portcullis_store::Store,
    policy: &Policy,
    tls: &TlsConfigs,
) -> Result<portcullis_directory::Directories, DirectoryError> {
    let mut dirs =
        portcullis_directory::Directories::build(&config.directory, &config.domain, Some(store))?;
    for (name, cfg) in &config.directory {
        if cfg.kind == portcullis_directory::SourceKind::Callout {
            let callout = Callout::new(name, cfg, &config.hostname, policy.clone(), tls.clone());
            dirs.add_source(name, cfg, Box::new(callout));
        }
    }
    Ok(dirs)
}
