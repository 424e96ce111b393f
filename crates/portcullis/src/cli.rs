//! The administration commands: domains, networks, users, queue and log. Policy
//! commands write to the store (a running gateway picks them up within seconds); queue
//! commands go through the control socket when a gateway runs, else to the spool.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use portcullis_gateway::policy::parse_host_port;
use portcullis_queue::scheduler::describe;
use portcullis_queue::spool::{RecipientStatus, Spool};
use portcullis_store::{LogQuery, Route, Store};
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

#[derive(Subcommand)]
pub enum QueueCmd {
    /// Messages in the queue.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One message: envelope, recipient states and the message itself.
    Show { id: String },
    /// Try every deferred message now.
    Flush,
    /// Remove a message without delivering it.
    Delete { id: String },
    /// Stop delivery attempts of a message.
    Hold { id: String },
    /// Resume delivery of a held message.
    Release { id: String },
}

#[derive(Subcommand)]
pub enum LogCmd {
    /// Find messages in the log.
    Search {
        #[arg(long)]
        sender: Option<String>,
        #[arg(long)]
        recipient: Option<String>,
        /// Unix time or a duration back from now: 30m, 2h, 7d.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

/// The store of `config`, its data directory made if missing; every command uses this.
pub async fn open_store(config: &Config) -> Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    Ok(Store::open(&config.store_url()).await?)
}

pub async fn domain(config: &Config, cmd: DomainCmd) -> Result<ExitCode> {
    let store = open_store(config).await?;
    match cmd {
        DomainCmd::Add {
            domain,
            routes,
            tls,
            auth_user,
        } => {
            let password = std::env::var("PORTCULLIS_ROUTE_PASSWORD").ok();
            if auth_user.is_some() && password.is_none() {
                bail!("--auth-user needs the password in PORTCULLIS_ROUTE_PASSWORD");
            }
            let mut list = Vec::new();
            for (i, r) in routes.iter().enumerate() {
                let (host, port) = parse_host_port(r)
                    .with_context(|| format!("--route {r}: expected host:port"))?;
                list.push(Route {
                    host,
                    port,
                    priority: (i as u32 + 1) * 10,
                    tls: tls.clone(),
                    auth_user: auth_user.clone(),
                    auth_password: password.clone(),
                });
            }
            store.add_domain(&domain, &list).await?;
            println!("domain {} added", domain.to_ascii_lowercase());
        }
        DomainCmd::List => {
            for d in store.list_domains().await? {
                let routes: Vec<String> = d
                    .routes
                    .iter()
                    .map(|r| format!("{}:{} (tls {})", r.host, r.port, r.tls))
                    .collect();
                println!("{}\t{}", d.name, routes.join(", "));
            }
        }
        DomainCmd::Remove { domain } => {
            if !store.remove_domain(&domain).await? {
                eprintln!("no such domain: {domain}");
                return Ok(ExitCode::from(1));
            }
            println!("domain {domain} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn network(config: &Config, cmd: NetworkCmd) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let parse = |s: &str| -> Result<ipnet::IpNet> {
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .with_context(|| format!("{s}: expected an address or CIDR such as 10.0.0.0/8"))
    };
    match cmd {
        NetworkCmd::Add { cidr, comment } => {
            let net = parse(&cidr)?;
            store.add_network(net, &comment).await?;
            println!("network {} added", net.trunc());
        }
        NetworkCmd::List => {
            for (net, comment) in store.list_networks().await? {
                println!("{net}\t{comment}");
            }
        }
        NetworkCmd::Remove { cidr } => {
            if !store.remove_network(parse(&cidr)?).await? {
                eprintln!("no such network: {cidr}");
                return Ok(ExitCode::from(1));
            }
            println!("network {cidr} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn user(config: &Config, cmd: UserCmd) -> Result<ExitCode> {
    let store = open_store(config).await?;
    match cmd {
        UserCmd::Add { email } => {
            if portcullis_gateway::policy::split_address(&email).is_none() {
                bail!("{email}: expected an address such as user@example.com");
            }
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.len() < 8 {
                bail!("the password must have at least 8 characters");
            }
            let hash =
                portcullis_gateway::users::hash_password(password).map_err(anyhow::Error::msg)?;
            store.add_user(&email, &hash).await?;
            println!("user {} added", email.to_ascii_lowercase());
        }
        UserCmd::List => {
            for u in store.list_users().await? {
                println!("{u}");
            }
        }
        UserCmd::Remove { email } => {
            if !store.remove_user(&email).await? {
                eprintln!("no such user: {email}");
                return Ok(ExitCode::from(1));
            }
            println!("user {email} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn queue(config: &Config, cmd: QueueCmd) -> Result<ExitCode> {
    // Never Spool::open here: its clean-up would delete bodies a running gateway is
    // receiving.
    let spool = Spool::open_shared(&config.data_dir.join("spool")).context("opening the spool")?;
    let request = match &cmd {
        QueueCmd::Flush => Some("flush".to_string()),
        QueueCmd::Delete { id } => Some(format!("delete {id}")),
        QueueCmd::Hold { id } => Some(format!("hold {id}")),
        QueueCmd::Release { id } => Some(format!("release {id}")),
        _ => None,
    };
    if let Some(line) = request {
        let reply = match portcullis_gateway::control::request(&config.data_dir, &line).await {
            Some(reply) => reply,
            None => offline(&spool, &cmd)?,
        };
        return Ok(match reply.strip_prefix("ok") {
            Some(rest) => {
                println!("{}", rest.trim());
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("{}", reply.trim_start_matches("error").trim());
                ExitCode::from(1)
            }
        });
    }
    match cmd {
        QueueCmd::List { json } => {
            let mut rows = Vec::new();
            for id in spool.list()? {
                let Ok((env, state, size)) = describe(&spool, &id) else {
                    continue;
                };
                let pending: Vec<&str> = env
                    .recipients
                    .iter()
                    .zip(&state.status)
                    .filter(|(_, s)| **s == RecipientStatus::Pending)
                    .map(|(r, _)| r.address.as_str())
                    .collect();
                let reply = state.last_reply.iter().flatten().last().cloned();
                if json {
                    rows.push(serde_json::json!({
                        "id": id, "received_at": env.received_at, "sender": env.sender,
                        "recipients": pending, "size": size, "attempts": state.attempts,
                        "next_attempt": state.next_attempt, "held": state.held,
                        "direction": env.direction.as_str(), "last_reply": reply,
                    }));
                } else {
                    let held = if state.held { " HELD" } else { "" };
                    println!(
                        "{id}{held}  {size:>8}  {}  <{}> -> {}",
                        portcullis_gateway::dates::rfc5322_date(env.received_at),
                        env.sender,
                        pending.join(", ")
                    );
                    if let Some(reply) = reply {
                        println!("    ({reply})");
                    }
                }
            }
            if json {
                println!("{}", serde_json::Value::Array(rows));
            }
        }
        QueueCmd::Show { id } => {
            let (env, state, _) =
                describe(&spool, &id).with_context(|| format!("no message {id} in the queue"))?;
            println!("{}", serde_json::to_string_pretty(&env)?);
            println!("{}", serde_json::to_string_pretty(&state)?);
            let (_, body) = spool.read_message(&id)?;
            println!("{}", String::from_utf8_lossy(&body));
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Queue changes when no gateway is running: straight to the spool.
fn offline(spool: &Spool, cmd: &QueueCmd) -> Result<String> {
    let missing = |id: &str| format!("error no message {id} in the queue");
    Ok(match cmd {
        QueueCmd::Flush => {
            let mut n = 0;
            for id in spool.list()? {
                n += usize::from(spool.make_due(&id, 0)?);
            }
            format!("ok {n} messages will be tried at the next start")
        }
        QueueCmd::Delete { id } => {
            if spool.remove(id)? {
                format!("ok {id}")
            } else {
                missing(id)
            }
        }
        QueueCmd::Hold { id } | QueueCmd::Release { id } => {
            let held = matches!(cmd, QueueCmd::Hold { .. });
            match spool.set_held(id, held, portcullis_queue::spool::now())? {
                Some(_) => format!("ok {id}"),
                None => missing(id),
            }
        }
        _ => "error not a change".into(),
    })
}

pub async fn log(config: &Config, cmd: LogCmd) -> Result<ExitCode> {
    let store = open_store(config).await?;
    let LogCmd::Search {
        sender,
        recipient,
        since,
        limit,
        json,
    } = cmd;
    let since = since.map(|s| parse_since(&s)).transpose()?;
    let query = LogQuery {
        sender,
        recipient,
        since,
        until: None,
        limit,
    };
    let records = store.search_log(&query).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in records {
        println!(
            "{}  {}  {}  {} [{}]  <{}>  {} bytes  {}",
            r.id,
            portcullis_gateway::dates::rfc5322_date(r.received_at),
            r.direction,
            r.helo,
            r.client_ip,
            r.sender,
            r.size,
            r.subject.unwrap_or_default()
        );
        for rc in r.recipients {
            println!(
                "    {}  {}  {}  {}",
                rc.address,
                rc.status,
                rc.remote_host.unwrap_or_default(),
                rc.reply.unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_since(s: &str) -> Result<i64> {
    if let Ok(t) = s.parse::<i64>() {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num
        .parse()
        .with_context(|| format!("--since {s}: expected unix time or 30m, 2h, 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("--since {s}: unit must be s, m, h or d"),
    };
    Ok(portcullis_queue::spool::now() - n * mult)
}
