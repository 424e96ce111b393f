//! DNS list checks: the client address against DNS block lists (DNSBL, RFC 5782), the host
//! names and addresses of a message's links against URI block lists (URIBL), and
//! forward-confirmed reverse DNS (FCrDNS) of the client.
//!
//! Every lookup goes through the process's one shared resolver and every check runs within
//! a time budget. A list that cannot be asked (timeout, SERVFAIL, a refusal code such as
//! Spamhaus's `127.255.255.254`) yields no finding: it is reported as unavailable for the
//! caller to log, and is never a reason to refuse mail by itself.
//!
//! Nothing here decides whether a client should be checked at all: the caller skips
//! authenticated users and internal networks.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use mail_auth::hickory_resolver::net::NetError;
use mail_auth::hickory_resolver::proto::rr::{RData, RecordType};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

pub use crate::auth::TokioResolver;
use crate::finding::Finding;

/// The most addresses of one answer kept for a finding's detail.
const MAX_DETAIL_ADDRS: usize = 8;
/// The most characters of a list's TXT explanation kept for a finding's detail.
const MAX_TXT_CHARS: usize = 200;

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

/// The `[dnsbl]` section: block lists for client addresses (`zones`) and for the links in
/// messages (`uribl`). Nothing is enabled by default: public lists have usage terms and
/// the administrator opts into each one.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsblSettings {
    /// Lists asked about the client address at connect time.
    pub zones: Vec<DnsblZone>,
    /// Lists asked about the domains and addresses of the links in a message.
    pub uribl: Vec<DnsblZone>,
    /// Time budget of one check (all lists at once), in milliseconds.
    pub timeout_ms: u64,
    /// The most distinct names (domains or addresses) of one message looked up in URIBLs.
    pub uribl_max_lookups: usize,
}

impl Default for DnsblSettings {
    fn default() -> Self {
        DnsblSettings {
            zones: Vec::new(),
            uribl: Vec::new(),
            timeout_ms: 2000,
            uribl_max_lookups: 20,
        }
    }
}

/// One list. Several entries may name the same `zone` with different `codes`, names and
/// weights (Spamhaus ZEN's SBL, XBL and PBL parts): the zone is asked once.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsblZone {
    /// The DNS zone the query is made under, e.g. `zen.spamhaus.org`.
    pub zone: String,
    /// Names the finding `dnsbl.<name>` / `uribl.<name>`; default: the zone.
    #[serde(default)]
    pub name: Option<String>,
    /// The score of a listing. Negative weights turn a list into a welcome list.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Answers that count as a listing, Postfix style: `127.0.0.2`, `127.0.0.[4..7]`,
    /// `127.0.[0..255].[2;4;10..11]`. Empty: any answer in 127.0.0.0/8 that is not an
    /// error code.
    #[serde(default)]
    pub codes: Vec<ReturnCode>,
    /// Bitmask ANDed with the answer as a 32-bit number; non-zero counts as a listing
    /// (SURBL/URIBL style: `mask = 0x08` tests bit 3 of the last octet). With `codes`
    /// too, an answer counts when it matches either.
    #[serde(default)]
    pub mask: Option<u32>,
    /// Ask this list about IPv4 addresses.
    #[serde(default = "yes")]
    pub ipv4: bool,
    /// Ask this list about IPv6 addresses (not every list serves them).
    #[serde(default = "yes")]
    pub ipv6: bool,
}

fn default_weight() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

impl DnsblZone {
    /// A list with weight 1 that counts any answer.
    pub fn new(zone: impl Into<String>) -> Self {
        DnsblZone {
            zone: zone.into(),
            name: None,
            weight: default_weight(),
            codes: Vec::new(),
            mask: None,
            ipv4: true,
            ipv6: true,
        }
    }

    /// The name used in findings and reports.
    pub fn display_name(&self) -> &str {
        match &self.name {
            Some(name) if !name.is_empty() => name,
            _ => self.zone.trim_matches('.'),
        }
    }

    /// Does a (non-error) answer count as a listing for this entry?
    pub fn accepts(&self, answer: Ipv4Addr) -> bool {
        if self.codes.is_empty() && self.mask.is_none() {
            return true;
        }
        self.codes.iter().any(|c| c.matches(answer))
            || self.mask.is_some_and(|m| u32::from(answer) & m != 0)
    }

    fn covers(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => self.ipv4,
            IpAddr::V6(_) => self.ipv6,
        }
    }

    fn zone_key(&self) -> String {
        self.zone.trim_matches('.').to_ascii_lowercase()
    }
}

