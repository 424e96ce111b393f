//! Data-driven message cases through the real message path: every
//! `tests/data/eml/<case>.eml` is sent through the SMTP session to the gateway's
//! `SmtpHandler` and `Transaction` on a real `Gateway` (`support/gateway.rs`: spool,
//! queue, store, policy, message log, clamd, the loopback DNS), and what the gateway
//! recorded (the reply, the message-log record with its verdict, rule, score and
//! findings, the quarantine item, the message as queued or held, the authentication
//! summary it logged) is compared with `<case>.expected.toml` beside it. The format is in
//! the folder's README.md; adding a regression is adding two files.
//!
//! Every case is checked and every failure reported at the end, each with the case file,
//! expected and actual verdict and the full list of findings. The folder must hold at
//! least [`MIN_CASES`] pairs and nothing unpaired, so that a broken listing cannot pass.
//!
//! clamd: a real one (`support/clamd.rs`, the EICAR signature only) is started for the
//! walk; without it the test fails. DNS: each case's `[dns]` table is served by a small
//! server of its own (`support/dns.rs`). `EML_CASE=<case>` runs one case and prints what
//! it found.
//!
//! ```text
//! cargo test -p portcullis-gateway --test eml_cases -- --nocapture
//! ```

mod support;

use portcullis_filter::dnsbl::{DnsblSettings, FcrdnsSettings};
use portcullis_filter::finding::{Finding, name_matches};
use portcullis_filter::greylist::GreylistSettings;
use portcullis_filter::lexical::{self, ContentEntry};
use portcullis_filter::rules::{Rule, RuleSet, SpamThresholds, default_rules};
use portcullis_gateway::config::Config;
use portcullis_gateway::smtp::SmtpHandler;
use portcullis_smtp::Limits;
use portcullis_smtp::server::ConnInfo;
use portcullis_store::{ContentRow, ListEntry};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use support::gateway::{Harness, StorePolicy};

const MIN_CASES: usize = 30;
/// Files of the folder that are not cases.
const NOT_CASES: &[&str] = &["README.md", ".gitattributes"];
/// The gateway's name: greeting, `Received`, and the authserv-id of its
/// `Authentication-Results`.
const HOSTNAME: &str = "mx.example.com";
/// The domain the gateway accepts mail for.
const LOCAL_DOMAIN: &str = "example.com";

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
    auth_results: Vec<String>,
    #[serde(default)]
    message: MessageSpec,
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
    #[serde(default)]
    dnsbl: DnsblSettings,
    #[serde(default)]
    fcrdns: FcrdnsSettings,
    #[serde(default, rename = "rule")]
    rules: Vec<Rule>,
    #[serde(default, rename = "list")]
    lists: Vec<ListEntry>,
    #[serde(default)]
    content: Vec<ContentEntry>,
    /// `[directory.NAME]` sources and `[domain."DOMAIN"]` settings, as in portcullis.toml.
    #[serde(default)]
    directory: BTreeMap<String, portcullis_directory::SourceConfig>,
    #[serde(default)]
    domain: BTreeMap<String, portcullis_directory::DomainConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The message as the gateway queued it for delivery or held it in the quarantine,
/// with the header fields it added.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MessageSpec {
    /// Texts that must be in it.
    has: Vec<String>,
    /// Texts that must not be in it.
    lacks: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EnvelopeSpec {
    client_ip: String,
    helo: String,
    sender: String,
    recipients: Vec<String>,
    /// `inbound`, or `outbound`: the client's address is an internal network.
    direction: String,
}

