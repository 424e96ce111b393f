//! `portcullis domain|network|user …`: who the gateway accepts mail for and where it
//! goes, who may relay out, who may authenticate. A running gateway picks changes up
//! within two seconds.

use super::Target;
use anyhow::{Context, Result};
use clap::Subcommand;
use portcullis_ops::policy::RoutesSpec;
use std::io::Read;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum DomainCmd {
    /// Accept mail for DOMAIN and relay it to the given servers.
    Add {
        domain: String,
        /// `host:port` of the domain's own server; repeat for more, in priority order.
        #[arg(long = "route", required = true)]
        routes: Vec<String>,
        /// TLS to the routes: none, may, encrypt, verify, dane.
        #[arg(long, default_value = "may")]
        tls: String,
        /// AUTH user for the routes (the password is read from PORTCULLIS_ROUTE_PASSWORD).
        #[arg(long)]
        auth_user: Option<String>,
    },
    List,
    Remove {
        domain: String,
    },
    /// Connect to each route of DOMAIN (EHLO, STARTTLS per the route's TLS mode, QUIT;
    /// no mail is sent) and print the dialogue; fails when a route does.
    Test {
        domain: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum NetworkCmd {
    /// Allow CIDR (e.g. 10.0.0.0/8 or 192.0.2.7) to relay outbound.
    Add {
        cidr: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    List,
    Remove {
        cidr: String,
    },
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Add a user (or change the password); the password is read from stdin.
    Add {
        email: String,
    },
    List,
    Remove {
        email: String,
    },
}

pub async fn domain(target: &Target, cmd: DomainCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
    match cmd {
        DomainCmd::Add {
            domain,
            routes,
            tls,
            auth_user,
        } => {
            let auth_password = std::env::var("PORTCULLIS_ROUTE_PASSWORD").ok();
            if auth_user.is_some() && auth_password.is_none() {
                anyhow::bail!("--auth-user needs the password in PORTCULLIS_ROUTE_PASSWORD");
            }
            let spec = RoutesSpec {
                routes,
                tls,
                auth_user,
                auth_password,
            };
            let name = ops.add_domain(&domain, &spec).await?;
            println!("domain {name} added");
        }
        DomainCmd::List => {
            for d in ops.list_domains().await? {
                let routes: Vec<String> = d
                    .routes
                    .iter()
                    .map(|r| format!("{}:{} (tls {})", r.host, r.port, r.tls))
                    .collect();
                println!("{}\t{}", d.name, routes.join(", "));
            }
        }
        DomainCmd::Remove { domain } => {
            ops.remove_domain(&domain).await?;
            println!("domain {domain} removed");
        }
        DomainCmd::Test { domain, json } => {
            let tests = ops.test_route(&domain).await?;
            let all_ok = tests.iter().all(|t| t.report.ok());
            if json {
                println!("{}", serde_json::to_string_pretty(&tests)?);
            } else {
                print_route_tests(&tests);
            }
            if !all_ok {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_route_tests(tests: &[portcullis_ops::route_test::RouteTest]) {
    use portcullis_queue::probe::Side;
    for t in tests {
        let r = &t.report;
        println!(
            "route {}:{} (priority {}, tls {})",
            r.host, r.port, t.priority, t.tls_mode
        );
        for line in &r.lines {
            let who = match line.side {
                Side::Client => "C:",
                Side::Server => "S:",
                Side::Note => "--",
            };
            println!("  {who} {}", line.text);
        }
        match &r.error {
            None => println!("  ok in {} ms", r.elapsed_ms),
            Some(e) => println!("  FAILED after {} ms: {e}", r.elapsed_ms),
        }
    }
}

pub async fn network(target: &Target, cmd: NetworkCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
    match cmd {
        NetworkCmd::Add { cidr, comment } => {
            let net = ops.add_network(&cidr, &comment).await?;
            println!("network {net} added");
        }
        NetworkCmd::List => {
            for (net, comment) in ops.list_networks().await? {
                println!("{net}\t{comment}");
            }
        }
        NetworkCmd::Remove { cidr } => {
            ops.remove_network(&cidr).await?;
            println!("network {cidr} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn user(target: &Target, cmd: UserCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
    match cmd {
        UserCmd::Add { email } => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let name = ops.add_user(&email, password).await?;
            println!("user {name} added");
        }
        UserCmd::List => {
            for u in ops.list_users().await? {
                println!("{u}");
            }
        }
        UserCmd::Remove { email } => {
            ops.remove_user(&email).await?;
            println!("user {email} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
