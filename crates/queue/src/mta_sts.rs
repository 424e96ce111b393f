//! MTA-STS (RFC 8461): the `_mta-sts` TXT record, the policy file and its parser, MX
//! pattern matching, the policy cache (in memory, persisted to one JSON file so that a
//! restart keeps what was learnt) and the HTTPS fetch. Deciding what a policy means for
//! one delivery is `tls_policy`'s job; this module only finds the policy that applies.
//!
//! Errors: [`PolicyError`] (a policy file that does not parse), [`TxtError`] (a TXT record
//! that does not), [`FetchError`] (the HTTPS fetch), [`PolicyFetchError`] (no usable
//! policy from a fetch), [`StsError`] (why no policy applies to a domain), and
//! [`HttpsClientError`] (the HTTPS client cannot be built).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mx::TokioResolver;

/// The largest policy body we read (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// `max_age` above this (one year, RFC 8461 §3.2) is cut down to it.
pub const MAX_AGE_LIMIT: u64 = 31_557_600;
/// Domains whose policies the cache keeps at most; the oldest are dropped first.
const MAX_CACHED: usize = 10_000;
/// After a failed fetch, the same domain is not fetched again for this long.
const FETCH_FAILURE_HOLDOFF: i64 = 60;
/// A cached policy older than this is fetched again in the background even when its
/// TXT id has not changed, so that a policy in use never runs out (RFC 8461 §10.2).
pub const REFRESH_AGE: i64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: Mode,
    /// Lower-case patterns without a trailing dot: `mx.example.com` or `*.example.com`.
    pub mx: Vec<String>,
    /// Seconds the policy may be cached.
    pub max_age: u64,
}

impl Policy {
    /// Whether `host` (an MX host name) is allowed by one of the policy's patterns.
    pub fn matches(&self, host: &str) -> bool {
        self.mx.iter().any(|p| mx_matches(p, host))
    }
}

/// RFC 8461 §4.1: a pattern is a host name, or `*.` and a domain, where the wildcard
/// stands for exactly one leftmost label. Case and a trailing dot do not matter.
pub fn mx_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(parent) => match host.split_once('.') {
            Some((first, rest)) => !first.is_empty() && rest == parent,
            None => false,
        },
        None => pattern == host,
    }
}

