//! `portcullis queue …` and `portcullis log search`: what is waiting and why, the
//! changes an administrator makes, and where a message went.

use super::Target;
use super::remote::{Body, Remote};
use anyhow::Result;
use clap::Subcommand;
use portcullis_gateway::dates::rfc5322_date;
use portcullis_ops::queue::{QueueChange, QueueItem};
use portcullis_queue::spool::{DeliveryState, Envelope, now};
use portcullis_store::LogQuery;
use std::process::ExitCode;

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
    /// Try one message now, whatever its next attempt time (not a held one: release it).
    Retry { id: String },
}

#[derive(Subcommand)]
pub enum LogCmd {
    /// Find messages in the log.
    Search {
        #[arg(long)]
        sender: Option<String>,
        #[arg(long)]
        recipient: Option<String>,
        /// A substring of the Subject header.
        #[arg(long)]
        subject: Option<String>,
        /// A substring of the Message-ID header.
        #[arg(long)]
        message_id: Option<String>,
        /// The client's address, exactly.
        #[arg(long)]
        client_ip: Option<String>,
        /// The verdict (deliver, reject, quarantine:spam) or a class of them (quarantine:).
        #[arg(long)]
        verdict: Option<String>,
        /// inbound or outbound.
        #[arg(long)]
        direction: Option<String>,
        /// Unix time or a duration back from now: 30m, 2h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// Received before: unix time or a duration back from now.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Skip this many matches first (the next page).
        #[arg(long, default_value_t = 0)]
        offset: i64,
        #[arg(long)]
        json: bool,
    },
    /// Write the messages of a time range, oldest first, as CSV (one row per recipient)
    /// or JSON lines (one message a line); read a page at a time, however long.
    Export {
        /// Received at or after: unix seconds, 7d (back from now), 2026-12-01 or
        /// 2026-12-01T08:30:00Z (UTC); default: the beginning.
        #[arg(long)]
        from: Option<String>,
        /// Received before (as --from); default: now.
        #[arg(long)]
        to: Option<String>,
        /// csv or jsonl.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
}

pub async fn queue(target: &Target, cmd: QueueCmd) -> Result<ExitCode> {
    if let Some(opts) = &target.remote {
        return remote_queue(&Remote::new(opts)?, cmd).await;
    }
    let config = &target.config;
    // The queue needs no store: it works while the store is down.
    let ops = portcullis_ops::queue::QueueOps::new(config);
    let change = match &cmd {
        QueueCmd::Flush => Some(QueueChange::Flush),
        QueueCmd::Delete { id } => Some(QueueChange::Delete(id.clone())),
        QueueCmd::Hold { id } => Some(QueueChange::Hold(id.clone())),
        QueueCmd::Release { id } => Some(QueueChange::Release(id.clone())),
        QueueCmd::Retry { id } => Some(QueueChange::Retry(id.clone())),
        _ => None,
    };
    if let Some(change) = change {
        // A change goes to the audit log when the store is reachable; when it is not, the
        // change is made all the same (and the audit row is missing).
        let ops = match super::ops(config).await {
            Ok(o) => o.queue(),
            Err(e) => {
                eprintln!("portcullis: warning: the store is unreachable, no audit row: {e:#}");
                ops
            }
        };
        println!("{}", ops.change(&change).await?);
        return Ok(ExitCode::SUCCESS);
    }
    match cmd {
        QueueCmd::List { json } => print_queue(&ops.list()?, json)?,
        QueueCmd::Show { id } => {
            let (env, state, body) = ops.show(&id)?;
            print_queued(&env, &state, &String::from_utf8_lossy(&body))?;
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The queue of a remote gateway: its list, and the changes, which it words as the
/// control socket does.
async fn remote_queue(remote: &Remote, cmd: QueueCmd) -> Result<ExitCode> {
    use reqwest::Method;
    let said = match &cmd {
        QueueCmd::List { json } => {
            let mut rows: Vec<QueueItem> = remote.list(&["queue"], &[], 0, 0).await?;
            // Locally the list comes in the spool's order; the API's is oldest first.
            rows.sort_by(|a, b| a.id.cmp(&b.id));
            print_queue(&rows, *json)?;
            return Ok(ExitCode::SUCCESS);
        }
        QueueCmd::Show { id } => {
            #[derive(serde::Deserialize)]
            struct Queued {
                envelope: Envelope,
                state: DeliveryState,
                message: String,
            }
            let q: Queued = remote.get(&["queue", id], &[]).await?;
            print_queued(&q.envelope, &q.state, &q.message)?;
            return Ok(ExitCode::SUCCESS);
        }
        QueueCmd::Flush => {
            remote
                .change(Method::POST, &["queue", "flush"], Body::None)
                .await?
        }
        QueueCmd::Delete { id } => {
            remote
                .change(Method::DELETE, &["queue", id], Body::None)
                .await?
        }
        QueueCmd::Hold { id } => {
            remote
                .change(Method::POST, &["queue", id, "hold"], Body::None)
                .await?
        }
        QueueCmd::Release { id } => {
            remote
                .change(Method::POST, &["queue", id, "release"], Body::None)
                .await?
        }
        QueueCmd::Retry { id } => {
            remote
                .change(Method::POST, &["queue", id, "retry"], Body::None)
                .await?
        }
    };
    println!("{said}");
    Ok(ExitCode::SUCCESS)
}

fn print_queued(env: &Envelope, state: &DeliveryState, message: &str) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(env)?);
    println!("{}", serde_json::to_string_pretty(state)?);
    println!("{message}");
    Ok(())
}

fn print_queue(rows: &[QueueItem], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    for r in rows {
        let held = if r.held { " HELD" } else { "" };
        println!(
            "{}{held}  {:>8}  {}  <{}> -> {}",
            r.id,
            r.size,
            rfc5322_date(r.received_at),
            r.sender,
            r.recipients.join(", ")
        );
        if let Some(reply) = &r.last_reply {
            println!("    ({reply})");
        }
    }
    Ok(())
}

pub async fn log(target: &Target, cmd: LogCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
    if let LogCmd::Export {
        from,
        to,
        format,
        out,
    } = cmd
    {
        return export(&ops, from, to, &format, out).await;
    }
    let LogCmd::Search {
        sender,
        recipient,
        subject,
        message_id,
        client_ip,
        verdict,
        direction,
        since,
        until,
        limit,
        offset,
        json,
    } = cmd
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let time = |t: Option<String>| {
        t.map(|s| portcullis_ops::log::parse_since(&s, now()))
            .transpose()
    };
    let query = LogQuery {
        sender,
        recipient,
        subject,
        message_id,
        client_ip,
        verdict,
        direction,
        since: time(since)?,
        until: time(until)?,
        limit,
        offset,
        ..LogQuery::default()
    };
    let records = ops.log_search(&query).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in records {
        println!(
            "{}  {}  {}  {} [{}]  <{}>  {} bytes  {}",
            r.id,
            rfc5322_date(r.received_at),
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

/// `log export`: to a file (made only when the export starts well) or standard output.
async fn export(
    ops: &super::backend::Backend,
    from: Option<String>,
    to: Option<String>,
    format: &str,
    out: Option<std::path::PathBuf>,
) -> Result<ExitCode> {
    use portcullis_ops::log_export::{ExportFormat, parse_time};
    use std::io::Write;
    ExportFormat::parse(format)?;
    let t = now();
    let from = from.map(|s| parse_time(&s, t)).transpose()?.unwrap_or(0);
    let to = to.map(|s| parse_time(&s, t)).transpose()?.unwrap_or(t + 1);
    if to <= from {
        anyhow::bail!("--to must be after --from");
    }
    let mut sink: Box<dyn Write> = match &out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("--out {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let written = ops.log_export(from, to, format, &mut sink).await?;
    if let Some(path) = out {
        eprintln!("wrote {written} bytes to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
