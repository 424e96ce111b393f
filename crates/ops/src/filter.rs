//! The filter policy: rules (conditions over findings, ordered actions), allow, block and
//! valid-recipient lists, and content lists (words and patterns with scores). Everything
//! is checked here before it reaches the store, so a running gateway only ever loads
//! rules and patterns that compile.

use crate::{Access, Actor, Ops, OpsError, Result, Scope};
use portcullis_filter::lexical;
use portcullis_filter::rules::{Rule, RuleSet};
use portcullis_store::{ContentRow, LIST_FIELDS, LIST_KINDS, ListEntry};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A TOML document of `[[rule]]` tables, as `rule add` reads and `rule list` prints.
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    #[serde(default)]
    pub rule: Vec<Rule>,
}

/// Parse a TOML document, naming the origin (a file), line and key of a mistake.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .unwrap_or(0);
        OpsError::Document {
            origin: format!("{origin}:{line}"),
            reason: e.message().trim().to_string(),
        }
    })
}

/// The rules compile together (names unique, conditions and actions valid).
pub fn check_rules(rules: &[Rule], origin: &str) -> Result<()> {
    RuleSet::new(rules.to_vec()).map_err(|e| OpsError::Document {
        origin: origin.to_string(),
        reason: e.to_string(),
    })?;
    Ok(())
}

/// A list entry the gateway can match.
pub fn check_entry(e: &ListEntry) -> Result<()> {
    if !LIST_KINDS.contains(&e.kind.as_str()) {
        return Err(OpsError::invalid(
            "list kind",
            &e.kind,
            format!("expected one of {}", LIST_KINDS.join(", ")),
        ));
    }
    if !LIST_FIELDS.contains(&e.field.as_str()) {
        return Err(OpsError::invalid(
            "list field",
            &e.field,
            format!("expected one of {}", LIST_FIELDS.join(", ")),
        ));
    }
    if e.field == "ip"
        && e.value.parse::<ipnet::IpNet>().is_err()
        && e.value.parse::<std::net::IpAddr>().is_err()
    {
        return Err(OpsError::invalid(
            "list value",
            &e.value,
            "is not an IP address or network",
        ));
    }
    if e.field != "ip" && e.value.contains(char::is_whitespace) {
        return Err(OpsError::invalid(
            "list value",
            &e.value,
            "is not an address or domain",
        ));
    }
    Ok(())
}

/// A content pattern that compiles, in a field that exists.
pub fn check_content(r: &ContentRow) -> Result<()> {
    let e = portcullis_gateway::filtering::content_entry(r).ok_or_else(|| {
        OpsError::invalid(
            "content field",
            &r.field,
            "expected one of subject, body, headers, any",
        )
    })?;
    lexical::validate(&e)
        .map_err(|why| OpsError::invalid("content pattern", &r.pattern, why.to_string()))
}

fn list_target(e: &ListEntry) -> String {
    let scope = if e.scope.is_empty() {
        "global"
    } else {
        &e.scope
    };
    format!("{} {} {} ({scope})", e.kind, e.field, e.value)
}

fn list_json(e: &ListEntry) -> serde_json::Value {
    json!({
        "kind": e.kind,
        "field": e.field,
        "value": e.value,
        "scope": e.scope,
        "comment": e.comment,
    })
}

impl Ops {
    /// The stored rules in evaluation order (a stored rule that no longer parses is left
    /// out, as the gateway leaves it out).
    pub async fn list_rules(&self) -> Result<Vec<Rule>> {
        self.actor().require(Access::ReadPolicy, &Scope::Global)?;
        Ok(self
            .store
            .list_rules()
            .await?
            .iter()
            .filter_map(|(_, d)| serde_json::from_str(d).ok())
            .collect())
    }

    /// The stored rules as they are kept (JSON), whether they parse or not.
    pub async fn list_rules_raw(&self) -> Result<Vec<serde_json::Value>> {
        self.actor().require(Access::ReadPolicy, &Scope::Global)?;
        Ok(self
            .store
            .list_rules()
            .await?
            .iter()
            .map(|(_, d)| serde_json::from_str(d).unwrap_or(serde_json::Value::Null))
            .collect())
    }