fn valid_key(k: &str) -> bool {
    (1..=32).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn valid_label(l: &str) -> bool {
    (1..=63).contains(&l.len())
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

fn valid_pattern(p: &str) -> bool {
    let name = p.strip_prefix("*.").unwrap_or(p);
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253 && name.contains('.') && name.split('.').all(valid_label)
}

/// Why a policy file is invalid (RFC 8461 §3.2); `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("line {line}: no `key: value`")]
    NoKeyValue { line: usize },
    #[error("line {line}: invalid field name {key:?}")]
    FieldName { line: usize, key: String },
    #[error("line {line}: control character in value")]
    ControlCharacter { line: usize },
    #[error("unknown mode {0:?}")]
    Mode(String),
    #[error("invalid max_age {0:?}")]
    MaxAge(String),
    #[error("invalid mx pattern {0:?}")]
    MxPattern(String),
    #[error("unsupported version {0:?}")]
    Version(String),
    /// A required field (`version`, `mode`, `max_age`) is missing.
    #[error("no {0} field")]
    Missing(&'static str),
    /// `enforce` or `testing` without a single `mx` line.
    #[error("mode {0} without mx patterns")]
    NoMx(&'static str),
}

/// Why an `_mta-sts` TXT record is invalid (RFC 8461 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxtError {
    #[error("does not start with v=STSv1")]
    NotStsV1,
    #[error("malformed field {0:?}")]
    Field(String),
    #[error("invalid id {0:?}")]
    Id(String),
    #[error("no id field")]
    NoId,
}

/// Parses a policy file (RFC 8461 §3.2). Lines end in LF or CRLF; whitespace at the end of
/// a line and around the value is tolerated; unknown fields are ignored; for fields other
/// than `mx` the first occurrence counts. Anything else malformed makes the whole policy
/// invalid.
pub fn parse_policy(text: &str) -> Result<Policy, PolicyError> {
    let mut version = None;
    let mut mode = None;
    let mut max_age = None;
    let mut mx = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw
            .strip_suffix('\r')
            .unwrap_or(raw)
            .trim_end_matches([' ', '\t']);
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(PolicyError::NoKeyValue { line: n + 1 });
        };
        if !valid_key(key) {
            return Err(PolicyError::FieldName {
                line: n + 1,
                key: key.to_string(),
            });
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| b.is_ascii_control()) {
            return Err(PolicyError::ControlCharacter { line: n + 1 });
        }
        match key {
            "version" if version.is_none() => version = Some(value.to_string()),
            "mode" if mode.is_none() => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(PolicyError::Mode(other.to_string())),
                })
            }
            "max_age" if max_age.is_none() => {
                if value.is_empty()
                    || value.len() > 10
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(PolicyError::MaxAge(value.to_string()));
                }
                let secs: u64 = value
                    .parse()
                    .map_err(|_| PolicyError::MaxAge(value.to_string()))?;
                max_age = Some(secs.min(MAX_AGE_LIMIT));
            }
            "mx" => {
                if !valid_pattern(value) {
                    return Err(PolicyError::MxPattern(value.to_string()));
                }
                mx.push(value.trim_end_matches('.').to_ascii_lowercase());
            }
            _ => {}
        }
    }
    match version.as_deref() {
        Some("STSv1") => {}
        Some(v) => return Err(PolicyError::Version(v.to_string())),
        None => return Err(PolicyError::Missing("version")),
    }
    let mode = mode.ok_or(PolicyError::Missing("mode"))?;
    let max_age = max_age.ok_or(PolicyError::Missing("max_age"))?;
    if mode != Mode::None && mx.is_empty() {
        return Err(PolicyError::NoMx(mode.as_str()));
    }
    Ok(Policy { mode, mx, max_age })
}

/// Parses the `_mta-sts` TXT record (RFC 8461 §3.1) and returns its `id`. The record
/// must start with `v=STSv1`; other well-formed fields are ignored.
pub fn parse_txt(record: &str) -> Result<String, TxtError> {
    let mut fields = record
        .split(';')
        .map(|f| f.trim_matches([' ', '\t']))
        .peekable();
    if fields.next() != Some("v=STSv1") {
        return Err(TxtError::NotStsV1);
    }
    let mut id = None;
    for field in fields {
        if field.is_empty() {
            continue;
        }
        let Some((key, value)) = field.split_once('=') else {
            return Err(TxtError::Field(field.to_string()));
        };
        if !valid_key(key)
            || value
                .bytes()
                .any(|b| !(0x21..=0x7e).contains(&b) || b == b';')
        {
            return Err(TxtError::Field(field.to_string()));
        }
        if key == "id" && id.is_none() {
            if !(1..=32).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(TxtError::Id(value.to_string()));
            }
            id = Some(value.to_string());
        }
    }
    id.ok_or(TxtError::NoId)
}

/// What the TXT lookup said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtLookup {
    /// Exactly one valid STSv1 record, with this id.
    Found(String),
    /// No record, several, or an invalid one: the domain has no policy available now.
    Absent,
    /// The lookup failed (SERVFAIL, timeout).
    Failed(String),
}

/// A policy as cached: the id of the TXT record it was fetched under and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedPolicy {
    pub id: String,
    pub policy: Policy,
    /// Unix seconds.
    pub fetched_at: i64,
}

impl CachedPolicy {
    pub fn expires_at(&self) -> i64 {
        self.fetched_at.saturating_add(self.policy.max_age as i64)
    }

    pub fn is_fresh(&self, now: i64) -> bool {
        now < self.expires_at()
    }
}

