//! The `portcullis` binary: configuration, command line, logging, and the wiring of the
//! smtp, queue and store crates into one gateway.

mod batcher;
mod cli;
mod config;
mod control;
mod corpus;
mod dates;
mod digest;
mod dkim_cli;
mod dmarc_reports;
mod filter_cli;
mod filtering;
mod handler;
mod logwriter;
mod policy;
mod psl_cli;
mod reports;
mod serve;
mod store_cli;
mod tls;
mod tlsrpt;
mod users;

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
        action: cli::DomainCmd,
    },
    /// Internal networks allowed to relay outbound.
    Network {
        #[command(subcommand)]
        action: cli::NetworkCmd,
    },
    /// Users who may authenticate (SMTP AUTH).
    User {
        #[command(subcommand)]
        action: cli::UserCmd,
    },
    /// The mail queue.
    Queue {
        #[command(subcommand)]
        action: cli::QueueCmd,
    },
    /// The message log.
    Log {
        #[command(subcommand)]
        action: cli::LogCmd,
    },
    /// Train and measure the spam classifier on folders of ham and spam.
    Corpus {
        #[command(subcommand)]
        action: corpus::CorpusCmd,
    },
    /// Filter rules (conditions over findings, ordered actions).
    Rule {
        #[command(subcommand)]
        action: filter_cli::RuleCmd,
    },
    /// Allow, block and valid-recipient lists.
    List {
        #[command(subcommand)]
        action: filter_cli::ListCmd,
    },
    /// Content lists: words and patterns with scores.
    Content {
        #[command(subcommand)]
        action: filter_cli::ContentCmd,
    },
    /// Held messages.
    Quarantine {
        #[command(subcommand)]
        action: filter_cli::QuarantineCmd,
    },
    /// Outbound DKIM signing keys: generate, rotate, retire, list.
    Dkim {
        #[command(subcommand)]
        action: dkim_cli::DkimCmd,
    },
    /// The policy as one TOML document.
    Config {
        #[command(subcommand)]
        action: filter_cli::ConfigCmd,
    },
    /// The public suffix list (organizational domains for DMARC): update, show.
    Psl {
        #[command(subcommand)]
        action: psl_cli::PslCmd,
    },
    /// Incoming DMARC aggregate and TLS-RPT reports about our domains.
    Report {
        #[command(subcommand)]
        action: reports::ReportCmd,
    },
    /// The store itself: schema migrations.
    Store {
        #[command(subcommand)]
        action: store_cli::StoreCmd,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::Config::load(cli.config.as_deref()) {
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
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve::run(config).await.map(|_| ExitCode::SUCCESS),
            Command::CheckConfig => Ok(ExitCode::SUCCESS),
            Command::Domain { action } => cli::domain(&config, action).await,
            Command::Network { action } => cli::network(&config, action).await,
            Command::User { action } => cli::user(&config, action).await,
            Command::Queue { action } => cli::queue(&config, action).await,
            Command::Log { action } => cli::log(&config, action).await,
            Command::Corpus { action } => corpus::corpus(&config, action).await,
            Command::Rule { action } => filter_cli::rule(&config, action).await,
            Command::List { action } => filter_cli::list(&config, action).await,
            Command::Content { action } => filter_cli::content(&config, action).await,
            Command::Quarantine { action } => filter_cli::quarantine(&config, action).await,
            Command::Dkim { action } => dkim_cli::dkim(&config, action).await,
            Command::Config { action } => filter_cli::config_cmd(&config, action).await,
            Command::Report { action } => reports::report(&config, action).await,
            Command::Psl { action } => psl_cli::psl(&config, action).await,
            Command::Store { action } => store_cli::store(&config, action).await,
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

/// An RFC 5322 date in UTC, e.g. `Mon, 23 Nov 2026 10:41:02 +0000`. Hand-written
/// because only this one format is needed and a date crate would be its only user.
pub fn rfc5322_date(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    let (year, month, day) = crate::dates::civil(unix);
    let weekday = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[weekday as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            super::rfc5322_date(1_795_430_462),
            "Mon, 23 Nov 2026 10:41:02 +0000"
        );
        assert_eq!(
            super::rfc5322_date(951_782_400),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
    }
}
