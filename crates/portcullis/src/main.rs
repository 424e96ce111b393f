//! The `portcullis` binary: configuration, command line, logging, and the wiring of the
//! smtp, queue and store crates into one gateway.

mod cli;
mod config;
mod serve;

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
    /// The store itself: schema migrations.
    Store {
        #[command(subcommand)]
        action: cli::store::StoreCmd,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::load(cli.config.as_deref()) {
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
    init_logging(&config, matches!(cli.command, Command::Serve));
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
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve::run(config, file).await.map(|_| ExitCode::SUCCESS),
            Command::CheckConfig => Ok(ExitCode::SUCCESS),
            Command::Domain { action } => cli::policy::domain(&config, action).await,
            Command::Network { action } => cli::policy::network(&config, action).await,
            Command::User { action } => cli::policy::user(&config, action).await,
            Command::Queue { action } => cli::queue::queue(&config, action).await,
            Command::Log { action } => cli::queue::log(&config, action).await,
            Command::Corpus { action } => cli::corpus::corpus(&config, action).await,
            Command::Rule { action } => cli::filter::rule(&config, action).await,
            Command::List { action } => cli::filter::list(&config, action).await,
            Command::Content { action } => cli::filter::content(&config, action).await,
            Command::Quarantine { action } => cli::filter::quarantine(&config, action).await,
            Command::Dkim { action } => cli::dkim::dkim(&config, action).await,
            Command::Config { action } => cli::filter::config_cmd(&config, action).await,
            Command::Report { action } => cli::report::report(&config, action).await,
            Command::Psl { action } => cli::psl::psl(&config, action).await,
            Command::Store { action } => cli::store::store(&config, action).await,
            Command::Account { action } => cli::accounts::account(&config, action).await,
            Command::Token { action } => cli::accounts::token(&config, action).await,
            Command::Audit { action } => cli::accounts::audit(&config, action).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &config::Config, serving: bool) {
    let default = if serving {
        config.log.level.as_str()
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
