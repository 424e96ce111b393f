//! Outbound DKIM signing (RFC 6376, Ed25519 per RFC 8463) on mail-auth.
//!
//! - [`generate`] makes a key pair (RSA-2048 or Ed25519) and the TXT record value to publish.
//! - [`Signer`] signs a message with every active key of one domain: one `DKIM-Signature`
//!   field per key, relaxed/relaxed, with a `t=` timestamp.
//! - [`KeyRing`] holds the parsed signers of every domain, built from the store's active keys,
//!   and picks the domain of a message from its `From` field. [`SharedKeyRing`] is the handle
//!   the gateway shares between sessions and reloads; keys that did not change are not parsed
//!   again.
//!
//! Messages are signed as they will be sent: CRLF line ends, dot-stuffing undone.

use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::crypto::{
    Algorithm as AuthAlgorithm, DkimKey as AuthKey, Ed25519Key, RsaKey, Sha256, SigningKey,
};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use portcullis_store::{DkimKey, Store, StoreError};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

/// Header fields signed when present, every instance of them.
pub const SIGNED_HEADERS: [&str; 22] = [
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
    "Feedback-ID",
];

/// Header fields signed once more than they occur ("oversigned"), so that a field of that name
/// added on the way breaks the signature. `From` always, even when the message has none; the
/// others only when present, so that a relay adding a missing `Date` or `Message-ID` does not
/// break it. Each of these may occur at most once in a valid message (RFC 5322 3.6).
const OVERSIGNED_ALWAYS: [&str; 1] = ["From"];
const OVERSIGNED_WHEN_PRESENT: [&str; 8] = [
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// Size of generated RSA keys: 2048 bits fits a TXT record and is what receivers expect
/// (RFC 8301 requires at least 1024).
const RSA_KEY_SIZE: KeySize = KeySize::Rsa2048;

/// The longest character-string of a TXT record (RFC 1035 3.3).
const TXT_STRING_MAX: usize = 255;

/// A signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// RSA (2048 bits when we make the key) with SHA-256.
    Rsa,
    /// Ed25519 with SHA-256 (RFC 8463).
    Ed25519,
}

impl Algorithm {
    pub const ALL: [Algorithm; 2] = [Algorithm::Rsa, Algorithm::Ed25519];

    /// The signature's `a=` value, as the store keeps it: `rsa-sha256`, `ed25519-sha256`.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa-sha256",
            Algorithm::Ed25519 => "ed25519-sha256",
        }
    }

    /// The key type, the TXT record's `k=` value: `rsa`, `ed25519`.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    /// From a `tag()`.
    pub fn from_tag(tag: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.tag() == tag)
    }

    /// From a `key_type()` or a `tag()`, case-insensitively.
    pub fn parse(name: &str) -> Option<Algorithm> {
        let name = name.trim().to_ascii_lowercase();
        Algorithm::ALL
            .into_iter()
            .find(|a| a.key_type() == name || a.tag() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// What can go wrong making keys or signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// Key generation failed in the crypto library.
    Generate(String),
    /// A stored key cannot be used: `what` names it.
    Key { what: String, reason: String },
    /// A domain has no active key.
    NoKeys(String),
    /// The crypto layer refused to sign.
    Sign(String),
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Generate(e) => write!(f, "generating a DKIM key: {e}"),
            SignError::Key { what, reason } => write!(f, "DKIM key {what}: {reason}"),
            SignError::NoKeys(domain) => write!(f, "{domain} has no active DKIM key"),
            SignError::Sign(e) => write!(f, "DKIM signing: {e}"),
        }
    }
}

impl std::error::Error for SignError {}

/// A new key pair.
#[derive(Clone)]
pub struct GeneratedKey {
    pub algorithm: Algorithm,
    /// The private key, PKCS#8 DER. A secret.
    pub private_pkcs8_der: Vec<u8>,
    /// The public key as the `p=` tag carries it: SubjectPublicKeyInfo DER for RSA, the raw
    /// 32-byte key for Ed25519.
    pub public_key: Vec<u8>,
    /// The TXT record value to publish at `<selector>._domainkey.<domain>`.
    pub dns_txt: String,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("algorithm", &self.algorithm)
            .field("private_pkcs8_der", &"<redacted>")
            .field("dns_txt", &self.dns_txt)
            .finish()
    }
}

