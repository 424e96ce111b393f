//! `portcullis backup` and `portcullis restore`: one archive of the gateway's state
//! (configuration file, store, queued mail), made while the gateway runs and restored onto
//! a fresh data directory. The work is the gateway library's (`portcullis_gateway::backup`);
//! this module reads the options, shows progress and prints the outcome.

use crate::config::Config;
use anyhow::{Result, anyhow};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use portcullis_gateway::backup::{
    self, BackupOptions, Decryption, Encryption, Location, RestoreOptions, SshOptions, archive,
};
use portcullis_store::Store;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args)]
pub struct BackupArgs {
    /// Where the archive goes: a file, or sftp://user@host[:port]/path.
    #[arg(long, value_name = "FILE|URL")]
    to: String,
    /// Leave the message log out (policy, keys, accounts, quarantine and queue stay).
    #[arg(long)]
    without_log: bool,
    /// Encrypt with the passphrase on the first line of this file (age, scrypt).
    #[arg(long, value_name = "FILE", conflicts_with = "recipient")]
    passphrase_file: Option<PathBuf>,
    /// Encrypt to this age public key (age1...); may be given several times.
    #[arg(long, value_name = "AGE_PUBLIC_KEY")]
    recipient: Vec<String>,
    #[command(flatten)]
    ssh: SshArgs,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The archive: a file, or sftp://user@host[:port]/path.
    #[arg(value_name = "FILE|URL")]
    from: String,
    /// The passphrase of an encrypted archive, on the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "identity")]
    passphrase_file: Option<PathBuf>,
    /// An age identity file (AGE-SECRET-KEY-1...) for an archive encrypted to a key.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Replace the contents of a store that is in use, and add to a spool that holds mail.
    #[arg(long)]
    force: bool,
    /// Where the archived configuration file is written (default:
    /// <data_dir>/portcullis.toml.restored).
    #[arg(long, value_name = "FILE")]
    config_out: Option<PathBuf>,
    #[command(flatten)]
    ssh: SshArgs,
}

#[derive(Args)]
struct SshArgs {
    /// SSH private key for an sftp:// location (sftp -i).
    #[arg(long, value_name = "FILE")]
    ssh_key: Option<PathBuf>,
    /// ssh_config file for an sftp:// location (sftp -F): known hosts, identity, port.
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
}

impl SshArgs {
    fn options(&self) -> SshOptions {
        SshOptions {
            key: self.ssh_key.clone(),
            config: self.ssh_config.clone(),
        }
    }
}

/// A spinner naming the step under way (on a terminal only).
fn spinner() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub async fn backup(
    config: &Config,
    config_file: Option<&std::path::Path>,
    args: BackupArgs,
) -> Result<ExitCode> {
    let to = Location::parse(&args.to).map_err(|e| anyhow!("--to {e}"))?;
    let encryption = match (&args.passphrase_file, args.recipient.is_empty()) {
        (Some(file), _) => {
            Encryption::Passphrase(archive::read_passphrase(file).map_err(|e| anyhow!(e))?)
        }
        (None, false) => Encryption::recipients(&args.recipient).map_err(|e| anyhow!(e))?,
        (None, true) => Encryption::None,
    };
    if encryption.is_none() {
        eprintln!(
            "warning: the archive is not encrypted and holds secrets (DKIM private keys, password hashes, quarantined mail): keep it safe, or use --passphrase-file or --recipient"
        );
    }
    let store = Store::open(&config.store_url()).await?;
    let bar = spinner();
    let options = BackupOptions {
        without_log: args.without_log,
        encryption,
        ssh: args.ssh.options(),
    };
    let result = backup::create(config, config_file, &store, &to, &options, &|step| {
        bar.set_message(step.to_string())
    })
    .await;
    bar.finish_and_clear();
    let audited = match &result {
        // An archive holds secrets: who took one, and where it went, is worth a row.
        Ok(created) => {
            let details = serde_json::json!({
                "encrypted": !options.encryption.is_none(),
                "with_log": created.manifest.with_log,
                "bytes": created.size,
            });
            portcullis_ops::audit_cli(&store, "backup.create", &to.to_string(), Some(details)).await
        }
        Err(_) => Ok(()),
    };
    store.close().await;
    let created = result.map_err(|e| anyhow!(e))?;
    if let Err(e) = audited {
        eprintln!("warning: the backup is written, but its audit row is not: {e}");
    }
    let tables = created.manifest.under("store").count();
    println!(
        "backup written to {to}: {} bytes, {} store {tables} tables (schema {}), {} queued messages{}{}",
        created.size,
        created.manifest.engine,
        created.manifest.schema_version,
        created.queued_messages,
        if created.manifest.entry("config/portcullis.toml").is_some() {
            ", the configuration file"
        } else {
            ""
        },
        if created.manifest.with_log {
            ""
        } else {
            ", without the message log"
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(config: &Config, args: RestoreArgs) -> Result<ExitCode> {
    let from = Location::parse(&args.from).map_err(|e| anyhow!("{e}"))?;
    let decryption = match (&args.passphrase_file, &args.identity) {
        (Some(file), _) => {
            Decryption::Passphrase(archive::read_passphrase(file).map_err(|e| anyhow!(e))?)
        }
        (None, Some(file)) => archive::read_identities(file).map_err(|e| anyhow!(e))?,
        (None, None) => Decryption::None,
    };
    let options = RestoreOptions {
        decryption,
        force: args.force,
        ssh: args.ssh.options(),
        config_out: args.config_out,
    };
    let bar = spinner();
    let result = backup::restore(config, &from, &options, &|step| {
        bar.set_message(step.to_string())
    })
    .await;
    bar.finish_and_clear();
    let restored = result.map_err(|e| anyhow!("restore refused or failed: {e}"))?;
    let m = &restored.manifest;
    // The restored store's audit log says where its contents came from.
    let details = serde_json::json!({
        "hostname": m.hostname,
        "created_at": m.created_at,
        "gateway_version": m.gateway_version,
        "engine": m.engine,
        "rows": restored.rows,
        "queued_messages": restored.queued_messages,
    });
    let audited = match Store::open(&config.store_url()).await {
        Ok(store) => {
            let r = portcullis_ops::audit_cli(
                &store,
                "backup.restore",
                &from.to_string(),
                Some(details),
            )
            .await
            .map_err(|e| e.to_string());
            store.close().await;
            r
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = audited {
        eprintln!("warning: restored, but the audit row is not written: {e}");
    }
    println!(
        "restored the backup of {} made {} by Portcullis {} ({} store, schema {}): {} rows, {} queued messages into {}",
        m.hostname,
        portcullis_gateway::dates::iso(m.created_at),
        m.gateway_version,
        m.engine,
        m.schema_version,
        restored.rows,
        restored.queued_messages,
        config.data_dir.display()
    );
    if let Some(path) = restored.config_written {
        println!(
            "the archived configuration file is at {} (compare it with the one this node uses)",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
