//! Commands for the filter policy and the quarantine: `rule`, `list`, `quarantine` and
//! `config export|import`. Rules and lists are checked here before they reach the store,
//! so a running gateway only ever loads rules that compile.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use portcullis_filter::lexical;
use portcullis_filter::rules::{Rule, RuleSet};
use portcullis_filter::token::LinkAction;
use portcullis_queue::spool::{Envelope, now};
use portcullis_store::{ContentRow, ListEntry, QuarantineQuery, Route, Store};
use serde::{Deserialize, Serialize};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum RuleCmd {
    /// Rules in evaluation order (the built-in defaults run after them).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add (or replace, by name) the rules of a TOML file of `[[rule]]` tables.
    Add {
        file: std::path::PathBuf,
    },
    Remove {
        name: String,
    },
}

#[derive(Subcommand)]
pub enum ListCmd {
    /// Add an entry: KIND allow|block|valid, FIELD ip|sender|recipient, VALUE an address,
    /// a domain, or a network. SCOPE: a domain or address it applies to (default: all).
    Add {
        kind: String,
        field: String,
        value: String,
        #[arg(long, default_value = "")]
        scope: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    Remove {
        kind: String,
        field: String,
        value: String,
        #[arg(long, default_value = "")]
        scope: String,
    },
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ContentCmd {
    /// Add a word or phrase (or with --regex a regular expression) to content list LIST,
    /// with the score a match adds; FIELD subject|body|headers|any.
    Add {
        list: String,
        pattern: String,
        #[arg(long)]
        score: f64,
        #[arg(long, default_value = "any")]
        field: String,
        #[arg(long)]
        regex: bool,
    },
    Remove {
        list: String,
        pattern: String,
        #[arg(long, default_value = "any")]
        field: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum QuarantineCmd {
    /// Held messages, one line (or JSON object) per recipient's copy.
    List {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        recipient: Option<String>,
        /// held (default), released or deleted.
        #[arg(long)]
        state: Option<String>,
    },
    /// One held message: what was found, and the message.
    Show {
        id: String,
    },
    /// Deliver a held copy to its recipient (once); `--allow-sender` also puts the sender
    /// on that recipient's allow list.
    Release {
        id: String,
        #[arg(long)]
        allow_sender: bool,
    },
    Delete {
        id: String,
    },
    /// The held message is spam: teach the classifier so, and delete it.
    ReportSpam {
        id: String,
    },
    /// Send the digests now (a running gateway also sends them every
    /// `quarantine.digest_interval_secs`).
    Digest,
    /// Act on a one-click link's token from a digest, as the portal does.
    Redeem {
        token: String,
    },
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print the policy (domains, networks, rules, lists) as one TOML document.
    Export,
    /// Replace the policy's rules and lists, and add its domains and networks, from a
    /// TOML document as `export` prints it.
    Import { file: std::path::PathBuf },
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<Rule>,
}

/// Parse a TOML document, naming the file, line and key of a mistake.
fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .unwrap_or(0);
        anyhow::anyhow!("{origin}:{line}: {}", e.message().trim())
    })
}

fn check_rules(rules: &[Rule], origin: &str) -> Result<()> {
    RuleSet::new(rules.to_vec()).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    Ok(())
}

pub async fn rule(config: &Config, cmd: RuleCmd) -> Result<ExitCode> {
    let store = crate::cli::open_store(config).await?;
    match cmd {
        RuleCmd::List { json } => {
            let rules = store.list_rules().await?;
            if json {
                let list: Vec<serde_json::Value> = rules
                    .iter()
                    .map(|(_, d)| serde_json::from_str(d).unwrap_or(serde_json::Value::Null))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                let parsed: Vec<Rule> = rules
                    .iter()
                    .filter_map(|(_, d)| serde_json::from_str(d).ok())
                    .collect();
                print!("{}", toml::to_string(&RulesFile { rule: parsed })?);
            }
        }
        RuleCmd::Add { file } => {
            let origin = file.display().to_string();
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {origin}"))?;
            let doc: RulesFile = parse_toml(&text, &origin)?;
            if doc.rule.is_empty() {
                bail!("{origin}: no [[rule]] tables");
            }
            check_rules(&doc.rule, &origin)?;
            for r in &doc.rule {
                store.put_rule(&r.name, &serde_json::to_string(r)?).await?;
                println!("rule {:?} saved", r.name);
            }
        }
        RuleCmd::Remove { name } => {
            if !store.remove_rule(&name).await? {
                eprintln!("no rule named {name:?}");
                return Ok(ExitCode::from(1));
            }
            println!("rule {name:?} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_entry(e: &ListEntry) -> Result<()> {
    if e.field == "ip"
        && e.value.parse::<ipnet::IpNet>().is_err()
        && e.value.parse::<std::net::IpAddr>().is_err()
    {
        bail!("{:?} is not an IP address or network", e.value);
    }
    if e.field != "ip" && e.value.contains(char::is_whitespace) {
        bail!("{:?} is not an address or domain", e.value);
    }
    Ok(())
}

pub async fn list(config: &Config, cmd: ListCmd) -> Result<ExitCode> {
    let store = crate::cli::open_store(config).await?;
    match cmd {
        ListCmd::Add {
            kind,
            field,
            value,
            scope,
            comment,
        } => {
            let e = ListEntry {
                kind,
                field,
                value,
                scope,
                comment,
            };
            check_entry(&e)?;
            store.add_list_entry(&e).await?;
            println!("{} {} {} added", e.kind, e.field, e.value);
        }
        ListCmd::Remove {
            kind,
            field,
            value,
            scope,
        } => {
            let e = ListEntry {
                kind,
                field,
                value,
                scope,
                comment: String::new(),
            };
            if !store.remove_list_entry(&e).await? {
                eprintln!("no such entry");
                return Ok(ExitCode::from(1));
            }
            println!("removed");
        }
        ListCmd::Show { json } => {
            let entries = store.list_entries().await?;
            if json {
                println!("{}", serde_json::to_string(&entries)?);
            } else {
                for e in entries {
                    let scope = if e.scope.is_empty() { "*" } else { &e.scope };
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        e.kind, e.field, e.value, scope, e.comment
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_content(r: &ContentRow) -> Result<()> {
    let e = portcullis_gateway::filtering::content_entry(r).ok_or_else(|| {
        anyhow::anyhow!(
            "field {:?} is not one of subject, body, headers, any",
            r.field
        )
    })?;
    lexical::validate(&e).map_err(anyhow::Error::msg)
}

pub async fn content(config: &Config, cmd: ContentCmd) -> Result<ExitCode> {
    let store = crate::cli::open_store(config).await?;
    match cmd {
        ContentCmd::Add {
            list,
            pattern,
            score,
            field,
            regex,
        } => {
            let row = ContentRow {
                list,
                pattern,
                field,
                regex,
                score,
            };
            check_content(&row)?;
            store.put_content_pattern(&row).await?;
            println!("{} {:?} added (score {})", row.list, row.pattern, row.score);
        }
        ContentCmd::Remove {
            list,
            pattern,
            field,
        } => {
            if !store
                .remove_content_pattern(&list, &pattern, &field)
                .await?
            {
                eprintln!("no such pattern in list {list}");
                return Ok(ExitCode::from(1));
            }
            println!("removed");
        }
        ContentCmd::List { json } => {
            let rows = store.list_content_patterns().await?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                for r in rows {
                    let kind = if r.regex { "regex" } else { "word" };
                    println!(
                        "{}\t{}\t{kind}\t{}\t{}",
                        r.list, r.field, r.score, r.pattern
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn quarantine(config: &Config, cmd: QuarantineCmd) -> Result<ExitCode> {
    let store = crate::cli::open_store(config).await?;
    match cmd {
        QuarantineCmd::List {
            json,
            recipient,
            state,
        } => {
            let items = store
                .quarantine_list(&QuarantineQuery {
                    recipient,
                    state,
                    limit: 0,
                })
                .await?;
            if json {
                let rows: Vec<serde_json::Value> = items
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "id": i.id, "recipient": i.recipient, "sender": i.sender,
                            "subject": i.subject, "class": i.class, "score": i.score,
                            "rule": i.rule, "state": i.state, "received_at": i.received_at,
                            "expires_at": i.expires_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for i in items {
                    println!(
                        "{}  {:<6}  {:>6.1}  <{}> -> {}  {}",
                        i.id,
                        i.class,
                        i.score,
                        i.sender,
                        i.recipient,
                        i.subject.unwrap_or_default()
                    );
                }
            }
        }
        QuarantineCmd::Show { id } => {
            let Some((item, findings, _, body)) = store.quarantine_get(&id).await? else {
                eprintln!("no quarantined message {id}");
                return Ok(ExitCode::from(1));
            };
            println!("{}", serde_json::to_string_pretty(&item)?);
            let findings: serde_json::Value = serde_json::from_str(&findings)?;
            println!("{}", serde_json::to_string_pretty(&findings)?);
            println!("{}", String::from_utf8_lossy(&body));
        }
        QuarantineCmd::Release { id, allow_sender } => {
            return release(config, &store, &id, allow_sender).await;
        }
        QuarantineCmd::Delete { id } => {
            if !store
                .quarantine_transition(&id, "held", "deleted", now())
                .await?
            {
                eprintln!("no held message {id} (already released or deleted?)");
                return Ok(ExitCode::from(1));
            }
            println!("{id} deleted");
        }
        QuarantineCmd::ReportSpam { id } => {
            let Some((item, _, _, body)) = store.quarantine_get(&id).await? else {
                eprintln!("no quarantined message {id}");
                return Ok(ExitCode::from(1));
            };
            if !store
                .quarantine_transition(&id, "held", "deleted", now())
                .await?
            {
                eprintln!("{id} is not held (already {})", item.state);
                return Ok(ExitCode::from(1));
            }
            crate::corpus::learn(&store, &body, true).await?;
            println!("{id} reported as spam and deleted");
        }
        QuarantineCmd::Digest => {
            let inject = crate::cli_report::injector(config)?;
            let ids = portcullis_gateway::digest::send(config, &store, &inject).await?;
            println!("{} digests queued", ids.len());
        }
        QuarantineCmd::Redeem { token } => {
            let signer = portcullis_gateway::digest::signer(&store).await?;
            let (id, action) = match signer.verify(token.trim(), now()) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(1));
                }
            };
            // Links are only ever made for inbound spam (digest_due); anything else is
            // the administrator's to release, whatever a token says.
            match store.quarantine_get(&id).await? {
                Some((item, ..)) if item.direction == "inbound" && item.class == "spam" => {}
                Some(_) => {
                    eprintln!("{id} can only be released by an administrator");
                    return Ok(ExitCode::from(1));
                }
                None => {
                    eprintln!("no quarantined message {id}");
                    return Ok(ExitCode::from(1));
                }
            }
            return match action {
                LinkAction::Release => release(config, &store, &id, false).await,
                LinkAction::AllowSender => release(config, &store, &id, true).await,
                LinkAction::Delete => {
                    Box::pin(quarantine(config, QuarantineCmd::Delete { id })).await
                }
            };
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Release one recipient's copy (see [`release_item`]) and say what happened.
pub async fn release(
    config: &Config,
    store: &Store,
    id: &str,
    allow_sender: bool,
) -> Result<ExitCode> {
    let Some((item, _, _, _)) = store.quarantine_get(id).await? else {
        eprintln!("no quarantined message {id}");
        return Ok(ExitCode::from(1));
    };
    if !store
        .quarantine_transition(id, "held", "releasing", now())
        .await?
    {
        eprintln!("{id} is not held (already {})", item.state);
        return Ok(ExitCode::from(1));
    }
    let inject = crate::cli_report::injector(config)?;
    let (queue_id, body) = match release_item(store, &inject, id).await {
        Ok(released) => released,
        Err(e) => {
            // Give the claim back so the release can be tried again.
            store
                .quarantine_transition(id, "releasing", "held", now())
                .await?;
            return Err(e);
        }
    };
    // A running gateway delivers it at once; otherwise at its next start.
    if let Err(e) = inject.announce(&queue_id).await {
        eprintln!("warning: {e}");
    }
    // A person said this "spam" is not: the classifier learns from it.
    if item.class == "spam"
        && let Err(e) = crate::corpus::learn(store, &body, false).await
    {
        tracing::warn!(item = id, error = %e, "released message not learned as ham");
    }
    if allow_sender && !item.sender.is_empty() {
        store
            .add_list_entry(&ListEntry {
                kind: "allow".into(),
                field: "sender".into(),
                value: item.sender.clone(),
                scope: item.recipient.clone(),
                comment: format!("released from quarantine ({id})"),
            })
            .await?;
    }
    println!("{id} released as {queue_id}");
    Ok(ExitCode::SUCCESS)
}

/// The queue id of a released item: made from the item's id, so finishing a release
/// twice (after a crash) writes the same queue file, and never one the gateway makes
/// (its ids are hex only).
fn release_queue_id(item: &str) -> String {
    item.replace('.', "R")
}

/// Queue an item claimed for release (state `releasing`) for its recipient, log it, and
/// mark it released. The order makes a crash harmless: an item still `releasing` is
/// finished again at the gateway's start, writing the same queue file. Returns the
/// queue id and the message; the caller announces it.
pub async fn release_item(
    store: &Store,
    inject: &portcullis_gateway::Injector,
    id: &str,
) -> Result<(String, Vec<u8>)> {
    let Some((item, findings, envelope_json, body)) = store.quarantine_get(id).await? else {
        bail!("no quarantined message {id}");
    };
    let mut envelope: Envelope =
        serde_json::from_str(&envelope_json).context("stored envelope is corrupt")?;
    let Some(rcpt) = envelope
        .recipients
        .iter()
        .find(|r| r.address.eq_ignore_ascii_case(&item.recipient))
        .cloned()
    else {
        bail!("stored envelope lacks recipient {}", item.recipient);
    };
    envelope.id = release_queue_id(id);
    // Its time in the queue starts now, not when it was first received.
    envelope.received_at = now();
    envelope.recipients = vec![rcpt];
    envelope.prepend = String::new();
    let spooled = inject
        .write(&envelope, body.clone())
        .await
        .context("writing the released message to the spool")?;
    let mut record = portcullis_gateway::log_record(&envelope, 0, item.subject.clone(), None);
    record.verdict = Some("deliver".into());
    record.rule = Some(format!("released from quarantine ({id})"));
    record.score = Some(item.score);
    record.findings = Some(findings);
    if let Err(e) = store.log_message(&record).await {
        tracing::warn!(id, error = %e, "released message not logged");
    }
    store
        .quarantine_transition(id, "releasing", "released", now())
        .await?;
    tracing::info!(item = id, queue_id = %spooled.0, "released from quarantine");
    Ok((spooled.0, body))
}

/// The policy as one document.
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    #[serde(default)]
    domain: Vec<DomainDoc>,
    #[serde(default)]
    network: Vec<NetworkDoc>,
    #[serde(default)]
    rule: Vec<Rule>,
    #[serde(default)]
    list: Vec<ListEntry>,
    #[serde(default)]
    content: Vec<ContentRow>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct DomainDoc {
    name: String,
    routes: Vec<RouteDoc>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RouteDoc {
    host: String,
    port: u16,
    priority: u32,
    tls: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_user: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct NetworkDoc {
    cidr: ipnet::IpNet,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    comment: String,
}

pub async fn config_cmd(config: &Config, cmd: ConfigCmd) -> Result<ExitCode> {
    let store = crate::cli::open_store(config).await?;
    match cmd {
        ConfigCmd::Export => {
            let doc = PolicyDoc {
                domain: store
                    .list_domains()
                    .await?
                    .into_iter()
                    .map(|d| DomainDoc {
                        name: d.name,
                        routes: d
                            .routes
                            .into_iter()
                            .map(|r| RouteDoc {
                                host: r.host,
                                port: r.port,
                                priority: r.priority,
                                tls: r.tls,
                                auth_user: r.auth_user,
                            })
                            .collect(),
                    })
                    .collect(),
                network: store
                    .list_networks()
                    .await?
                    .into_iter()
                    .map(|(cidr, comment)| NetworkDoc { cidr, comment })
                    .collect(),
                rule: store
                    .list_rules()
                    .await?
                    .iter()
                    .filter_map(|(_, d)| serde_json::from_str(d).ok())
                    .collect(),
                list: store.list_entries().await?,
                content: store.list_content_patterns().await?,
            };
            print!("{}", toml::to_string(&doc)?);
        }
        ConfigCmd::Import { file } => {
            let origin = file.display().to_string();
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {origin}"))?;
            let doc: PolicyDoc = parse_toml(&text, &origin)?;
            check_rules(&doc.rule, &origin)?;
            for e in &doc.list {
                check_entry(e).with_context(|| format!("{origin}: list entry"))?;
            }
            for r in &doc.content {
                check_content(r).with_context(|| format!("{origin}: content pattern"))?;
            }
            for d in &doc.domain {
                let routes: Vec<Route> = d
                    .routes
                    .iter()
                    .map(|r| Route {
                        host: r.host.clone(),
                        port: r.port,
                        priority: r.priority,
                        tls: r.tls.clone(),
                        auth_user: r.auth_user.clone(),
                        auth_password: None,
                    })
                    .collect();
                store.add_domain(&d.name, &routes).await?;
            }
            for n in &doc.network {
                store.add_network(n.cidr, &n.comment).await?;
            }
            let rules = doc
                .rule
                .iter()
                .map(|r| Ok((r.name.clone(), serde_json::to_string(r)?)))
                .collect::<Result<Vec<_>>>()?;
            store
                .replace_filter_policy(&rules, &doc.list, &doc.content)
                .await?;
            println!(
                "imported {} domains, {} networks, {} rules, {} list entries, {} content patterns",
                doc.domain.len(),
                doc.network.len(),
                doc.rule.len(),
                doc.list.len(),
                doc.content.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