impl GeneratedKey {
    /// The store row for this key (base64 of the DER forms).
    pub fn to_store(&self, domain: &str, selector: &str, state: &str, now: i64) -> DkimKey {
        DkimKey {
            domain: domain.to_string(),
            selector: selector.to_string(),
            algorithm: self.algorithm.tag().to_string(),
            private_key: BASE64.encode(&self.private_pkcs8_der),
            public_key: BASE64.encode(&self.public_key),
            created_at: now,
            state: state.to_string(),
            retired_at: None,
        }
    }
}

/// Makes a key pair: RSA-2048 or Ed25519.
pub fn generate(algorithm: Algorithm) -> Result<GeneratedKey, SignError> {
    let failed = |e: aws_lc_rs::error::Unspecified| SignError::Generate(e.to_string());
    let (private_pkcs8_der, public_key) = match algorithm {
        Algorithm::Rsa => {
            let pair = RsaKeyPair::generate(RSA_KEY_SIZE).map_err(failed)?;
            let private: Pkcs8V1Der = pair.as_der().map_err(failed)?;
            let public: PublicKeyX509Der = pair.public_key().as_der().map_err(failed)?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        Algorithm::Ed25519 => {
            let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(failed)?;
            let pair = Ed25519KeyPair::from_pkcs8(document.as_ref())
                .map_err(|e| SignError::Generate(e.to_string()))?;
            (
                document.as_ref().to_vec(),
                pair.public_key().as_ref().to_vec(),
            )
        }
    };
    Ok(GeneratedKey {
        algorithm,
        dns_txt: dns_txt(algorithm, &public_key),
        private_pkcs8_der,
        public_key,
    })
}

/// The TXT record value for a public key: `v=DKIM1; k=rsa; p=<base64>`.
pub fn dns_txt(algorithm: Algorithm, public_key: &[u8]) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        algorithm.key_type(),
        BASE64.encode(public_key)
    )
}

/// The owner name of a key's record: `<selector>._domainkey.<domain>.`
pub fn record_name(selector: &str, domain: &str) -> String {
    format!("{selector}._domainkey.{}.", domain.trim_end_matches('.'))
}

/// A zone-file line publishing `txt`:
/// `<selector>._domainkey.<domain>. IN TXT "..." "..."`, the value split into quoted strings
/// of at most 255 characters as DNS requires (receivers join them back).
pub fn zone_record(selector: &str, domain: &str, txt: &str) -> String {
    format!(
        "{} IN TXT {}",
        record_name(selector, domain),
        txt_strings(txt)
    )
}

/// `txt` as quoted character-strings of at most 255 characters each.
pub fn txt_strings(txt: &str) -> String {
    let mut parts = Vec::new();
    let mut rest = txt;
    while !rest.is_empty() {
        let mut cut = rest.len().min(TXT_STRING_MAX);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (part, tail) = rest.split_at(cut);
        parts.push(format!(
            "\"{}\"",
            part.replace('\\', "\\\\").replace('"', "\\\"")
        ));
        rest = tail;
    }
    if parts.is_empty() {
        parts.push("\"\"".to_string());
    }
    parts.join(" ")
}

/// The TXT value of a stored key, or why it has none.
pub fn stored_dns_txt(key: &DkimKey) -> Result<String, SignError> {
    let algorithm = Algorithm::from_tag(&key.algorithm).ok_or_else(|| SignError::Key {
        what: describe(key),
        reason: format!("unknown algorithm {:?}", key.algorithm),
    })?;
    let public = BASE64
        .decode(key.public_key.trim())
        .map_err(|e| SignError::Key {
            what: describe(key),
            reason: format!("public key is not base64: {e}"),
        })?;
    Ok(dns_txt(algorithm, &public))
}

fn describe(key: &DkimKey) -> String {
    format!("{}._domainkey.{}", key.selector, key.domain)
}

