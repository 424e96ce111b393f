//! Whether a DKIM key's record is published as it should be: the TXT record at
//! `<selector>._domainkey.<domain>` looked up through the gateway's own resolver (the
//! `[dns]` nameservers), compared with the record the stored key needs. Reads DNS and the
//! store; changes nothing.

use crate::dkim::{check_domain, check_selector};
use crate::{Access, Ops, OpsError, Result, Scope};
use portcullis_filter::sign::{record_name, stored_dns_txt};
use serde::{Deserialize, Serialize};

/// What DNS says about a key's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DnsStatus {
    /// A published record carries the key (same `k=` and `p=`).
    Matches { published: String },
    /// Records are published at the name, none with this key.
    Differs { published: Vec<String> },
    /// No TXT record at the name (NXDOMAIN or no data).
    NotFound,
    /// The lookup failed (SERVFAIL, timeout): nothing is known.
    Error { reason: String },
}

/// A key's record and what DNS answered for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsCheck {
    pub domain: String,
    pub selector: String,
    /// `<selector>._domainkey.<domain>.`
    pub name: String,
    /// The TXT value the stored key needs.
    pub expected: String,
    #[serde(flatten)]
    pub status: DnsStatus,
}

/// The tags of a DKIM key record (RFC 6376 §3.6.1) that say which key it is: the key
/// type (`rsa` when absent) and the public key, folding whitespace removed.
fn key_tags(record: &str) -> (String, String) {
    let mut k = "rsa".to_string();
    let mut p = String::new();
    for tag in record.split(';') {
        let Some((name, value)) = tag.split_once('=') else {
            continue;
        };
        let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        match name.trim() {
            "k" => k = value.to_ascii_lowercase(),
            "p" => p = value,
            _ => {}
        }
    }
    (k, p)
}

/// Whether a published record carries the same key as the expected one.
pub fn same_key(expected: &str, published: &str) -> bool {
    let want = key_tags(expected);
    !want.1.is_empty() && key_tags(published) == want
}

impl Ops {
    /// Look up the record of `selector` of `domain` and compare it with the stored key.
    pub async fn dkim_check_dns(&self, domain: &str, selector: &str) -> Result<DnsCheck> {
        let domain = check_domain(domain)?;
        self.actor()
            .require(Access::ReadPolicy, &Scope::domain(&domain))?;
        let selector = check_selector(selector)?;
        let key = self
            .store()
            .list_dkim_keys(Some(&domain))
            .await?
            .into_iter()
            .find(|k| k.selector == selector)
            .ok_or_else(|| OpsError::not_found("DKIM key", format!("{selector:?} of {domain}")))?;
        let expected = stored_dns_txt(&key).map_err(|e| OpsError::Failed {
            what: format!("the stored key {selector} of {domain}"),
            reason: e.to_string(),
        })?;
        let name = record_name(&selector, &domain);
        let resolver = self.resolver()?;
        let status =
            match portcullis_queue::mx::txt_records(&resolver, &name, |t| t.contains("p=")).await {
                Ok(found) if found.is_empty() => DnsStatus::NotFound,
                Ok(found) => match found.iter().find(|t| same_key(&expected, t)) {
                    Some(t) => DnsStatus::Matches {
                        published: t.clone(),
                    },
                    None => DnsStatus::Differs { published: found },
                },
                Err(e) => DnsStatus::Error {
                    reason: e.to_string(),
                },
            };
        Ok(DnsCheck {
            domain,
            selector,
            name,
            expected,
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_by_type_and_public_key() {
        let want = "v=DKIM1; k=rsa; p=MIIBIjAN";
        assert!(same_key(want, "v=DKIM1; p=MIIB IjAN"));
        assert!(same_key(want, "p=MIIBIjAN;k=RSA;t=s"));
        assert!(!same_key(want, "v=DKIM1; k=ed25519; p=MIIBIjAN"));
        assert!(!same_key(want, "v=DKIM1; k=rsa; p=OTHER"));
        assert!(!same_key(want, "v=DKIM1; k=rsa; p="));
        assert!(!same_key("v=DKIM1; p=", "v=DKIM1; p="));
    }
}