    /// Add (or replace, by name) the rules of a TOML document of `[[rule]]` tables;
    /// `origin` names the document in errors. The names saved.
    pub async fn add_rules(&self, text: &str, origin: &str) -> Result<Vec<String>> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        let doc: RulesFile = parse_toml(text, origin)?;
        if doc.rule.is_empty() {
            return Err(OpsError::Document {
                origin: origin.to_string(),
                reason: "no [[rule]] tables".into(),
            });
        }
        check_rules(&doc.rule, origin)?;
        let mut names = Vec::new();
        for r in &doc.rule {
            let json = serde_json::to_string(r).map_err(|e| OpsError::Document {
                origin: origin.to_string(),
                reason: e.to_string(),
            })?;
            let before = self
                .store
                .list_rules()
                .await?
                .into_iter()
                .find(|(n, _)| *n == r.name);
            self.store.put_rule(&r.name, &json).await?;
            let before = before.and_then(|(_, d)| serde_json::from_str(&d).ok());
            let after = serde_json::from_str(&json).ok();
            self.audit("rule.put", &r.name, before, after).await?;
            names.push(r.name.clone());
        }
        Ok(names)
    }

    pub async fn remove_rule(&self, name: &str) -> Result<()> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        let before = self
            .store
            .list_rules()
            .await?
            .into_iter()
            .find(|(n, _)| n == name);
        if !self.store.remove_rule(name).await? {
            return Err(OpsError::not_found("rule named", format!("{name:?}")));
        }
        let before = before.and_then(|(_, d)| serde_json::from_str(&d).ok());
        self.audit("rule.remove", name, before, None).await
    }

    /// Add an entry to an allow, block or valid-recipient list: a gateway-wide one, a
    /// domain's (its administrator) or a mailbox's (its user).
    pub async fn add_list_entry(&self, e: &ListEntry) -> Result<()> {
        self.actor()
            .require(Access::WritePolicy, &Actor::scope_of(&e.scope))?;
        check_entry(e)?;
        self.store.add_list_entry(e).await?;
        self.audit("list.add", &list_target(e), None, Some(list_json(e)))
            .await
    }

    pub async fn remove_list_entry(&self, e: &ListEntry) -> Result<()> {
        self.actor()
            .require(Access::WritePolicy, &Actor::scope_of(&e.scope))?;
        if !self.store.remove_list_entry(e).await? {
            return Err(OpsError::not_found(
                "list entry",
                format!("{} {} {}", e.kind, e.field, e.value),
            ));
        }
        self.audit("list.remove", &list_target(e), Some(list_json(e)), None)
            .await
    }

    /// The list entries the actor may read: all for an administrator, a domain's and its
    /// mailboxes' for a domain-admin, a user's own.
    pub async fn list_entries(&self) -> Result<Vec<ListEntry>> {
        let actor = self.actor();
        Ok(self
            .store
            .list_entries()
            .await?
            .into_iter()
            .filter(|e| actor.may(Access::ReadPolicy, &Actor::scope_of(&e.scope)))
            .collect())
    }

    pub async fn add_content(&self, r: &ContentRow) -> Result<()> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        check_content(r)?;
        self.store.put_content_pattern(r).await?;
        let after = serde_json::to_value(r).ok();
        self.audit(
            "content.add",
            &format!("{} {}", r.list, r.pattern),
            None,
            after,
        )
        .await
    }

    pub async fn remove_content(&self, list: &str, pattern: &str, field: &str) -> Result<()> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        if !self
            .store
            .remove_content_pattern(list, pattern, field)
            .await?
        {
            return Err(OpsError::not_found(
                "pattern",
                format!("{pattern:?} in content list {list}"),
            ));
        }
        let before = json!({ "list": list, "pattern": pattern, "field": field });
        self.audit(
            "content.remove",
            &format!("{list} {pattern}"),
            Some(before),
            None,
        )
        .await
    }

    pub async fn list_content(&self) -> Result<Vec<ContentRow>> {
        self.actor().require(Access::ReadPolicy, &Scope::Global)?;
        Ok(self.store.list_content_patterns().await?)
    }
}