/// Domains compare in lower-case A-label form without a trailing dot.
pub fn normalize_domain(domain: &str) -> String {
    let d = domain.trim().trim_end_matches('.');
    idna::domain_to_ascii(d).unwrap_or_else(|_| d.to_ascii_lowercase())
}

/// A parsed private key with its name.
struct LoadedKey {
    selector: String,
    algorithm: Algorithm,
    key: Arc<AuthKey>,
    /// Of the stored row, to reuse the parsed key when the row did not change.
    fingerprint: digest::Digest,
}

fn fingerprint(row: &DkimKey) -> digest::Digest {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [
        &row.domain,
        &row.selector,
        &row.algorithm,
        &row.private_key,
        &row.public_key,
    ] {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish()
}

/// The private key's DER from the stored text: base64, or PEM ("-----BEGIN PRIVATE KEY-----").
fn private_der(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    BASE64.decode(body)
}

fn load_key(row: &DkimKey) -> Result<LoadedKey, SignError> {
    let bad = |reason: String| SignError::Key {
        what: describe(row),
        reason,
    };
    let algorithm = Algorithm::from_tag(&row.algorithm)
        .ok_or_else(|| bad(format!("unknown algorithm {:?}", row.algorithm)))?;
    let der = private_der(&row.private_key)
        .map_err(|e| bad(format!("private key is not base64 or PEM: {e}")))?;
    let public = BASE64
        .decode(row.public_key.trim())
        .map_err(|e| bad(format!("public key is not base64: {e}")))?;
    // A row whose two halves do not match would sign mail that never verifies.
    let mismatch = || bad("the private key does not match the published public key".into());
    let key = match algorithm {
        Algorithm::Rsa => {
            let key =
                RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
                    .map_err(|e| bad(e.to_string()))?;
            // The record carries SubjectPublicKeyInfo, which ends with the PKCS#1 key.
            let pkcs1 = key.public_key();
            if pkcs1.is_empty() || !(public == pkcs1 || public.ends_with(&pkcs1)) {
                return Err(mismatch());
            }
            AuthKey::Rsa(key)
        }
        Algorithm::Ed25519 => {
            let key = Ed25519Key::from_pkcs8_der(&der).map_err(|e| bad(e.to_string()))?;
            if key.public_key() != public {
                return Err(mismatch());
            }
            AuthKey::Ed25519(key)
        }
    };
    Ok(LoadedKey {
        selector: row.selector.trim().to_ascii_lowercase(),
        algorithm,
        key: Arc::new(key),
        fingerprint: fingerprint(row),
    })
}

/// Lets one parsed key serve many per-message `DkimSigner`s.
struct SharedKey(Arc<AuthKey>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> AuthAlgorithm {
        self.0.algorithm()
    }
}

/// The names of the header fields of a message (its header section, up to the empty line).
fn header_names(message: &[u8]) -> Vec<&[u8]> {
    let mut names = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            names.push(line[..colon].trim_ascii());
        }
    }
    names
}

/// The `h=` template for one message: each signed field present (mail-auth signs every
/// instance of a listed name), then the oversigned names again. mail-auth lists a repeated
/// name that matches nothing more as an empty instance, which is what oversigning is.
fn headers_to_sign(message: &[u8]) -> Vec<&'static str> {
    let names = header_names(message);
    let present = |field: &str| {
        names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(field.as_bytes()))
    };
    let mut list: Vec<&'static str> = SIGNED_HEADERS.into_iter().filter(|f| present(f)).collect();
    list.extend(OVERSIGNED_ALWAYS);
    list.extend(OVERSIGNED_WHEN_PRESENT.into_iter().filter(|f| present(f)));
    list
}

/// Signs for one domain with all of its active keys. Cheap to clone (the parsed keys are
/// shared).
#[derive(Clone)]
pub struct Signer {
    domain: String,
    keys: Vec<Arc<LoadedKey>>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("domain", &self.domain)
            .field("selectors", &self.selectors())
            .finish()
    }
}

