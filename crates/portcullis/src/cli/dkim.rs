//! `portcullis dkim …`: outbound DKIM signing keys. Keys are made here and kept in the store;
//! a running gateway signs with the active keys of the `From` domain. Every command that makes
//! or changes a key prints the DNS records the administrator has to publish or may remove.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use portcullis_filter::sign::{
    Algorithm, KeyRing, Signer, generate, normalize_domain, record_name, stored_dns_txt,
    zone_record,
};
use portcullis_queue::spool::now;
use portcullis_store::{DkimKey, Store};
use std::collections::BTreeSet;
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
    /// Debugging aid: sign a message read from standard input with the active keys of DOMAIN
    /// (default: the domain of its From field) and print it with its DKIM-Signature fields.
    Sign { domain: Option<String> },
}

pub async fn dkim(config: &Config, cmd: DkimCmd) -> Result<ExitCode> {
    let store = crate::cli::open_store(config).await?;
    match cmd {
        DkimCmd::Generate {
            domain,
            selector,
            algorithm,
            stage,
        } => generate_cmd(&store, &domain, selector, &algorithm, stage).await,
        DkimCmd::Rotate { domain, stage } => rotate(&store, &domain, stage).await,
        DkimCmd::Activate { domain } => activate(&store, &domain).await,
        DkimCmd::Retire { domain, selector } => retire(&store, &domain, &selector).await,
        DkimCmd::Delete { domain, selector } => delete(&store, &domain, &selector).await,
        DkimCmd::List { domain, json } => list(&store, domain.as_deref(), json).await,
        DkimCmd::Sign { domain } => sign(&store, domain.as_deref()).await,
    }
}

fn check_domain(domain: &str) -> Result<String> {
    let d = normalize_domain(domain);
    if d.is_empty() || !d.contains('.') || d.contains(|c: char| c.is_whitespace() || c == '@') {
        bail!("{domain:?} is not a domain name");
    }
    Ok(d)
}

/// A selector is one or more DNS labels: letters, digits and inner hyphens.
fn check_selector(selector: &str) -> Result<String> {
    let s = selector.trim().to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if s.is_empty() || s.len() > 128 || !s.split('.').all(label_ok) {
        bail!("selector {selector:?}: use DNS labels of letters, digits and inner hyphens");
    }
    Ok(s)
}

/// `<algorithm>-<YYYYMM>`, with `-2`, `-3`… when the domain already used it.
fn default_selector(algorithm: Algorithm, now: i64, taken: &BTreeSet<String>) -> String {
    let (y, m, _) = portcullis_gateway::dates::civil(now);
    let base = format!("{}-{y:04}{m:02}", algorithm.key_type());
    if !taken.contains(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|s| !taken.contains(s))
        .unwrap_or(base)
}

async fn selectors_of(store: &Store, domain: &str) -> Result<BTreeSet<String>> {
    Ok(store
        .list_dkim_keys(Some(domain))
        .await?
        .into_iter()
        .map(|k| k.selector)
        .collect())
}

/// The zone-file line of a stored key, or a note when its public key is unreadable.
fn key_record(key: &DkimKey) -> String {
    match stored_dns_txt(key) {
        Ok(txt) => zone_record(&key.selector, &key.domain, &txt),
        Err(e) => format!("; {e}"),
    }
}

fn print_keep_published(domain: &str) {
    println!(
        "Keep the records of retiring keys published until mail signed with them has been \
         verified by its recipients ({KEEP_PUBLISHED}): they no longer sign, but mail already \
         sent carries their signatures. Then run `portcullis dkim retire {domain} SELECTOR` \
         and remove the record."
    );
}

async fn generate_cmd(
    store: &Store,
    domain: &str,
    selector: Option<String>,
    algorithm: &str,
    stage: bool,
) -> Result<ExitCode> {
    let domain = check_domain(domain)?;
    let algorithm = Algorithm::parse(algorithm)
        .with_context(|| format!("algorithm {algorithm:?}: use rsa or ed25519"))?;
    let now = now();
    let selector = match selector {
        Some(s) => check_selector(&s)?,
        None => default_selector(algorithm, now, &selectors_of(store, &domain).await?),
    };
    let key = generate(algorithm)?;
    let state = if stage { "pending" } else { "active" };
    store
        .add_dkim_keys(&[key.to_store(&domain, &selector, state, now)])
        .await?;
    println!(
        "DKIM key for {domain}: selector {selector}, {}, {state}.",
        algorithm.tag()
    );
    if stage {
        println!(
            "It does not sign yet. Publish this record in the DNS zone of {domain}, then run \
             `portcullis dkim activate {domain}`:"
        );
    } else {
        println!(
            "Outbound mail from {domain} is signed with it from now on. Publish this record in \
             the DNS zone of {domain} (until it is published, its signatures do not verify):"
        );
    }
    println!("{}", zone_record(&selector, &domain, &key.dns_txt));
    Ok(ExitCode::SUCCESS)
}

