//! The statistical spam classifier: a tokenizer over the decoded message and a token
//! model combined in the Robinson/Fisher chi-square way (the method of SpamBayes,
//! bogofilter and SpamAssassin's Bayes).
//!
//! Per token, `p = (s/S) / (s/S + h/H)` where `s`, `h` count the spam and ham messages
//! that held the token and `S`, `H` the trained messages; the estimate is pulled towards
//! 0.5 for rare tokens: `f = (STRENGTH * 0.5 + n * p) / (STRENGTH + n)`, `n = s + h`.
//! The strongest clues (those furthest from 0.5, at most [`MAX_CLUES`]) are combined by
//! Fisher's method twice, once for spamminess and once for hamminess, and the message
//! probability is `(1 + Sp - Hm) / 2`. Results pile up near 0 and 1, with an uncertain
//! middle for messages the model cannot tell.
//!
//! The model keeps 64-bit token hashes in memory (cheap to look up, small); the store keeps
//! the token text. A trained model is shared behind an `Arc` and never changes while
//! scanning: training builds a [`TrainingDelta`] that the store applies, and the next load
//! sees it.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use crate::text::{self, MessageText};

/// A model needs at least this many trained messages of each class before it is used.
pub const MIN_MESSAGES: u64 = 50;
/// How strongly the prior 0.5 weighs against the evidence for a token (Robinson's `s`).
pub const STRENGTH: f64 = 0.45;
/// Tokens whose probability is closer to 0.5 than this are ignored.
pub const MIN_DEVIATION: f64 = 0.1;
/// At most this many tokens decide a message.
pub const MAX_CLUES: usize = 150;
/// Most distinct tokens taken from one message.
pub const MAX_TOKENS: usize = 3000;
/// Most bytes of body text tokenized.
pub const MAX_TOKENIZED_BODY: usize = 128 * 1024;
/// Shortest and longest body word kept as itself; longer ones become a length token.
const MIN_WORD: usize = 3;
const MAX_WORD: usize = 15;

/// Header fields whose words are tokens (prefixed with the field name).
const WORD_HEADERS: [&str; 6] = [
    "from",
    "reply-to",
    "x-mailer",
    "user-agent",
    "list-id",
    "organization",
];
/// Header fields whose addresses give domain tokens.
const ADDRESS_HEADERS: [&str; 5] = ["to", "cc", "return-path", "sender", "errors-to"];

/// Why a model gives no probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotEnoughTraining {
    pub spam_messages: u64,
    pub ham_messages: u64,
}

impl fmt::Display for NotEnoughTraining {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not enough training: {} spam and {} ham messages trained, {} of each needed",
            self.spam_messages, self.ham_messages, MIN_MESSAGES
        )
    }
}

impl std::error::Error for NotEnoughTraining {}

/// The messages of each class that held one token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub spam: u32,
    pub ham: u32,
}

/// Token hashes are already uniformly mixed; hashing them again would only cost time.
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are used; fold anything else in for correctness.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type TokenMap = HashMap<u64, TokenCounts, BuildHasherDefault<PrehashedHasher>>;

/// The stable 64-bit hash of a token (FNV-1a, then a final mix so every bit depends on
/// every byte). Stable across versions and machines: it only names tokens in memory.
pub fn token_hash(token: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in token.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Token counts and message counts. Clone it to train a copy; share it with `Arc` to scan.
#[derive(Clone, Default)]
pub struct BayesModel {
    tokens: TokenMap,
    spam_messages: u64,
    ham_messages: u64,
}

impl fmt::Debug for BayesModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BayesModel")
            .field("tokens", &self.tokens.len())
            .field("spam_messages", &self.spam_messages)
            .field("ham_messages", &self.ham_messages)
            .finish()
    }
}

/// One token that counted towards a verdict and its spam probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Clue {
    pub token: String,
    pub probability: f64,
}

/// What the model says about one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// 0 is certainly ham, 1 certainly spam.
    pub probability: f64,
    /// The strongest clues, strongest first (at most a handful, for people to read).
    pub clues: Vec<Clue>,
    /// How many tokens were combined.
    pub used: usize,
}

