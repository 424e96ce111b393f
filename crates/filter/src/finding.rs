//! Findings: what a check noticed about a connection or a message. Every check returns
//! findings; the rules (`crate::rules`) combine them into one verdict, and the message log
//! keeps them so an administrator can answer "why was this message held?".

use serde::{Deserialize, Serialize};

/// One thing a check noticed.
///
/// `name` is dotted, check first: `av.virus`, `spam.bayes`, `spam.gtube`, `dnsbl.<zone>`,
/// `attachment.executable`, `content.<list>`. Rules match names exactly or by a trailing
/// `*` (`dnsbl.*`). `score` adds to the message's spam score (0 for facts that only rules
/// act on); `detail` is for people (the virus name, the DNSBL answer, the matched word).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub name: String,
    pub score: f64,
    pub detail: String,
}

impl Finding {
    pub fn new(name: impl Into<String>, score: f64, detail: impl Into<String>) -> Self {
        Finding {
            name: name.into(),
            score,
            detail: detail.into(),
        }
    }
}

/// Does a finding name match a pattern: exact, or a prefix ending in `*`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// The sum of the scores, the message's spam score.
pub fn total_score(findings: &[Finding]) -> f64 {
    findings.iter().map(|f| f.score).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(name_matches("dnsbl.*", "dnsbl.zen.example"));
        assert!(name_matches("av.virus", "av.virus"));
        assert!(!name_matches("av.virus", "av.virus2"));
        assert!(!name_matches("dnsbl.*", "spam.bayes"));
        let f = [Finding::new("a", 1.5, ""), Finding::new("b", -0.5, "")];
        assert_eq!(total_score(&f), 1.0);
    }
}