impl DnsblSettings {
    /// Checks what serde cannot: zone names, duplicate finding names, a non-zero budget.
    pub fn validate(&self) -> Result<(), DnsblConfigError> {
        if self.timeout_ms == 0 {
            return Err(DnsblConfigError::ZeroTimeout);
        }
        for (kind, zones) in [("zones", &self.zones), ("uribl", &self.uribl)] {
            let mut names = std::collections::HashSet::new();
            for z in zones.iter() {
                if !valid_dns_name(&z.zone_key()) {
                    return Err(DnsblConfigError::BadZone {
                        kind,
                        zone: z.zone.clone(),
                    });
                }
                if !z.weight.is_finite() {
                    return Err(DnsblConfigError::BadWeight {
                        kind,
                        zone: z.zone.clone(),
                    });
                }
                if !names.insert(z.display_name().to_ascii_lowercase()) {
                    return Err(DnsblConfigError::NameTwice {
                        kind,
                        name: z.display_name().to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    fn budget(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

/// A mistake in the `[dnsbl]` section that serde cannot see; `kind` is `zones` or `uribl`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsblConfigError {
    #[error("dnsbl.timeout_ms must be more than 0")]
    ZeroTimeout,
    #[error("dnsbl.{kind}: {zone:?} is not a DNS zone name")]
    BadZone { kind: &'static str, zone: String },
    #[error("dnsbl.{kind}: weight of {zone:?} is not a number")]
    BadWeight { kind: &'static str, zone: String },
    /// Two entries would give findings of the same name.
    #[error(
        "dnsbl.{kind}: name {name:?} is used twice; give each entry of a shared zone its own name"
    )]
    NameTwice { kind: &'static str, name: String },
}

/// An answer pattern (`codes = [...]`) that does not parse; `code` is the pattern as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnCodeError {
    #[error("return code {code:?}: expected four octets such as 127.0.0.[2..11]")]
    NotFourOctets { code: String },
    #[error("return code {code:?}: {octet:?} is not a number from 0 to 255")]
    NotAnOctet { code: String, octet: String },
    #[error("return code {code:?}: range {range:?} runs backwards")]
    Backwards { code: String, range: String },
}

/// An answer pattern: four octet patterns, each a number or a bracketed list of numbers
/// and ranges separated by `;` (`[2..11]`, `[2;4;9..11]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReturnCode {
    octets: [Vec<(u8, u8)>; 4],
    text: String,
}

impl ReturnCode {
    pub fn matches(&self, answer: Ipv4Addr) -> bool {
        answer
            .octets()
            .iter()
            .zip(&self.octets)
            .all(|(o, ranges)| ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(o)))
    }
}

impl From<ReturnCode> for String {
    fn from(r: ReturnCode) -> String {
        r.text
    }
}

impl fmt::Display for ReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for ReturnCode {
    type Err = ReturnCodeError;

    fn from_str(s: &str) -> Result<Self, ReturnCodeError> {
        let text = s.trim();
        let number = |n: &str| {
            n.trim()
                .parse::<u8>()
                .map_err(|_| ReturnCodeError::NotAnOctet {
                    code: text.to_string(),
                    octet: n.to_string(),
                })
        };
        // Octets are separated by dots outside brackets (`..` inside them is a range).
        let mut parts = Vec::new();
        let (mut start, mut depth) = (0, 0usize);
        for (i, c) in text.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                '.' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        if parts.len() != 4 {
            return Err(ReturnCodeError::NotFourOctets {
                code: text.to_string(),
            });
        }
        let mut octets: [Vec<(u8, u8)>; 4] = Default::default();
        for (slot, part) in octets.iter_mut().zip(parts) {
            if let Some(inner) = part.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
                for item in inner.split(';') {
                    let range = match item.split_once("..") {
                        Some((lo, hi)) => (number(lo)?, number(hi)?),
                        None => {
                            let n = number(item)?;
                            (n, n)
                        }
                    };
                    if range.0 > range.1 {
                        return Err(ReturnCodeError::Backwards {
                            code: text.to_string(),
                            range: item.to_string(),
                        });
                    }
                    slot.push(range);
                }
            } else {
                let n = number(part)?;
                slot.push((n, n));
            }
        }
        Ok(ReturnCode {
            octets,
            text: text.to_string(),
        })
    }
}

impl TryFrom<String> for ReturnCode {
    type Error = ReturnCodeError;

    fn try_from(s: String) -> Result<Self, ReturnCodeError> {
        s.parse()
    }
}

// ---------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------

/// What one DNSBL or URIBL check found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsblReport {
    /// `dnsbl.<name>` or `uribl.<name>`, one per listing entry, scored by its weight.
    pub findings: Vec<Finding>,
    /// Zones that could not be asked; the caller logs them. Never a reason to refuse.
    pub unavailable: Vec<Unavailable>,
}

/// A zone that gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// The zone, as configured (without dots at its ends).
    pub zone: String,
    /// Why: `timed out`, the resolver's error, or the refusal code the list returned.
    pub reason: String,
}

/// The outcome of one A query under a list.
#[derive(Debug, Clone)]
enum Answer {
    /// NXDOMAIN or no A record: not listed.
    NotListed,
    /// Answers inside 127.0.0.0/8 that are not error codes.
    Listed(Vec<Ipv4Addr>),
    /// The list answered, but only with error codes or addresses outside 127.0.0.0/8.
    Refused(Vec<Ipv4Addr>),
    /// Timeout, SERVFAIL, network error.
    Failed(String),
}

/// Answers that are never a listing: anything outside 127.0.0.0/8, and the codes lists use
/// to say "query refused" or "error" (127.0.0.1, 127.0.0.255 and 127.255.255.0/24:
/// Spamhaus's 127.255.255.252 typo'd zone, .254 public resolver, .255 too many queries).
pub fn is_error_answer(answer: Ipv4Addr) -> bool {
    let o = answer.octets();
    o[0] != 127 || o == [127, 0, 0, 1] || o == [127, 0, 0, 255] || (o[1] == 255 && o[2] == 255)
}

fn classify(addrs: Vec<Ipv4Addr>) -> Answer {
    if addrs.is_empty() {
        return Answer::NotListed;
    }
    let (good, bad): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| !is_error_answer(*a));
    if good.is_empty() {
        Answer::Refused(bad)
    } else {
        Answer::Listed(good)
    }
}

// ---------------------------------------------------------------------------------------
// Query names
// ---------------------------------------------------------------------------------------

/// The label sequence a list is asked under for `ip`: IPv4 octets reversed
/// (`2.0.0.127`), IPv6 as 32 reversed nibbles. IPv4-mapped IPv6 addresses count as IPv4.
pub fn reverse_ip(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(63);
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0x0f, byte >> 4] {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                }
            }
            out
        }
    }
}

