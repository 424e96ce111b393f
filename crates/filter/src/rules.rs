//! Rules: how findings and facts become one verdict. A rule has a scope (direction,
//! domains, users), conditions over findings, scores, envelope, headers and attachment
//! facts, and an ordered list of actions. Rules run in order; the first rule that decides
//! the message's fate (accept, reject, tempfail, discard, quarantine) ends the evaluation,
//! while the others (tag, headers, redirect, copy, strip) add up along the way.
//!
//! Rules are plain data (serde), stored in the store as TOML/JSON, so the CLI, `config
//! export|import` and later the console edit the same thing. In TOML:
//!
//! ```toml
//! [[rule]]
//! name = "no executables"
//! direction = "inbound"
//! when = [{ finding = "attachment.executable" }]
//! actions = [{ action = "reject", code = 550, status = "5.7.1", text = "Executables are not accepted" }]
//! ```

use crate::attachments::AttachmentFact;
use crate::finding::{Finding, name_matches, total_score};
use portcullis_smtp::Reply;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Any,
    Inbound,
    Outbound,
}

/// One rule, as stored and exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "is_any")]
    pub direction: Scope,
    /// The rule applies when a recipient (inbound) or the sender (outbound) is in one of
    /// these domains; empty: every domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Likewise for whole addresses; empty: every user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// `all` (default): every condition must hold; `any`: one is enough. No conditions:
    /// the rule always matches.
    #[serde(default, rename = "match", skip_serializing_if = "is_all")]
    pub matching: Matching,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Matching {
    #[default]
    All,
    Any,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_any(s: &Scope) -> bool {
    *s == Scope::Any
}
fn is_all(m: &Matching) -> bool {
    *m == Matching::All
}

/// One condition. Each given field is a test and all given tests must hold; `negate`
/// turns the result around. Patterns are regular expressions, case-insensitive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A finding with this name (`dnsbl.*` for a prefix) is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
    /// The message's total score is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_at_least: Option<f64>,
    /// The message's total score is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_below: Option<f64>,
    /// A header field of this name (case-insensitive) exists, and matches `matches`
    /// when that is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// The envelope sender matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Some envelope recipient matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Some attachment (or archive member) has one of these extensions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachment_extension: Vec<String>,
    /// Some attachment is of one of these types, declared or detected (`application/zip`,
    /// or a prefix ending in `/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachment_type: Vec<String>,
    /// The message is larger than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_over: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub negate: bool,
}

/// Quarantine classes.
pub const QUARANTINE_CLASSES: [&str; 3] = ["spam", "virus", "policy"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Deliver; no later rule runs.
    Accept,
    Reject {
        #[serde(default = "reject_code")]
        code: u16,
        #[serde(default = "reject_status")]
        status: String,
        #[serde(default = "reject_text")]
        text: String,
    },
    Tempfail {
        #[serde(default = "tempfail_code")]
        code: u16,
        #[serde(default = "tempfail_status")]
        status: String,
        #[serde(default = "tempfail_text")]
        text: String,
    },
    /// Accept and drop, silently.
    Discard,
    Quarantine {
        #[serde(default = "policy_class")]
        class: String,
    },
    /// Put this text in front of the Subject.
    TagSubject {
        tag: String,
    },
    AddHeader {
        name: String,
        value: String,
    },
    /// `X-Spam-Score` and `X-Spam-Status`.
    SpamHeaders,
    /// Deliver to these addresses instead of the recipients.
    Redirect {
        to: Vec<String>,
    },
    /// Deliver also to this address (an archive mailbox).
    Copy {
        to: String,
    },
    /// Remove the attachments that a condition of this rule matched (every attachment
    /// when none did) and add a text part saying so.
    StripAttachments {
        #[serde(default = "strip_notice")]
        notice: String,
    },
}