impl BayesModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// A model from stored counts; negative counts read as zero.
    pub fn from_counts<'a>(
        spam_messages: i64,
        ham_messages: i64,
        tokens: impl IntoIterator<Item = (&'a str, i64, i64)>,
    ) -> Self {
        let tokens = tokens.into_iter();
        let mut model = BayesModel {
            tokens: TokenMap::with_capacity_and_hasher(
                tokens.size_hint().0,
                BuildHasherDefault::default(),
            ),
            spam_messages: clamp_u64(spam_messages),
            ham_messages: clamp_u64(ham_messages),
        };
        for (token, spam, ham) in tokens {
            if spam <= 0 && ham <= 0 {
                continue;
            }
            let c = model.tokens.entry(token_hash(token)).or_default();
            c.spam = c.spam.saturating_add(clamp_u32(spam));
            c.ham = c.ham.saturating_add(clamp_u32(ham));
        }
        model
    }

    pub fn spam_messages(&self) -> u64 {
        self.spam_messages
    }

    pub fn ham_messages(&self) -> u64 {
        self.ham_messages
    }

    /// Distinct tokens known.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    pub fn counts(&self, token: &str) -> TokenCounts {
        self.tokens
            .get(&token_hash(token))
            .copied()
            .unwrap_or_default()
    }

    /// Learns one message's tokens (as [`tokenize`] gives them: each token once).
    pub fn train(&mut self, tokens: &[String], is_spam: bool) {
        if is_spam {
            self.spam_messages += 1;
        } else {
            self.ham_messages += 1;
        }
        for token in tokens {
            let c = self.tokens.entry(token_hash(token)).or_default();
            if is_spam {
                c.spam = c.spam.saturating_add(1);
            } else {
                c.ham = c.ham.saturating_add(1);
            }
        }
    }

    /// Forgets one message learnt with [`train`](Self::train) (to correct a mistake).
    pub fn untrain(&mut self, tokens: &[String], is_spam: bool) {
        if is_spam {
            self.spam_messages = self.spam_messages.saturating_sub(1);
        } else {
            self.ham_messages = self.ham_messages.saturating_sub(1);
        }
        for token in tokens {
            let key = token_hash(token);
            if let Some(c) = self.tokens.get_mut(&key) {
                if is_spam {
                    c.spam = c.spam.saturating_sub(1);
                } else {
                    c.ham = c.ham.saturating_sub(1);
                }
                if c.spam == 0 && c.ham == 0 {
                    self.tokens.remove(&key);
                }
            }
        }
    }

    /// Whether the model has seen enough mail to be used.
    pub fn ready(&self) -> Result<(), NotEnoughTraining> {
        if self.spam_messages < MIN_MESSAGES || self.ham_messages < MIN_MESSAGES {
            return Err(NotEnoughTraining {
                spam_messages: self.spam_messages,
                ham_messages: self.ham_messages,
            });
        }
        Ok(())
    }

    /// The spam probability of a message with these tokens.
    pub fn probability(&self, tokens: &[String]) -> Result<f64, NotEnoughTraining> {
        self.combine(tokens, 0).map(|c| c.probability)
    }

    /// The spam probability with the strongest clues, for people to read.
    pub fn classify(&self, tokens: &[String]) -> Result<Classification, NotEnoughTraining> {
        self.combine(tokens, 5)
    }

    /// The smoothed spam probability of one token.
    fn token_probability(&self, c: TokenCounts) -> f64 {
        let spam_ratio = f64::from(c.spam) / self.spam_messages.max(1) as f64;
        let ham_ratio = f64::from(c.ham) / self.ham_messages.max(1) as f64;
        let raw = spam_ratio / (spam_ratio + ham_ratio);
        let n = f64::from(c.spam) + f64::from(c.ham);
        (STRENGTH * 0.5 + n * raw) / (STRENGTH + n)
    }

    fn combine(&self, tokens: &[String], keep: usize) -> Result<Classification, NotEnoughTraining> {
        self.ready()?;
        // (distance from 0.5, probability, index into tokens)
        let mut clues: Vec<(f64, f64, usize)> = Vec::with_capacity(tokens.len().min(512));
        for (i, token) in tokens.iter().enumerate() {
            let Some(&c) = self.tokens.get(&token_hash(token)) else {
                continue;
            };
            if c.spam == 0 && c.ham == 0 {
                continue;
            }
            let p = self.token_probability(c);
            let d = (p - 0.5).abs();
            if d >= MIN_DEVIATION {
                clues.push((d, p, i));
            }
        }
        if clues.len() > MAX_CLUES {
            clues.select_nth_unstable_by(MAX_CLUES - 1, |a, b| b.0.total_cmp(&a.0));
            clues.truncate(MAX_CLUES);
        }
        let probability = chi_combine(clues.iter().map(|c| c.1));
        let mut shown = Vec::new();
        if keep > 0 {
            clues.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.2.cmp(&b.2)));
            shown = clues
                .iter()
                .take(keep)
                .map(|&(_, p, i)| Clue {
                    token: tokens[i].clone(),
                    probability: p,
                })
                .collect();
        }
        Ok(Classification {
            probability,
            clues: shown,
            used: clues.len(),
        })
    }
}

