//! `portcullis store migrate`: brings the schema of the configured store (`[store] url`,
//! SQLite or PostgreSQL) up to date and says at which version it is. Every node migrates at
//! start as well; this is for doing it once, before the nodes of a cluster are upgraded, or
//! to check that a PostgreSQL URL works. `portcullis retention run`: the retention job's
//! pass once, now.

use crate::config::Config;
use anyhow::Result;
use clap::Subcommand;
use portcullis_store::Store;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Apply the schema migrations this version has and the store lacks; print the version.
    Migrate,
}

pub async fn store(config: &Config, action: StoreCmd) -> Result<ExitCode> {
    match action {
        StoreCmd::Migrate => {
            let m = Store::migrate(&config.store_url()).await?;
            if m.previous == m.current {
                println!(
                    "{} store at schema version {}, up to date",
                    m.engine, m.current
                );
            } else {
                println!(
                    "{} store migrated from schema version {} to {}",
                    m.engine, m.previous, m.current
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Subcommand)]
pub enum RetentionCmd {
    /// Delete the message log, held messages, reports and audit rows older than their
    /// `[retention]` days now; print how many of each.
    Run,
}

pub async fn retention(target: &super::Target, action: RetentionCmd) -> Result<ExitCode> {
    match action {
        RetentionCmd::Run => {
            let purged = target.backend().await?.retention_run().await?;
            println!("{purged}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
