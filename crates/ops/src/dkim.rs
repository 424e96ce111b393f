//! Outbound DKIM signing keys: made here and kept in the store; a running gateway signs
//! with the active keys of the `From` domain. Every operation that makes or changes a key
//! returns the DNS records the administrator has to publish or may remove.

use crate::{Access, Ops, OpsError, Result, Scope};
use portcullis_filter::sign::{
    Algorithm, KeyRing, Signer, generate, normalize_domain, record_name, stored_dns_txt,
    zone_record,
};
use portcullis_queue::spool::now;
use portcullis_store::DkimKey;
use serde_json::json;
use std::collections::BTreeSet;

/// A new key.
#[derive(Debug, Clone)]
pub struct Generated {
    pub domain: String,
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: String,
    /// `active` or `pending`.
    pub state: String,
    /// The zone-file line to publish.
    pub record: String,
}

/// Keys that changed state, with the records to publish and to keep.
#[derive(Debug, Clone, Default)]
pub struct Changed {
    pub domain: String,
    /// Selectors that sign from now on (activate).
    pub activated: Vec<String>,
    /// Zone-file lines of new keys (rotate).
    pub new_records: Vec<String>,
    /// Zone-file lines of keys that stopped signing: keep them published a while.
    pub retiring_records: Vec<String>,
}

/// A key and what to do with its record.
#[derive(Debug, Clone)]
pub struct KeyView {
    pub key: DkimKey,
    /// `<selector>._domainkey.<domain>`
    pub record_name: String,
    /// The TXT value, when the stored public key is readable.
    pub txt: Option<String>,
    /// The zone-file line, or a note when the public key is unreadable.
    pub zone_line: String,
    pub advice: String,
}

/// A domain name as DKIM keys are kept under it.
pub fn check_domain(domain: &str) -> Result<String> {
    let d = normalize_domain(domain);
    if d.is_empty() || !d.contains('.') || d.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(OpsError::invalid("domain", domain, "is not a domain name"));
    }
    Ok(d)
}

