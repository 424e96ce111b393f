//! `portcullis dkim …`: outbound DKIM signing keys (the operations layer makes and
//! changes them). Every command that makes or changes a key prints the DNS records the
//! administrator has to publish or may remove. All but `sign` (which needs the private
//! keys) act on a remote gateway as well, printing the same.

use super::Target;
use anyhow::{Context, Result};
use clap::Subcommand;
use portcullis_ops::dkim::{Changed, crlf};
use portcullis_ops::dkim_check::DnsStatus;
use std::io::{Read, Write};
use std::process::ExitCode;

/// How long to keep a retiring key's record published, as advice in the output: mail may sit
/// in queues for days, and some receivers verify again later (forwarding, ARC, reports).
const KEEP_PUBLISHED: &str = "a week is safe";

#[derive(Subcommand)]
pub enum DkimCmd {
    /// Make a signing key for DOMAIN, store it (active: signing at once) and print the DNS
    /// record to publish.
    Generate {
        domain: String,
        /// Default: <algorithm>-<YYYYMM>, e.g. rsa-202611.
        #[arg(long)]
        selector: Option<String>,
        /// rsa (2048 bits, what every receiver checks) or ed25519 (RFC 8463).
        #[arg(long, default_value = "rsa")]
        algorithm: String,
        /// Store the key as pending: publish its record first, then `dkim activate DOMAIN`.
        #[arg(long)]
        stage: bool,
    },
    /// Replace the active keys of DOMAIN: one new key per algorithm it signs with; the old
    /// keys stop signing and become retiring (keep their records published for a while).
    Rotate {
        domain: String,
        /// Make the new keys pending instead: publish their records, then `dkim activate`.
        #[arg(long)]
        stage: bool,
    },
    /// Start signing with the pending keys of DOMAIN; its active keys of the same algorithms
    /// become retiring.
    Activate { domain: String },
    /// Mark a key retired: it no longer signs and its record may be removed from DNS.
    Retire { domain: String, selector: String },
    /// Delete a key that does not sign (pending, retiring or retired).
    Delete { domain: String, selector: String },
    /// The keys, their states and their DNS records.
    List {
        /// Only this domain's keys.
        domain: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Look up the DNS records of DOMAIN's keys (or of SELECTOR only) through the
    /// gateway's resolver and say whether each is published as it should be. Retired keys
    /// are skipped unless named. Exits 1 when a record is missing, differs or fails.
    Check {
        domain: String,
        selector: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Debugging aid: sign a message read from standard input with the active keys of DOMAIN
    /// (default: the domain of its From field) and print it with its DKIM-Signature fields.
    Sign { domain: Option<String> },
}

pub async fn dkim(target: &Target, cmd: DkimCmd) -> Result<ExitCode> {
    let ops = target.backend().await?;
    match cmd {
        DkimCmd::Generate {
            domain,
            selector,
            algorithm,
            stage,
        } => {
            let g = ops
                .dkim_generate(&domain, selector.as_deref(), &algorithm, stage)
                .await?;
            let d = &g.domain;
            println!(
                "DKIM key for {d}: selector {}, {}, {}.",
                g.selector, g.algorithm, g.state
            );
            if stage {
                println!(
                    "It does not sign yet. Publish this record in the DNS zone of {d}, then run \
                     `portcullis dkim activate {d}`:"
                );
            } else {
                println!(
                    "Outbound mail from {d} is signed with it from now on. Publish this record in \
                     the DNS zone of {d} (until it is published, its signatures do not verify):"
                );
            }
            println!("{}", g.record);
        }
        DkimCmd::Rotate { domain, stage } => {
            let c = ops.dkim_rotate(&domain, stage).await?;
            let d = &c.domain;
            if stage {
                println!("New DKIM keys for {d}, pending (the current keys still sign):");
            } else {
                println!("Rotated the DKIM keys of {d}.");
                println!(
                    "New keys, signing from now on (publish these records now: until they resolve, the new signatures do not verify):"
                );
            }
            for r in &c.new_records {
                println!("  {r}");
            }
            if stage {
                println!(
                    "Publish these records in the DNS zone of {d}; once they resolve, run \
                     `portcullis dkim activate {d}` to sign with them."
                );
            }
            print_retiring(&c);
        }
        DkimCmd::Activate { domain } => {
            let c = ops.dkim_activate(&domain).await?;
            println!(
                "Now signing mail from {} with: {}",
                c.domain,
                c.activated.join(", ")
            );
            print_retiring(&c);
        }
        DkimCmd::Retire { domain, selector } => {
            let (record, still_signed) = ops.dkim_retire(&domain, &selector).await?;
            println!(
                "DKIM key {selector} of {domain} retired: remove the record {record} from DNS when you are \
                 ready. (To revoke a compromised key at once, publish it with an empty key: \"v=DKIM1; p=\".)"
            );
            if !still_signed {
                println!(
                    "Warning: {domain} has no active DKIM key now; its outbound mail goes unsigned."
                );
            }
        }
        DkimCmd::Delete { domain, selector } => {
            let record = ops.dkim_delete(&domain, &selector).await?;
            println!(
                "DKIM key {selector} of {domain} deleted; remove the record {record} from DNS if it is still published."
            );
        }
        DkimCmd::List { domain, json } => {
            let keys = ops.dkim_list(domain.as_deref()).await?;
            if json {
                let list: Vec<serde_json::Value> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "domain": k.domain,
                            "selector": k.selector,
                            "algorithm": k.algorithm,
                            "state": k.state,
                            "created_at": k.created_at,
                            "retired_at": k.retired_at,
                            "record": k.record_name,
                            "txt": k.txt,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if keys.is_empty() {
                println!("no DKIM keys");
            }
            for k in keys.iter().filter(|_| !json) {
                println!(
                    "{}\t{}\t{}\t{}\tcreated {}\t{}",
                    k.domain,
                    k.selector,
                    k.algorithm,
                    k.state,
                    portcullis_gateway::dates::ymd(k.created_at),
                    k.advice
                );
                if k.state == "retired" {
                    println!("    {}", k.record_name);
                } else {
                    println!("    {}", k.zone_line);
                }
            }
        }
        DkimCmd::Check {
            domain,
            selector,
            json,
        } => {
            let selectors = match selector {
                Some(s) => vec![s],
                None => ops
                    .dkim_list(Some(&domain))
                    .await?
                    .into_iter()
                    .filter(|k| k.state != "retired")
                    .map(|k| k.selector)
                    .collect(),
            };
            if selectors.is_empty() {
                anyhow::bail!(
                    "{domain} has no DKIM key to check (make one with `portcullis dkim generate {domain}`)"
                );
            }
            let mut all_good = true;
            for selector in selectors {
                let check = ops.dkim_check_dns(&domain, &selector).await?;
                all_good &= matches!(check.status, DnsStatus::Matches { .. });
                if json {
                    println!("{}", serde_json::to_string(&check)?);
                    continue;
                }
                match &check.status {
                    DnsStatus::Matches { .. } => {
                        println!("{}: published and matches", check.name)
                    }
                    DnsStatus::Differs { published } => {
                        println!("{}: published but differs", check.name);
                        println!("    expected:  {}", check.expected);
                        for p in published {
                            println!("    published: {p}");
                        }
                    }
                    DnsStatus::NotFound => {
                        println!("{}: not found; publish:", check.name);
                        println!("    {}", check.expected);
                    }
                    DnsStatus::Error { reason } => {
                        println!("{}: DNS error: {reason}", check.name)
                    }
                }
            }
            if !all_good {
                return Ok(ExitCode::FAILURE);
            }
        }
        DkimCmd::Sign { domain } => {
            // The private keys never leave the gateway's store: signing is done there.
            let ops = ops.local("dkim sign")?;
            let mut input = Vec::new();
            std::io::stdin()
                .read_to_end(&mut input)
                .context("reading the message from standard input")?;
            let message = crlf(&input);
            let (fields, problems) = ops.dkim_sign(domain.as_deref(), &message).await?;
            for problem in problems {
                eprintln!("warning: {problem}");
            }
            let mut out = std::io::stdout().lock();
            out.write_all(fields.as_bytes())?;
            out.write_all(&message)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_retiring(c: &Changed) {
    if c.retiring_records.is_empty() {
        return;
    }
    println!("Retiring keys, no longer used for signing (keep these records published):");
    for r in &c.retiring_records {
        println!("  {r}");
    }
    let d = &c.domain;
    println!(
        "Keep the records of retiring keys published until mail signed with them has been \
         verified by its recipients ({KEEP_PUBLISHED}): they no longer sign, but mail already \
         sent carries their signatures. Then run `portcullis dkim retire {d} SELECTOR` \
         and remove the record."
    );
}