/// Fisher's combination of token probabilities: `(1 + S - H) / 2` where `S` and `H` say how
/// unlikely the spam and ham evidence would be by chance. 0.5 with no evidence.
pub fn chi_combine(probabilities: impl Iterator<Item = f64>) -> f64 {
    let mut ln_spam = 0.0; // Σ ln(1 - p): very negative when tokens are spammy
    let mut ln_ham = 0.0; // Σ ln p: very negative when tokens are hammy
    let mut n = 0usize;
    for p in probabilities {
        let p = p.clamp(1e-6, 1.0 - 1e-6);
        ln_spam += (1.0 - p).ln();
        ln_ham += p.ln();
        n += 1;
    }
    if n == 0 {
        return 0.5;
    }
    let s = 1.0 - chi2_q(-2.0 * ln_spam, 2 * n);
    let h = 1.0 - chi2_q(-2.0 * ln_ham, 2 * n);
    ((1.0 + s - h) / 2.0).clamp(0.0, 1.0)
}

/// The probability that a chi-square variable with `dof` (even) degrees of freedom is at
/// least `x2`: `e^-m Σ_{i<dof/2} m^i / i!` with `m = x2/2`, summed in the log domain so
/// that large `m` cannot underflow the first term to zero while later terms matter.
pub fn chi2_q(x2: f64, dof: usize) -> f64 {
    debug_assert!(dof.is_multiple_of(2));
    let m = x2 / 2.0;
    if m <= 0.0 {
        return 1.0;
    }
    let ln_m = m.ln();
    let mut ln_term = -m; // ln(e^-m m^0 / 0!)
    let mut sum = ln_term.exp();
    for i in 1..dof / 2 {
        ln_term += ln_m - (i as f64).ln();
        sum += ln_term.exp();
    }
    sum.min(1.0)
}

fn clamp_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn clamp_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// A batch of training to apply to the stored model: per token, the change of its spam and
/// ham counts, and the change of the message counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainingDelta {
    pub spam_messages: i64,
    pub ham_messages: i64,
    /// token → (spam change, ham change)
    pub tokens: HashMap<String, (i64, i64)>,
}

impl TrainingDelta {
    /// Adds (`sign` 1) or removes (`sign` -1) one message's tokens.
    fn apply(&mut self, tokens: &[String], is_spam: bool, sign: i64) {
        if is_spam {
            self.spam_messages += sign;
        } else {
            self.ham_messages += sign;
        }
        for token in tokens {
            let entry = match self.tokens.get_mut(token.as_str()) {
                Some(e) => e,
                None => self.tokens.entry(token.clone()).or_default(),
            };
            if is_spam {
                entry.0 += sign;
            } else {
                entry.1 += sign;
            }
        }
    }

    pub fn train(&mut self, tokens: &[String], is_spam: bool) {
        self.apply(tokens, is_spam, 1);
    }

    pub fn untrain(&mut self, tokens: &[String], is_spam: bool) {
        self.apply(tokens, is_spam, -1);
    }

