//! `portcullis rule|list|content|quarantine|config …`: the filter policy, the held
//! messages and the policy document. Validation and the quarantine's state changes are
//! the operations layer's; this reads arguments and prints.

use super::Target;
use super::backend::Backend;
use anyhow::{Context, Result};
use clap::Subcommand;
use portcullis_gateway::inject::Injected;
use portcullis_ops::digests::Redeemed;
use portcullis_ops::filter::RulesFile;
use portcullis_ops::quarantine::Released;
use portcullis_store::{ContentRow, ListEntry, QuarantineQuery};
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
    /// Try the rules of a TOML file against a held message (ITEM, a quarantine id): what
    /// the stored rules decide now, and with these added. Nothing is saved.
    Test {
        file: std::path::PathBuf,
        item: String,
        #[arg(long)]
        json: bool,
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
    /// Send the digests now, to every recipient with newly held mail but those who chose
    /// never (a running gateway sends each recipient one when their interval has passed).
    Digest,
    /// Show or set how often a recipient gets digests: default (the configured interval),
    /// hourly, daily, weekly or never.
    DigestFrequency {
        address: String,
        frequency: Option<String>,
    },
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

pub async fn rule(target: &Target, cmd: RuleCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
    match cmd {
        RuleCmd::List { json } => {
            if json {
                println!("{}", serde_json::Value::Array(ops.list_rules_raw().await?));
            } else {
                let rule = ops.list_rules().await?;
                print!("{}", toml::to_string(&RulesFile { rule })?);
            }
        }
        RuleCmd::Add { file } => {
            let origin = file.display().to_string();
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {origin}"))?;
            for name in ops.add_rules(&text, &origin).await? {
                println!("rule {name:?} saved");
            }
        }
        RuleCmd::Remove { name } => {
            ops.remove_rule(&name).await?;
            println!("rule {name:?} removed");
        }
        RuleCmd::Test { file, item, json } => {
            let origin = file.display().to_string();
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {origin}"))?;
            let run = ops.rule_dry_run(&text, &origin, &item).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&run)?);
            } else {
                for (label, d) in [("now", &run.current), ("with these rules", &run.candidate)] {
                    println!(
                        "{label}: {} (rule {}; matched {}; score {:.1})",
                        d.disposition,
                        d.rule.as_deref().unwrap_or("none"),
                        if d.matched.is_empty() {
                            "none".to_string()
                        } else {
                            d.matched.join(", ")
                        },
                        d.score
                    );
                    for c in &d.changes {
                        println!("  {c}");
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list(target: &Target, cmd: ListCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
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
            ops.add_list_entry(&e).await?;
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
            ops.remove_list_entry(&e).await?;
            println!("removed");
        }
        ListCmd::Show { json } => {
            let entries = ops.list_entries().await?;
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

pub async fn content(target: &Target, cmd: ContentCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
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
            ops.add_content(&row).await?;
            println!("{} {:?} added (score {})", row.list, row.pattern, row.score);
        }
        ContentCmd::Remove {
            list,
            pattern,
            field,
        } => {
            ops.remove_content(&list, &pattern, &field).await?;
            println!("removed");
        }
        ContentCmd::List { json } => {
            let rows = ops.list_content().await?;
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

fn print_released(id: &str, r: &Released) {
    let spooled = r.injected == Injected::Spooled;
    say_released(id, &r.queue_id, r.warning.as_deref(), spooled);
}

fn say_released(id: &str, queue_id: &str, warning: Option<&str>, spooled: bool) {
    if let Some(why) = warning {
        eprintln!("warning: {why}");
    } else if spooled {
        eprintln!("no gateway is running: it is sent when one starts");
    }
    println!("{id} released as {queue_id}");
}

pub async fn quarantine(target: &Target, cmd: QuarantineCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
    match cmd {
        QuarantineCmd::List {
            json,
            recipient,
            state,
        } => {
            let items = ops
                .quarantine_list(&QuarantineQuery {
                    recipient,
                    state,
                    ..Default::default()
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
            let held = ops.quarantine_show(&id).await?;
            println!("{}", serde_json::to_string_pretty(&held.item)?);
            println!("{}", serde_json::to_string_pretty(&held.findings)?);
            println!("{}", String::from_utf8_lossy(&held.body));
        }
        QuarantineCmd::Release { id, allow_sender } => match &ops {
            Backend::Local(local) => {
                let released = local.quarantine_release(&id, allow_sender).await?;
                print_released(&id, &released);
            }
            // The API answers from within a running gateway: its release is scheduled
            // at once, or comes with a warning.
            Backend::Remote(remote) => {
                #[derive(serde::Deserialize)]
                struct ReleasedView {
                    queue_id: String,
                    warning: Option<String>,
                }
                let action = if allow_sender {
                    "release-and-allow"
                } else {
                    "release"
                };
                let r: ReleasedView = remote
                    .send(
                        reqwest::Method::POST,
                        &["quarantine", &id, action],
                        super::remote::Body::None,
                    )
                    .await?;
                say_released(&id, &r.queue_id, r.warning.as_deref(), false);
            }
        },
        QuarantineCmd::Delete { id } => {
            ops.quarantine_delete(&id).await?;
            println!("{id} deleted");
        }
        QuarantineCmd::ReportSpam { id } => {
            ops.quarantine_report_spam(&id).await?;
            println!("{id} reported as spam and deleted");
        }
        QuarantineCmd::Digest => {
            let ids = ops.local("quarantine digest")?.quarantine_digest().await?;
            println!("{} digests queued", ids.len());
        }
        QuarantineCmd::Redeem { token } => match ops
            .local("quarantine redeem")?
            .quarantine_redeem(&token)
            .await?
        {
            Redeemed::Released(id, r) => print_released(&id, &r),
            Redeemed::Deleted(id) => println!("{id} deleted"),
            Redeemed::ReleasedAll(released, gone) => {
                for (id, r) in &released {
                    print_released(id, r);
                }
                if gone > 0 {
                    println!("{gone} no longer held");
                }
            }
        },
        QuarantineCmd::DigestFrequency { address, frequency } => {
            if let Some(f) = frequency {
                ops.set_digest_frequency(&address, &f).await?;
            }
            println!("{address}: {}", ops.digest_frequency(&address).await?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn config_cmd(target: &Target, cmd: ConfigCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
    match cmd {
        ConfigCmd::Export => print!("{}", ops.policy_export().await?),
        ConfigCmd::Import { file } => {
            let origin = file.display().to_string();
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {origin}"))?;
            let n = ops.policy_import(&text, &origin).await?;
            println!(
                "imported {} domains, {} networks, {} rules, {} list entries, {} content patterns",
                n.domains, n.networks, n.rules, n.list_entries, n.content_patterns
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