/// What to do with one domain, given its cache entry and TXT record (RFC 8461 §3.3, §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Use the cached policy as it is.
    UseCached,
    /// Fetch the policy (its id changed, nothing is cached, or the cache expired); if the
    /// fetch fails, a fresh cached policy is still used.
    Fetch(String),
    /// Deliver as if the domain had no MTA-STS.
    NoPolicy,
}

pub fn next_step(cached: Option<&CachedPolicy>, txt: &TxtLookup, now: i64) -> Step {
    let fresh = cached.filter(|c| c.is_fresh(now));
    match (txt, fresh) {
        (TxtLookup::Found(id), Some(c)) if *id == c.id => Step::UseCached,
        (TxtLookup::Found(id), _) => Step::Fetch(id.clone()),
        // A missing or failed TXT lookup does not end a policy still in its max_age: that
        // is what keeps an attacker who blocks DNS from downgrading a known domain.
        (_, Some(_)) => Step::UseCached,
        (_, None) => Step::NoPolicy,
    }
}

/// Policies by domain, in memory and in a JSON file.
pub struct StsCache {
    path: Option<PathBuf>,
    entries: Mutex<HashMap<String, CachedPolicy>>,
}

impl StsCache {
    /// Loads the cache file if there is one (an unreadable file starts an empty cache).
    pub fn open(path: Option<PathBuf>) -> StsCache {
        let entries = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| match serde_json::from_slice(&bytes) {
                Ok(map) => Some(map),
                Err(e) => {
                    tracing::warn!(error = %e, "MTA-STS cache file unreadable; starting empty");
                    None
                }
            })
            .unwrap_or_default();
        StsCache {
            path,
            entries: Mutex::new(entries),
        }
    }

    pub fn get(&self, domain: &str) -> Option<CachedPolicy> {
        self.lock().get(domain).cloned()
    }

    /// Every cached domain and its entry.
    pub fn entries(&self) -> Vec<(String, CachedPolicy)> {
        self.lock()
            .iter()
            .map(|(d, c)| (d.clone(), c.clone()))
            .collect()
    }

    pub fn put(&self, domain: &str, entry: CachedPolicy, now: i64) {
        let snapshot = {
            let mut map = self.lock();
            map.insert(domain.to_string(), entry);
            map.retain(|_, c| c.is_fresh(now));
            while map.len() > MAX_CACHED {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, c)| c.fetched_at)
                    .map(|(d, _)| d.clone());
                match oldest {
                    Some(d) => map.remove(&d),
                    None => break,
                };
            }
            serde_json::to_vec_pretty(&*map).ok()
        };
        if let (Some(path), Some(bytes)) = (&self.path, snapshot) {
            // Written aside and renamed, so that a crash leaves the old file or the new one.
            let tmp = path.with_extension("json.tmp");
            let result = std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, path));
            if let Err(e) = result {
                tracing::warn!(path = %path.display(), error = %e, "cannot save the MTA-STS cache");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedPolicy>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where a policy comes from; the tests of the cache rules use a fake one.
pub trait PolicySource: Send + Sync {
    fn txt(&self, domain: &str) -> BoxFuture<'_, TxtLookup>;
    fn fetch(&self, domain: &str) -> BoxFuture<'_, Result<String, FetchError>>;
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The policy that applies to one domain, and how it was found (for the logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub policy: Policy,
    pub id: String,
    /// `cached`, `fetched`, or `cached (fetch failed: ...)`.
    pub how: String,
}

/// Why no MTA-STS policy applies to a domain ([`MtaSts::policy`]). `tls_policy` reads the
/// text for TLS-RPT's result type: a policy announced but not to be had starts with
/// `policy fetch failed: `.
#[derive(Debug, thiserror::Error)]
pub enum StsError {
    /// The domain does not use MTA-STS (no valid record, or several).
    #[error("no _mta-sts TXT record")]
    NoRecord,
    /// The TXT lookup failed and nothing is cached.
    #[error("TXT lookup failed: {0}")]
    TxtLookup(String),
    /// A policy is announced, none is cached, and the fetch gave none.
    #[error("policy fetch failed: {0}")]
    Fetch(#[source] PolicyFetchError),
}

/// Why a fetch gave no usable policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFetchError {
    /// The previous fetch for the domain failed moments ago; it is not tried again yet.
    #[error("fetch failed moments ago")]
    HeldOff,
    #[error(transparent)]
    Fetch(FetchError),
    #[error("invalid policy: {0}")]
    Invalid(#[source] PolicyError),
}

/// Why the policy file could not be fetched over HTTPS; `url` is the policy's address.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No connection, a certificate that does not verify, a timeout, a broken transfer.
    #[error("{url}: {}", error_chain(source))]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// RFC 8461 §3.3: only 200 counts (redirects are not followed).
    #[error("{url}: HTTP status {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{url}: Content-Type {content_type:?}, not text/plain")]
    ContentType { url: String, content_type: String },
    #[error("{url}: policy larger than {MAX_POLICY_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{url}: policy is not UTF-8")]
    NotUtf8 { url: String },
}

/// The gateway's HTTPS client could not be built (its TLS configuration, say).
#[derive(Debug, thiserror::Error)]
#[error("HTTPS client: {0}")]
pub struct HttpsClientError(#[source] pub reqwest::Error);

/// A host name reqwest asked us to resolve did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("{host}: {source}")]
struct ResolveError {
    host: String,
    #[source]
    source: crate::mx::MxError,
}

/// The MTA-STS part of delivery: cache plus source, one fetch per domain at a time.
pub struct MtaSts {
    cache: StsCache,
    source: Box<dyn PolicySource>,
    /// Per-domain locks so that concurrent deliveries fetch once.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Domains whose last fetch failed, and when.
    failures: Mutex<HashMap<String, i64>>,
}

impl MtaSts {
    pub fn new(cache: StsCache, source: Box<dyn PolicySource>) -> MtaSts {
        MtaSts {
            cache,
            source,
            inflight: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The policy for `domain`, or why there is none.
    pub async fn policy(&self, domain: &str, now: i64) -> Result<Found, StsError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let txt = self.source.txt(&domain).await;
        let lock = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, l| Arc::strong_count(l) > 1);
            map.entry(domain.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let cached = self.cache.get(&domain);
        match next_step(cached.as_ref(), &txt, now) {
            Step::UseCached => {
                let c = cached.expect("UseCached has a cache entry");
                let how = match &txt {
                    TxtLookup::Found(_) => "cached".to_string(),
                    TxtLookup::Absent => "cached (no TXT record now)".to_string(),
                    TxtLookup::Failed(e) => format!("cached (TXT lookup failed: {e})"),
                };
                Ok(Found {
                    policy: c.policy,
                    id: c.id,
                    how,
                })
            }
            Step::NoPolicy => Err(match txt {
                TxtLookup::Failed(e) => StsError::TxtLookup(e),
                _ => StsError::NoRecord,
            }),
            Step::Fetch(id) => {
                let fresh = cached.filter(|c| c.is_fresh(now));
                let recent_failure = self
                    .failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&domain)
                    .is_some_and(|at| now - at < FETCH_FAILURE_HOLDOFF);
                let result = if recent_failure {
                    Err(PolicyFetchError::HeldOff)
                } else {
                    match self.source.fetch(&domain).await {
                        Ok(body) => parse_policy(&body).map_err(PolicyFetchError::Invalid),
                        Err(e) => Err(PolicyFetchError::Fetch(e)),
                    }
                };
                match result {
                    Ok(policy) => {
                        self.failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&domain);
                        let entry = CachedPolicy {
                            id: id.clone(),
                            policy: policy.clone(),
                            fetched_at: now,
                        };
                        self.cache.put(&domain, entry, now);
                        Ok(Found {
                            policy,
                            id,
                            how: "fetched".into(),
                        })
                    }
                    Err(e) => {
                        if !recent_failure {
                            self.failures
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(domain.clone(), now);
                        }
                        // RFC 8461 §3.3: keep using a policy still within its max_age.
                        match fresh {
                            Some(c) => Ok(Found {
                                policy: c.policy,
                                id: c.id,
                                how: format!("cached (fetch failed: {e})"),
                            }),
                            None => Err(StsError::Fetch(e)),
                        }
                    }
                }
            }
        }
    }
}

/// What one background refresh did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub checked: usize,
    pub fetched: usize,
    pub failed: usize,
}

impl MtaSts {
    /// Refresh, in the background, the cached policies that are due: fetched more than
    /// [`REFRESH_AGE`] ago, or with less than a quarter of their `max_age` left, or whose
    /// TXT id changed. A domain whose TXT record is gone keeps its policy until it
    /// expires (RFC 8461 §8.3: a domain leaves MTA-STS by publishing `mode: none`
    /// first). A failed fetch keeps the cached policy.
    pub async fn refresh(&self, now: i64) -> Refreshed {
        let mut done = Refreshed::default();
        for (domain, cached) in self.cache.entries() {
            if !cached.is_fresh(now) {
                continue;
            }
            done.checked += 1;
            let left = cached.expires_at() - now;
            let due =
                now - cached.fetched_at >= REFRESH_AGE || left < (cached.policy.max_age / 4) as i64;
            let txt = self.source.txt(&domain).await;
            let id = match txt {
                TxtLookup::Found(id) if id != cached.id || due => id,
                _ => continue,
            };
            let lock = {
                let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                map.entry(domain.clone()).or_default().clone()
            };
            let _guard = lock.lock().await;
            let result = match self.source.fetch(&domain).await {
                Ok(body) => parse_policy(&body).map_err(PolicyFetchError::Invalid),
                Err(e) => Err(PolicyFetchError::Fetch(e)),
            };
            match result {
                Ok(policy) => {
                    tracing::info!(
                        domain,
                        id,
                        mode = policy.mode.as_str(),
                        max_age = policy.max_age,
                        "MTA-STS policy refreshed"
                    );
                    let entry = CachedPolicy {
                        id,
                        policy,
                        fetched_at: now,
                    };
                    self.cache.put(&domain, entry, now);
                    done.fetched += 1;
                }
                Err(e) => {
                    tracing::warn!(domain, error = %e, expires_in_secs = left,
                        "MTA-STS policy refresh failed; the cached policy stays");
                    done.failed += 1;
                }
            }
        }
        done
    }

    /// Run [`MtaSts::refresh`] every `every` for as long as the process lives.
    pub fn spawn_refresher(self: Arc<Self>, every: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let done = self.refresh(crate::spool::now()).await;
                if done.fetched + done.failed > 0 {
                    tracing::info!(
                        checked = done.checked,
                        fetched = done.fetched,
                        failed = done.failed,
                        "MTA-STS background refresh"
                    );
                }
            }
        });
    }
}