impl Signer {
    /// A signer for `domain` from its stored keys: the active ones are used, others ignored.
    /// Fails if one of them cannot be used or none is active.
    pub fn new(domain: &str, keys: &[DkimKey]) -> Result<Signer, SignError> {
        let domain = normalize_domain(domain);
        let mut loaded = Vec::new();
        for row in keys
            .iter()
            .filter(|k| k.state == "active" && normalize_domain(&k.domain) == domain)
        {
            loaded.push(Arc::new(load_key(row)?));
        }
        if loaded.is_empty() {
            return Err(SignError::NoKeys(domain));
        }
        Ok(Signer::from_loaded(domain, loaded))
    }

    fn from_loaded(domain: String, mut keys: Vec<Arc<LoadedKey>>) -> Signer {
        // A stable order: RSA first (what every receiver checks), then by selector.
        keys.sort_by(|a, b| (a.algorithm, &a.selector).cmp(&(b.algorithm, &b.selector)));
        Signer { domain, keys }
    }

    /// The signing domain (`d=`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selectors signed with, with their algorithms.
    pub fn selectors(&self) -> Vec<(&str, Algorithm)> {
        self.keys
            .iter()
            .map(|k| (k.selector.as_str(), k.algorithm))
            .collect()
    }

    /// Signs `message` (CRLF line ends, as it will be sent) with every key. Returns the
    /// `DKIM-Signature` fields, each CRLF terminated, to put in front of the message.
    pub fn sign(&self, message: &[u8]) -> Result<String, SignError> {
        let headers = headers_to_sign(message);
        let mut fields = String::new();
        for key in &self.keys {
            let signature = DkimSigner::from_key(SharedKey(key.key.clone()))
                .domain(self.domain.as_str())
                .selector(key.selector.as_str())
                .headers(headers.iter().copied())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed)
                .sign(message)
                .map_err(|e| SignError::Sign(e.to_string()))?;
            fields.push_str(&signature.to_header());
        }
        Ok(fields)
    }

    /// An ARC set (RFC 8617) over `message` as it will be sent: `ARC-Seal`,
    /// `ARC-Message-Signature` and `ARC-Authentication-Results` with `results`, chained to
    /// the sets the message arrived with (`arc`, from verifying it as received). Sealed
    /// with the domain's RSA key: RFC 8617 §4.1.3 allows rsa-sha256 only. None when the
    /// domain has no RSA key or the chain arrived broken (cv=fail is never sealed over).
    pub fn arc_seal(
        &self,
        message: &mail_auth::AuthenticatedMessage<'_>,
        results: &mail_auth::AuthenticationResults<'_>,
        arc: &mail_auth::ArcOutput<'_>,
    ) -> Result<Option<String>, SignError> {
        let Some(key) = self.keys.iter().find(|k| k.algorithm == Algorithm::Rsa) else {
            return Ok(None);
        };
        if !arc.can_be_sealed() {
            return Ok(None);
        }
        let headers = headers_to_sign(message.raw_message);
        let set = mail_auth::arc::ArcSealer::from_key(SharedKey(key.key.clone()))
            .domain(self.domain.as_str())
            .selector(key.selector.as_str())
            .headers(headers.iter().copied())
            .seal(message, results, arc)
            .map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(Some(set.to_header()))
    }
}

/// The domain of the first address of the message's `From` field, normalized.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(message)?;
    let address = parsed.from()?.first()?.address()?;
    let (_, domain) = address.rsplit_once('@')?;
    let domain = normalize_domain(domain);
    (!domain.is_empty()).then_some(domain)
}

/// The parsed signers of every domain with active keys.
#[derive(Default, Clone)]
pub struct KeyRing {
    signers: HashMap<String, Signer>,
    problems: Vec<String>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("signers", &self.signers)
            .field("problems", &self.problems)
            .finish()
    }
}

