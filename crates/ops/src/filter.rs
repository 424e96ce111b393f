//! The filter policy: rules (conditions over findings, ordered actions), allow, block and
//! valid-recipient lists, and content lists (words and patterns with scores). Everything
//! is checked here before it reaches the store, so a running gateway only ever loads
//! rules and patterns that compile.

use crate::{Ops, OpsError, Result};
use portcullis_filter::lexical;
use portcullis_filter::rules::{Rule, RuleSet};
use portcullis_store::{ContentRow, LIST_FIELDS, LIST_KINDS, ListEntry};
use serde::{Deserialize, Serialize};

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

impl Ops {
    /// The stored rules in evaluation order (a stored rule that no longer parses is left
    /// out, as the gateway leaves it out).
    pub async fn list_rules(&self) -> Result<Vec<Rule>> {
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
            self.store.put_rule(&r.name, &json).await?;
            names.push(r.name.clone());
        }
        Ok(names)
    }

    pub async fn remove_rule(&self, name: &str) -> Result<()> {
        if !self.store.remove_rule(name).await? {
            return Err(OpsError::not_found("rule named", format!("{name:?}")));
        }
        Ok(())
    }

    pub async fn add_list_entry(&self, e: &ListEntry) -> Result<()> {
        check_entry(e)?;
        Ok(self.store.add_list_entry(e).await?)
    }

    pub async fn remove_list_entry(&self, e: &ListEntry) -> Result<()> {
        if !self.store.remove_list_entry(e).await? {
            return Err(OpsError::not_found(
                "list entry",
                format!("{} {} {}", e.kind, e.field, e.value),
            ));
        }
        Ok(())
    }

    pub async fn list_entries(&self) -> Result<Vec<ListEntry>> {
        Ok(self.store.list_entries().await?)
    }

    pub async fn add_content(&self, r: &ContentRow) -> Result<()> {
        check_content(r)?;
        Ok(self.store.put_content_pattern(r).await?)
    }

    pub async fn remove_content(&self, list: &str, pattern: &str, field: &str) -> Result<()> {
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
        Ok(())
    }

    pub async fn list_content(&self) -> Result<Vec<ContentRow>> {
        Ok(self.store.list_content_patterns().await?)
    }
}
