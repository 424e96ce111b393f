//! The command line: each module reads its arguments, calls the operations layer
//! (`portcullis-ops`) or the gateway library, and prints. No policy or message logic
//! lives here; what a command may do and how it is validated is the operations layer's.

pub mod accounts;
pub mod corpus;
pub mod dkim;
pub mod filter;
pub mod policy;
pub mod psl;
pub mod queue;
pub mod report;
pub mod store;

use crate::config::Config;
use anyhow::Result;
use portcullis_ops::Ops;

/// The operations on the store and spool of `config`.
pub async fn ops(config: &Config) -> Result<Ops> {
    Ok(Ops::open(config).await?)
}