async fn rotate(store: &Store, domain: &str, stage: bool) -> Result<ExitCode> {
    let domain = check_domain(domain)?;
    let keys = store.list_dkim_keys(Some(&domain)).await?;
    let pending: Vec<&str> = keys
        .iter()
        .filter(|k| k.state == "pending")
        .map(|k| k.selector.as_str())
        .collect();
    if !pending.is_empty() {
        bail!(
            "{domain} already has pending keys ({}): publish their records and run \
             `portcullis dkim activate {domain}`, or delete them",
            pending.join(", ")
        );
    }
    let algorithms: BTreeSet<Algorithm> = keys
        .iter()
        .filter(|k| k.state == "active")
        .filter_map(|k| Algorithm::from_tag(&k.algorithm))
        .collect();
    if algorithms.is_empty() {
        bail!(
            "{domain} has no active DKIM key to rotate; make one with `portcullis dkim generate {domain}`"
        );
    }
    let now = now();
    let mut taken: BTreeSet<String> = keys.iter().map(|k| k.selector.clone()).collect();
    let state = if stage { "pending" } else { "active" };
    let mut new_keys = Vec::new();
    let mut records = Vec::new();
    for algorithm in algorithms {
        let selector = default_selector(algorithm, now, &taken);
        taken.insert(selector.clone());
        let key = generate(algorithm)?;
        records.push(zone_record(&selector, &domain, &key.dns_txt));
        new_keys.push(key.to_store(&domain, &selector, state, now));
    }
    if stage {
        store.add_dkim_keys(&new_keys).await?;
        println!("New DKIM keys for {domain}, pending (the current keys still sign):");
        for r in &records {
            println!("  {r}");
        }
        println!(
            "Publish these records in the DNS zone of {domain}; once they resolve, run \
             `portcullis dkim activate {domain}` to sign with them."
        );
        return Ok(ExitCode::SUCCESS);
    }
    let retiring = store.rotate_dkim_keys(&domain, &new_keys, now).await?;
    println!("Rotated the DKIM keys of {domain}.");
    println!(
        "New keys, signing from now on (publish these records now: until they resolve, the new signatures do not verify):"
    );
    for r in &records {
        println!("  {r}");
    }
    print_retiring(store, &domain, &retiring).await?;
    Ok(ExitCode::SUCCESS)
}

async fn print_retiring(store: &Store, domain: &str, selectors: &[String]) -> Result<()> {
    if selectors.is_empty() {
        return Ok(());
    }
    println!("Retiring keys, no longer used for signing (keep these records published):");
    for key in store.list_dkim_keys(Some(domain)).await? {
        if selectors.contains(&key.selector) {
            println!("  {}", key_record(&key));
        }
    }
    print_keep_published(domain);
    Ok(())
}

async fn activate(store: &Store, domain: &str) -> Result<ExitCode> {
    let domain = check_domain(domain)?;
    let (activated, retiring) = store.activate_dkim_keys(&domain, now()).await?;
    if activated.is_empty() {
        eprintln!("{domain} has no pending DKIM key");
        return Ok(ExitCode::from(1));
    }
    println!(
        "Now signing mail from {domain} with: {}",
        activated.join(", ")
    );
    print_retiring(store, &domain, &retiring).await?;
    Ok(ExitCode::SUCCESS)
}