fn reject_code() -> u16 {
    550
}
fn reject_status() -> String {
    "5.7.1".into()
}
fn reject_text() -> String {
    "Message refused by policy".into()
}
fn tempfail_code() -> u16 {
    451
}
fn tempfail_status() -> String {
    "4.7.1".into()
}
fn tempfail_text() -> String {
    "Message deferred by policy, try again later".into()
}
fn policy_class() -> String {
    "policy".into()
}
fn strip_notice() -> String {
    "An attachment of this message was removed by the mail gateway's policy.".into()
}

/// What happens to the message in the end.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    Deliver,
    Reject(Reply),
    TempFail(Reply),
    Discard,
    Quarantine(String),
}

/// Changes to the message on its way through, in rule order.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    TagSubject(String),
    AddHeader(String, String),
    /// Attachments whose file names are listed (empty: all) are removed, notice added.
    StripAttachments {
        names: Vec<String>,
        notice: String,
        /// The rule that asked for it.
        rule: String,
    },
}

/// The outcome of the rules for one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub disposition: Disposition,
    /// The rule that decided the disposition; None when no rule did (default deliver).
    pub rule: Option<String>,
    /// Every rule that matched, in order.
    pub matched: Vec<String>,
    pub changes: Vec<Change>,
    pub redirect: Option<Vec<String>>,
    pub copies: Vec<String>,
    pub score: f64,
}

/// What the rules look at.
pub struct Subject<'a> {
    pub inbound: bool,
    pub sender: &'a str,
    pub recipients: &'a [String],
    pub findings: &'a [Finding],
    pub attachments: &'a [AttachmentFact],
    /// Header fields, lower-case name and unfolded value.
    pub headers: &'a [(String, String)],
    pub size: u64,
}

struct CompiledCondition {
    source: Condition,
    matches: Option<Regex>,
    sender: Option<Regex>,
    recipient: Option<Regex>,
}

struct CompiledRule {
    rule: Rule,
    conditions: Vec<CompiledCondition>,
}

/// Rules ready to run.
pub struct RuleSet {
    rules: Vec<CompiledRule>,
}

/// Largest compiled regex, so one careless rule cannot eat memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A rule a person wrote that cannot be used; `rule` is its name. The text names the
/// rule and the part of it at fault.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuleError {
    #[error("a rule needs a name")]
    NoName,
    #[error("rule {rule:?}: no actions")]
    NoActions { rule: String },
    /// A `matches`, `sender` or `recipient` pattern that does not compile.
    #[error("rule {rule:?}: {field}: {source}")]
    Pattern {
        rule: String,
        field: &'static str,
        #[source]
        source: regex::Error,
    },
    #[error("rule {rule:?}: `matches` needs `header`")]
    MatchesWithoutHeader { rule: String },
    /// A condition without any test (or only `negate`): it would match every message.
    #[error("rule {rule:?}: an empty condition")]
    EmptyCondition { rule: String },
    /// A reject (class 5) or tempfail (class 4) reply of the wrong class.
    #[error(
        "rule {rule:?}: reply {code} {status} is not a {class}xx code with a {class}.x.x status"
    )]
    Reply {
        rule: String,
        code: u16,
        status: String,
        class: u16,
    },
    #[error("rule {rule:?}: quarantine class {class:?} is not one of {QUARANTINE_CLASSES:?}")]
    QuarantineClass { rule: String, class: String },
    /// A header name that is empty or not printable, or a value with a line break.
    #[error("rule {rule:?}: bad header {header:?}")]
    Header { rule: String, header: String },
    #[error("rule {rule:?}: tag has a line break")]
    TagLineBreak { rule: String },
    #[error("rule {rule:?}: redirect needs addresses")]
    RedirectAddresses { rule: String },
    #[error("rule {rule:?}: copy needs an address")]
    CopyAddress { rule: String },
}

fn compile(
    rule: &str,
    field: &'static str,
    pattern: &Option<String>,
) -> Result<Option<Regex>, RuleError> {
    pattern
        .as_deref()
        .map(|p| {
            RegexBuilder::new(p)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|source| RuleError::Pattern {
                    rule: rule.to_string(),
                    field,
                    source,
                })
        })
        .transpose()
}

