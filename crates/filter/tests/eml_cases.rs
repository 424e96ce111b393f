//! Data-driven message cases: every `tests/data/eml/<case>.eml` is sent through the SMTP
//! session and the gateway's message checks (`eml_cases/gateway.rs`), and what comes out
//! (verdict, reply, deciding rule, findings, attachment facts, authentication results) is
//! compared with `<case>.expected.toml` beside it. The format is in the folder's
//! README.md; adding a regression is adding two files.
//!
//! Every case is checked and every failure reported at the end, each with the case file,
//! expected and actual verdict and the full list of findings. The folder must hold at
//! least [`MIN_CASES`] pairs and nothing unpaired, so that a broken listing cannot pass.
//!
//! clamd: a real one (`support/clamd.rs`, the EICAR signature only) is started for the
//! walk; without it the test fails. DNS: each case's `[dns]` table is served by a small
//! server of its own (`eml_cases/dns.rs`). `EML_CASE=<case>` runs one case and prints
//! what it found.
//!
//! ```text
//! cargo test -p portcullis-filter --test eml_cases -- --nocapture
//! ```

mod support;

#[path = "eml_cases/dns.rs"]
mod dns;
#[path = "eml_cases/gateway.rs"]
mod gateway;
#[path = "eml_cases/smtp.rs"]
mod smtp;

use portcullis_filter::auth::{AuthSettings, Authenticator};
use portcullis_filter::clamd::{Endpoint, Scanner};
use portcullis_filter::content::ContentScanner;
use portcullis_filter::finding::{Finding, name_matches};
use portcullis_filter::greylist::{Greylist, GreylistSettings};
use portcullis_filter::lexical::{ContentEntry, ContentLists};
use portcullis_filter::rules::{Rule, RuleSet, SpamThresholds, default_rules};
use portcullis_smtp::Limits;
use portcullis_store::Store;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIN_CASES: usize = 30;
/// Files of the folder that are not cases.
const NOT_CASES: &[&str] = &["README.md", ".gitattributes"];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/eml")
}

/// `<case>.expected.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    description: String,
    verdict: String,
    /// `"554 5.7.1"`: code and enhanced status of the last reply.
    reply: Option<String>,
    /// The rule that decided; `""` for none.
    decided_by: Option<String>,
    #[serde(default)]
    findings: Vec<String>,
    #[serde(default)]
    absent: Vec<String>,
    #[serde(default)]
    attachments: Vec<String>,
    #[serde(default)]
    auth_results: Vec<String>,
    #[serde(default)]
    envelope: EnvelopeSpec,
    #[serde(default)]
    dns: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    smtp: SmtpSpec,
    #[serde(default)]
    antivirus: AntivirusSpec,
    #[serde(default)]
    auth: AuthSpec,
    #[serde(default)]
    spam: SpamThresholds,
    #[serde(default)]
    greylist: GreylistSettings,
    #[serde(default, rename = "rule")]
    rules: Vec<Rule>,
    #[serde(default)]
    content: Vec<ContentEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EnvelopeSpec {
    client_ip: String,
    helo: String,
    sender: String,
    recipients: Vec<String>,
    /// `inbound`, or `outbound` (an authenticated user or an internal network).
    direction: String,
    allowed: bool,
}