    /// Adds another delta's changes to this one.
    pub fn merge(&mut self, other: TrainingDelta) {
        self.spam_messages += other.spam_messages;
        self.ham_messages += other.ham_messages;
        for (token, (s, h)) in other.tokens {
            let e = self.tokens.entry(token).or_default();
            e.0 += s;
            e.1 += h;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.spam_messages == 0 && self.ham_messages == 0 && self.tokens.is_empty()
    }
}

/// The tokens of a message, each once, in a stable order. Body words are lower-cased;
/// header tokens carry their field name (`subject:free`, `from:example.com`), URL hosts
/// carry `url:`, and a few `meta:` tokens describe the message's shape.
pub fn tokenize(text: &MessageText) -> Vec<String> {
    let mut t = Tokens::default();
    // Subject.
    words(&text.subject, |w| t.word("subject:", w));
    // Selected headers.
    for (name, value) in &text.headers {
        let name = name.as_str();
        t.push_with("header:", name);
        if WORD_HEADERS.contains(&name) {
            let prefix = format!("{name}:");
            words(value, |w| t.word(&prefix, w));
            for domain in address_domains(value) {
                t.domain(&prefix, domain);
            }
        } else if ADDRESS_HEADERS.contains(&name) {
            let prefix = format!("{name}:");
            for domain in address_domains(value) {
                t.domain(&prefix, domain);
            }
        } else if name == "message-id" {
            if let Some(domain) = value.rsplit_once('@').map(|(_, d)| d.trim_end_matches('>')) {
                t.domain("message-id:", domain);
            }
        } else if name == "content-type" {
            content_type_tokens(&mut t, value);
        } else if name == "received" {
            received_tokens(&mut t, value);
        }
    }
    // URLs.
    for url in &text.urls {
        if let Some(host) = text::url_host(url) {
            if text::host_is_ip(host) {
                t.push("url:ip");
            } else {
                t.domain("url:", host);
            }
        }
        if let Some((scheme, _)) = url.split_once("://") {
            t.push_with("proto:", scheme);
        }
    }
    // The shape of the message.
    let p = text.parts;
    t.push(match (p.plain_parts > 0, p.html_parts > 0) {
        (true, true) => "meta:text+html",
        (true, false) => "meta:text",
        (false, true) => "meta:html-only",
        (false, false) => "meta:no-text",
    });
    t.push_with("meta:images:", bucket(p.html_images));
    t.push_with("meta:urls:", bucket(text.urls.len()));
    if p.deceptive_links > 0 {
        t.push("meta:deceptive-link");
    }
    // Markup: which elements and attributes the HTML uses.
    for m in &text.markup {
        t.push_with("html:", m);
    }
    // Words of URL paths (`/promo/dvr.gif` → `url-path:promo`, `url-path:dvr`).
    for url in &text.urls {
        let Some(path) = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find(['/', '?']).map(|i| &rest[i..]))
        else {
            continue;
        };
        for segment in path.split(['/', '?', '&', '=', '.', '-', '_']).take(8) {
            if (3..=20).contains(&segment.len()) {
                t.push_with("url-path:", &segment.to_ascii_lowercase());
            }
        }
    }
    // Body.
    let body = crate::text::cut(&text.body, MAX_TOKENIZED_BODY);
    words(body, |w| {
        t.word("", w);
        // Shouting is a habit of its own: `FREE` counts apart from `free`.
        if w.len() >= MIN_WORD
            && w.chars().any(char::is_uppercase)
            && !w.chars().any(char::is_lowercase)
        {
            t.word("caps:", w);
        }
    });
    t.finish()
}

/// A small log-scale bucket for counts.
fn bucket(n: usize) -> &'static str {
    match n {
        0 => "0",
        1 => "1",
        2..=3 => "2-3",
        4..=9 => "4-9",
        10..=29 => "10-29",
        _ => "30+",
    }
}

/// Calls `f` with every whitespace-separated word of `s`, outer punctuation trimmed.
fn words(s: &str, mut f: impl FnMut(&str)) {
    for raw in s.split(|c: char| c.is_whitespace()) {
        let w = raw.trim_matches(|c: char| {
            !(c.is_alphanumeric() || c == '$' || c == '!' || c == '%' || c == '€' || c == '£')
        });
        if !w.is_empty() {
            f(w);
        }
    }
}