/// Check a rule for mistakes a person can fix: bad patterns, unknown quarantine classes,
/// reply codes of the wrong class, an empty action list.
pub fn validate(rule: &Rule) -> Result<(), RuleError> {
    let name = &rule.name;
    let rule_name = || name.clone();
    if name.trim().is_empty() {
        return Err(RuleError::NoName);
    }
    if rule.actions.is_empty() {
        return Err(RuleError::NoActions { rule: rule_name() });
    }
    for c in &rule.when {
        compile(name, "matches", &c.matches)?;
        compile(name, "sender", &c.sender)?;
        compile(name, "recipient", &c.recipient)?;
        if c.matches.is_some() && c.header.is_none() {
            return Err(RuleError::MatchesWithoutHeader { rule: rule_name() });
        }
        if *c == Condition::default()
            || (c.negate
                && Condition {
                    negate: false,
                    ..c.clone()
                } == Condition::default())
        {
            return Err(RuleError::EmptyCondition { rule: rule_name() });
        }
    }
    for a in &rule.actions {
        match a {
            Action::Reject { code, status, .. } => check_reply(name, *code, status, 5)?,
            Action::Tempfail { code, status, .. } => check_reply(name, *code, status, 4)?,
            Action::Quarantine { class } if !QUARANTINE_CLASSES.contains(&class.as_str()) => {
                return Err(RuleError::QuarantineClass {
                    rule: rule_name(),
                    class: class.clone(),
                });
            }
            Action::AddHeader { name: h, value } => {
                let ok_name = !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b':');
                if !ok_name || value.contains(['\r', '\n']) {
                    return Err(RuleError::Header {
                        rule: rule_name(),
                        header: h.clone(),
                    });
                }
            }
            Action::TagSubject { tag } if tag.contains(['\r', '\n']) => {
                return Err(RuleError::TagLineBreak { rule: rule_name() });
            }
            Action::Redirect { to } if to.is_empty() || to.iter().any(|a| !a.contains('@')) => {
                return Err(RuleError::RedirectAddresses { rule: rule_name() });
            }
            Action::Copy { to } if !to.contains('@') => {
                return Err(RuleError::CopyAddress { rule: rule_name() });
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_reply(rule: &str, code: u16, status: &str, class: u16) -> Result<(), RuleError> {
    let status_ok = status.starts_with(&format!("{class}."))
        && status.split('.').count() == 3
        && status
            .split('.')
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if code / 100 != class || !(200..600).contains(&code) || !status_ok {
        return Err(RuleError::Reply {
            rule: rule.to_string(),
            code,
            status: status.to_string(),
            class,
        });
    }
    Ok(())
}

impl RuleSet {
    /// Compile rules (each must pass [`validate`]); disabled ones are left out.
    pub fn new(rules: Vec<Rule>) -> Result<RuleSet, RuleError> {
        let mut compiled = Vec::new();
        for rule in rules {
            validate(&rule)?;
            if !rule.enabled {
                continue;
            }
            let conditions = rule
                .when
                .iter()
                .map(|c| {
                    Ok(CompiledCondition {
                        matches: compile(&rule.name, "matches", &c.matches)?,
                        sender: compile(&rule.name, "sender", &c.sender)?,
                        recipient: compile(&rule.name, "recipient", &c.recipient)?,
                        source: c.clone(),
                    })
                })
                .collect::<Result<_, RuleError>>()?;
            compiled.push(CompiledRule { rule, conditions });
        }
        Ok(RuleSet { rules: compiled })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules whose scope covers one recipient (inbound) or the sender (outbound):
    /// recipients of one transaction must agree on it, or the rules could not decide for
    /// all of them at once.
    pub fn scope_of(&self, inbound: bool, sender: &str, recipient: &str) -> Vec<usize> {
        let party = [if inbound { recipient } else { sender }];
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| direction_ok(&r.rule, inbound) && parties_ok(&r.rule, &party))
            .map(|(i, _)| i)
            .collect()
    }

    pub fn evaluate(&self, s: &Subject<'_>) -> Verdict {
        let score = total_score(s.findings);
        let mut v = Verdict {
            disposition: Disposition::Deliver,
            rule: None,
            matched: Vec::new(),
            changes: Vec::new(),
            redirect: None,
            copies: Vec::new(),
            score,
        };
        for r in &self.rules {
            if !in_scope(&r.rule, s) {
                continue;
            }
            let mut hit_attachments = Vec::new();
            let mut test = |c: &CompiledCondition| c.holds(s, score, &mut hit_attachments);
            let matched = match r.rule.matching {
                Matching::All => r.conditions.iter().all(&mut test),
                Matching::Any => r.conditions.is_empty() || r.conditions.iter().any(&mut test),
            };
            if !matched {
                continue;
            }
            v.matched.push(r.rule.name.clone());
            for action in &r.rule.actions {
                let decided = match action {
                    Action::Accept => Some(Disposition::Deliver),
                    Action::Reject { code, status, text } => {
                        Some(Disposition::Reject(Reply::new(*code, status, text.clone())))
                    }
                    Action::Tempfail { code, status, text } => Some(Disposition::TempFail(
                        Reply::new(*code, status, text.clone()),
                    )),
                    Action::Discard => Some(Disposition::Discard),
                    Action::Quarantine { class } => Some(Disposition::Quarantine(class.clone())),
                    Action::TagSubject { tag } => {
                        v.changes.push(Change::TagSubject(tag.clone()));
                        None
                    }
                    Action::AddHeader { name, value } => {
                        v.changes
                            .push(Change::AddHeader(name.clone(), value.clone()));
                        None
                    }
                    Action::SpamHeaders => {
                        v.changes.extend(spam_headers(s.findings, score));
                        None
                    }
                    Action::Redirect { to } => {
                        v.redirect = Some(to.clone());
                        None
                    }
                    Action::Copy { to } => {
                        if !v.copies.contains(to) {
                            v.copies.push(to.clone());
                        }
                        None
                    }
                    Action::StripAttachments { notice } => {
                        v.changes.push(Change::StripAttachments {
                            names: hit_attachments.clone(),
                            notice: notice.clone(),
                            rule: r.rule.name.clone(),
                        });
                        None
                    }
                };
                if let Some(d) = decided {
                    v.disposition = d;
                    v.rule = Some(r.rule.name.clone());
                    return v;
                }
            }
        }
        v
    }
}

/// `X-Spam-Score` and `X-Spam-Status` as SpamAssassin writes them: the score, and
/// yes/no with the findings that scored.
pub fn spam_headers(findings: &[Finding], score: f64) -> Vec<Change> {
    let tests: Vec<String> = findings
        .iter()
        .filter(|f| f.score != 0.0)
        .map(|f| format!("{}={:.2}", f.name, f.score))
        .collect();
    let status = format!(
        "{}, score={:.2} tests=[{}]",
        if score >= SPAM_STATUS_YES {
            "Yes"
        } else {
            "No"
        },
        score,
        tests.join(", ")
    );
    vec![
        Change::AddHeader("X-Spam-Score".into(), format!("{score:.2}")),
        Change::AddHeader("X-Spam-Status".into(), status),
    ]
}

/// Score from which `X-Spam-Status` says Yes (the default tag threshold).
pub const SPAM_STATUS_YES: f64 = 5.0;

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

fn direction_ok(rule: &Rule, inbound: bool) -> bool {
    !matches!(
        (rule.direction, inbound),
        (Scope::Inbound, false) | (Scope::Outbound, true)
    )
}

fn in_scope(rule: &Rule, s: &Subject<'_>) -> bool {
    if !direction_ok(rule, s.inbound) {
        return false;
    }
    // Inbound mail is for our recipients; outbound mail is from our sender.
    let parties: Vec<&str> = if s.inbound {
        s.recipients.iter().map(String::as_str).collect()
    } else {
        vec![s.sender]
    };
    parties_ok(rule, &parties)
}

fn parties_ok(rule: &Rule, parties: &[&str]) -> bool {
    let domain_ok = rule.domains.is_empty()
        || parties.iter().any(|p| {
            rule.domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain_of(p)))
        });
    let user_ok = rule.users.is_empty()
        || parties
            .iter()
            .any(|p| rule.users.iter().any(|u| u.eq_ignore_ascii_case(p)));
    domain_ok && user_ok
}

impl CompiledCondition {
    fn holds(&self, s: &Subject<'_>, score: f64, hit: &mut Vec<String>) -> bool {
        self.test(s, score, hit) != self.source.negate
    }

    fn test(&self, s: &Subject<'_>, score: f64, hit: &mut Vec<String>) -> bool {
        let c = &self.source;
        if let Some(p) = &c.finding
            && !s.findings.iter().any(|f| name_matches(p, &f.name))
        {
            return false;
        }
        if let Some(min) = c.score_at_least
            && score < min
        {
            return false;
        }
        if let Some(max) = c.score_below
            && score >= max
        {
            return false;
        }
        if let Some(name) = &c.header {
            let found = s.headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case(name)
                    && self.matches.as_ref().is_none_or(|re| re.is_match(v))
            });
            if !found {
                return false;
            }
        }
        if let Some(re) = &self.sender
            && !re.is_match(s.sender)
        {
            return false;
        }
        if let Some(re) = &self.recipient
            && !s.recipients.iter().any(|r| re.is_match(r))
        {
            return false;
        }
        if let Some(n) = c.size_over
            && s.size <= n
        {
            return false;
        }
        if !c.attachment_extension.is_empty() || !c.attachment_type.is_empty() {
            let mut found = false;
            for a in s.attachments {
                let ext_ok = c.attachment_extension.is_empty()
                    || c.attachment_extension
                        .iter()
                        .any(|e| e.trim_start_matches('.').eq_ignore_ascii_case(&a.extension));
                let type_ok = c.attachment_type.is_empty()
                    || c.attachment_type.iter().any(|t| {
                        type_matches(t, &a.declared_type)
                            || a.detected_type
                                .as_deref()
                                .is_some_and(|d| type_matches(t, d))
                    });
                if ext_ok && type_ok {
                    found = true;
                    // A member of an archive is removed with the archive that holds it.
                    let name = a.attachment_name().to_string();
                    if !hit.contains(&name) {
                        hit.push(name);
                    }
                }
            }
            if !found {
                return false;
            }
        }
        true
    }
}

