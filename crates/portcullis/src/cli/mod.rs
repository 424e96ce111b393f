//! The command line: each module reads its arguments, calls the operations layer
//! (`portcullis-ops`) or the gateway library, and prints. No policy or message logic
//! lives here; what a command may do and how it is validated is the operations layer's.
//! With `--url` the same commands act on a remote gateway through its REST API
//! ([`backend::Backend`]); their printing is the same either way.

pub mod accounts;
pub mod backend;
pub mod backup;
pub mod corpus;
pub mod directory;
pub mod dkim;
pub mod filter;
pub mod policy;
pub mod psl;
pub mod queue;
pub mod remote;
pub mod report;
pub mod settings;
pub mod store;

use crate::config::Config;
use anyhow::Result;
use backend::Backend;
use portcullis_ops::Ops;
use remote::RemoteOptions;

/// What a command acts on: this host's configuration, and the remote gateway of `--url`
/// when one is given.
pub struct Target {
    pub config: Config,
    /// The file `config` was read from (`--config`); None: built-in defaults.
    pub config_file: Option<std::path::PathBuf>,
    pub remote: Option<RemoteOptions>,
}

impl Target {
    /// The store of this host, or the remote gateway.
    pub async fn backend(&self) -> Result<Backend> {
        let backend = Backend::open(&self.config, self.remote.as_ref()).await?;
        Ok(match backend {
            Backend::Local(ops) => {
                Backend::Local(Box::new(ops.with_config_file(self.config_file.clone())))
            }
            remote => remote,
        })
    }
}

/// The operations on the store and spool of `config`.
pub async fn ops(config: &Config) -> Result<Ops> {
    Ok(Ops::open(config).await?)
}