/// What one set of rules decides for a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    /// The rules that matched, in order (the last one decided, if any did).
    pub matched: Vec<String>,
    /// The rule that decided; none: delivered by default.
    pub rule: Option<String>,
    /// `deliver`, `reject 550 5.7.1 ...`, `tempfail ...`, `discard` or `quarantine (class)`.
    pub disposition: String,
    /// Changes on the way (subject tag, header, stripped attachments, redirect, copy).
    pub changes: Vec<String>,
    pub score: f64,
}

/// A dry run of rules against a held message: what the stored rules decide now, and
/// what they would decide with the candidate rules added (or replaced, by name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DryRun {
    pub item: String,
    pub subject: String,
    pub findings: Vec<portcullis_filter::finding::Finding>,
    pub current: Decision,
    pub candidate: Decision,
}

fn describe(v: &portcullis_filter::rules::Verdict) -> Decision {
    use portcullis_filter::rules::{Change, Disposition};
    fn reply(r: &impl std::fmt::Display) -> String {
        r.to_string().trim_end().replace("\r\n", " ")
    }
    let disposition = match &v.disposition {
        Disposition::Deliver => "deliver".to_string(),
        Disposition::Reject(r) => format!("reject {}", reply(r)),
        Disposition::TempFail(r) => format!("tempfail {}", reply(r)),
        Disposition::Discard => "discard".to_string(),
        Disposition::Quarantine(class) => format!("quarantine ({class})"),
    };
    let mut changes: Vec<String> = v
        .changes
        .iter()
        .map(|c| match c {
            Change::TagSubject(tag) => format!("tag subject with {tag:?}"),
            Change::AddHeader(name, value) => format!("add header {name}: {value}"),
            Change::StripAttachments { names, .. } if names.is_empty() => {
                "strip every attachment".to_string()
            }
            Change::StripAttachments { names, .. } => {
                format!("strip attachments {}", names.join(", "))
            }
        })
        .collect();
    if let Some(to) = &v.redirect {
        changes.push(format!("redirect to {}", to.join(", ")));
    }
    for to in &v.copies {
        changes.push(format!("copy to {to}"));
    }
    Decision {
        matched: v.matched.clone(),
        rule: v.rule.clone(),
        disposition,
        changes,
        score: v.score,
    }
}

impl Ops {
    /// Run the stored rules, and the stored rules with the candidate `[[rule]]` tables of
    /// `text` added (a rule of the same name replaced, as `add_rules` would), against the
    /// held copy `item` with the findings stored when it arrived. Nothing is saved.
    pub async fn rule_dry_run(&self, text: &str, origin: &str, item: &str) -> Result<DryRun> {
        use portcullis_filter::content::ContentScanner;
        use portcullis_filter::rules::Subject;
        use portcullis_gateway::filtering::FilterPolicy;
        self.actor().require(Access::ReadPolicy, &Scope::Global)?;
        let doc: RulesFile = parse_toml(text, origin)?;
        check_rules(&doc.rule, origin)?;
        let held = self.quarantine_show(item).await?;
        let stored = self.store.list_rules().await?;
        let mut with = stored.clone();
        for r in &doc.rule {
            let json = serde_json::to_string(r).map_err(|e| OpsError::Document {
                origin: origin.to_string(),
                reason: e.to_string(),
            })?;
            match with.iter_mut().find(|(n, _)| *n == r.name) {
                Some(slot) => slot.1 = json,
                None => with.push((r.name.clone(), json)),
            }
        }
        let findings: Vec<portcullis_filter::finding::Finding> =
            serde_json::from_str(&held.findings).unwrap_or_default();
        let report = ContentScanner::default().scan(&held.body);
        let recipients = [held.item.recipient.clone()];
        let subject = Subject {
            inbound: held.item.direction == "inbound",
            sender: &held.item.sender,
            recipients: &recipients,
            findings: &findings,
            attachments: &report.attachments,
            headers: &report.text.headers,
            size: held.body.len() as u64,
        };
        let run = |rules: &[(String, String)]| {
            let policy = FilterPolicy::build(rules, Vec::new(), &[], &self.config.spam);
            describe(&policy.rules.evaluate(&subject))
        };
        Ok(DryRun {
            item: held.item.id.clone(),
            subject: held.item.subject.clone().unwrap_or_default(),
            current: run(&stored),
            candidate: run(&with),
            findings,
        })
    }
}