fn type_matches(pattern: &str, ty: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(major) => ty
            .split_once('/')
            .is_some_and(|(m, _)| m.eq_ignore_ascii_case(major)),
        None => pattern.eq_ignore_ascii_case(ty),
    }
}

/// Thresholds of `[spam]`, from which the default rules are made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpamThresholds {
    /// From this score inbound mail gets "[SPAM]" in front of its subject.
    #[serde(default = "tag_at")]
    pub tag_at: f64,
    /// From this score inbound mail is quarantined.
    #[serde(default = "quarantine_at")]
    pub quarantine_at: f64,
    /// From this score inbound mail is refused at SMTP time; none by default.
    #[serde(default)]
    pub reject_at: Option<f64>,
    #[serde(default = "subject_tag")]
    pub subject_tag: String,
}

fn tag_at() -> f64 {
    SPAM_STATUS_YES
}
fn quarantine_at() -> f64 {
    10.0
}
fn subject_tag() -> String {
    "[SPAM]".into()
}

impl Default for SpamThresholds {
    fn default() -> Self {
        SpamThresholds {
            tag_at: tag_at(),
            quarantine_at: quarantine_at(),
            reject_at: None,
            subject_tag: subject_tag(),
        }
    }
}

/// The rules that run after the administrator's own: viruses refused, DMARC quarantine
/// honoured, spam refused / quarantined / tagged by the thresholds, spam headers on
/// every inbound message.
pub fn default_rules(t: &SpamThresholds) -> Vec<Rule> {
    let rule = |name: &str, direction: Scope, when: Vec<Condition>, actions: Vec<Action>| Rule {
        name: name.into(),
        enabled: true,
        direction,
        domains: vec![],
        users: vec![],
        matching: Matching::All,
        when,
        actions,
    };
    let finding = |f: &str| Condition {
        finding: Some(f.into()),
        ..Default::default()
    };
    let at_least = |s: f64| Condition {
        score_at_least: Some(s),
        ..Default::default()
    };
    let mut rules = vec![
        rule(
            "default: virus",
            Scope::Any,
            vec![finding("av.virus")],
            vec![Action::Reject {
                code: 554,
                status: "5.7.1".into(),
                text: "Message refused: it contains a virus".into(),
            }],
        ),
        rule(
            "default: spam headers",
            Scope::Inbound,
            vec![],
            vec![Action::SpamHeaders],
        ),
    ];
    if let Some(r) = t.reject_at {
        rules.push(rule(
            "default: spam reject",
            Scope::Inbound,
            vec![at_least(r)],
            vec![Action::Reject {
                code: 550,
                status: "5.7.1".into(),
                text: "Message refused as spam".into(),
            }],
        ));
    }
    rules.push(rule(
        "default: spam quarantine",
        Scope::Inbound,
        vec![at_least(t.quarantine_at)],
        vec![Action::Quarantine {
            class: "spam".into(),
        }],
    ));
    rules.push(rule(
        "default: dmarc quarantine",
        Scope::Inbound,
        vec![finding("dmarc.quarantine")],
        vec![Action::Quarantine {
            class: "policy".into(),
        }],
    ));
    rules.push(rule(
        "default: spam tag",
        Scope::Inbound,
        vec![at_least(t.tag_at)],
        vec![Action::TagSubject {
            tag: t.subject_tag.clone(),
        }],
    ));
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(
        findings: &'a [Finding],
        attachments: &'a [AttachmentFact],
        recipients: &'a [String],
    ) -> Subject<'a> {
        Subject {
            inbound: true,
            sender: "someone@outside.test",
            recipients,
            findings,
            attachments,
            headers: &[],
            size: 1000,
        }
    }

    fn parse(toml_text: &str) -> Vec<Rule> {
        #[derive(Deserialize)]
        struct Doc {
            rule: Vec<Rule>,
        }
        toml::from_str::<Doc>(toml_text).unwrap().rule
    }

    #[test]
    fn defaults_reject_viruses_and_grade_spam() {
        let rules = RuleSet::new(default_rules(&SpamThresholds::default())).unwrap();
        let rcpt = vec!["user@example.test".to_string()];
        let virus = [Finding::new("av.virus", 100.0, "Eicar-Test-Signature")];
        let v = rules.evaluate(&subject(&virus, &[], &rcpt));
        assert!(matches!(v.disposition, Disposition::Reject(ref r) if r.code == 554));
        assert_eq!(v.rule.as_deref(), Some("default: virus"));

        let spam = [Finding::new("spam.bayes", 12.0, "0.999")];
        let v = rules.evaluate(&subject(&spam, &[], &rcpt));
        assert_eq!(v.disposition, Disposition::Quarantine("spam".into()));

        let doubtful = [Finding::new("spam.bayes", 6.0, "0.9")];
        let v = rules.evaluate(&subject(&doubtful, &[], &rcpt));
        assert_eq!(v.disposition, Disposition::Deliver);
        assert!(v.changes.contains(&Change::TagSubject("[SPAM]".into())));
        assert!(v.changes.iter().any(
            |c| matches!(c, Change::AddHeader(n, v) if n == "X-Spam-Status" && v.starts_with("Yes"))
        ));

        let ham = [Finding::new("spam.bayes", -2.0, "0.01")];
        let v = rules.evaluate(&subject(&ham, &[], &rcpt));
        assert_eq!(v.disposition, Disposition::Deliver);
        assert!(!v.changes.iter().any(|c| matches!(c, Change::TagSubject(_))));
    }

    #[test]
    fn scope_conditions_and_order() {
        let rules = parse(
            r#"
            [[rule]]
            name = "vip"
            users = ["boss@example.test"]
            actions = [{ action = "accept" }]

            [[rule]]
            name = "exe"
            direction = "inbound"
            domains = ["example.test"]
            when = [{ attachment_extension = ["exe", ".scr"] }]
            actions = [{ action = "strip_attachments" }, { action = "add_header", name = "X-Stripped", value = "yes" }]

            [[rule]]
            name = "invoice"
            match = "any"
            when = [{ header = "subject", matches = "^invoice" }, { sender = "@bad\\.test$" }]
            actions = [{ action = "quarantine", class = "policy" }]
            "#,
        );
        let set = RuleSet::new(rules).unwrap();
        let exe = AttachmentFact {
            filename: "a.exe".into(),
            extension: "exe".into(),
            ..Default::default()
        };
        let pdf = AttachmentFact {
            filename: "b.pdf".into(),
            extension: "pdf".into(),
            ..Default::default()
        };
        let atts = [exe, pdf];
        let ours = vec!["user@example.test".to_string()];
        let v = set.evaluate(&subject(&[], &atts, &ours));
        assert_eq!(v.disposition, Disposition::Deliver);
        assert_eq!(
            v.changes[0],
            Change::StripAttachments {
                names: vec!["a.exe".into()],
                notice: strip_notice(),
                rule: "exe".into()
            }
        );
        // Another domain is out of the rule's scope.
        let other = vec!["user@other.test".to_string()];
        assert!(
            set.evaluate(&subject(&[], &atts, &other))
                .changes
                .is_empty()
        );
        // The VIP rule decides first.
        let boss = vec!["boss@example.test".to_string()];
        let v = set.evaluate(&subject(&[], &atts, &boss));
        assert_eq!(v.rule.as_deref(), Some("vip"));
        assert!(v.changes.is_empty());
        // Header regex, case-insensitive.
        let headers = [("subject".to_string(), "INVOICE 42".to_string())];
        let mut s = subject(&[], &[], &other);
        s.headers = &headers;
        assert_eq!(
            set.evaluate(&s).disposition,
            Disposition::Quarantine("policy".into())
        );
    }

    #[test]
    fn negate_and_scores() {
        let rules = parse(
            r#"
            [[rule]]
            name = "band"
            when = [{ score_at_least = 3.0 }, { score_below = 5.0 }, { finding = "dnsbl.*", negate = true }]
            actions = [{ action = "tempfail" }]
            "#,
        );
        let set = RuleSet::new(rules).unwrap();
        let r = vec!["a@b.test".to_string()];
        let f = [Finding::new("x", 4.0, "")];
        assert!(
            matches!(set.evaluate(&subject(&f, &[], &r)).disposition, Disposition::TempFail(ref rep) if rep.code == 451)
        );
        let f2 = [
            Finding::new("x", 3.0, ""),
            Finding::new("dnsbl.zen", 1.0, ""),
        ];
        assert_eq!(
            set.evaluate(&subject(&f2, &[], &r)).disposition,
            Disposition::Deliver
        );
        let f3 = [Finding::new("x", 5.0, "")];
        assert_eq!(
            set.evaluate(&subject(&f3, &[], &r)).disposition,
            Disposition::Deliver
        );
    }

    #[test]
    fn mistakes_are_named() {
        let bad = |t: &str| RuleSet::new(parse(t)).err().unwrap().to_string();
        assert!(
            bad(r#"[[rule]]
            name = "r"
            when = [{ header = "subject", matches = "(" }]
            actions = [{ action = "discard" }]"#)
            .contains("rule \"r\": matches")
        );
        assert!(
            bad(r#"[[rule]]
            name = "r"
            actions = [{ action = "reject", code = 450 }]"#)
            .contains("not a 5xx")
        );
        assert!(
            bad(r#"[[rule]]
            name = "r"
            actions = [{ action = "quarantine", class = "junk" }]"#)
            .contains("class")
        );
        assert!(
            bad(r#"[[rule]]
            name = "r"
            when = [{}]
            actions = [{ action = "discard" }]"#)
            .contains("empty condition")
        );
        assert!(
            bad(r#"[[rule]]
            name = "r"
            actions = []"#)
            .contains("no actions")
        );
    }
}