/// The real source: DNS through our resolver, HTTPS through reqwest.
pub struct HttpsSource {
    resolver: TokioResolver,
    client: reqwest::Client,
    port: u16,
}

impl HttpsSource {
    /// `tls` must verify certificates (WebPKI roots plus any extra CAs); `port` is 443
    /// except in tests.
    pub fn new(
        resolver: TokioResolver,
        tls: rustls::ClientConfig,
        port: u16,
        timeout: Duration,
    ) -> Result<HttpsSource, HttpsClientError> {
        // RFC 8461 §3.3: redirects must not be followed (https_client follows none).
        let client = https_client(resolver.clone(), tls, timeout)?;
        Ok(HttpsSource {
            resolver,
            client,
            port,
        })
    }

    async fn get(&self, domain: &str) -> Result<String, FetchError> {
        let url = if self.port == 443 {
            format!("https://mta-sts.{domain}/.well-known/mta-sts.txt")
        } else {
            format!(
                "https://mta-sts.{domain}:{}/.well-known/mta-sts.txt",
                self.port
            )
        };
        let mut response =
            self.client
                .get(&url)
                .send()
                .await
                .map_err(|source| FetchError::Request {
                    url: url.clone(),
                    source,
                })?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status {
                url,
                status: response.status(),
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("text/plain") {
            return Err(FetchError::ContentType {
                url,
                content_type: content_type.to_string(),
            });
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_POLICY_BYTES as u64)
        {
            return Err(FetchError::TooLarge { url });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| FetchError::Request {
                url: url.clone(),
                source,
            })?
        {
            if body.len() + chunk.len() > MAX_POLICY_BYTES {
                return Err(FetchError::TooLarge { url });
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| FetchError::NotUtf8 { url })
    }
}

/// The gateway's HTTPS client (policy fetches, report posts, list downloads): `https:`
/// only, certificates verified by `tls` (WebPKI roots plus any extra CAs), names resolved
/// by `resolver` (never the system's), no proxy, no redirects.
pub fn https_client(
    resolver: TokioResolver,
    tls: rustls::ClientConfig,
    timeout: Duration,
) -> Result<reqwest::Client, HttpsClientError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .dns_resolver(Arc::new(ResolveWith(resolver)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(true)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(HttpsClientError)
}

/// An error and its causes on one line (reqwest's own message is terse).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl PolicySource for HttpsSource {
    fn txt(&self, domain: &str) -> BoxFuture<'_, TxtLookup> {
        let name = format!("_mta-sts.{domain}.");
        let domain = domain.to_string();
        Box::pin(async move {
            let records =
                crate::mx::txt_records(&self.resolver, &name, |t| t.starts_with("v=STSv1")).await;
            match records {
                // RFC 8461 §3.1: not exactly one STSv1 record means no policy.
                Ok(records) => match records.as_slice() {
                    [one] => match parse_txt(one) {
                        Ok(id) => TxtLookup::Found(id),
                        Err(e) => {
                            tracing::info!(domain = %domain, error = %e, "MTA-STS: invalid TXT record");
                            TxtLookup::Absent
                        }
                    },
                    _ => TxtLookup::Absent,
                },
                Err(e) => TxtLookup::Failed(e.to_string()),
            }
        })
    }

    fn fetch(&self, domain: &str) -> BoxFuture<'_, Result<String, FetchError>> {
        let domain = domain.to_string();
        Box::pin(async move { self.get(&domain).await })
    }
}