/// The domains of the addresses in an address header value.
fn address_domains(value: &str) -> impl Iterator<Item = &str> {
    value
        .split([',', ' ', '<', '>', '"', '(', ')', ';'])
        .filter_map(|part| part.rsplit_once('@').map(|(_, d)| d))
        .map(|d| d.trim_end_matches(['.', '>']))
        .filter(|d| !d.is_empty() && d.contains('.'))
}

fn content_type_tokens(t: &mut Tokens, value: &str) {
    let mut parts = value.split(';');
    if let Some(kind) = parts.next() {
        t.push_with("content-type:", &kind.trim().to_ascii_lowercase());
    }
    for param in parts {
        if let Some((k, v)) = param.split_once('=')
            && k.trim().eq_ignore_ascii_case("charset")
        {
            t.push_with("charset:", &v.trim().trim_matches('"').to_ascii_lowercase());
        }
    }
}

/// Host names and IPv4 network prefixes of the hops a message came through.
fn received_tokens(t: &mut Tokens, value: &str) {
    for word in value.split(|c: char| c.is_whitespace() || "()[];".contains(c)) {
        let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        if word.is_empty() || !word.contains('.') || word.len() > 64 {
            continue;
        }
        if let Ok(ip) = word.parse::<std::net::Ipv4Addr>() {
            let o = ip.octets();
            t.push_with("received:", &format!("{}.{}.{}", o[0], o[1], o[2]));
            t.push_with("received:", &format!("{}.{}", o[0], o[1]));
        } else if word.bytes().any(|b| b.is_ascii_alphabetic())
            && word
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            && word
                .rsplit('.')
                .next()
                .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            t.domain("received:", word);
        }
    }
}

/// Collects tokens, each once, up to [`MAX_TOKENS`].
#[derive(Default)]
struct Tokens {
    list: Vec<String>,
    seen: std::collections::HashSet<u64, BuildHasherDefault<PrehashedHasher>>,
    buf: String,
}

impl Tokens {
    fn push(&mut self, token: &str) {
        if self.list.len() >= MAX_TOKENS {
            return;
        }
        if self.seen.insert(token_hash(token)) {
            self.list.push(token.to_string());
        }
    }