impl Default for EnvelopeSpec {
    fn default() -> Self {
        EnvelopeSpec {
            client_ip: "192.0.2.25".into(),
            helo: "mail.example.org".into(),
            sender: "alice@example.org".into(),
            recipients: vec!["bob@example.com".into()],
            direction: "inbound".into(),
            allowed: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SmtpSpec {
    max_message_size: Option<usize>,
    /// The session must (true) or must not (false) close the connection.
    closed: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AntivirusSpec {
    /// `up` (the test's clamd), `down` (an endpoint nobody listens on), `off` (none).
    clamd: String,
    fail_open: bool,
}

impl Default for AntivirusSpec {
    fn default() -> Self {
        AntivirusSpec {
            clamd: "up".into(),
            fail_open: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AuthSpec {
    enabled: bool,
    spf_reject_fail: bool,
    dmarc_reject: bool,
    trusted_arc_sealers: Vec<String>,
}

impl Default for AuthSpec {
    fn default() -> Self {
        // The defaults of `[auth]` in portcullis.toml.
        AuthSpec {
            enabled: true,
            spf_reject_fail: false,
            dmarc_reject: true,
            trusted_arc_sealers: Vec::new(),
        }
    }
}

/// The case names of the folder; panics on a file that is neither half of a pair, or
/// half of a pair without the other half.
fn case_names(dir: &Path) -> Vec<String> {
    let mut emls = Vec::new();
    let mut expected = Vec::new();
    let mut stray = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_string_lossy().into_owned();
        if let Some(case) = name.strip_suffix(".expected.toml") {
            expected.push(case.to_string());
        } else if let Some(case) = name.strip_suffix(".eml") {
            emls.push(case.to_string());
        } else if !NOT_CASES.contains(&name.as_str()) {
            stray.push(name);
        }
    }
    emls.sort();
    expected.sort();
    let mut problems = Vec::new();
    for e in &emls {
        if !expected.contains(e) {
            problems.push(format!("{e}.eml has no {e}.expected.toml"));
        }
    }
    for x in &expected {
        if !emls.contains(x) {
            problems.push(format!("{x}.expected.toml has no {x}.eml"));
        }
    }
    for s in &stray {
        problems.push(format!("{s}: neither <case>.eml nor <case>.expected.toml"));
    }
    assert!(
        problems.is_empty(),
        "{}:\n{}",
        dir.display(),
        problems.join("\n")
    );
    assert!(
        emls.len() >= MIN_CASES,
        "{}: {} cases, at least {MIN_CASES} expected",
        dir.display(),
        emls.len()
    );
    emls
}

/// `name` (`prefix*` for a prefix, as rules match names), or `name=detail` (`detail*`
/// for a prefix of the detail).
fn finding_matches(pattern: &str, f: &Finding) -> bool {
    match pattern.split_once('=') {
        None => name_matches(pattern, &f.name),
        Some((name, detail)) => {
            name_matches(name, &f.name)
                && match detail.strip_suffix('*') {
                    Some(prefix) => f.detail.starts_with(prefix),
                    None => f.detail == detail,
                }
        }
    }
}

fn reply_text(r: &portcullis_smtp::Reply) -> String {
    match &r.status {
        Some(s) => format!("{} {s}", r.code),
        None => r.code.to_string(),
    }
}

/// Runs one case; the list of what differs from the expectation (empty: it passed), and
/// the report of what happened.
async fn run_case(dir: &Path, case: &str, clamd: &Endpoint) -> (Vec<String>, String) {
    let eml = std::fs::read(dir.join(format!("{case}.eml"))).expect("read the .eml");
    let toml_path = dir.join(format!("{case}.expected.toml"));
    let text = std::fs::read_to_string(&toml_path).expect("read the .expected.toml");
    let x: Expected = match toml::from_str(&text) {
        Ok(x) => x,
        Err(e) => return (vec![format!("{}: {e}", toml_path.display())], String::new()),
    };
    let zone: dns::Zone = x
        .dns
        .iter()
        .map(|(name, v)| {
            let values = match v {
                OneOrMany::One(s) => vec![s.clone()],
                OneOrMany::Many(v) => v.clone(),
            };
            (name.trim_end_matches('.').to_ascii_lowercase(), values)
        })
        .collect();
    let nameserver = dns::serve(zone).await;
    let resolver = portcullis_queue::mx::build_resolver(&[nameserver], Duration::from_secs(2))
        .expect("a resolver for the case's DNS");
    let antivirus = match x.antivirus.clamd.as_str() {
        "up" => Some(Scanner::new(vec![clamd.clone()], Duration::from_secs(30))),
        "down" => Some(Scanner::new(
            vec![Endpoint::Tcp(format!(
                "127.0.0.1:{}",
                support::clamd::free_port()
            ))],
            Duration::from_secs(5),
        )),
        "off" => None,
        other => {
            return (
                vec![format!("[antivirus] clamd = {other:?}")],
                String::new(),
            );
        }
    };
    let mut rules = x.rules.clone();
    rules.extend(default_rules(&x.spam));
    let rules = match RuleSet::new(rules) {
        Ok(r) => r,
        Err(e) => return (vec![format!("[[rule]]: {e}")], String::new()),
    };
    let lists = match ContentLists::new(x.content.clone()) {
        Ok(l) => l,
        Err(e) => return (vec![format!("[[content]]: {e}")], String::new()),
    };
    let env = &x.envelope;
    let gateway = gateway::Gateway {
        auth: Authenticator::new(
            resolver,
            AuthSettings {
                enabled: x.auth.enabled,
                authserv_id: "mx.example.com".into(),
                spf_reject_fail: x.auth.spf_reject_fail,
                dmarc_reject: x.auth.dmarc_reject,
                trusted_arc_sealers: x.auth.trusted_arc_sealers.clone(),
                org_domain: Default::default(),
            },
        ),
        antivirus,
        antivirus_fail_open: x.antivirus.fail_open,
        content: ContentScanner::default(),
        rules,
        lists,
        greylist: Greylist::new(x.greylist.clone()),
        store: Store::open("sqlite::memory:")
            .await
            .expect("an in-memory store"),
        ip: env.client_ip.parse().expect("[envelope] client_ip"),
        internal: match env.direction.as_str() {
            "inbound" => false,
            "outbound" => true,
            other => panic!("{case}: [envelope] direction {other:?}"),
        },
        allowed: env.allowed,
    };
    let mut limits = Limits::default();
    if let Some(max) = x.smtp.max_message_size {
        limits.max_message_size = max;
    }
    let t = smtp::transact(
        &gateway,
        limits,
        &smtp::Envelope {
            helo: &env.helo,
            sender: &env.sender,
            recipients: &env.recipients,
        },
        &eml,
    )
    .await;
    let d = t.decision.unwrap_or_default();
    let reply = t.reply.as_ref().map(reply_text).unwrap_or_default();
    // Refused before the end of data (MAIL, DATA, the DATA reader): no checks ran.
    let verdict = if d.verdict.is_empty() {
        match &t.reply {
            Some(r) if r.is_permanent() => "reject".to_string(),
            Some(r) if r.is_transient() => "tempfail".to_string(),
            _ => "none".to_string(),
        }
    } else {
        d.verdict.clone()
    };

    let mut report = String::new();
    let _ = writeln!(report, "  description: {}", x.description);
    let _ = writeln!(
        report,
        "  verdict: expected {}, got {verdict} (reply {reply} to {}, rule {:?}, score {:.2}{})",
        x.verdict,
        t.stage,
        d.rule.as_deref().unwrap_or(""),
        d.score + 0.0,
        if t.closed { ", connection closed" } else { "" }
    );
    if let Some(a) = &d.auth {
        let _ = writeln!(report, "  auth: {a}");
    }
    let _ = writeln!(report, "  findings ({}):", d.findings.len());
    for f in &d.findings {
        let _ = writeln!(report, "    {} {:+.2} {}", f.name, f.score, f.detail);
    }
    if !d.attachments.is_empty() {
        let _ = writeln!(report, "  attachments: {}", d.attachments.join(", "));
    }

    let mut wrong = Vec::new();
    if verdict != x.verdict {
        wrong.push(format!("verdict {verdict}, expected {}", x.verdict));
    }
    if let Some(r) = &x.reply
        && *r != reply
    {
        wrong.push(format!("reply {reply}, expected {r}"));
    }
    if let Some(r) = &x.decided_by
        && r.as_str() != d.rule.as_deref().unwrap_or("")
    {
        wrong.push(format!("rule {:?}, expected {r:?}", d.rule));
    }
    for p in &x.findings {
        if !d.findings.iter().any(|f| finding_matches(p, f)) {
            wrong.push(format!("finding {p} missing"));
        }
    }
    for p in &x.absent {
        if d.findings.iter().any(|f| finding_matches(p, f)) {
            wrong.push(format!("finding {p} present, expected absent"));
        }
    }
    for a in &x.attachments {
        if !d.attachments.contains(a) {
            wrong.push(format!("attachment fact {a} missing"));
        }
    }
    let summary = d.auth.clone().unwrap_or_default();
    for w in &x.auth_results {
        if !summary.split_whitespace().any(|s| s == w) {
            wrong.push(format!("authentication result {w} missing"));
        }
    }
    if let Some(closed) = x.smtp.closed
        && closed != t.closed
    {
        wrong.push(format!(
            "connection closed: {}, expected {closed}",
            t.closed
        ));
    }
    (wrong, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eml_cases() {
    let dir = data_dir();
    let cases = case_names(&dir);
    let only = std::env::var("EML_CASE").ok();
    let clamd = support::clamd::start_clamd("eml").await;
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in &cases {
        if only.as_ref().is_some_and(|o| o != case) {
            continue;
        }
        ran += 1;
        let (wrong, report) = run_case(&dir, case, &clamd.tcp).await;
        if only.is_some() {
            println!("{case}.eml:\n{report}");
        }
        if !wrong.is_empty() {
            failures.push(format!("{case}.eml: {}\n{report}", wrong.join("; ")));
        }
    }
    assert!(ran > 0, "EML_CASE={only:?} names no case");
    println!("{} of {ran} message cases pass", ran - failures.len());
    assert!(
        failures.is_empty(),
        "{} of {ran} message cases fail:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