/// The PTR name of `ip` (`...in-addr.arpa.` / `...ip6.arpa.`), absolute.
pub fn ptr_name(ip: IpAddr) -> String {
    match ip.to_canonical() {
        ip @ IpAddr::V4(_) => format!("{}.in-addr.arpa.", reverse_ip(ip)),
        ip @ IpAddr::V6(_) => format!("{}.ip6.arpa.", reverse_ip(ip)),
    }
}

/// Host name syntax good enough for a DNS query: letters, digits, `-` and `_`, labels of
/// 1 to 63 characters, 253 in all, no trailing dot.
fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

// ---------------------------------------------------------------------------------------
// Running queries within the budget
// ---------------------------------------------------------------------------------------

/// Runs one A query per absolute name, all at once, until `deadline`; the answers come
/// back in the order of `names`, and a query still running at the deadline is `timed out`.
async fn run_a_queries(
    resolver: &TokioResolver,
    names: Vec<String>,
    deadline: Instant,
) -> Vec<Answer> {
    let mut answers = vec![Answer::Failed("timed out".into()); names.len()];
    let mut set = JoinSet::new();
    for (i, name) in names.into_iter().enumerate() {
        let resolver = resolver.clone();
        set.spawn(async move { (i, lookup_a(&resolver, &name).await) });
    }
    loop {
        match timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok((i, answer)))) => answers[i] = answer,
            // A panicked lookup leaves its slot as failed.
            Ok(Some(Err(_))) => {}
            Ok(None) | Err(_) => break,
        }
    }
    // Dropping the set aborts lookups still running past the deadline.
    answers
}

async fn lookup_a(resolver: &TokioResolver, name: &str) -> Answer {
    match resolver.lookup(name, RecordType::A).await {
        Ok(lookup) => classify(
            lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect(),
        ),
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => Answer::NotListed,
        Err(e) => Answer::Failed(net_reason(&e)),
    }
}

async fn lookup_txt(resolver: &TokioResolver, name: &str) -> Option<String> {
    let lookup = resolver.lookup(name, RecordType::TXT).await.ok()?;
    let mut text = String::new();
    for record in lookup.answers() {
        if let RData::TXT(txt) = &record.data {
            if !text.is_empty() {
                text.push(' ');
            }
            for chunk in txt.txt_data.iter() {
                text.push_str(&String::from_utf8_lossy(chunk));
            }
        }
    }
    // Network text goes into logs and headers: printable characters only, bounded.
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_TXT_CHARS)
        .collect();
    let clean = clean.trim().to_string();
    (!clean.is_empty()).then_some(clean)
}

fn net_reason(e: &NetError) -> String {
    let text = e.to_string();
    if text.is_empty() {
        "lookup failed".into()
    } else {
        text
    }
}

fn join_addrs(addrs: &[Ipv4Addr]) -> String {
    let mut shown: Vec<String> = addrs
        .iter()
        .take(MAX_DETAIL_ADDRS)
        .map(|a| a.to_string())
        .collect();
    if addrs.len() > MAX_DETAIL_ADDRS {
        shown.push("...".into());
    }
    shown.join(",")
}