    fn push_with(&mut self, prefix: &str, rest: &str) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.push_str(prefix);
        buf.push_str(rest);
        self.push(&buf);
        self.buf = buf;
    }

    /// A word: lower-cased; too short is dropped; too long becomes a length token;
    /// CJK runs (written without spaces) become character pairs.
    fn word(&mut self, prefix: &str, w: &str) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.push_str(prefix);
        // Most words are ASCII: no invisible or CJK characters to look for, one byte
        // per character. The result is the same as the general path below.
        if w.is_ascii() {
            let chars = w.len();
            if !(MIN_WORD..=MAX_WORD).contains(&chars) {
                self.buf = buf;
                if chars > MAX_WORD {
                    self.long_word(prefix, w, chars);
                }
                return;
            }
            buf.push_str(w);
            buf[prefix.len()..].make_ascii_lowercase();
            self.push(&buf);
            self.buf = buf;
            return;
        }
        let mut chars = 0usize;
        let mut cjk = false;
        for c in w.chars() {
            if text::is_invisible(c) {
                continue;
            }
            chars += 1;
            cjk |= is_cjk(c);
            if c.is_ascii() {
                buf.push(c.to_ascii_lowercase());
            } else {
                buf.extend(c.to_lowercase());
            }
        }
        if cjk {
            self.cjk_pairs(prefix, &buf[prefix.len()..]);
        } else if chars > MAX_WORD {
            let lowered = buf[prefix.len()..].to_string();
            self.buf = buf;
            self.long_word_lowered(prefix, w, &lowered, chars);
            return;
        } else if chars >= MIN_WORD {
            self.push(&buf);
        }
        self.buf = buf;
    }

    /// A word too long to keep: an address becomes its domain, anything else a length.
    fn long_word(&mut self, prefix: &str, w: &str, chars: usize) {
        let lowered = w.to_ascii_lowercase();
        self.long_word_lowered(prefix, w, &lowered, chars);
    }

    fn long_word_lowered(&mut self, prefix: &str, w: &str, lowered: &str, chars: usize) {
        if let Some((local, domain)) = w.rsplit_once('@')
            && !local.is_empty()
            && domain.contains('.')
        {
            self.push_with(&format!("{prefix}email:"), &domain.to_ascii_lowercase());
        } else {
            let first = lowered.chars().next().unwrap_or('?');
            self.push(&format!("{prefix}skip:{first}:{}", chars / 10 * 10));
        }
    }

    fn cjk_pairs(&mut self, prefix: &str, w: &str) {
        let chars: Vec<char> = w.chars().take(64).collect();
        for pair in chars.windows(2) {
            let token: String = prefix.chars().chain(pair.iter().copied()).collect();
            self.push(&token);
        }
    }

    /// A host name and its parent domains down to two labels: `url:a.b.example.com`,
    /// `url:b.example.com`, `url:example.com`.
    fn domain(&mut self, prefix: &str, host: &str) {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() || host.len() > 128 {
            return;
        }
        let labels: Vec<&str> = host.split('.').collect();
        let keep = labels.len().min(4);
        for from in labels.len() - keep..labels.len().saturating_sub(1).max(1) {
            self.push_with(prefix, &labels[from..].join("."));
        }
    }

    fn finish(self) -> Vec<String> {
        self.list
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}' // Hiragana, Katakana
        | '\u{3400}'..='\u{4DBF}' // CJK extension A
        | '\u{4E00}'..='\u{9FFF}' // CJK unified ideographs
        | '\u{F900}'..='\u{FAFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &[&str]) -> Vec<String> {
        s.iter().map(|t| t.to_string()).collect()
    }

    fn text_of(raw: &str) -> MessageText {
        let msg = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .expect("parse");
        text::extract(&msg)
    }

    #[test]
    fn chi2_q_known_values() {
        // dof 2: Q = e^{-x/2}
        assert!((chi2_q(2.0, 2) - (-1.0f64).exp()).abs() < 1e-12);
        // dof 4, x2 = 4: e^-2 (1 + 2)
        assert!((chi2_q(4.0, 4) - 3.0 * (-2.0f64).exp()).abs() < 1e-12);
        assert_eq!(chi2_q(0.0, 10), 1.0);
        // Huge statistic: no NaN, tends to zero.
        let q = chi2_q(5000.0, 300);
        assert!(q.is_finite() && q < 1e-100);
    }

    #[test]
    fn combining() {
        assert_eq!(chi_combine(std::iter::empty()), 0.5);
        assert!((chi_combine([0.5, 0.5].into_iter()) - 0.5).abs() < 1e-9);
        assert!(chi_combine([0.99; 20].into_iter()) > 0.99);
        assert!(chi_combine([0.01; 20].into_iter()) < 0.01);
        // Strong evidence both ways: uncertain.
        let mixed = chi_combine([0.99, 0.99, 0.01, 0.01].into_iter());
        assert!((mixed - 0.5).abs() < 0.01);
        // Symmetry.
        let a = chi_combine([0.9, 0.8, 0.3].into_iter());
        let b = chi_combine([0.1, 0.2, 0.7].into_iter());
        assert!((a + b - 1.0).abs() < 1e-9);
    }

    fn trained() -> BayesModel {
        let mut m = BayesModel::new();
        for i in 0..60 {
            m.train(&toks(&["cheap", "pills", "common", &format!("s{i}")]), true);
            m.train(
                &toks(&["meeting", "agenda", "common", &format!("h{i}")]),
                false,
            );
        }
        m
    }

    #[test]
    fn needs_training() {
        let mut m = BayesModel::new();
        for _ in 0..49 {
            m.train(&toks(&["a"]), true);
            m.train(&toks(&["b"]), false);
        }
        let err = m.probability(&toks(&["a"])).unwrap_err();
        assert_eq!(err.spam_messages, 49);
        assert!(err.to_string().starts_with("not enough training"));
        m.train(&toks(&["a"]), true);
        m.train(&toks(&["b"]), false);
        assert!(m.probability(&toks(&["a"])).is_ok());
    }

    #[test]
    fn classifies_and_untrains() {
        let mut m = trained();
        assert!(m.probability(&toks(&["cheap", "pills"])).unwrap() > 0.99);
        assert!(m.probability(&toks(&["meeting", "agenda"])).unwrap() < 0.01);
        // Unknown and neutral tokens: no evidence.
        assert_eq!(m.probability(&toks(&["zzz", "common"])).unwrap(), 0.5);
        let c = m.classify(&toks(&["cheap", "meeting", "pills"])).unwrap();
        assert_eq!(c.used, 3);
        assert_eq!(c.clues.len(), 3);
        assert_eq!(m.counts("cheap"), TokenCounts { spam: 60, ham: 0 });
        let before = m.token_count();
        m.train(&toks(&["brand-new"]), false);
        m.untrain(&toks(&["brand-new"]), false);
        assert_eq!(m.token_count(), before);
        assert_eq!(m.ham_messages(), 60);
    }

    #[test]
    fn token_probability_is_smoothed() {
        let m = trained();
        // Seen once in spam only: spammy but not certain.
        let p = m.token_probability(TokenCounts { spam: 1, ham: 0 });
        assert!(p > 0.8 && p < 0.9, "{p}");
        // Normalised by message counts: equal rates are neutral whatever the counts.
        let p = m.token_probability(TokenCounts { spam: 30, ham: 30 });
        assert!((p - 0.5).abs() < 1e-9);
    }

    #[test]
    fn delta_matches_model_training() {
        let mut delta = TrainingDelta::default();
        delta.train(&toks(&["x", "y"]), true);
        delta.train(&toks(&["x"]), false);
        let mut other = TrainingDelta::default();
        other.untrain(&toks(&["y"]), true);
        delta.merge(other);
        assert_eq!(delta.spam_messages, 0);
        assert_eq!(delta.ham_messages, 1);
        assert_eq!(delta.tokens["x"], (1, 1));
        assert_eq!(delta.tokens["y"], (0, 0));
        let m = BayesModel::from_counts(
            2,
            3,
            delta.tokens.iter().map(|(t, &(s, h))| (t.as_str(), s, h)),
        );
        assert_eq!(m.token_count(), 1);
        assert_eq!(m.counts("x"), TokenCounts { spam: 1, ham: 1 });
    }

    #[test]
    fn tokenizer() {
        let t = text_of(
            "From: \"Big Deals\" <promo@Mail.Shop.Example.com>\r\n\
             To: you@example.org\r\n\
             Subject: FREE money!!\r\n\
             Message-ID: <123@mx.sender.example>\r\n\
             Content-Type: text/plain; charset=\"UTF-8\"\r\n\r\n\
             Click http://www.deals.example.net/x now, \"quoted\" an Supercalifragilisticexpialidocious \
             contact ME@example.com or 1.2.3.4 v\u{200B}iagra 免费赠送\r\n",
        );
        let tokens = tokenize(&t);
        let has = |s: &str| tokens.iter().any(|t| t == s);
        for want in [
            "subject:free",
            "subject:money!!",
            "from:big",
            "from:deals",
            "from:shop.example.com",
            "from:example.com",
            "to:example.org",
            "message-id:sender.example",
            "content-type:text/plain",
            "charset:utf-8",
            "header:message-id",
        ] {
            assert!(has(want), "{want} missing from {tokens:?}");
        }
        for want in [
            "url:www.deals.example.net",
            "url:deals.example.net",
            "url:example.net",
            "proto:http",
            "meta:text",
            "meta:urls:1",
            "click",
            "now",
            "quoted",
            "skip:s:30",
            "me@example.com",
            "viagra",
            "免费",
            "费赠",
        ] {
            assert!(has(want), "{want} missing from {tokens:?}");
        }
        assert!(!has("an"), "short words are dropped");
        // Each token once.
        let mut sorted = tokens.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), tokens.len());
    }

    #[test]
    fn tokenizer_is_bounded() {
        let t = MessageText {
            body: (0..20_000).map(|i| format!("w{i} ")).collect(),
            ..Default::default()
        };
        assert_eq!(tokenize(&t).len(), MAX_TOKENS);
    }
}
