//! `portcullis directory`: what the directory answers for an address or a login, asked
//! the way the gateway asks it (the same sources, filters and servers of
//! `portcullis.toml`, no cache), with which source, which server, which filter and how
//! long it took. The password of `directory auth` comes from stdin and is never shown.
//!
//! Exit status: 0 the address exists / the login is accepted, 1 it does not / is refused,
//! 2 the source could not answer.

use crate::config::Config;
use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use portcullis_directory::domains::STORE_SOURCE;
use portcullis_directory::ldap::LoginOutcome;
use portcullis_directory::{Directories, DirectoryError};
use std::io::Read;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Subcommand)]
pub enum DirectoryCmd {
    /// Does ADDRESS exist? Its domain's recipient source (or --source) answers, with its
    /// entry, display name and groups.
    Test {
        address: String,
        /// Ask this `[directory.NAME]` source instead of the domain's.
        #[arg(long)]
        source: Option<String>,
    },
    /// Is the password (read from stdin) right for USER? Its domain's auth source (or
    /// --source) answers.
    Auth {
        user: String,
        #[arg(long)]
        source: Option<String>,
    },
}

pub async fn directory(config: &Config, action: DirectoryCmd) -> Result<ExitCode> {
    let store = crate::cli::ops(config).await?.store().clone();
    // Callouts ask the domains' routes, as the running gateway does.
    let policy = portcullis_gateway::policy::Policy::new(None, config.spam.clone());
    policy
        .reload(&store)
        .await
        .context("reading the domains from the store")?;
    let tls = portcullis_gateway::tls::client_configs(config)?;
    let dirs = portcullis_gateway::callout::directories(config, store, &policy, &tls)
        .map_err(|e| anyhow!("{e}"))?;
    match action {
        DirectoryCmd::Test { address, source } => {
            let code = test(&dirs, &address, source.clone()).await?;
            // A callout says which servers it asks: the domain's routes.
            let name = source.or_else(|| dirs.recipient_source_name(&address));
            let callout = name
                .and_then(|n| config.directory.get(&n))
                .is_some_and(|c| c.kind == portcullis_directory::SourceKind::Callout);
            if callout {
                let domain = portcullis_directory::domain_of(&address).unwrap_or_default();
                let routes: Vec<String> = policy
                    .current()
                    .domains
                    .get(&domain)
                    .map(|d| {
                        d.routes
                            .iter()
                            .map(|r| format!("{}:{}", r.host, r.port))
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "servers:  {}",
                    if routes.is_empty() {
                        format!("none ({domain} has no route)")
                    } else {
                        routes.join(", ")
                    }
                );
            }
            Ok(code)
        }
        DirectoryCmd::Auth { user, source } => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            auth(&dirs, &user, password, source).await
        }
    }
}

fn unavailable(e: &DirectoryError) -> ExitCode {
    println!("answer:   unavailable ({e})");
    ExitCode::from(2)
}

async fn test(dirs: &Directories, address: &str, source: Option<String>) -> Result<ExitCode> {
    let name = match source.or_else(|| dirs.recipient_source_name(address)) {
        Some(n) => n,
        None => {
            println!("source:   none (recipients of this domain are not verified)");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let dir = dirs
        .by_name(&name)
        .ok_or_else(|| anyhow!("no source {name}: see [directory.*] in the configuration"))?;
    println!("source:   {name}");
    if let Some(ldap) = dirs.ldap(&name) {
        let answer = match ldap.find_recipient(address).await {
            Ok(a) => a,
            Err(e) => return Ok(unavailable(&e)),
        };
        println!("server:   {}", answer.server);
        println!("base:     {}", answer.base);
        println!("filter:   {}", answer.filter);
        println!("took:     {} ms", answer.took.as_millis());
        if answer.entries.is_empty() {
            println!("answer:   unknown (550 5.1.1 at RCPT)");
            return Ok(ExitCode::from(1));
        }
        println!("answer:   exists");
        for (dn, display) in &answer.entries {
            println!("entry:    {dn}");
            if let Some(display) = display {
                println!("name:     {display}");
            }
        }
        if let [(dn, _)] = answer.entries.as_slice() {
            let started = Instant::now();
            match ldap.groups_of_dn(dn).await {
                Ok(groups) => println!(
                    "groups:   {} ({} ms)",
                    if groups.is_empty() {
                        "-".to_string()
                    } else {
                        groups.join(", ")
                    },
                    started.elapsed().as_millis()
                ),
                Err(e) => println!("groups:   unavailable ({e})"),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let started = Instant::now();
    let exists = match dir.recipient_exists(address).await {
        Ok(e) => e,
        Err(e) => return Ok(unavailable(&e)),
    };
    println!("took:     {} ms", started.elapsed().as_millis());
    if exists {
        println!("answer:   exists");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("answer:   unknown (550 5.1.1 at RCPT)");
        Ok(ExitCode::from(1))
    }
}

async fn auth(
    dirs: &Directories,
    user: &str,
    password: &str,
    source: Option<String>,
) -> Result<ExitCode> {
    let name = source.unwrap_or_else(|| dirs.login_source_name(user));
    let dir = dirs
        .by_name(&name)
        .ok_or_else(|| anyhow!("no source {name}: see [directory.*] in the configuration"))?;
    println!("source:   {name}");
    if let Some(ldap) = dirs.ldap(&name) {
        let answer = match ldap.check_login(user, password).await {
            Ok(a) => a,
            Err(e) => return Ok(unavailable(&e)),
        };
        println!("server:   {}", answer.server);
        println!("filter:   {}", answer.filter);
        if let Some(dn) = &answer.dn {
            println!("entry:    {dn}");
        }
        println!("took:     {} ms", answer.took.as_millis());
        let (text, code) = match answer.outcome {
            LoginOutcome::Accepted => ("accepted", 0),
            LoginOutcome::WrongPassword => ("refused (wrong password)", 1),
            LoginOutcome::NoAccount => ("refused (no such account)", 1),
            LoginOutcome::Ambiguous => ("refused (the filter finds more than one account)", 1),
            LoginOutcome::Disabled => ("refused (the account is disabled)", 1),
        };
        println!("answer:   {text}");
        return Ok(ExitCode::from(code));
    }
    if name != STORE_SOURCE && !dir.can_authenticate() {
        println!("answer:   refused ({name} has no passwords)");
        return Ok(ExitCode::from(1));
    }
    let started = Instant::now();
    let ok = match dir.authenticate(user, password).await {
        Ok(ok) => ok,
        Err(e) => return Ok(unavailable(&e)),
    };
    println!("took:     {} ms", started.elapsed().as_millis());
    println!("answer:   {}", if ok { "accepted" } else { "refused" });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