// ---------------------------------------------------------------------------------------
// DNSBL: the client address
// ---------------------------------------------------------------------------------------

/// Asks every configured list about the client address `ip`, all at once, within
/// `timeout_ms`. Listed: one `dnsbl.<name>` finding per matching entry, scored by its
/// weight, with the answers (and the list's TXT explanation when it arrives in time) as
/// detail.
pub async fn check_ip(
    resolver: &TokioResolver,
    settings: &DnsblSettings,
    ip: IpAddr,
) -> DnsblReport {
    let deadline = Instant::now() + settings.budget();
    let ip = ip.to_canonical();
    let entries: Vec<&DnsblZone> = settings.zones.iter().filter(|z| z.covers(ip)).collect();
    if entries.is_empty() {
        return DnsblReport::default();
    }
    let reversed = reverse_ip(ip);

    // One query per distinct zone, however many entries share it.
    let mut zones: Vec<String> = Vec::new();
    let mut zone_of_entry = Vec::with_capacity(entries.len());
    for entry in &entries {
        let key = entry.zone_key();
        let slot = match zones.iter().position(|z| *z == key) {
            Some(slot) => slot,
            None => {
                zones.push(key);
                zones.len() - 1
            }
        };
        zone_of_entry.push(slot);
    }
    let names: Vec<String> = zones.iter().map(|z| format!("{reversed}.{z}.")).collect();
    let answers = run_a_queries(resolver, names.clone(), deadline).await;

    let mut report = DnsblReport::default();
    for (zone, answer) in zones.iter().zip(&answers) {
        if let Some(reason) = unavailable_reason(answer) {
            report.unavailable.push(Unavailable {
                zone: zone.clone(),
                reason,
            });
        }
    }

    let mut listed = Vec::new();
    for (entry, &slot) in entries.iter().zip(&zone_of_entry) {
        let Answer::Listed(addrs) = &answers[slot] else {
            continue;
        };
        let matched: Vec<Ipv4Addr> = addrs
            .iter()
            .copied()
            .filter(|a| entry.accepts(*a))
            .collect();
        if !matched.is_empty() {
            listed.push((*entry, slot, matched));
        }
    }

    // The explanations, for the zones that listed the client, in the time that is left.
    let mut txt_slots: Vec<usize> = listed.iter().map(|(_, slot, _)| *slot).collect();
    txt_slots.sort_unstable();
    txt_slots.dedup();
    let texts = fetch_texts(resolver, &names, &txt_slots, deadline).await;

    for (entry, slot, matched) in listed {
        let mut detail = join_addrs(&matched);
        if let Some(text) = texts.get(&slot) {
            detail.push_str(": ");
            detail.push_str(text);
        }
        report.findings.push(Finding::new(
            format!("dnsbl.{}", entry.display_name()),
            entry.weight,
            detail,
        ));
    }
    report
}

async fn fetch_texts(
    resolver: &TokioResolver,
    names: &[String],
    slots: &[usize],
    deadline: Instant,
) -> HashMap<usize, String> {
    let mut texts = HashMap::new();
    if slots.is_empty() {
        return texts;
    }
    let mut set = JoinSet::new();
    for &slot in slots {
        let resolver = resolver.clone();
        let name = names[slot].clone();
        set.spawn(async move { (slot, lookup_txt(&resolver, &name).await) });
    }
    while let Ok(Some(joined)) = timeout_at(deadline, set.join_next()).await {
        if let Ok((slot, Some(text))) = joined {
            texts.insert(slot, text);
        }
    }
    texts
}

fn unavailable_reason(answer: &Answer) -> Option<String> {
    match answer {
        Answer::Failed(reason) => Some(reason.clone()),
        Answer::Refused(addrs) => Some(format!(
            "list refused the query or answered outside 127.0.0.0/8: {}",
            join_addrs(addrs)
        )),
        Answer::NotListed | Answer::Listed(_) => None,
    }
}

// ---------------------------------------------------------------------------------------
// URIBL: the links of a message
// ---------------------------------------------------------------------------------------

/// What a link points at, as looked up in a URIBL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UriTarget {
    /// A host name, lower case, ASCII (IDNs in their `xn--` form), no trailing dot.
    Domain(String),
    /// An address literal (`http://192.0.2.1/`, `http://[2001:db8::1]/`,
    /// `http://3221225985/`).
    Ip(IpAddr),
}

impl fmt::Display for UriTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriTarget::Domain(d) => f.write_str(d),
            UriTarget::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The names to look up for `urls`, at most `max`: first every registered domain