async fn retire(store: &Store, domain: &str, selector: &str) -> Result<ExitCode> {
    let domain = check_domain(domain)?;
    let selector = selector.trim().to_ascii_lowercase();
    let keys = store.list_dkim_keys(Some(&domain)).await?;
    let Some(key) = keys.iter().find(|k| k.selector == selector) else {
        eprintln!("{domain} has no DKIM key with selector {selector:?}");
        return Ok(ExitCode::from(1));
    };
    store
        .set_dkim_key_state(&domain, &selector, "retired", now())
        .await?;
    println!(
        "DKIM key {selector} of {domain} retired: remove the record {} from DNS when you are \
         ready. (To revoke a compromised key at once, publish it with an empty key: \"v=DKIM1; p=\".)",
        record_name(&selector, &domain)
    );
    if key.state == "active" {
        let others = keys
            .iter()
            .filter(|k| k.state == "active" && k.selector != selector)
            .count();
        if others == 0 {
            println!(
                "Warning: {domain} has no active DKIM key now; its outbound mail goes unsigned."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(store: &Store, domain: &str, selector: &str) -> Result<ExitCode> {
    let domain = check_domain(domain)?;
    let selector = selector.trim().to_ascii_lowercase();
    let keys = store.list_dkim_keys(Some(&domain)).await?;
    let Some(key) = keys.iter().find(|k| k.selector == selector) else {
        eprintln!("{domain} has no DKIM key with selector {selector:?}");
        return Ok(ExitCode::from(1));
    };
    if key.state == "active" {
        bail!(
            "key {selector} of {domain} signs mail; retire it first (`portcullis dkim retire {domain} {selector}`)"
        );
    }
    store.delete_dkim_key(&domain, &selector).await?;
    println!(
        "DKIM key {selector} of {domain} deleted; remove the record {} from DNS if it is still published.",
        record_name(&selector, &domain)
    );
    Ok(ExitCode::SUCCESS)
}

/// What to do with a key's record, by state.
fn advice(key: &DkimKey) -> String {
    match key.state.as_str() {
        "pending" => "publish the record, then `dkim activate`".to_string(),
        "active" => "signing; keep the record published".to_string(),
        "retiring" => format!(
            "stopped signing {}; keep the record published until mail signed with it has been verified",
            key.retired_at
                .map(portcullis_gateway::dates::ymd)
                .unwrap_or_default()
        ),
        "retired" => "the record may be removed".to_string(),
        _ => String::new(),
    }
}

async fn list(store: &Store, domain: Option<&str>, json: bool) -> Result<ExitCode> {
    let domain = domain.map(check_domain).transpose()?;
    let keys = store.list_dkim_keys(domain.as_deref()).await?;
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
                    "record": record_name(&k.selector, &k.domain),
                    "txt": stored_dns_txt(k).ok(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    if keys.is_empty() {
        println!("no DKIM keys");
        return Ok(ExitCode::SUCCESS);
    }
    for k in &keys {
        println!(
            "{}\t{}\t{}\t{}\tcreated {}\t{}",
            k.domain,
            k.selector,
            k.algorithm,
            k.state,
            portcullis_gateway::dates::ymd(k.created_at),
            advice(k)
        );
        if k.state == "retired" {
            println!("    {}", record_name(&k.selector, &k.domain));
        } else {
            println!("    {}", key_record(k));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Bare LF line ends become CRLF, as the message would be sent over SMTP.
fn crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 32);
    for (i, &b) in input.iter().enumerate() {
        if b == b'\n' && (i == 0 || input[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

async fn sign(store: &Store, domain: Option<&str>) -> Result<ExitCode> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading the message from standard input")?;
    let message = crlf(&input);
    let fields = match domain {
        Some(d) => {
            let d = check_domain(d)?;
            Signer::new(&d, &store.active_dkim_keys(Some(&d)).await?)?.sign(&message)?
        }
        None => {
            let ring = KeyRing::load(store, None).await?;
            for problem in ring.problems() {
                eprintln!("warning: {problem}");
            }
            match ring.sign(&message)? {
                Some(fields) => fields,
                None => bail!(
                    "no active DKIM key for the From domain of the message{}",
                    portcullis_filter::sign::from_domain(&message)
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            }
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(fields.as_bytes())?;
    out.write_all(&message)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_default_selectors() {
        assert_eq!(portcullis_gateway::dates::ymd(0), "1970-01-01");
        assert_eq!(portcullis_gateway::dates::ymd(1_795_430_462), "2026-11-23");
        assert_eq!(portcullis_gateway::dates::ymd(951_782_400), "2000-02-29");
        let mut taken = BTreeSet::new();
        let now = 1_795_430_462;
        assert_eq!(default_selector(Algorithm::Rsa, now, &taken), "rsa-202611");
        taken.insert("rsa-202611".to_string());
        taken.insert("rsa-202611-2".to_string());
        assert_eq!(
            default_selector(Algorithm::Rsa, now, &taken),
            "rsa-202611-3"
        );
        assert_eq!(
            default_selector(Algorithm::Ed25519, now, &taken),
            "ed25519-202611"
        );
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_selector("Mail-2026.eu").unwrap(), "mail-2026.eu");
        for bad in ["", "-a", "a-", "a..b", "a_b", "a b", "a/b"] {
            assert!(check_selector(bad).is_err(), "{bad}");
        }
        assert_eq!(check_domain("Example.COM.").unwrap(), "example.com");
        assert!(check_domain("localhost").is_err());
        assert!(check_domain("a@b.c").is_err());
    }

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(crlf(b"\n"), b"\r\n");
    }
}
