//! The RFC 7208 SPF test suite (openspf.org, as shipped with pyspf; vendored in
//! `tests/data/`, see the README there) against our SPF evaluation.
//!
//! Each scenario's zone data is served by a small authoritative DNS server on 127.0.0.1
//! (UDP), and the resolver is the one the gateway uses (`portcullis_queue::mx::
//! build_resolver`, pointed at that server), so the whole path is exercised: hickory's
//! lookups and negative answers, then viaspf's evaluation. The call is the one
//! `portcullis_filter::auth::Authenticator::check_spf` makes (`spf::check_host`): the
//! MAIL FROM identity, or `postmaster@<HELO>` for the null sender (RFC 7208 §2.4).
//!
//! `RFC7208_ONLY=<test> RFC7208_DEBUG=1 cargo test -p portcullis-filter --test rfc7208 --
//! --nocapture` runs one test and prints the DNS questions and answers.
//!
//! The zone data follows the suite's conventions (those of its reference driver):
//! * a name missing from the zone is NXDOMAIN, except names starting with `error.`,
//!   which fail (SERVFAIL);
//! * `SPF` records are served as `TXT` records (RFC 7208 §3.1: only TXT is used), unless
//!   the name has `TXT` records of its own; `TXT: NONE` means "no TXT record";
//! * `TIMEOUT` stands for a lookup that times out: every query of the name for a type
//!   with no record listed before it gets SERVFAIL (the outcome, a temporary DNS error,
//!   is the same as a timeout's and the test does not wait);
//! * a `CNAME` is answered with the alias and the target's records of the asked type
//!   (one level, as a recursive server would).
//!
//! Only `result` is checked (`explanation` and `header` are not). Every test passes or is
//! in [`EXPECTED_DIFFERENCES`], and that table must be exact: a listed test that passes,
//! or gives another result than the one listed, fails this test too.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::hickory_resolver::proto::op::{Message, OpCode, Query, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SOA, TXT};
use mail_auth::hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use mail_auth::{MessageAuthenticator, SpfResult};
use tokio::net::UdpSocket;
use yaml_rust2::{Yaml, YamlLoader};

const SUITE: &str = include_str!("data/rfc7208-tests.yml");

/// Tests whose result differs from the suite's: (test, our result, why). Kept exact.
const EXPECTED_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "cidr4-0",
        "fail",
        "RFC 7208 §5.6: a CIDR length of 0 compares no bits, so every address matches; viaspf 0.6.0 builds the mask as `MAX << (32 - len)`, which for 0 shifts by the full width: no match (fail or neutral instead of pass). A /0 in a published record authorizes the whole Internet, so missing it errs on the safe side",
    ),
    (
        "cidr6-0",
        "neutral",
        "RFC 7208 §5.6: a CIDR length of 0 compares no bits, so every address matches; viaspf 0.6.0 builds the mask as `MAX << (32 - len)`, which for 0 shifts by the full width: no match (fail or neutral instead of pass). A /0 in a published record authorizes the whole Internet, so missing it errs on the safe side",
    ),
    (
        "a-cidr4-0",
        "fail",
        "RFC 7208 §5.6: a CIDR length of 0 compares no bits, so every address matches; viaspf 0.6.0 builds the mask as `MAX << (32 - len)`, which for 0 shifts by the full width: no match (fail or neutral instead of pass). A /0 in a published record authorizes the whole Internet, so missing it errs on the safe side",
    ),
    (
        "mx-cidr4-0",
        "fail",
        "RFC 7208 §5.6: a CIDR length of 0 compares no bits, so every address matches; viaspf 0.6.0 builds the mask as `MAX << (32 - len)`, which for 0 shifts by the full width: no match (fail or neutral instead of pass). A /0 in a published record authorizes the whole Internet, so missing it errs on the safe side",
    ),
    (
        "exp-only-macro-char",
        "fail",
        "RFC 7208 §7.3: the macro letters c, r and t are allowed in exp= text only, elsewhere a syntax error (permerror); viaspf 0.6.0 expands them in a domain-spec as well",
    ),
];

/// One entry of a name's zone data.
#[derive(Debug, Clone)]
enum Entry {
    Timeout,
    Record(RData),
}

type Zone = HashMap<String, Vec<Entry>>;

struct Case {
    name: String,
    scenario: usize,
    host: IpAddr,
    helo: String,
    mailfrom: String,
    results: Vec<String>,
}