impl KeyRing {
    /// Builds the ring from stored keys (the active ones count). Keys already parsed in
    /// `previous` are reused when their row did not change. A key that cannot be used is left
    /// out and named in [`problems`](KeyRing::problems) (and logged once, when it first
    /// appears); the domain's other keys still sign.
    pub fn build(rows: &[DkimKey], previous: Option<&KeyRing>) -> KeyRing {
        let mut by_domain: BTreeMap<String, Vec<Arc<LoadedKey>>> = BTreeMap::new();
        let mut problems = Vec::new();
        for row in rows.iter().filter(|k| k.state == "active") {
            let domain = normalize_domain(&row.domain);
            let print = fingerprint(row);
            let reused = previous
                .and_then(|p| p.signers.get(&domain))
                .and_then(|s| {
                    s.keys
                        .iter()
                        .find(|k| k.fingerprint.as_ref() == print.as_ref())
                })
                .cloned();
            let key = match reused {
                Some(k) => k,
                None => match load_key(row) {
                    Ok(k) => Arc::new(k),
                    Err(e) => {
                        let problem = e.to_string();
                        if !previous.is_some_and(|p| p.problems.contains(&problem)) {
                            tracing::warn!(error = %problem, "DKIM key left out of signing");
                        }
                        problems.push(problem);
                        continue;
                    }
                },
            };
            by_domain.entry(domain).or_default().push(key);
        }
        let signers = by_domain
            .into_iter()
            .map(|(domain, keys)| (domain.clone(), Signer::from_loaded(domain, keys)))
            .collect();
        KeyRing { signers, problems }
    }

    /// Reads the active keys from the store and builds the ring (see [`KeyRing::build`]).
    pub async fn load(store: &Store, previous: Option<&KeyRing>) -> Result<KeyRing, StoreError> {
        let rows = store.active_dkim_keys(None).await?;
        Ok(KeyRing::build(&rows, previous))
    }

    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// The domains that sign, sorted.
    pub fn domains(&self) -> Vec<&str> {
        let mut d: Vec<&str> = self.signers.keys().map(String::as_str).collect();
        d.sort_unstable();
        d
    }

    /// Keys left out, one line each.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The signer of exactly `domain`.
    pub fn signer(&self, domain: &str) -> Option<&Signer> {
        self.signers.get(&normalize_domain(domain))
    }

    /// The signer for a `From` domain: the domain itself, else its nearest parent with keys
    /// (`d=example.com` for `From: a@mail.example.com`, which DMARC's relaxed alignment
    /// accepts).
    pub fn signer_for_domain(&self, domain: &str) -> Option<&Signer> {
        let mut name = normalize_domain(domain);
        loop {
            if let Some(s) = self.signers.get(&name) {
                return Some(s);
            }
            match name.split_once('.') {
                // Stop before a single label: there is no key for a top-level domain.
                Some((_, parent)) if parent.contains('.') => name = parent.to_string(),
                _ => return None,
            }
        }
    }

    /// The signer for a message, from the domain of its `From` field.
    pub fn signer_for_message(&self, message: &[u8]) -> Option<&Signer> {
        if self.signers.is_empty() {
            return None;
        }
        self.signer_for_domain(&from_domain(message)?)
    }

    /// Signs a message for its `From` domain: the `DKIM-Signature` fields to put in front of
    /// it, or `None` when no domain of ours matches (the message goes unsigned).
    pub fn sign(&self, message: &[u8]) -> Result<Option<String>, SignError> {
        match self.signer_for_message(message) {
            Some(signer) => signer.sign(message).map(Some),
            None => Ok(None),
        }
    }
}

/// The key ring shared by every session of the gateway, swapped whole on reload.
#[derive(Clone, Default)]
pub struct SharedKeyRing {
    ring: Arc<RwLock<Arc<KeyRing>>>,
}

impl fmt::Debug for SharedKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.current().fmt(f)
    }
}

impl SharedKeyRing {
    pub fn new(ring: KeyRing) -> SharedKeyRing {
        SharedKeyRing {
            ring: Arc::new(RwLock::new(Arc::new(ring))),
        }
    }

    /// The ring now; hold it for one message.
    pub fn current(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, ring: KeyRing) {
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
    }

