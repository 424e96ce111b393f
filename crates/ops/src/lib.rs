//! The operations layer: every administrative action on a gateway (domains and routes,
//! internal networks, users, rules, lists, content lists, quarantine, queue, message
//! log, DKIM keys, reports, the policy document), validated, with a typed error
//! ([`OpsError`]) that says what is wrong and how to fix it. The command line calls it
//! today; the REST API and the console call the same functions. It does not know how it
//! was called: no printing, no exit codes, no HTTP.

pub mod accounts;
pub mod actor;
mod audit;
pub mod check_settings;
pub mod corpus;
pub mod credentials;
pub mod dashboard;
pub mod digests;
pub mod dkim;
pub mod dkim_check;
mod error;
pub mod filter;
pub mod health;
pub mod log;
pub mod log_export;
pub mod monitoring;
pub mod policy;
pub mod policy_doc;
pub mod quarantine;
pub mod queue;
pub mod reports;
pub mod retention;
pub mod route_test;
mod sessions;
mod tokens;
pub mod tracking;

pub use actor::{Access, Actor, Role, Scope, Via};
pub use audit::append_cli as audit_cli;
pub use error::{OpsError, Result};

use portcullis_gateway::Injector;
use portcullis_gateway::config::Config;
use portcullis_queue::spool::Spool;
use portcullis_store::Store;
use std::sync::Arc;

/// A handle on one gateway's store, spool and settings.
#[derive(Clone)]
pub struct Ops {
    store: Store,
    config: Arc<Config>,
    /// Inside the gateway process: its queue. None: the control socket of a gateway
    /// that may be running.
    inject: Option<Injector>,
    /// Who is calling; every operation checks it ([`Actor::require`]).
    actor: Arc<Actor>,
    /// The configuration file `config` was read from; `None`: built-in defaults.
    config_file: Option<Arc<std::path::PathBuf>>,
    metrics: Option<monitoring::RenderMetrics>,
}

impl Ops {
    /// Open the store of `config` (its data directory made if missing).
    pub async fn open(config: &Config) -> Result<Ops> {
        std::fs::create_dir_all(&config.data_dir).map_err(OpsError::spool(format!(
            "creating {}",
            config.data_dir.display()
        )))?;
        let store = Store::open(&config.store_url()).await?;
        Ok(Ops::new(store, config.clone()))
    }

    pub fn new(store: Store, config: Config) -> Ops {
        Ops {
            store,
            config: Arc::new(config),
            inject: None,
            actor: Arc::new(Actor::cli()),
            config_file: None,
            metrics: None,
        }
    }

    /// Name the configuration file the settings came from (shown beside them).
    pub fn with_config_file(mut self, file: Option<std::path::PathBuf>) -> Ops {
        self.config_file = file.map(Arc::new);
        self
    }

    /// The same gateway, acting for `actor` (an account or token of the console or API).
    /// A handle starts as the command line's local administrator ([`Actor::cli`]).
    pub fn acting_as(&self, actor: Actor) -> Ops {
        Ops {
            actor: Arc::new(actor),
            ..self.clone()
        }
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The part of the mail (message log, quarantine) the actor may see.
    pub(crate) fn sees(&self) -> portcullis_store::Sees {
        self.actor.sees()
    }

    /// Locally made mail goes straight to this queue (inside the gateway).
    /// What renders the Prometheus metrics of this process (the binary's exporter).
    pub fn with_metrics(mut self, render: monitoring::RenderMetrics) -> Ops {
        self.metrics = Some(render);
        self
    }

    pub fn with_injector(mut self, inject: Injector) -> Ops {
        self.inject = Some(inject);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The spool, opened without its start-up clean-up (which would delete bodies a
    /// running gateway is receiving).
    pub fn spool(&self) -> Result<Arc<Spool>> {
        if let Some(inject) = &self.inject {
            return Ok(inject.spool().clone());
        }
        Spool::open_shared(&self.config.data_dir.join("spool"))
            .map_err(OpsError::spool("opening the spool"))
    }

    /// Where locally made mail goes.
    pub fn injector(&self) -> Result<Injector> {
        match &self.inject {
            Some(inject) => Ok(inject.clone()),
            None => Ok(Injector::for_command(
                self.spool()?,
                self.config.data_dir.clone(),
            )),
        }
    }
}
