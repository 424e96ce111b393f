//! Content lists ("lexical expression lists" in the commercial gateways): words, phrases
//! and regular expressions, each with a score, matched over the decoded subject, body text
//! or header fields. Each list that matches gives findings `content.<list>`, one per
//! matching entry, so rules can act on a list and its scores add to the spam score.

use crate::finding::Finding;
use crate::text::MessageText;
use regex::{RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

/// Where an entry looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    Subject,
    Body,
    Headers,
    /// Subject, body and headers.
    #[default]
    Any,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Subject => "subject",
            Field::Body => "body",
            Field::Headers => "headers",
            Field::Any => "any",
        }
    }

    pub fn parse(s: &str) -> Option<Field> {
        Some(match s {
            "subject" => Field::Subject,
            "body" => Field::Body,
            "headers" => Field::Headers,
            "any" => Field::Any,
            _ => return None,
        })
    }
}

/// One entry of a content list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentEntry {
    pub list: String,
    /// A word or phrase (matched whole, case-insensitive), or a regular expression.
    pub pattern: String,
    #[serde(default)]
    pub regex: bool,
    #[serde(default)]
    pub field: Field,
    pub score: f64,
}

/// Largest compiled pattern set, so a careless list cannot eat memory.
const SIZE_LIMIT: usize = 8 << 20;
/// At most this many content findings per message.
const MAX_FINDINGS: usize = 50;
/// Only the first this many bytes of the body text are searched.
const MAX_BODY: usize = 1 << 20;

fn source(e: &ContentEntry) -> String {
    if e.regex {
        e.pattern.clone()
    } else {
        // Whole words: a boundary only where the phrase starts or ends with a word character.
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        format!(
            "{}{}{}",
            if word(e.pattern.chars().next()) {
                r"\b"
            } else {
                ""
            },
            regex::escape(&e.pattern),
            if word(e.pattern.chars().last()) {
                r"\b"
            } else {
                ""
            }
        )
    }
}

/// A content entry (or the lists as a whole) that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ContentError {
    #[error("list name {0:?}: letters, digits, - and _ only")]
    ListName(String),
    #[error("empty pattern")]
    EmptyPattern,
    #[error("score is not a number")]
    Score,
    /// The pattern is not a regular expression, or compiles to more than the size limit.
    #[error("pattern {pattern:?}: {source}")]
    Pattern {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    /// Entries that each compile do not compile together (the set's size limit).
    #[error("compiling the content lists: {0}")]
    Set(#[source] regex::Error),
}

/// Check an entry a person is about to add.
pub fn validate(e: &ContentEntry) -> Result<(), ContentError> {
    if e.list.is_empty()
        || !e
            .list
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ContentError::ListName(e.list.clone()));
    }
    if e.pattern.trim().is_empty() {
        return Err(ContentError::EmptyPattern);
    }
    if !e.score.is_finite() {
        return Err(ContentError::Score);
    }
    RegexBuilder::new(&source(e))
        .case_insensitive(true)
        .size_limit(SIZE_LIMIT)
        .build()
        .map_err(|source| ContentError::Pattern {
            pattern: e.pattern.clone(),
            source,
        })?;
    Ok(())
}

/// Compiled content lists.
#[derive(Debug, Default)]
pub struct ContentLists {
    entries: Vec<ContentEntry>,
    set: Option<RegexSet>,
}

impl ContentLists {
    pub fn new(entries: Vec<ContentEntry>) -> Result<ContentLists, ContentError> {
        for e in &entries {
            validate(e)?;
        }
        if entries.is_empty() {
            return Ok(ContentLists::default());
        }
        let set = RegexSetBuilder::new(entries.iter().map(source))
            .case_insensitive(true)
            .size_limit(SIZE_LIMIT)
            .build()
            .map_err(ContentError::Set)?;
        Ok(ContentLists {
            entries,
            set: Some(set),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn check(&self, text: &MessageText) -> Vec<Finding> {
        let Some(set) = &self.set else {
            return Vec::new();
        };
        let mut body = text.body.as_str();
        if body.len() > MAX_BODY {
            let mut end = MAX_BODY;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body = &body[..end];
        }
        let headers: String = text
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\n"))
            .collect();
        let subject = set.matches(&text.subject);
        let in_body = set.matches(body);
        let in_headers = set.matches(&headers);
        let mut findings = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let hit = match e.field {
                Field::Subject => subject.matched(i),
                Field::Body => in_body.matched(i),
                Field::Headers => in_headers.matched(i),
                Field::Any => subject.matched(i) || in_body.matched(i) || in_headers.matched(i),
            };
            if hit {
                findings.push(Finding::new(
                    format!("content.{}", e.list),
                    e.score,
                    format!("{} matched {:?}", e.field.as_str(), e.pattern),
                ));
                if findings.len() == MAX_FINDINGS {
                    break;
                }
            }
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(list: &str, pattern: &str, regex: bool, field: Field, score: f64) -> ContentEntry {
        ContentEntry {
            list: list.into(),
            pattern: pattern.into(),
            regex,
            field,
            score,
        }
    }

    #[test]
    fn words_regexes_and_fields() {
        let lists = ContentLists::new(vec![
            entry("pharma", "viagra", false, Field::Any, 3.0),
            entry("pharma", "c1al1s", false, Field::Body, 2.0),
            entry("money", r"\$\d{3,} ?(usd|dollars)", true, Field::Body, 1.5),
            entry("urgent", "urgent!", false, Field::Subject, 1.0),
            entry("mailer", "x-mailer: bulkmail", false, Field::Headers, 2.5),
        ])
        .unwrap();
        let text = MessageText {
            subject: "URGENT! read now".into(),
            body: "Buy VIAGRA today and win $5000 dollars. Not viagras.".into(),
            headers: vec![("x-mailer".into(), "BulkMail 2.0".into())],
            ..Default::default()
        };
        let f = lists.check(&text);
        let names: Vec<(&str, f64)> = f.iter().map(|f| (f.name.as_str(), f.score)).collect();
        assert_eq!(
            names,
            vec![
                ("content.pharma", 3.0),
                ("content.money", 1.5),
                ("content.urgent", 1.0),
                ("content.mailer", 2.5)
            ]
        );
        // Whole words only; a body-only entry does not look at the subject.
        let text = MessageText {
            subject: "c1al1s".into(),
            body: "viagrass".into(),
            ..Default::default()
        };
        assert!(lists.check(&text).is_empty());
    }

    #[test]
    fn mistakes_are_refused() {
        assert!(validate(&entry("a b", "x", false, Field::Any, 1.0)).is_err());
        assert!(
            validate(&entry("a", "(", true, Field::Any, 1.0))
                .unwrap_err()
                .to_string()
                .contains("pattern")
        );
        assert!(validate(&entry("a", "(", false, Field::Any, 1.0)).is_ok());
        assert!(validate(&entry("a", " ", false, Field::Any, 1.0)).is_err());
        assert!(validate(&entry("a", "x", false, Field::Any, f64::NAN)).is_err());
    }
}