/// (public-suffix list) and address literal in the order the links came, then every full
/// host name that differs from its registered domain. Hosts that are a public suffix
/// themselves, or no valid name, are skipped.
pub fn uri_targets(urls: &[String], max: usize) -> Vec<UriTarget> {
    let mut first = Vec::new();
    let mut second = Vec::new();
    for url in urls {
        match url_host(url) {
            Some(UriTarget::Ip(ip)) => first.push(UriTarget::Ip(ip)),
            Some(UriTarget::Domain(host)) => {
                let Some(registered) = crate::suffix::registrable(&host) else {
                    continue;
                };
                if registered != host {
                    second.push(UriTarget::Domain(host.clone()));
                }
                first.push(UriTarget::Domain(registered));
            }
            None => {}
        }
    }
    let mut seen = std::collections::HashSet::new();
    first
        .into_iter()
        .chain(second)
        .filter(|t| seen.insert(t.clone()))
        .take(max)
        .collect()
}

/// The host of one link: `scheme://user@host:port/path`, `mailto:user@host`, or a bare
/// `www.example.com/path`. Backslashes end the host as browsers treat them as slashes.
pub fn url_host(url: &str) -> Option<UriTarget> {
    let url = url.trim().trim_start_matches('<').trim_end_matches('>');
    let rest = if let Some(mail) = strip_prefix_ignore_case(url, "mailto:") {
        let addr = mail.split(['?', '#']).next().unwrap_or("");
        let (_, domain) = addr.rsplit_once('@')?;
        domain
    } else if let Some((scheme, rest)) = url.split_once("://") {
        let scheme_ok = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
        if !scheme_ok {
            return None;
        }
        rest
    } else {
        url.strip_prefix("//").unwrap_or(url)
    };
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);

    if let Some(bracketed) = host.strip_prefix('[') {
        let inner = bracketed.split(']').next().unwrap_or("");
        return inner
            .parse::<IpAddr>()
            .ok()
            .map(|ip| UriTarget::Ip(ip.to_canonical()));
    }
    let host = host.split(':').next().unwrap_or("");
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        return None;
    }
    if let Some(ip) = numeric_host(host) {
        return Some(UriTarget::Ip(IpAddr::V4(ip)));
    }
    let ascii = if host.is_ascii() {
        host.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(host).ok()?
    };
    (valid_dns_name(&ascii) && ascii.contains('.')).then_some(UriTarget::Domain(ascii))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// IPv4 hosts as browsers read them: dotted quad, or one decimal or `0x` hex number.
fn numeric_host(host: &str) -> Option<Ipv4Addr> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(ip);
    }
    let n = if let Some(hex) = host.strip_prefix("0x").or_else(|| host.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()?
    } else if host.bytes().all(|b| b.is_ascii_digit()) {
        host.parse::<u32>().ok()?
    } else {
        return None;
    };
    Some(Ipv4Addr::from(n))
}

/// Looks the links' domains and addresses up in every configured URIBL, at most
/// `uribl_max_lookups` distinct targets, all at once within `timeout_ms`. One
/// `uribl.<name>` finding per listing entry, scored once by its weight however many links
/// it lists; the detail names them (`bad.example=127.0.0.2`).
pub async fn check_urls(
    resolver: &TokioResolver,
    settings: &DnsblSettings,
    urls: &[String],
) -> DnsblReport {
    if settings.uribl.is_empty() || urls.is_empty() {
        return DnsblReport::default();
    }
    let deadline = Instant::now() + settings.budget();
    let targets = uri_targets(urls, settings.uribl_max_lookups);

    // One query per (zone, target) that some entry wants.
    let mut zones: Vec<String> = Vec::new();
    for entry in &settings.uribl {
        let key = entry.zone_key();
        if !zones.contains(&key) {
            zones.push(key);
        }
    }
    let mut queries: Vec<(usize, usize)> = Vec::new();
    let mut names = Vec::new();
    for (zi, zone) in zones.iter().enumerate() {
        for (ti, target) in targets.iter().enumerate() {
            let wanted = settings.uribl.iter().any(|e| {
                e.zone_key() == *zone
                    && match target {
                        UriTarget::Ip(ip) => e.covers(*ip),
                        UriTarget::Domain(_) => true,
                    }
            });
            if !wanted {
                continue;
            }
            let label = match target {
                UriTarget::Domain(d) => d.clone(),
                UriTarget::Ip(ip) => reverse_ip(*ip),
            };
            let name = format!("{label}.{zone}.");
            if name.len() > 254 {
                continue;
            }
            queries.push((zi, ti));
            names.push(name);
        }
    }
    let answers = run_a_queries(resolver, names, deadline).await;

    let mut report = DnsblReport::default();
    for (zi, zone) in zones.iter().enumerate() {
        let failures: Vec<String> = queries
            .iter()
            .zip(&answers)
            .filter(|((z, _), _)| *z == zi)
            .filter_map(|(_, a)| unavailable_reason(a))
            .collect();
        if let Some(first) = failures.first() {
            let total = queries.iter().filter(|(z, _)| *z == zi).count();
            report.unavailable.push(Unavailable {
                zone: zone.clone(),
                reason: format!("{first} ({} of {total} lookups)", failures.len()),
            });
        }
    }
    for entry in &settings.uribl {
        let key = entry.zone_key();
        let Some(zi) = zones.iter().position(|z| *z == key) else {
            continue;
        };
        let mut hits = Vec::new();
        for ((z, ti), answer) in queries.iter().zip(&answers) {
            let Answer::Listed(addrs) = answer else {
                continue;
            };
            if *z != zi {
                continue;
            }
            if let UriTarget::Ip(ip) = &targets[*ti]
                && !entry.covers(*ip)
            {
                continue;
            }
            let matched: Vec<Ipv4Addr> = addrs
                .iter()
                .copied()
                .filter(|a| entry.accepts(*a))
                .collect();
            if !matched.is_empty() {
                hits.push(format!("{}={}", targets[*ti], join_addrs(&matched)));
            }
        }
        if !hits.is_empty() {
            report.findings.push(Finding::new(
                format!("uribl.{}", entry.display_name()),
                entry.weight,
                hits.join(" "),
            ));
        }
    }
    report
}