fn scalar(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// A DNS name from the suite's text, which may hold characters a host name may not
/// (`foo:bar/baz.example.com`) or be empty (the root).
fn dns_name(s: &str) -> Name {
    let s = s.trim_end_matches('.');
    if s.is_empty() {
        return Name::root();
    }
    let mut name = Name::from_labels(s.split('.').map(str::as_bytes)).expect("DNS name");
    name.set_fqdn(true);
    name
}

/// The character-strings of a TXT record: the suite's pieces, each cut to 255 bytes. A
/// record of no pieces (`SPF: []`) cannot be sent: a TXT RDATA holds at least one
/// character-string (RFC 1035 §3.3.14), and hickory rightly refuses the whole answer
/// otherwise. It is served as one empty string, the nearest record DNS can carry.
fn txt(pieces: &[String]) -> RData {
    let mut chunks: Vec<&[u8]> = Vec::new();
    if pieces.is_empty() {
        chunks.push(b"");
    }
    for p in pieces {
        let mut b = p.as_bytes();
        if b.is_empty() {
            chunks.push(b);
        }
        while !b.is_empty() {
            let n = b.len().min(255);
            chunks.push(&b[..n]);
            b = &b[n..];
        }
    }
    RData::TXT(TXT::from_bytes(chunks))
}

fn load_zone(data: &Yaml) -> Zone {
    let mut zone = Zone::new();
    let Some(hash) = data.as_hash() else {
        return zone;
    };
    for (name, entries) in hash {
        let name = scalar(name).to_ascii_lowercase();
        let name = name.trim_end_matches('.').to_string();
        let mut out = Vec::new();
        let mut generated_txt = Vec::new();
        let mut has_txt = false;
        for entry in entries.as_vec().map(Vec::as_slice).unwrap_or_default() {
            if let Yaml::String(s) = entry {
                assert_eq!(s, "TIMEOUT", "zone entry of {name}");
                out.push(Entry::Timeout);
                continue;
            }
            let map = entry.as_hash().expect("zone entry is a map");
            for (rtype, value) in map {
                let rtype = scalar(rtype);
                let rdata = match rtype.as_str() {
                    "A" => RData::A(A(scalar(value).parse().expect("A"))),
                    "AAAA" => RData::AAAA(AAAA(scalar(value).parse().expect("AAAA"))),
                    "MX" => {
                        let v = value.as_vec().expect("MX [preference, host]");
                        let pref = v[0].as_i64().expect("MX preference") as u16;
                        RData::MX(MX::new(pref, dns_name(&scalar(&v[1]))))
                    }
                    "PTR" => RData::PTR(PTR(dns_name(&scalar(value)))),
                    "CNAME" => RData::CNAME(CNAME(dns_name(&scalar(value)))),
                    "TXT" | "SPF" => {
                        let pieces: Vec<String> = match value {
                            Yaml::Array(v) => v.iter().map(scalar).collect(),
                            v => vec![scalar(v)],
                        };
                        if rtype == "TXT" {
                            has_txt = true;
                        }
                        if pieces == ["NONE"] {
                            continue;
                        }
                        if rtype == "SPF" {
                            // Type SPF (99) is no longer looked up (RFC 7208 §3.1); the
                            // suite's drivers publish its records as TXT.
                            generated_txt.push(Entry::Record(txt(&pieces)));
                            continue;
                        }
                        txt(&pieces)
                    }
                    other => panic!("record type {other} in zone data of {name}"),
                };
                out.push(Entry::Record(rdata));
            }
        }
        if !has_txt {
            out.extend(generated_txt);
        }
        zone.insert(name, out);
    }
    zone
}

fn load_suite() -> (Vec<Zone>, Vec<Case>) {
    let docs = YamlLoader::load_from_str(SUITE).expect("the suite parses as YAML");
    let mut zones = Vec::new();
    let mut cases = Vec::new();
    for doc in &docs {
        let scenario = zones.len();
        zones.push(load_zone(&doc["zonedata"]));
        let tests = doc["tests"].as_hash().expect("tests");
        for (name, t) in tests {
            let results = match &t["result"] {
                Yaml::Array(v) => v.iter().map(scalar).collect(),
                v => vec![scalar(v)],
            };
            cases.push(Case {
                name: scalar(name),
                scenario,
                host: scalar(&t["host"]).parse().expect("host address"),
                helo: scalar(&t["helo"]),
                mailfrom: scalar(&t["mailfrom"]),
                results,
            });
        }
    }
    (zones, cases)
}

/// The answer to one question, following the suite's conventions (see the module doc).
fn answer(zone: &Zone, qname: &Name, qtype: RecordType, response: &mut Message, level: u8) {
    // From the raw labels: `to_ascii` escapes characters such as ':' and '/', which the
    // suite's names contain as they are.
    let key = qname
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(".");
    let key = key.as_str();
    let Some(entries) = zone.get(key) else {
        if level == 0 {
            response.metadata.response_code = if key.starts_with("error.") {
                ResponseCode::ServFail
            } else {
                ResponseCode::NXDomain
            };
        }
        return;
    };
    let mut found = false;
    for entry in entries {
        match entry {
            Entry::Timeout if !found => {
                response.metadata.response_code = ResponseCode::ServFail;
                response.answers.clear();
                return;
            }
            Entry::Timeout => {}
            Entry::Record(rdata) if rdata.record_type() == qtype => {
                found = true;
                response.add_answer(Record::from_rdata(qname.clone(), 60, rdata.clone()));
            }
            Entry::Record(RData::CNAME(target)) if qtype != RecordType::CNAME => {
                response.add_answer(Record::from_rdata(
                    qname.clone(),
                    60,
                    RData::CNAME(target.clone()),
                ));
                if level == 0 {
                    answer(zone, &target.0, qtype, response, 1);
                }
                return;
            }
            Entry::Record(_) => {}
        }
    }
}

/// Serves `zone` on a fresh loopback UDP port until the test ends.
async fn serve(zone: Arc<Zone>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(q) = query.queries.first().cloned() else {
                continue;
            };
            let mut response = Message::response(query.metadata.id, OpCode::Query);
            response.metadata.recursion_desired = query.metadata.recursion_desired;
            response.metadata.recursion_available = true;
            response.metadata.authoritative = true;
            response.add_query(Query::query(q.name().clone(), q.query_type()));
            answer(&zone, q.name(), q.query_type(), &mut response, 0);
            if std::env::var_os("RFC7208_DEBUG").is_some() {
                eprintln!(
                    "  DNS {} {} -> {} {:?}",
                    q.name(),
                    q.query_type(),
                    response.metadata.response_code,
                    response
                        .answers
                        .iter()
                        .map(|r| r.data.to_string())
                        .collect::<Vec<_>>()
                );
            }
            if response.answers.is_empty()
                && response.metadata.response_code != ResponseCode::ServFail
            {
                let soa = SOA::new(
                    dns_name("ns.test"),
                    dns_name("hostmaster.test"),
                    1,
                    60,
                    60,
                    60,
                    60,
                );
                response.add_authority(Record::from_rdata(Name::root(), 60, RData::SOA(soa)));
            }
            if let Ok(bytes) = response.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    addr
}

fn word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// The result as `Authenticator::check_spf` computes it (viaspf through
/// `portcullis_filter::spf::check_host`): the MAIL FROM identity, or for the null sender
/// `postmaster@` the HELO name. The gateway hands it the client address in canonical
/// form (an IPv4-mapped IPv6 peer as IPv4: `policy::canonical_ip`), so the suite's
/// `::FFFF:a.b.c.d` hosts are given as that.
async fn evaluate(verifier: &MessageAuthenticator, case: &Case) -> SpfResult {
    let ip = case.host.to_canonical();
    let sender = if case.mailfrom.is_empty() {
        format!("postmaster@{}", case.helo)
    } else {
        case.mailfrom.clone()
    };
    portcullis_filter::spf::check_host(
        &verifier.0,
        ip,
        &case.helo,
        &sender,
        Duration::from_secs(20),
    )
    .await
    .result()
}

#[tokio::test]
async fn rfc7208_suite() {
    let (zones, cases) = load_suite();
    assert!(cases.len() > 150, "only {} tests read", cases.len());
    let mut resolvers = Vec::new();
    for zone in zones {
        let addr = serve(Arc::new(zone)).await;
        let resolver = portcullis_queue::mx::build_resolver(&[addr], Duration::from_secs(2))
            .expect("resolver");
        resolvers.push(MessageAuthenticator(resolver));
    }
    let mut passed = 0;
    let mut differences: Vec<(String, String, String)> = Vec::new();
    // RFC7208_ONLY=name runs one test; RFC7208_DEBUG=1 prints the DNS questions.
    let only = std::env::var("RFC7208_ONLY").ok();
    for case in &cases {
        if only.as_ref().is_some_and(|o| *o != case.name) {
            continue;
        }
        let got = word(evaluate(&resolvers[case.scenario], case).await);
        if case.results.iter().any(|r| r == got) {
            passed += 1;
        } else {
            differences.push((case.name.clone(), got.to_string(), case.results.join("|")));
        }
    }
    if only.is_some() {
        println!("{differences:?}");
        return;
    }
    println!("RFC 7208 suite: {passed} of {} tests pass", cases.len());
    let mut problems = Vec::new();
    for (name, got, wanted) in &differences {
        match EXPECTED_DIFFERENCES.iter().find(|(n, ..)| n == name) {
            Some((_, listed, _)) if listed == got => {}
            Some((_, listed, _)) => problems.push(format!(
                "{name}: got {got}, the table says {listed} (suite wants {wanted})"
            )),
            None => problems.push(format!(
                "{name}: got {got}, suite wants {wanted} (not in EXPECTED_DIFFERENCES)"
            )),
        }
    }
    for (name, listed, _) in EXPECTED_DIFFERENCES {
        if !cases.iter().any(|c| c.name == *name) {
            problems.push(format!("{name}: listed but not in the suite"));
        } else if !differences.iter().any(|(n, ..)| n == name) {
            problems.push(format!(
                "{name}: listed as {listed} but now gives the suite's result: remove it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