/// A selector is one or more DNS labels: letters, digits and inner hyphens.
pub fn check_selector(selector: &str) -> Result<String> {
    let s = selector.trim().to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if s.is_empty() || s.len() > 128 || !s.split('.').all(label_ok) {
        return Err(OpsError::invalid(
            "selector",
            selector,
            "use DNS labels of letters, digits and inner hyphens",
        ));
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

/// The zone-file line of a stored key, or a note when its public key is unreadable.
fn key_record(key: &DkimKey) -> String {
    match stored_dns_txt(key) {
        Ok(txt) => zone_record(&key.selector, &key.domain, &txt),
        Err(e) => format!("; {e}"),
    }
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

/// Bare LF line ends become CRLF, as the message would be sent over SMTP.
pub fn crlf(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 32);
    for (i, &b) in input.iter().enumerate() {
        if b == b'\n' && (i == 0 || input[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

impl Ops {
    async fn dkim_selectors(&self, domain: &str) -> Result<BTreeSet<String>> {
        Ok(self
            .store
            .list_dkim_keys(Some(domain))
            .await?
            .into_iter()
            .map(|k| k.selector)
            .collect())
    }

    async fn retiring_records(&self, domain: &str, selectors: &[String]) -> Result<Vec<String>> {
        if selectors.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .list_dkim_keys(Some(domain))
            .await?
            .iter()
            .filter(|k| selectors.contains(&k.selector))
            .map(key_record)
            .collect())
    }

    /// Make a key for `domain`: active at once, or pending (`stage`) until activated.
    async fn generate_unchecked(
        &self,
        domain: &str,
        selector: Option<&str>,
        algorithm: &str,
        stage: bool,
    ) -> Result<Generated> {
        let domain = check_domain(domain)?;
        let algo = Algorithm::parse(algorithm)
            .ok_or_else(|| OpsError::invalid("algorithm", algorithm, "use rsa or ed25519"))?;
        let now = now();
        let selector = match selector {
            Some(s) => check_selector(s)?,
            None => default_selector(algo, now, &self.dkim_selectors(&domain).await?),
        };
        let key = generate(algo)?;
        let state = if stage { "pending" } else { "active" };
        self.store
            .add_dkim_keys(&[key.to_store(&domain, &selector, state, now)])
            .await?;
        Ok(Generated {
            record: zone_record(&selector, &domain, &key.dns_txt),
            domain,
            selector,
            algorithm: algo.tag().to_string(),
            state: state.to_string(),
        })
    }

    /// One new key per algorithm the domain signs with; the old ones retire (or, with
    /// `stage`, the new ones wait as pending).
    async fn rotate_unchecked(&self, domain: &str, stage: bool) -> Result<Changed> {
        let domain = check_domain(domain)?;
        let keys = self.store.list_dkim_keys(Some(&domain)).await?;
        let pending: Vec<&str> = keys
            .iter()
            .filter(|k| k.state == "pending")
            .map(|k| k.selector.as_str())
            .collect();
        if !pending.is_empty() {
            return Err(OpsError::State {
                name: domain.clone(),
                state: format!("waiting for its pending keys ({})", pending.join(", ")),
                hint: format!(
                    "publish their records and run `portcullis dkim activate {domain}`, or delete them"
                ),
            });
        }
        let algorithms: BTreeSet<Algorithm> = keys
            .iter()
            .filter(|k| k.state == "active")
            .filter_map(|k| Algorithm::from_tag(&k.algorithm))
            .collect();
        if algorithms.is_empty() {
            return Err(OpsError::State {
                name: domain.clone(),
                state: "without an active DKIM key to rotate".into(),
                hint: format!("make one with `portcullis dkim generate {domain}`"),
            });
        }
        let now = now();
        let mut taken: BTreeSet<String> = keys.iter().map(|k| k.selector.clone()).collect();
        let state = if stage { "pending" } else { "active" };
        let mut new_keys = Vec::new();
        let mut new_records = Vec::new();
        for algorithm in algorithms {
            let selector = default_selector(algorithm, now, &taken);
            taken.insert(selector.clone());
            let key = generate(algorithm)?;
            new_records.push(zone_record(&selector, &domain, &key.dns_txt));
            new_keys.push(key.to_store(&domain, &selector, state, now));
        }
        let retiring = if stage {
            self.store.add_dkim_keys(&new_keys).await?;
            Vec::new()
        } else {
            self.store.rotate_dkim_keys(&domain, &new_keys, now).await?
        };
        Ok(Changed {
            retiring_records: self.retiring_records(&domain, &retiring).await?,
            domain,
            activated: Vec::new(),
            new_records,
        })
    }

    /// Sign with the pending keys; the active keys of the same algorithms retire.
    async fn activate_unchecked(&self, domain: &str) -> Result<Changed> {
        let domain = check_domain(domain)?;
        let (activated, retiring) = self.store.activate_dkim_keys(&domain, now()).await?;
        if activated.is_empty() {
            return Err(OpsError::not_found("pending DKIM key of", domain));
        }
        Ok(Changed {
            retiring_records: self.retiring_records(&domain, &retiring).await?,
            domain,
            activated,
            new_records: Vec::new(),
        })
    }

    async fn dkim_key(&self, domain: &str, selector: &str) -> Result<(DkimKey, Vec<DkimKey>)> {
        let keys = self.store.list_dkim_keys(Some(domain)).await?;
        let key = keys
            .iter()
            .find(|k| k.selector == selector)
            .cloned()
            .ok_or_else(|| OpsError::not_found("DKIM key", format!("{selector:?} of {domain}")))?;
        Ok((key, keys))
    }

    /// Mark a key retired: it no longer signs and its record may be removed. The record
    /// name, and whether the domain still has an active key.
    async fn retire_unchecked(&self, domain: &str, selector: &str) -> Result<(String, bool)> {
        let domain = check_domain(domain)?;
        let selector = selector.trim().to_ascii_lowercase();
        let (key, keys) = self.dkim_key(&domain, &selector).await?;
        self.store
            .set_dkim_key_state(&domain, &selector, "retired", now())
            .await?;
        let still_signed = key.state != "active"
            || keys
                .iter()
                .any(|k| k.state == "active" && k.selector != selector);
        Ok((record_name(&selector, &domain), still_signed))
    }

    /// Delete a key that does not sign; the name of its record.
    async fn delete_unchecked(&self, domain: &str, selector: &str) -> Result<String> {
        let domain = check_domain(domain)?;
        let selector = selector.trim().to_ascii_lowercase();
        let (key, _) = self.dkim_key(&domain, &selector).await?;
        if key.state == "active" {
            return Err(OpsError::State {
                name: format!("key {selector} of {domain}"),
                state: "signing mail".into(),
                hint: format!("retire it first (`portcullis dkim retire {domain} {selector}`)"),
            });
        }
        self.store.delete_dkim_key(&domain, &selector).await?;
        Ok(record_name(&selector, &domain))
    }

    pub async fn dkim_list(&self, domain: Option<&str>) -> Result<Vec<KeyView>> {
        let domain = domain.map(check_domain).transpose()?;
        if let Some(d) = &domain {
            self.actor()
                .require(Access::ReadPolicy, &Scope::domain(d))?;
        }
        let actor = self.actor();
        Ok(self
            .store
            .list_dkim_keys(domain.as_deref())
            .await?
            .into_iter()
            .filter(|key| actor.may(Access::ReadPolicy, &Scope::domain(&key.domain)))
            .map(|key| KeyView {
                record_name: record_name(&key.selector, &key.domain),
                txt: stored_dns_txt(&key).ok(),
                zone_line: key_record(&key),
                advice: advice(&key),
                key,
            })
            .collect())
    }

    /// The DKIM-Signature fields for a message, by the active keys of `domain` or of its
    /// From domain; and the problems of stored keys met on the way.
    pub async fn dkim_sign(
        &self,
        domain: Option<&str>,
        message: &[u8],
    ) -> Result<(String, Vec<String>)> {
        let from = portcullis_filter::sign::from_domain(message);
        let signing = domain.map(str::to_string).or(from).unwrap_or_default();
        // Signing speaks for the domain: as much as changing its policy.
        self.actor()
            .require(Access::WritePolicy, &Scope::domain(&signing))?;
        match domain {
            Some(d) => {
                let d = check_domain(d)?;
                let signer = Signer::new(&d, &self.store.active_dkim_keys(Some(&d)).await?)?;
                Ok((signer.sign(message)?, Vec::new()))
            }
            None => {
                let ring = KeyRing::load(&self.store, None).await?;
                let problems = ring.problems().iter().map(|p| p.to_string()).collect();
                match ring.sign(message)? {
                    Some(fields) => Ok((fields, problems)),
                    None => Err(OpsError::not_found(
                        "active DKIM key for the From domain of the message",
                        portcullis_filter::sign::from_domain(message)
                            .map(|d| format!("({d})"))
                            .unwrap_or_default(),
                    )),
                }
            }
        }
    }
}

/// The checked and audited doors to the key operations above.
impl Ops {
    fn require_domain_policy(&self, domain: &str) -> Result<()> {
        self.actor()
            .require(Access::WritePolicy, &Scope::domain(domain))
    }

    /// Make a key for `domain`: active at once, or pending (`stage`) until activated.
    pub async fn dkim_generate(
        &self,
        domain: &str,
        selector: Option<&str>,
        algorithm: &str,
        stage: bool,
    ) -> Result<Generated> {
        self.require_domain_policy(domain)?;
        let g = self
            .generate_unchecked(domain, selector, algorithm, stage)
            .await?;
        let after = json!({ "algorithm": g.algorithm, "state": g.state, "record": g.record });
        self.audit(
            "dkim.generate",
            &format!("{} {}", g.domain, g.selector),
            None,
            Some(after),
        )
        .await?;
        Ok(g)
    }

    /// One new key per algorithm the domain signs with; the old ones retire (or, with
    /// `stage`, the new ones wait as pending).
    pub async fn dkim_rotate(&self, domain: &str, stage: bool) -> Result<Changed> {
        self.require_domain_policy(domain)?;
        let c = self.rotate_unchecked(domain, stage).await?;
        self.audit_changed("dkim.rotate", &c).await?;
        Ok(c)
    }

    pub async fn dkim_activate(&self, domain: &str) -> Result<Changed> {
        self.require_domain_policy(domain)?;
        let c = self.activate_unchecked(domain).await?;
        self.audit_changed("dkim.activate", &c).await?;
        Ok(c)
    }

    pub async fn dkim_retire(&self, domain: &str, selector: &str) -> Result<(String, bool)> {
        self.require_domain_policy(domain)?;
        let r = self.retire_unchecked(domain, selector).await?;
        self.audit(
            "dkim.retire",
            &r.0,
            None,
            Some(json!({ "state": "retired" })),
        )
        .await?;
        Ok(r)
    }

    pub async fn dkim_delete(&self, domain: &str, selector: &str) -> Result<String> {
        self.require_domain_policy(domain)?;
        let r = self.delete_unchecked(domain, selector).await?;
        self.audit("dkim.delete", &r, None, None).await?;
        Ok(r)
    }

    async fn audit_changed(&self, action: &str, c: &Changed) -> Result<()> {
        let after = json!({
            "activated": c.activated,
            "new_records": c.new_records,
            "retiring_records": c.retiring_records,
        });
        self.audit(action, &c.domain, None, Some(after)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_selectors() {
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