// ---------------------------------------------------------------------------------------
// FCrDNS
// ---------------------------------------------------------------------------------------

/// The `[fcrdns]` section: forward-confirmed reverse DNS of the client.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FcrdnsSettings {
    pub enabled: bool,
    /// Score of `fcrdns.none`: the address has no PTR record.
    pub no_ptr_score: f64,
    /// Score of `fcrdns.mismatch`: no PTR name resolves back to the address.
    pub mismatch_score: f64,
    /// PTR names whose addresses are looked up, at most.
    pub max_names: usize,
    /// Time budget of the whole check, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for FcrdnsSettings {
    fn default() -> Self {
        FcrdnsSettings {
            enabled: true,
            no_ptr_score: 1.0,
            mismatch_score: 0.5,
            max_names: 3,
            timeout_ms: 3000,
        }
    }
}

/// The outcome of FCrDNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fcrdns {
    /// This PTR name (lower case, no trailing dot) resolves back to the client address.
    Pass(String),
    /// PTR names exist (those asked are listed), but none resolves back to the address.
    Fail(Vec<String>),
    /// The address has no PTR record.
    NoPtr,
    /// A lookup failed or the budget ran out: no finding, the caller may log it.
    TempError(String),
}

impl Fcrdns {
    /// `fcrdns.none` or `fcrdns.mismatch` with the configured score; nothing for a pass
    /// or a temporary error.
    pub fn findings(&self, ip: IpAddr, settings: &FcrdnsSettings) -> Vec<Finding> {
        match self {
            Fcrdns::NoPtr => vec![Finding::new(
                "fcrdns.none",
                settings.no_ptr_score,
                format!("no PTR record for {ip}"),
            )],
            Fcrdns::Fail(names) => vec![Finding::new(
                "fcrdns.mismatch",
                settings.mismatch_score,
                format!("{ip} has PTR {} but none resolves back", names.join(",")),
            )],
            Fcrdns::Pass(_) | Fcrdns::TempError(_) => Vec::new(),
        }
    }
}

/// Forward-confirmed reverse DNS: the PTR names of `ip`, then the addresses (A for IPv4,
/// AAAA for IPv6) of the first `max_names` of them; a pass when one of them is `ip`.
pub async fn fcrdns(resolver: &TokioResolver, ip: IpAddr, settings: &FcrdnsSettings) -> Fcrdns {
    let budget = Duration::from_millis(settings.timeout_ms.max(1));
    match tokio::time::timeout(budget, fcrdns_inner(resolver, ip.to_canonical(), settings)).await {
        Ok(result) => result,
        Err(_) => Fcrdns::TempError("timed out".into()),
    }
}