    /// Rebuilds the ring from the store, parsing only keys that changed. On a store error the
    /// current ring stays.
    pub async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        let old = self.current();
        let ring = KeyRing::load(store, Some(&old)).await?;
        self.replace(ring);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey;
    use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
    use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, Txt};
    use std::sync::OnceLock;

    /// Generating RSA keys is slow in a debug build: one key per algorithm for every test.
    fn test_key(algorithm: Algorithm) -> &'static GeneratedKey {
        static RSA: OnceLock<GeneratedKey> = OnceLock::new();
        static ED: OnceLock<GeneratedKey> = OnceLock::new();
        let cell = match algorithm {
            Algorithm::Rsa => &RSA,
            Algorithm::Ed25519 => &ED,
        };
        cell.get_or_init(|| generate(algorithm).expect("generate"))
    }

    fn row(domain: &str, selector: &str, algorithm: Algorithm) -> DkimKey {
        test_key(algorithm).to_store(domain, selector, "active", 1_000)
    }

    /// TXT answers for the verifier, so no DNS is asked.
    type Records = crate::org_domain::TxtAnswers;

    fn publish(records: &Records, selector: &str, domain: &str, txt: &str) {
        let key = DomainKey::parse(txt.as_bytes()).expect("TXT parses as a DKIM key");
        records.set(record_name(selector, domain), Txt::DomainKey(Arc::new(key)));
    }

    async fn verify(message: &[u8], records: &Records) -> Vec<String> {
        // No name server: every name the test asks for is in `records`.
        let verifier = MessageAuthenticator::new(
            ResolverConfig::from_name_servers(Vec::new()),
            ResolverOpts::default(),
        )
        .expect("resolver");
        let parsed = AuthenticatedMessage::parse(message).expect("parse");
        let outputs = verifier
            .verify_dkim(Parameters::new(&parsed).with_txt_cache(records))
            .await;
        outputs
            .iter()
            .map(|o| match o.result() {
                DkimResult::Pass => format!(
                    "pass {}",
                    o.signature().map(|s| s.s.as_str()).unwrap_or("?")
                ),
                other => format!("{other:?}"),
            })
            .collect()
    }

    const MESSAGE: &str = "From: Alice <alice@Example.COM>\r\n\
        To: bob@example.net\r\n\
        Subject: quarterly numbers\r\n\
        Date: Mon, 23 Nov 2026 10:41:02 +0000\r\n\
        Message-ID: <1@example.com>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        X-Mailer: test\r\n\
        \r\n\
        Hello Bob,\r\n\
        \r\n\
        the numbers are attached.   \r\n\
        \r\n\
        \r\n";

    fn signed(fields: &str, message: &str) -> Vec<u8> {
        let mut out = fields.as_bytes().to_vec();
        out.extend_from_slice(message.as_bytes());
        out
    }

    #[test]
    fn generated_keys_and_records() {
        let rsa = test_key(Algorithm::Rsa);
        assert!(
            rsa.dns_txt
                .starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A")
        );
        // SubjectPublicKeyInfo of a 2048-bit key.
        assert_eq!(rsa.public_key.len(), 294);
        let ed = test_key(Algorithm::Ed25519);
        assert_eq!(ed.public_key.len(), 32);
        assert_eq!(
            ed.dns_txt,
            format!("v=DKIM1; k=ed25519; p={}", BASE64.encode(&ed.public_key))
        );
        assert!(!format!("{rsa:?}").contains(&BASE64.encode(&rsa.private_pkcs8_der)[..40]));

        let stored = row("example.com", "s", Algorithm::Rsa);
        assert_eq!(stored_dns_txt(&stored).unwrap(), rsa.dns_txt);
        assert_eq!(stored.algorithm, "rsa-sha256");
    }

    #[test]
    fn zone_records_split_long_values() {
        let short = zone_record("ed", "example.com", "v=DKIM1; k=ed25519; p=abc");
        assert_eq!(
            short,
            "ed._domainkey.example.com. IN TXT \"v=DKIM1; k=ed25519; p=abc\""
        );
        let txt = &test_key(Algorithm::Rsa).dns_txt;
        let line = zone_record("rsa-202611", "example.com.", txt);
        assert!(line.starts_with("rsa-202611._domainkey.example.com. IN TXT \""));
        let strings: Vec<&str> = line
            .split_once(" IN TXT ")
            .unwrap()
            .1
            .split("\" \"")
            .map(|s| s.trim_matches('"'))
            .collect();
        assert_eq!(strings.len(), 2);
        assert!(strings.iter().all(|s| s.len() <= 255));
        assert_eq!(strings.concat(), *txt);
        assert_eq!(txt_strings(""), "\"\"");
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(Algorithm::parse("RSA"), Some(Algorithm::Rsa));
        assert_eq!(Algorithm::parse("ed25519-sha256"), Some(Algorithm::Ed25519));
        assert_eq!(Algorithm::parse("dsa"), None);
        assert_eq!(Algorithm::from_tag("rsa"), None);
    }

    #[test]
    fn signed_header_list_oversigns_from() {
        let h = headers_to_sign(MESSAGE.as_bytes());
        assert_eq!(
            h,
            vec![
                "From",
                "Subject",
                "Date",
                "Message-ID",
                "To",
                "MIME-Version",
                "Content-Type",
                "From",
                "Subject",
                "Date",
                "Message-ID",
                "To",
                "Content-Type",
            ]
        );
        // Body lines that look like fields do not count.
        let h = headers_to_sign(b"From: a@b.c\r\n\r\nCc: x@y.z\r\n");
        assert_eq!(h, vec!["From", "From"]);
    }

    #[tokio::test]
    async fn rsa_and_ed25519_signatures_verify_with_mail_auth() {
        let keys = [
            row("example.com", "rsa-202611", Algorithm::Rsa),
            row("example.com", "ed25519-202611", Algorithm::Ed25519),
        ];
        let signer = Signer::new("Example.com", &keys).unwrap();
        assert_eq!(
            signer.selectors(),
            vec![
                ("rsa-202611", Algorithm::Rsa),
                ("ed25519-202611", Algorithm::Ed25519)
            ]
        );
        let fields = signer.sign(MESSAGE.as_bytes()).unwrap();
        assert_eq!(fields.matches("DKIM-Signature: ").count(), 2);
        assert!(fields.ends_with("\r\n"));
        assert!(!fields.replace("\r\n", "").contains('\n'));
        for tag in [
            "a=rsa-sha256",
            "a=ed25519-sha256",
            "d=example.com",
            "c=relaxed/relaxed",
            "t=",
        ] {
            assert!(fields.contains(tag), "{tag} missing in {fields}");
        }
        let unfolded = fields.replace("\r\n\t", "");
        // mail-auth lists the fields found bottom-up, then the oversigned names.
        let h = unfolded
            .split("h=")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap();
        assert_eq!(
            h,
            "Content-Type:MIME-Version:Message-ID:Date:Subject:To:From:\
             From:Subject:Date:Message-ID:To:Content-Type"
        );

        let records = Records::default();
        for k in &keys {
            publish(
                &records,
                &k.selector,
                "example.com",
                &stored_dns_txt(k).unwrap(),
            );
        }
        let message = signed(&fields, MESSAGE);
        assert_eq!(
            verify(&message, &records).await,
            vec!["pass rsa-202611", "pass ed25519-202611"]
        );

        // Relaxed canonicalization tolerates re-folding and whitespace changes.
        let refolded = MESSAGE.replace(
            "Subject: quarterly numbers",
            "Subject:  quarterly\r\n numbers",
        );
        assert_eq!(
            verify(&signed(&fields, &refolded), &records).await,
            vec!["pass rsa-202611", "pass ed25519-202611"]
        );

        // A changed body, a changed subject and an added From all fail.
        let tampered = [
            MESSAGE.replace("attached", "attacked"),
            MESSAGE.replace("quarterly", "yearly"),
            format!("From: mallory@example.org\r\n{MESSAGE}"),
            MESSAGE.replace(
                "\r\n\r\nHello",
                "\r\nFrom: mallory@example.org\r\n\r\nHello",
            ),
        ];
        for t in tampered {
            let results = verify(&signed(&fields, &t), &records).await;
            assert_eq!(results.len(), 2);
            assert!(
                results.iter().all(|r| !r.starts_with("pass")),
                "{results:?} for {t}"
            );
        }
    }

    #[tokio::test]
    async fn key_ring_picks_the_from_domain() {
        let mut rows = vec![
            row("example.com", "rsa-1", Algorithm::Rsa),
            row("example.com", "ed-1", Algorithm::Ed25519),
            row("other.test", "ed-1", Algorithm::Ed25519),
        ];
        let mut pending = row("example.com", "rsa-2", Algorithm::Rsa);
        pending.state = "pending".to_string();
        rows.push(pending);
        let ring = KeyRing::build(&rows, None);
        assert_eq!(ring.domains(), vec!["example.com", "other.test"]);
        assert!(ring.problems().is_empty());
        let signer = ring.signer_for_message(MESSAGE.as_bytes()).unwrap();
        assert_eq!(signer.domain(), "example.com");
        // Pending keys do not sign.
        assert_eq!(signer.selectors().len(), 2);

        let sub = MESSAGE.replace("alice@Example.COM", "alice@mail.example.com");
        assert_eq!(
            ring.signer_for_message(sub.as_bytes()).map(Signer::domain),
            Some("example.com")
        );
        let foreign = MESSAGE.replace("alice@Example.COM", "alice@example.org");
        assert!(ring.signer_for_message(foreign.as_bytes()).is_none());
        assert_eq!(ring.sign(foreign.as_bytes()).unwrap(), None);
        assert!(
            ring.sign(b"Subject: no from\r\n\r\nbody\r\n")
                .unwrap()
                .is_none()
        );

        let fields = ring.sign(MESSAGE.as_bytes()).unwrap().unwrap();
        let records = Records::default();
        for k in &rows[..2] {
            publish(
                &records,
                &k.selector,
                "example.com",
                &stored_dns_txt(k).unwrap(),
            );
        }
        assert_eq!(
            verify(&signed(&fields, MESSAGE), &records).await,
            vec!["pass rsa-1", "pass ed-1"]
        );
    }

    #[test]
    fn reload_reuses_parsed_keys_and_skips_bad_ones() {
        let good = row("example.com", "rsa-1", Algorithm::Rsa);
        let ring = KeyRing::build(std::slice::from_ref(&good), None);
        let first = ring.signer("example.com").unwrap().keys[0].clone();

        // The private key of another key pair: refused, the domain's good key still signs.
        let mut mismatched = row("example.com", "ed-1", Algorithm::Ed25519);
        mismatched.public_key = BASE64.encode([7u8; 32]);
        let mut garbage = row("broken.test", "x", Algorithm::Rsa);
        garbage.private_key = "not a key".to_string();
        let ring2 = KeyRing::build(&[good.clone(), mismatched, garbage], Some(&ring));
        let again = ring2.signer("example.com").unwrap();
        assert!(Arc::ptr_eq(&first, &again.keys[0]));
        assert_eq!(again.selectors().len(), 1);
        assert!(ring2.signer("broken.test").is_none());
        assert_eq!(ring2.problems().len(), 2, "{:?}", ring2.problems());
        assert!(ring2.problems()[0].contains("does not match"));

        // A PEM-armoured private key is read too.
        let mut pem = good.clone();
        pem.selector = "pem".to_string();
        pem.private_key = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            good.private_key
        );
        assert!(Signer::new("example.com", &[pem]).is_ok());
        assert_eq!(
            Signer::new("example.com", &[]).unwrap_err(),
            SignError::NoKeys("example.com".to_string())
        );
    }

    #[test]
    fn shared_ring_swaps() {
        let shared = SharedKeyRing::default();
        assert!(shared.current().is_empty());
        let held = shared.current();
        shared.replace(KeyRing::build(
            &[row("example.com", "ed-1", Algorithm::Ed25519)],
            None,
        ));
        assert!(held.is_empty());
        assert_eq!(shared.current().domains(), vec!["example.com"]);
    }
}