impl Default for EnvelopeSpec {
    fn default() -> Self {
        EnvelopeSpec {
            client_ip: "192.0.2.25".into(),
            helo: "mail.example.org".into(),
            sender: "alice@example.org".into(),
            recipients: vec!["bob@example.com".into()],
            direction: "inbound".into(),
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

/// The settings of `portcullis.toml` for a case: the defaults, with the case's sections.
fn config_of(x: &Expected, clamd: &support::clamd::Clamd) -> Result<Config, String> {
    let mut config = Config {
        hostname: HOSTNAME.into(),
        ..Config::default()
    };
    config.auth.enabled = x.auth.enabled;
    config.auth.spf_reject_fail = x.auth.spf_reject_fail;
    config.auth.dmarc_reject = x.auth.dmarc_reject;
    config.auth.trusted_arc_sealers = x.auth.trusted_arc_sealers.clone();
    config.spam = x.spam.clone();
    config.greylist = x.greylist.clone();
    config.dnsbl = x.dnsbl.clone();
    config.fcrdns = x.fcrdns.clone();
    config.antivirus.fail_open = x.antivirus.fail_open;
    config.directory = x.directory.clone();
    config.domain = x.domain.clone();
    config.antivirus.clamd = match x.antivirus.clamd.as_str() {
        "up" => match &clamd.tcp {
            portcullis_filter::clamd::Endpoint::Tcp(addr) => vec![addr.clone()],
            other => return Err(format!("the test's clamd is at {other:?}")),
        },
        "down" => vec![format!("127.0.0.1:{}", support::clamd::free_port())],
        "off" => Vec::new(),
        other => return Err(format!("[antivirus] clamd = {other:?}")),
    };
    Ok(config)
}

/// What the administrator put in the store for a case. The rules and content entries
/// are checked here as `portcullis rule add` and `content add` check them: the gateway
/// leaves out a stored one that does not compile, which would hide a mistake in a case.
fn store_policy_of(x: &Expected, ip: IpAddr) -> Result<StorePolicy, String> {
    let mut all = x.rules.clone();
    all.extend(default_rules(&x.spam));
    RuleSet::new(all).map_err(|e| format!("[[rule]]: {e}"))?;
    let mut content = Vec::new();
    for e in &x.content {
        lexical::validate(e).map_err(|err| format!("[[content]] {:?}: {err}", e.pattern))?;
        content.push(ContentRow {
            list: e.list.clone(),
            pattern: e.pattern.clone(),
            field: e.field.as_str().to_string(),
            regex: e.regex,
            score: e.score,
        });
    }
    let networks = match x.envelope.direction.as_str() {
        "inbound" => Vec::new(),
        "outbound" => vec![ipnet::IpNet::from(ip)],
        other => return Err(format!("[envelope] direction {other:?}")),
    };
    Ok(StorePolicy {
        domains: vec![LOCAL_DOMAIN.into()],
        networks,
        rules: x.rules.clone(),
        lists: x.lists.clone(),
        content,
    })
}

/// Runs one case; the list of what differs from the expectation (empty: it passed), and
/// the report of what happened.
async fn run_case(dir: &Path, case: &str, clamd: &support::clamd::Clamd) -> (Vec<String>, String) {
    let eml = std::fs::read(dir.join(format!("{case}.eml"))).expect("read the .eml");
    let toml_path = dir.join(format!("{case}.expected.toml"));
    let text = std::fs::read_to_string(&toml_path).expect("read the .expected.toml");
    let x: Expected = match toml::from_str(&text) {
        Ok(x) => x,
        Err(e) => return (vec![format!("{}: {e}", toml_path.display())], String::new()),
    };
    let env = &x.envelope;
    let ip: IpAddr = match env.client_ip.parse() {
        Ok(ip) => ip,
        Err(e) => return (vec![format!("[envelope] client_ip: {e}")], String::new()),
    };
    let (config, policy) =
        match config_of(&x, clamd).and_then(|c| Ok((c, store_policy_of(&x, ip)?))) {
            Ok(set) => set,
            Err(e) => return (vec![e], String::new()),
        };
    let zone: support::dns::Zone = x
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
    let nameserver = support::dns::serve(zone).await;
    let h = Harness::start(&config, nameserver, &policy).await;
    support::trace::take();

    let mut handler = SmtpHandler::new(
        h.gw.clone(),
        ConnInfo {
            peer: SocketAddr::new(ip, 40025),
            local: "127.0.0.1:25".parse().expect("an address"),
            listener: "smtp",
        },
    );
    let mut limits = Limits::default();
    if let Some(max) = x.smtp.max_message_size {
        limits.max_message_size = max;
    }
    let t = support::smtp::transact(
        &mut handler,
        limits,
        &support::smtp::Envelope {
            helo: &env.helo,
            sender: &env.sender,
            recipients: &env.recipients,
        },
        &eml,
    )
    .await;
    let reply = t.reply.as_ref().map(reply_text).unwrap_or_default();

    // What the gateway recorded.
    let log = h.message_log().await;
    let held = h.quarantine().await;
    let logged = support::trace::take();
    let record = match t.queue_id() {
        Some(id) => log.iter().find(|r| r.id == id),
        None => log.first(),
    };
    let findings: Vec<Finding> = record
        .and_then(|r| r.findings.as_deref())
        .map(|j| serde_json::from_str(j).expect("the findings of the message log are JSON"))
        .unwrap_or_default();
    let rule = record.and_then(|r| r.rule.clone());
    // Refused before the rules ran (MAIL, DATA, the DATA reader, authentication, an
    // unavailable check, greylisting): no record; the verdict is the reply's class.
    let verdict = match record.and_then(|r| r.verdict.clone()) {
        Some(v) => v,
        None => match &t.reply {
            Some(r) if r.is_permanent() => "reject".to_string(),
            Some(r) if r.is_transient() => "tempfail".to_string(),
            _ => "none".to_string(),
        },
    };
    let auth = logged
        .iter()
        .find(|e| e.message == "authentication")
        .and_then(|e| e.field("auth"))
        .map(str::to_string);
    let kept: Option<Vec<u8>> = if verdict.starts_with("quarantine:") {
        held.first().map(|(_, body)| body.clone())
    } else {
        t.queue_id().and_then(|id| h.queued(id)).map(|(_, m)| m)
    };

    let mut report = String::new();
    let _ = writeln!(report, "  description: {}", x.description);
    let _ = writeln!(
        report,
        "  verdict: expected {}, got {verdict} (reply {reply} to {}, rule {:?}, score {:.2}{})",
        x.verdict,
        t.stage,
        rule.as_deref().unwrap_or(""),
        record.and_then(|r| r.score).unwrap_or(0.0) + 0.0,
        if t.closed { ", connection closed" } else { "" }
    );
    match record {
        Some(r) => {
            let statuses: Vec<String> = r
                .recipients
                .iter()
                .map(|rc| format!("{} {}", rc.address, rc.status))
                .collect();
            let _ = writeln!(
                report,
                "  message log: {} {} {} -> {}",
                r.id,
                r.direction,
                r.sender,
                statuses.join(", ")
            );
        }
        None => {
            let _ = writeln!(report, "  message log: no record");
            // A deferral by greylisting says its score in the service log.
            if let Some(score) = logged
                .iter()
                .find(|e| e.message == "greylisted")
                .and_then(|e| e.field("score"))
            {
                let _ = writeln!(report, "  greylisted at score {score}");
            }
        }
    }
    if let Some(a) = &auth {
        let _ = writeln!(report, "  auth: {a}");
    }
    let _ = writeln!(report, "  findings ({}):", findings.len());
    for f in &findings {
        let _ = writeln!(report, "    {} {:+.2} {}", f.name, f.score, f.detail);
    }
    for (item, _) in &held {
        let _ = writeln!(
            report,
            "  quarantine: {} for {} class {} rule {:?}",
            item.id, item.recipient, item.class, item.rule
        );
    }
    for e in logged.iter().filter(|e| e.level <= tracing::Level::WARN) {
        let _ = writeln!(report, "  gateway log: {e}");
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
        && r.as_str() != rule.as_deref().unwrap_or("")
    {
        wrong.push(format!("rule {rule:?}, expected {r:?}"));
    }
    for p in &x.findings {
        if !findings.iter().any(|f| finding_matches(p, f)) {
            wrong.push(format!("finding {p} missing"));
        }
    }
    for p in &x.absent {
        if findings.iter().any(|f| finding_matches(p, f)) {
            wrong.push(format!("finding {p} present, expected absent"));
        }
    }
    let summary = auth.clone().unwrap_or_default();
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
    // The quarantine holds one item per recipient exactly when the verdict says so.
    match verdict.strip_prefix("quarantine:") {
        Some(class) => {
            if held.len() != env.recipients.len() {
                wrong.push(format!(
                    "{} quarantine items, expected one for each of {} recipients",
                    held.len(),
                    env.recipients.len()
                ));
            }
            for (item, _) in &held {
                if item.class != class || item.rule != rule {
                    wrong.push(format!(
                        "quarantine item {} has class {} and rule {:?}, the log {class} and {rule:?}",
                        item.id, item.class, item.rule
                    ));
                }
            }
        }
        None if !held.is_empty() => {
            wrong.push(format!("{} quarantine items for a {verdict}", held.len()));
        }
        None => {}
    }
    if !x.message.has.is_empty() || !x.message.lacks.is_empty() {
        match &kept {
            None => wrong.push("[message]: no message was queued or held".to_string()),
            Some(m) => {
                let text = String::from_utf8_lossy(m);
                for s in &x.message.has {
                    if !text.contains(s.as_str()) {
                        wrong.push(format!("message lacks {s:?}"));
                    }
                }
                for s in &x.message.lacks {
                    if text.contains(s.as_str()) {
                        wrong.push(format!("message has {s:?}"));
                    }
                }
                if !wrong.is_empty() {
                    let head = text.split("\r\n\r\n").next().unwrap_or("");
                    let _ = writeln!(
                        report,
                        "  header as kept:\n    {}",
                        head.replace("\r\n", "\n    ")
                    );
                }
            }
        }
    }
    drop(h);
    (wrong, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eml_cases() {
    support::trace::install();
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
        let (wrong, report) = run_case(&dir, case, &clamd).await;
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