/// reqwest's name resolution through our resolver, never the system's.
pub(crate) struct ResolveWith(pub(crate) TokioResolver);

impl reqwest::dns::Resolve for ResolveWith {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // reqwest takes any boxed error here.
            let addrs = crate::mx::resolve_addrs(&resolver, &host)
                .await
                .map_err(|source| Box::new(ResolveError { host, source }))?;
            let addrs: reqwest::dns::Addrs =
                Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n";

    #[test]
    fn parses_a_valid_policy() {
        let p = parse_policy(GOOD).expect("valid");
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, vec!["mail.example.com", "*.example.net"]);
        assert_eq!(p.max_age, 604800);
        // LF only, trailing whitespace, no final newline, unknown fields, spacing.
        let lf =
            "version:STSv1  \nmode:   testing\t\nmx: MX.Example.COM.\nfoo: bar\nmax_age: 86400";
        let p = parse_policy(lf).expect("tolerant");
        assert_eq!(p.mode, Mode::Testing);
        assert_eq!(p.mx, vec!["mx.example.com"]);
        let none = parse_policy("version: STSv1\nmode: none\nmax_age: 0\n").expect("none");
        assert_eq!(none.mode, Mode::None);
        assert!(none.mx.is_empty());
        let huge = parse_policy("version: STSv1\nmode: none\nmax_age: 9999999999\n").expect("ok");
        assert_eq!(huge.max_age, MAX_AGE_LIMIT);
        // The first occurrence of a field counts.
        let twice = "version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 1\n";
        assert_eq!(parse_policy(twice).expect("ok").mode, Mode::Testing);
    }

    #[test]
    fn rejects_invalid_policies() {
        for bad in [
            "",
            "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
            "mode: enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\ngarbage line\n",
            "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: mail.example.com:25\nmax_age: 1\n",
            "<html><body>not found</body></html>",
        ] {
            assert!(parse_policy(bad).is_err(), "accepted: {bad:?}");
        }
    }

    #[test]
    fn wildcards_match_one_label() {
        assert!(mx_matches("mail.example.com", "MAIL.example.com."));
        assert!(!mx_matches("mail.example.com", "mail2.example.com"));
        assert!(mx_matches("*.example.com", "mx1.example.com"));
        assert!(!mx_matches("*.example.com", "a.b.example.com"));
        assert!(!mx_matches("*.example.com", "example.com"));
        assert!(!mx_matches("*.example.com", "mx1.example.com.evil.test"));
        assert!(!mx_matches("*.example.com", ".example.com"));
        assert!(!mx_matches("mail.example.com", ""));
    }

    #[test]
    fn txt_records() {
        assert_eq!(
            parse_txt("v=STSv1; id=20160831085700Z;"),
            Ok("20160831085700Z".into())
        );
        assert_eq!(parse_txt("v=STSv1;id=abc"), Ok("abc".into()));
        assert_eq!(parse_txt("v=STSv1; id=abc; ext=1"), Ok("abc".into()));
        assert!(parse_txt("v=STSv1;").is_err());
        assert!(parse_txt("id=abc; v=STSv1").is_err());
        assert!(parse_txt("v=STSv1; id=has-dash").is_err());
        assert!(parse_txt("v=STSv1; id=").is_err());
        assert!(parse_txt(&format!("v=STSv1; id={}", "a".repeat(33))).is_err());
        assert!(parse_txt("v=STSv1; id=abc; broken").is_err());
    }

    fn cached(id: &str, fetched_at: i64, max_age: u64) -> CachedPolicy {
        CachedPolicy {
            id: id.into(),
            policy: Policy {
                mode: Mode::Enforce,
                mx: vec!["mx.example.com".into()],
                max_age,
            },
            fetched_at,
        }
    }

    #[test]
    fn cache_refresh_rules() {
        let found = |id: &str| TxtLookup::Found(id.into());
        let c = cached("one", 1000, 100);
        // Same id, within max_age: the cache is enough.
        assert_eq!(next_step(Some(&c), &found("one"), 1050), Step::UseCached);
        // The id changed: fetch again.
        assert_eq!(
            next_step(Some(&c), &found("two"), 1050),
            Step::Fetch("two".into())
        );
        // max_age passed: fetch again even with the same id.
        assert_eq!(
            next_step(Some(&c), &found("one"), 1100),
            Step::Fetch("one".into())
        );
        // Nothing cached.
        assert_eq!(next_step(None, &found("one"), 0), Step::Fetch("one".into()));
        // TXT gone or failing: a fresh cached policy still holds; an expired one does not.
        assert_eq!(
            next_step(Some(&c), &TxtLookup::Absent, 1050),
            Step::UseCached
        );
        assert_eq!(
            next_step(Some(&c), &TxtLookup::Failed("timeout".into()), 1050),
            Step::UseCached
        );
        assert_eq!(
            next_step(Some(&c), &TxtLookup::Absent, 1100),
            Step::NoPolicy
        );
        assert_eq!(next_step(None, &TxtLookup::Absent, 0), Step::NoPolicy);
    }

    struct Fake {
        txt: Mutex<TxtLookup>,
        /// The policy file, or the HTTP status of a failed fetch.
        body: Mutex<Result<String, reqwest::StatusCode>>,
        fetches: Mutex<u32>,
    }

    impl PolicySource for Arc<Fake> {
        fn txt(&self, _: &str) -> BoxFuture<'_, TxtLookup> {
            let t = self.txt.lock().unwrap().clone();
            Box::pin(async move { t })
        }
        fn fetch(&self, _: &str) -> BoxFuture<'_, Result<String, FetchError>> {
            *self.fetches.lock().unwrap() += 1;
            let b = self.body.lock().unwrap().clone();
            Box::pin(async move {
                b.map_err(|status| FetchError::Status {
                    url: "https://mta-sts.example.com/.well-known/mta-sts.txt".into(),
                    status,
                })
            })
        }
    }

    #[tokio::test]
    async fn fetch_cache_and_fallback() {
        let dir = std::env::temp_dir().join(format!("sts-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mta-sts.json");
        let _ = std::fs::remove_file(&path);
        let fake = Arc::new(Fake {
            txt: Mutex::new(TxtLookup::Found("one".into())),
            body: Mutex::new(Ok(GOOD.to_string())),
            fetches: Mutex::new(0),
        });
        let sts = MtaSts::new(StsCache::open(Some(path.clone())), Box::new(fake.clone()));
        let first = sts.policy("Example.COM", 1000).await.expect("policy");
        assert_eq!(first.how, "fetched");
        let again = sts.policy("example.com", 1001).await.expect("policy");
        assert_eq!(again.how, "cached");
        assert_eq!(*fake.fetches.lock().unwrap(), 1);

        // A restart keeps the policy.
        let sts = MtaSts::new(StsCache::open(Some(path.clone())), Box::new(fake.clone()));
        assert_eq!(
            sts.policy("example.com", 1002).await.expect("policy").how,
            "cached"
        );
        assert_eq!(*fake.fetches.lock().unwrap(), 1);

        // A new id with a failing fetch keeps the cached policy.
        *fake.txt.lock().unwrap() = TxtLookup::Found("two".into());
        *fake.body.lock().unwrap() = Err(reqwest::StatusCode::NOT_FOUND);
        let fallback = sts
            .policy("example.com", 1003)
            .await
            .expect("cached policy");
        assert!(
            fallback.how.starts_with("cached (fetch failed"),
            "{}",
            fallback.how
        );
        assert_eq!(fallback.id, "one");

        // The background refresh: nothing due (fetched moments ago, same id) fetches
        // nothing; a changed id or an old policy is fetched; a failure keeps the policy.
        *fake.txt.lock().unwrap() = TxtLookup::Found("one".into());
        *fake.body.lock().unwrap() = Ok(GOOD.to_string());
        let fetches = *fake.fetches.lock().unwrap();
        let done = sts.refresh(1005).await;
        assert_eq!((done.checked, done.fetched), (1, 0));
        let later = 1000 + REFRESH_AGE;
        assert_eq!(sts.refresh(later).await.fetched, 1);
        assert_eq!(sts.cache.get("example.com").unwrap().fetched_at, later);
        *fake.txt.lock().unwrap() = TxtLookup::Found("three".into());
        assert_eq!(sts.refresh(later + 1).await.fetched, 1);
        assert_eq!(sts.cache.get("example.com").unwrap().id, "three");
        *fake.body.lock().unwrap() = Err(reqwest::StatusCode::SERVICE_UNAVAILABLE);
        *fake.txt.lock().unwrap() = TxtLookup::Found("four".into());
        assert_eq!(sts.refresh(later + 2).await.failed, 1);
        assert_eq!(sts.cache.get("example.com").unwrap().id, "three");
        *fake.txt.lock().unwrap() = TxtLookup::Absent;
        assert_eq!(sts.refresh(later + 3 + REFRESH_AGE).await.fetched, 0);
        assert_eq!(*fake.fetches.lock().unwrap(), fetches + 3);

        // An invalid policy file is a failed fetch too; with nothing cached: no policy.
        *fake.txt.lock().unwrap() = TxtLookup::Found("one".into());
        *fake.body.lock().unwrap() = Ok("version: STSv1\n".into());
        let none = sts.policy("other.example", 1004).await;
        let why = none.expect_err("no policy").to_string();
        assert!(why.contains("invalid policy"), "{why}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
