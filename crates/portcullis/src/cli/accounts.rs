//! `portcullis account|token|audit …`: console and API accounts, API tokens, and the audit
//! log of changes. Secrets (a generated password, a token) are printed once and never
//! again; the store keeps only their hashes.

use super::Target;
use anyhow::{Context, Result};
use clap::Subcommand;
use portcullis_ops::Role;
use portcullis_ops::accounts::TokenSpec;
use portcullis_ops::credentials;
use portcullis_ops::log::parse_since;
use portcullis_queue::spool::now;
use portcullis_store::AuditQuery;
use std::io::Read;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum AccountCmd {
    /// Add a console/API account. Without --password-stdin a password is generated and
    /// printed once.
    Add {
        /// The login name; for role `user`, the mailbox address.
        name: String,
        /// admin, domain-admin, helpdesk, auditor or user.
        #[arg(long)]
        role: String,
        /// A domain-admin's domain; repeat for more.
        #[arg(long = "domain")]
        domains: Vec<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an account with its sessions and tokens.
    Remove { name: String },
    /// Set an account's password (read from stdin); its sessions end.
    Passwd {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Make an API token for an account, with at most its rights; the secret is printed
    /// once.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        /// A domain-admin token's domain; repeat for more.
        #[arg(long = "domain")]
        domains: Vec<String>,
        #[arg(long)]
        read_only: bool,
        /// Days until it expires; without it, it does not.
        #[arg(long)]
        expires_days: Option<u32>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Revoke {
        id: i64,
    },
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Changes, newest first.
    List {
        /// Only this actor (`alice`, `token:deploy`, `cli:root`).
        #[arg(long)]
        actor: Option<String>,
        /// Only actions starting with this (`domain.`, `account.add`).
        #[arg(long)]
        action: Option<String>,
        /// Since a unix time or a span back from now (30m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

fn read_password() -> Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from stdin")?;
    Ok(password.trim_end_matches(['\r', '\n']).to_string())
}

fn when(t: Option<i64>) -> String {
    t.map_or_else(|| "-".to_string(), |t| t.to_string())
}

pub async fn account(target: &Target, cmd: AccountCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
    match cmd {
        AccountCmd::Add {
            name,
            role,
            domains,
            password_stdin,
        } => {
            let role = Role::parse(&role)?;
            let (password, generated) = if password_stdin {
                (read_password()?, false)
            } else {
                (credentials::random_password(20), true)
            };
            let account = ops.account_add(&name, role, &domains, &password).await?;
            println!("account {} ({}) added", account.name, account.role);
            if generated {
                println!("password: {password}");
            }
        }
        AccountCmd::List { json } => {
            let accounts = ops.account_list().await?;
            if json {
                println!("{}", serde_json::to_string(&accounts)?);
            } else {
                for a in accounts {
                    println!(
                        "{}\t{}\t{}\ttotp {}\tlast login {}{}",
                        a.name,
                        a.role,
                        a.domains.join(","),
                        if a.totp_enabled { "on" } else { "off" },
                        when(a.last_login),
                        a.locked_until
                            .filter(|&t| t > now())
                            .map(|t| format!("\tlocked until {t}"))
                            .unwrap_or_default(),
                    );
                }
            }
        }
        AccountCmd::Remove { name } => {
            ops.account_remove(&name).await?;
            println!("account {name} removed");
        }
        AccountCmd::Passwd { name, .. } => {
            let password = read_password()?;
            ops.account_set_password(&name, &password).await?;
            println!("password of account {name} changed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token(target: &Target, cmd: TokenCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
    match cmd {
        TokenCmd::Create {
            account,
            name,
            role,
            domains,
            read_only,
            expires_days,
        } => {
            let spec = TokenSpec {
                name,
                role: Role::parse(&role)?,
                domains,
                read_only,
                expires: expires_days.map(|d| now() + i64::from(d) * 86_400),
            };
            let (info, secret) = ops.token_create_for(&account, &spec).await?;
            println!(
                "token {} ({}) of account {} made; its secret, shown only now:",
                info.id, info.name, info.account
            );
            println!("{secret}");
        }
        TokenCmd::List { json } => {
            let tokens = ops.token_list().await?;
            if json {
                println!("{}", serde_json::to_string(&tokens)?);
            } else {
                for t in tokens {
                    println!(
                        "{}\t{}\t{}\t{}{}\t{}\texpires {}\tlast used {}{}",
                        t.id,
                        t.name,
                        t.account,
                        t.role,
                        if t.read_only { " (read-only)" } else { "" },
                        t.domains.join(","),
                        when(t.expires),
                        when(t.last_used),
                        if t.revoked { "\trevoked" } else { "" },
                    );
                }
            }
        }
        TokenCmd::Revoke { id } => {
            ops.token_revoke(id).await?;
            println!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(target: &Target, cmd: AuditCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
    match cmd {
        AuditCmd::List {
            actor,
            action,
            since,
            limit,
            json,
        } => {
            let query = AuditQuery {
                actor,
                action,
                since: since.map(|s| parse_since(&s, now())).transpose()?,
                until: None,
                limit,
                offset: 0,
            };
            let rows = ops.audit_list(&query).await?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                for r in rows {
                    println!(
                        "{}\t{}\t{} ({}, {}{})\t{}\t{}",
                        r.at,
                        r.id,
                        r.actor,
                        r.role,
                        r.via,
                        r.remote.map(|a| format!(" from {a}")).unwrap_or_default(),
                        r.action,
                        r.target,
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
