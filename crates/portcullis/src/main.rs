//! The `portcullis` binary: configuration, command line, logging, and the wiring of the
//! smtp, queue and store crates into one gateway.

mod cli;
mod config;
mod metrics;
mod serve;
mod snmp;
mod syslog;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Portcullis secure email gateway"
)]
struct Cli {
    /// Configuration file (TOML); without it, the embedded development defaults.
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Act on the gateway at this URL (https://HOST:PORT, its console) through its REST
    /// API instead of this host's store; the token comes from PORTCULLIS_TOKEN or
    /// --token-file. Given before the command (`portcullis --url URL domain list`), so
    /// that a command's own --url (`psl update --url`) stays the command's.
    #[arg(long, env = "PORTCULLIS_URL", value_name = "URL")]
    url: Option<String>,
    /// A file whose first line is the API token for --url (never the token itself on the
    /// command line, where `ps` would show it).
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Trust the certificates of this PEM file for --url, and only them (the gateway's
    /// self-signed certificate, `<data_dir>/tls/selfsigned.crt`).
    #[arg(long, global = true, env = "PORTCULLIS_CA", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Check a configuration file and exit (errors name file, line and key).
    CheckConfig,
    /// Domains the gateway accepts mail for, and their routes.
    Domain {
        #[command(subcommand)]
        action: cli::policy::DomainCmd,
    },
    /// Internal networks allowed to relay outbound.
    Network {
        #[command(subcommand)]
        action: cli::policy::NetworkCmd,
    },
    /// What the directory (LDAP, Active Directory, lists, the store's users) answers for
    /// an address or a login, and where it asked.
    Directory {
        #[command(subcommand)]
        action: cli::directory::DirectoryCmd,
    },
    /// Users who may authenticate (SMTP AUTH).
    User {
        #[command(subcommand)]
        action: cli::policy::UserCmd,
    },
    /// The mail queue.
    Queue {
        #[command(subcommand)]
        action: cli::queue::QueueCmd,
    },
    /// The message log.
    Log {
        #[command(subcommand)]
        action: cli::queue::LogCmd,
    },
    /// Train and measure the spam classifier on folders of ham and spam.
    Corpus {
        #[command(subcommand)]
        action: cli::corpus::CorpusCmd,
    },
    /// Filter rules (conditions over findings, ordered actions).
    Rule {
        #[command(subcommand)]
        action: cli::filter::RuleCmd,
    },
    /// Allow, block and valid-recipient lists.
    List {
        #[command(subcommand)]
        action: cli::filter::ListCmd,
    },
    /// Content lists: words and patterns with scores.
    Content {
        #[command(subcommand)]
        action: cli::filter::ContentCmd,
    },
    /// Held messages.
    Quarantine {
        #[command(subcommand)]
        action: cli::filter::QuarantineCmd,
    },
    /// Outbound DKIM signing keys: generate, rotate, retire, list.
    Dkim {
        #[command(subcommand)]
        action: cli::dkim::DkimCmd,
    },
    /// The policy as one TOML document.
    Config {
        #[command(subcommand)]
        action: cli::filter::ConfigCmd,
    },
    /// The public suffix list (organizational domains for DMARC): update, show.
    Psl {
        #[command(subcommand)]
        action: cli::psl::PslCmd,
    },
    /// Incoming DMARC aggregate and TLS-RPT reports about our domains.
    Report {
        #[command(subcommand)]
        action: cli::report::ReportCmd,
    },
    /// Greylisting, DNSBL and FCrDNS settings: list, change over the file, reset.
    Settings {
        #[command(subcommand)]
        action: cli::settings::SettingsCmd,
    },
    /// Console and API accounts.
    Account {
        #[command(subcommand)]
        action: cli::accounts::AccountCmd,
    },
    /// API tokens of accounts.
    Token {
        #[command(subcommand)]
        action: cli::accounts::TokenCmd,
    },
    /// The audit log of changes (CLI, API and console alike).
    Audit {
        #[command(subcommand)]
        action: cli::accounts::AuditCmd,
    },
    /// Delete what is older than the `[retention]` settings, now (the gateway's job does
    /// it every `interval_secs`).
    Retention {
        #[command(subcommand)]
        action: cli::store::RetentionCmd,
    },
    /// Write an archive of this gateway's state (configuration file, store, queued
    /// mail) while it runs.
    Backup(cli::backup::BackupArgs),
    /// Restore an archive onto this configuration's data directory and store (stop the
    /// gateway first; a fresh data directory unless --force).
    Restore(cli::backup::RestoreArgs),
    /// The store itself: schema migrations.
    Store {
        #[command(subcommand)]
        action: cli::store::StoreCmd,
    },
    /// The gateway's main counters for Net-SNMP's snmpd: its `pass_persist` protocol on
    /// standard input and output (docs/operations.md has the OID tree and snmpd.conf).
    SnmpPassPersist {
        /// The gateway's metrics listener, http://HOST:PORT; default: `[listen] metrics`
        /// of the configuration.
        #[arg(long, value_name = "URL")]
        metrics_url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let remote = cli
        .url
        .clone()
        .filter(|u| !u.is_empty())
        .map(|url| cli::remote::RemoteOptions {
            url: Some(url),
            token_file: cli.token_file.clone(),
            ca_file: cli.ca_file.clone(),
        });
    if remote.is_none() && cli.token_file.is_some() {
        eprintln!("portcullis: --token-file is for a remote gateway: give --url too");
        return ExitCode::from(2);
    }
    if remote.is_some()
        && let Some(name) = cli.command.local_only()
    {
        eprintln!("portcullis: {}", cli::remote::refuse(name));
        return ExitCode::from(2);
    }
    // A remote gateway has its own configuration: this host's file is not read for it.
    let file = cli.config.as_deref().filter(|_| remote.is_none());
    let config = match config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::CheckConfig) {
        if cli.config.is_none() {
            eprintln!("portcullis: check-config needs --config FILE");
            return ExitCode::from(2);
        }
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = init_logging(&config, matches!(cli.command, Command::Serve)) {
        eprintln!("portcullis: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let file = cli.config.clone();
    let target = cli::Target {
        config,
        config_file: file.clone().filter(|_| remote.is_none()),
        remote,
    };
    let config = &target.config;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve::run(config.clone(), file)
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::CheckConfig => Ok(ExitCode::SUCCESS),
            Command::Domain { action } => cli::policy::domain(&target, action).await,
            Command::Network { action } => cli::policy::network(&target, action).await,
            Command::User { action } => cli::policy::user(&target, action).await,
            Command::Directory { action } => cli::directory::directory(config, action).await,
            Command::Queue { action } => cli::queue::queue(&target, action).await,
            Command::Log { action } => cli::queue::log(&target, action).await,
            Command::Corpus { action } => cli::corpus::corpus(config, action).await,
            Command::Rule { action } => cli::filter::rule(&target, action).await,
            Command::List { action } => cli::filter::list(&target, action).await,
            Command::Content { action } => cli::filter::content(&target, action).await,
            Command::Quarantine { action } => cli::filter::quarantine(&target, action).await,
            Command::Dkim { action } => cli::dkim::dkim(&target, action).await,
            Command::Config { action } => cli::filter::config_cmd(&target, action).await,
            Command::Report { action } => cli::report::report(&target, action).await,
            Command::Psl { action } => cli::psl::psl(config, action).await,
            Command::Store { action } => cli::store::store(config, action).await,
            Command::Retention { action } => cli::store::retention(&target, action).await,
            Command::Backup(args) => {
                cli::backup::backup(config, target.config_file.as_deref(), args).await
            }
            Command::Restore(args) => cli::backup::restore(config, args).await,
            Command::Settings { action } => cli::settings::settings(&target, action).await,
            Command::Account { action } => cli::accounts::account(&target, action).await,
            Command::Token { action } => cli::accounts::token(&target, action).await,
            Command::Audit { action } => cli::accounts::audit(&target, action).await,
            Command::SnmpPassPersist { metrics_url } => {
                let base = match metrics_url {
                    Some(url) => url,
                    None if config.listen.metrics.is_empty() => anyhow::bail!(
                        "[listen] metrics is off: snmp-pass-persist reads the gateway's metrics listener (or give --metrics-url)"
                    ),
                    None => snmp::metrics_base(&config.listen.metrics)?,
                };
                snmp::run(base).await.map(|()| ExitCode::SUCCESS)
            }
        }
    });
    // The last lines of `serve` (why it stopped) to the collector, if it takes them soon.
    syslog::flush(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// The name of a command that only runs beside the gateway's own store and files,
    /// never on a remote gateway; None for those the REST API has.
    fn local_only(&self) -> Option<&'static str> {
        match self {
            Command::Serve => Some("serve"),
            Command::CheckConfig => Some("check-config"),
            Command::Corpus { .. } => Some("corpus"),
            Command::Directory { .. } => Some("directory"),
            Command::Psl { .. } => Some("psl"),
            Command::Store { .. } => Some("store"),
            Command::SnmpPassPersist { .. } => Some("snmp-pass-persist"),
            Command::Backup(_) => Some("backup"),
            Command::Restore(_) => Some("restore"),
            _ => None,
        }
    }
}

fn init_logging(config: &config::Config, serving: bool) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = if serving {
        config.log.level.as_str()
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Syslog is the running gateway's: a command's few warnings stay on stderr.
    let syslog = match &config.log.syslog {
        url if serving && !url.is_empty() => {
            let target = syslog::Target::parse(url).map_err(|e| format!("[log] syslog: {e}"))?;
            let facility = syslog::facility(&config.log.syslog_facility)
                .ok_or_else(|| "[log] syslog_facility: not a facility".to_string())?;
            let layer = syslog::layer(
                &target,
                facility,
                &config.hostname,
                config.log.syslog_ca.as_deref(),
            )
            .map_err(|e| format!("[log] syslog: {e:#}"))?;
            Some(layer)
        }
        _ => None,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let registry = tracing_subscriber::registry().with(filter).with(syslog);
    if config.log.format == "json" {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .init();
    }
    Ok(())
}