async fn fcrdns_inner(resolver: &TokioResolver, ip: IpAddr, settings: &FcrdnsSettings) -> Fcrdns {
    let names = match resolver.lookup(ptr_name(ip), RecordType::PTR).await {
        Ok(lookup) => {
            let mut names: Vec<String> = Vec::new();
            for record in lookup.answers() {
                if let RData::PTR(ptr) = &record.data {
                    let name = ptr.0.to_ascii().trim_end_matches('.').to_ascii_lowercase();
                    if valid_dns_name(&name) && !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
            names
        }
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => Vec::new(),
        Err(e) => return Fcrdns::TempError(net_reason(&e)),
    };
    if names.is_empty() {
        return Fcrdns::NoPtr;
    }
    let asked: Vec<String> = names.into_iter().take(settings.max_names.max(1)).collect();
    let rtype = match ip {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::AAAA,
    };
    let mut set = JoinSet::new();
    for (i, name) in asked.iter().enumerate() {
        let resolver = resolver.clone();
        let fqdn = format!("{name}.");
        set.spawn(async move { (i, resolver.lookup(fqdn, rtype).await) });
    }
    let mut temp_error = None;
    let mut best: Option<usize> = None;
    while let Some(joined) = set.join_next().await {
        let Ok((i, result)) = joined else { continue };
        match result {
            Ok(lookup) => {
                let hit = lookup.answers().iter().any(|r| match &r.data {
                    RData::A(a) => IpAddr::V4(a.0) == ip,
                    RData::AAAA(a) => IpAddr::V6(a.0) == ip,
                    _ => false,
                });
                // The first matching name in PTR order, whatever order the answers came in.
                if hit && best.is_none_or(|b| i < b) {
                    best = Some(i);
                }
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {}
            Err(e) => temp_error = Some(net_reason(&e)),
        }
    }
    match (best, temp_error) {
        (Some(i), _) => Fcrdns::Pass(asked[i].clone()),
        (None, Some(reason)) => Fcrdns::TempError(reason),
        (None, None) => Fcrdns::Fail(asked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reversed_names() {
        assert_eq!(reverse_ip(ip("192.0.2.10")), "10.2.0.192");
        assert_eq!(reverse_ip(ip("::ffff:192.0.2.10")), "10.2.0.192");
        assert_eq!(
            reverse_ip(ip("2001:db8::1")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
        );
        assert_eq!(ptr_name(ip("192.0.2.10")), "10.2.0.192.in-addr.arpa.");
        assert!(ptr_name(ip("2001:db8::1")).ends_with(".8.b.d.0.1.0.0.2.ip6.arpa."));
    }

    #[test]
    fn return_codes() {
        let single: ReturnCode = "127.0.0.2".parse().unwrap();
        assert!(single.matches(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(!single.matches(Ipv4Addr::new(127, 0, 0, 3)));
        let range: ReturnCode = "127.0.0.[2..11]".parse().unwrap();
        assert!(range.matches(Ipv4Addr::new(127, 0, 0, 11)));
        assert!(!range.matches(Ipv4Addr::new(127, 0, 0, 12)));
        let list: ReturnCode = "127.0.[0..1].[2;4;9..10]".parse().unwrap();
        assert!(list.matches(Ipv4Addr::new(127, 0, 1, 4)));
        assert!(list.matches(Ipv4Addr::new(127, 0, 0, 9)));
        assert!(!list.matches(Ipv4Addr::new(127, 0, 0, 3)));
        assert!(!list.matches(Ipv4Addr::new(127, 0, 2, 4)));
        for bad in [
            "127.0.0",
            "127.0.0.256",
            "127.0.0.[5..2]",
            "127.0.0.[x]",
            "",
        ] {
            assert!(bad.parse::<ReturnCode>().is_err(), "{bad}");
        }
        assert_eq!(range.to_string(), "127.0.0.[2..11]");
    }

    #[test]
    fn entry_filters() {
        let mut z = DnsblZone::new("bl.test");
        assert!(z.accepts(Ipv4Addr::new(127, 0, 0, 9)));
        z.codes = vec!["127.0.0.2".parse().unwrap()];
        z.mask = Some(0x08);
        assert!(z.accepts(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(z.accepts(Ipv4Addr::new(127, 0, 0, 8)));
        assert!(!z.accepts(Ipv4Addr::new(127, 0, 0, 4)));
    }

    #[test]
    fn error_answers() {
        for bad in [
            "127.255.255.254",
            "127.255.255.255",
            "127.0.0.1",
            "10.0.0.2",
        ] {
            assert!(is_error_answer(bad.parse().unwrap()), "{bad}");
        }
        assert!(!is_error_answer(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(!is_error_answer(Ipv4Addr::new(127, 0, 1, 2)));
        assert!(matches!(
            classify(vec![Ipv4Addr::new(127, 255, 255, 254)]),
            Answer::Refused(_)
        ));
        assert!(matches!(classify(vec![]), Answer::NotListed));
    }

    #[test]
    fn hosts_of_links() {
        let d = |s: &str| Some(UriTarget::Domain(s.to_string()));
        assert_eq!(
            url_host("https://www.Example.COM/path"),
            d("www.example.com")
        );
        assert_eq!(
            url_host("http://user:pw@host.example.org:8080/x"),
            d("host.example.org")
        );
        assert_eq!(url_host("HTTP://a.example.net.?q#f"), d("a.example.net"));
        assert_eq!(url_host("www.example.com/page"), d("www.example.com"));
        assert_eq!(
            url_host("mailto:bob@Mail.Example.com?subject=x"),
            d("mail.example.com")
        );
        assert_eq!(
            url_host("http://evil.example\\@good.example/"),
            d("evil.example")
        );
        assert_eq!(
            url_host("http://bücher.example/"),
            d("xn--bcher-kva.example")
        );
        assert_eq!(
            url_host("http://192.0.2.1/x"),
            Some(UriTarget::Ip(ip("192.0.2.1")))
        );
        assert_eq!(
            url_host("http://3221225985/"),
            Some(UriTarget::Ip(ip("192.0.2.1")))
        );
        assert_eq!(
            url_host("http://0xC0000201/"),
            Some(UriTarget::Ip(ip("192.0.2.1")))
        );
        assert_eq!(
            url_host("http://[2001:db8::1]:8080/"),
            Some(UriTarget::Ip(ip("2001:db8::1")))
        );
        assert_eq!(url_host("http://localhost/"), None);
        assert_eq!(url_host("javascript:alert(1)"), None);
        assert_eq!(url_host("http://bad_host!.example/"), None);
    }

    #[test]
    fn targets_registered_domains_first_and_bounded() {
        let urls: Vec<String> = [
            "http://a.b.shop.example.co.uk/x",
            "https://www.example.com/",
            "http://example.com/",
            "http://192.0.2.1/",
            "http://co.uk/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let t = uri_targets(&urls, 20);
        let shown: Vec<String> = t.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "example.co.uk",
                "example.com",
                "192.0.2.1",
                "a.b.shop.example.co.uk",
                "www.example.com"
            ]
        );
        assert_eq!(uri_targets(&urls, 2).len(), 2);
    }

    /// The example of docs/filtering.md, as an administrator would write it.
    #[test]
    fn documented_toml_example() {
        #[derive(Deserialize)]
        struct Doc {
            dnsbl: DnsblSettings,
            fcrdns: FcrdnsSettings,
        }
        let doc: Doc = toml::from_str(
            r#"
            [dnsbl]
            timeout_ms = 2000
            uribl_max_lookups = 20

            [[dnsbl.zones]]
            zone = "zen.spamhaus.org"
            name = "spamhaus-sbl"
            weight = 4.0
            codes = ["127.0.0.[2..3]", "127.0.0.9"]

            [[dnsbl.zones]]
            zone = "zen.spamhaus.org"
            name = "spamhaus-pbl"
            weight = 1.5
            codes = ["127.0.0.[10..11]"]

            [[dnsbl.zones]]
            zone = "bl.example.net"
            weight = 2.0
            ipv6 = false

            [[dnsbl.uribl]]
            zone = "multi.uribl.example"
            name = "uribl-black"
            weight = 3.0
            mask = 0x02

            [fcrdns]
            enabled = true
            no_ptr_score = 1.0
            mismatch_score = 0.5
            max_names = 3
            timeout_ms = 3000
            "#,
        )
        .unwrap();
        assert!(doc.dnsbl.validate().is_ok());
        assert_eq!(doc.dnsbl.zones.len(), 3);
        assert_eq!(doc.dnsbl.zones[2].display_name(), "bl.example.net");
        assert!(!doc.dnsbl.zones[2].ipv6);
        assert_eq!(doc.dnsbl.uribl[0].mask, Some(2));
        assert!(doc.dnsbl.zones[0].accepts(Ipv4Addr::new(127, 0, 0, 9)));
        assert!(!doc.dnsbl.zones[0].accepts(Ipv4Addr::new(127, 0, 0, 10)));
        assert_eq!(doc.fcrdns.max_names, 3);
        let unknown: Result<DnsblSettings, _> = toml::from_str("zonez = []");
        assert!(unknown.is_err());
    }

    #[test]
    fn settings_from_toml_shape() {
        let settings: DnsblSettings = serde_json::from_value(serde_json::json!({
            "timeout_ms": 1500,
            "zones": [
                {"zone": "zen.example", "name": "zen-sbl", "weight": 4.0, "codes": ["127.0.0.[2..3]", "127.0.0.9"]},
                {"zone": "zen.example", "name": "zen-pbl", "weight": 1.0, "codes": ["127.0.0.[10..11]"], "ipv6": false}
            ],
            "uribl": [{"zone": "multi.uribl.example", "mask": 14}]
        }))
        .unwrap();
        assert_eq!(settings.zones.len(), 2);
        assert_eq!(settings.uribl[0].mask, Some(14));
        assert_eq!(settings.uribl[0].display_name(), "multi.uribl.example");
        assert!(settings.validate().is_ok());
        let defaults = DnsblSettings::default();
        assert!(defaults.zones.is_empty() && defaults.uribl.is_empty());
        let bad: Result<DnsblSettings, _> = serde_json::from_value(serde_json::json!({
            "zones": [{"zone": "x.example", "codes": ["127.0.0.300"]}]
        }));
        assert!(bad.is_err());
        let twice: DnsblSettings = serde_json::from_value(serde_json::json!({
            "zones": [{"zone": "x.example"}, {"zone": "x.example."}]
        }))
        .unwrap();
        assert!(twice.validate().is_err());
    }
}
