//! DNSBL, URIBL and FCrDNS against a scripted DNS server on 127.0.0.1 (UDP and TCP on
//! one port). No query leaves the machine: the resolver knows only this server.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::{A, AAAA, PTR, SOA, TXT};
use mail_auth::hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use portcullis_filter::dnsbl::*;
use tokio::net::UdpSocket;

fn name(s: &str) -> Name {
    Name::from_str(s).expect("test name")
}

const V6_LISTED: &str = "2001:db8::25";

/// What the server does with one question.
enum Reply {
    Answer(Vec<RData>),
    NxDomain,
    ServFail,
    /// Never answer: the resolver times out.
    Silence,
}

fn a(o: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(o)))
}

fn ptr(host: &str) -> RData {
    RData::PTR(PTR(name(host)))
}

fn script(qname: &str, qtype: RecordType) -> Reply {
    use RecordType as T;
    let rev6 = format!("{}.", reverse_ip(V6_LISTED.parse().unwrap()));
    match (qname, qtype) {
        // A plain list: 192.0.2.10 and the IPv6 address are listed, 192.0.2.11 is not.
        ("10.2.0.192.bl.test.", T::A) => Reply::Answer(vec![a([127, 0, 0, 2])]),
        ("10.2.0.192.bl.test.", T::TXT) => Reply::Answer(vec![RData::TXT(TXT::new(vec![
            "Listed: see\r\nhttp://bl.test/q/192.0.2.10".into(),
        ]))]),
        (n, T::A) if n == format!("{rev6}bl.test.") => Reply::Answer(vec![a([127, 0, 0, 4])]),
        // A list with several parts under one zone, told apart by the answer.
        ("10.2.0.192.zen.test.", T::A) => {
            Reply::Answer(vec![a([127, 0, 0, 3]), a([127, 0, 0, 10])])
        }
        // Refusal and nonsense answers.
        (n, T::A) if n.ends_with(".refused.test.") => Reply::Answer(vec![a([127, 255, 255, 254])]),
        (n, T::A) if n.ends_with(".outside.test.") => Reply::Answer(vec![a([192, 0, 2, 99])]),
        (n, _) if n.ends_with(".slow.test.") => Reply::Silence,
        (n, _) if n.ends_with(".fail.test.") => Reply::ServFail,
        // URIBL: a registered domain, an address literal, a bitmask list.
        ("spammy.example.uri.test.", T::A) => Reply::Answer(vec![a([127, 0, 0, 2])]),
        ("66.2.0.192.uri.test.", T::A) => Reply::Answer(vec![a([127, 0, 0, 2])]),
        ("spammy.example.multi.test.", T::A) => Reply::Answer(vec![a([127, 0, 0, 8])]),
        // FCrDNS.
        ("10.2.0.192.in-addr.arpa.", T::PTR) => Reply::Answer(vec![ptr("Mail.Good.test.")]),
        ("mail.good.test.", T::A) => Reply::Answer(vec![a([192, 0, 2, 10])]),
        ("20.2.0.192.in-addr.arpa.", T::PTR) => Reply::Answer(vec![ptr("host.bad.test.")]),
        ("host.bad.test.", T::A) => Reply::Answer(vec![a([192, 0, 2, 99])]),
        ("40.2.0.192.in-addr.arpa.", T::PTR) => Reply::ServFail,
        ("50.2.0.192.in-addr.arpa.", T::PTR) => {
            Reply::Answer(vec![ptr("nx.bad.test."), ptr("mx.other.test.")])
        }
        ("mx.other.test.", T::A) => Reply::Answer(vec![a([192, 0, 2, 50])]),
        ("60.2.0.192.in-addr.arpa.", T::PTR) => Reply::Answer(vec![
            ptr("one.bad.test."),
            ptr("two.bad.test."),
            ptr("three.bad.test."),
            ptr("four.good.test."),
        ]),
        ("four.good.test.", T::A) => Reply::Answer(vec![a([192, 0, 2, 60])]),
        (n, T::PTR) if n == format!("{rev6}ip6.arpa.") => {
            Reply::Answer(vec![ptr("mail6.good.test.")])
        }
        ("mail6.good.test.", T::AAAA) => Reply::Answer(vec![RData::AAAA(AAAA(
            Ipv6Addr::from_str(V6_LISTED).unwrap(),
        ))]),
        _ => Reply::NxDomain,
    }
}

/// The server: its address and the questions it was asked (name, type).
struct FakeDns {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<(String, RecordType)>>>,
}

impl FakeDns {
    /// How often `qname` was asked for with type `qtype`.
    fn count(&self, qname: &str, qtype: RecordType) -> usize {
        let asked = self.asked.lock().unwrap();
        asked
            .iter()
            .filter(|(n, t)| n == qname && *t == qtype)
            .count()
    }
}

async fn fake_dns() -> FakeDns {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(q) = query.queries.first().cloned() else {
                continue;
            };
            let qname = q.name().to_ascii().to_ascii_lowercase();
            log.lock().unwrap().push((qname.clone(), q.query_type()));
            let (code, rdatas) = match script(&qname, q.query_type()) {
                Reply::Silence => continue,
                Reply::Answer(r) => (ResponseCode::NoError, r),
                Reply::NxDomain => (ResponseCode::NXDomain, vec![]),
                Reply::ServFail => (ResponseCode::ServFail, vec![]),
            };
            let mut response = Message::response(query.metadata.id, OpCode::Query);
            response.metadata.recursion_desired = query.metadata.recursion_desired;
            response.metadata.recursion_available = true;
            response.metadata.response_code = code;
            response.add_query(q.clone());
            for rdata in rdatas {
                response.add_answer(Record::from_rdata(q.name().clone(), 60, rdata));
            }
            if response.answers.is_empty() && code != ResponseCode::ServFail {
                let soa = SOA::new(name("ns.test."), name("dns.test."), 1, 60, 60, 60, 60);
                response.add_authority(Record::from_rdata(name("test."), 60, RData::SOA(soa)));
            }
            if let Ok(bytes) = response.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    FakeDns { addr, asked }
}

/// A resolver that asks only `server`, over UDP, with a per-query timeout well above the
/// check budgets so that the budgets are what is tested.
fn resolver(server: SocketAddr) -> TokioResolver {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let ns = NameServerConfig::new(server.ip(), true, vec![udp]);
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    );
    builder.options_mut().timeout = Duration::from_secs(5);
    builder.options_mut().attempts = 1;
    builder.build().expect("resolver")
}

fn zone(zone: &str) -> DnsblZone {
    DnsblZone::new(zone)
}

fn with_codes(zone: &str, name: &str, weight: f64, codes: &[&str]) -> DnsblZone {
    let mut z = DnsblZone::new(zone);
    z.name = Some(name.into());
    z.weight = weight;
    z.codes = codes.iter().map(|c| c.parse().unwrap()).collect();
    z
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn by_name(report: &DnsblReport) -> HashMap<String, (f64, String)> {
    report
        .findings
        .iter()
        .map(|f| (f.name.clone(), (f.score, f.detail.clone())))
        .collect()
}

#[tokio::test]
async fn listed_ipv4_with_txt() {
    let dns = fake_dns().await;
    let r = resolver(dns.addr);
    let mut bl = zone("bl.test");
    bl.weight = 3.5;
    let settings = DnsblSettings {
        zones: vec![bl],
        ..DnsblSettings::default()
    };
    let report = check_ip(&r, &settings, ip("192.0.2.10")).await;
    assert!(report.unavailable.is_empty(), "{:?}", report.unavailable);
    assert_eq!(report.findings.len(), 1);
    let f = &report.findings[0];
    assert_eq!(f.name, "dnsbl.bl.test");
    assert_eq!(f.score, 3.5);
    // The answer, then the list's text with its control characters blanked.
    assert!(
        f.detail.starts_with("127.0.0.2: Listed: see"),
        "{}",
        f.detail
    );
    assert!(!f.detail.contains('\n'));
    assert!(
        f.detail.contains("http://bl.test/q/192.0.2.10"),
        "{}",
        f.detail
    );

    // Unlisted: NXDOMAIN is no finding and no failure. No TXT asked either.
    let report = check_ip(&r, &settings, ip("192.0.2.11")).await;
    assert_eq!(report, DnsblReport::default());
    assert_eq!(dns.count("11.2.0.192.bl.test.", RecordType::A), 1);
    assert_eq!(dns.count("11.2.0.192.bl.test.", RecordType::TXT), 0);
}

#[tokio::test]
async fn listed_ipv6_and_ipv4_only_lists() {
    let dns = fake_dns().await;
    let r = resolver(dns.addr);
    let mut v4_only = zone("refused.test");
    v4_only.ipv6 = false;
    let settings = DnsblSettings {
        zones: vec![zone("bl.test"), v4_only],
        ..DnsblSettings::default()
    };
    let report = check_ip(&r, &settings, ip(V6_LISTED)).await;
    assert_eq!(report.findings.len(), 1, "{report:?}");
    assert_eq!(report.findings[0].name, "dnsbl.bl.test");
    assert_eq!(report.findings[0].detail, "127.0.0.4");
    // The IPv4-only list was not asked about an IPv6 address at all.
    assert!(report.unavailable.is_empty());
    assert!(
        !dns.asked
            .lock()
            .unwrap()
            .iter()
            .any(|(n, _)| n.ends_with("refused.test."))
    );
}

#[tokio::test]
async fn return_codes_select_parts_of_one_zone() {
    let dns = fake_dns().await;
    let r = resolver(dns.addr);
    let settings = DnsblSettings {
        zones: vec![
            with_codes("zen.test", "zen-sbl", 4.0, &["127.0.0.[2..3]", "127.0.0.9"]),
            with_codes("zen.test", "zen-xbl", 5.0, &["127.0.0.[4..7]"]),
            with_codes("zen.test", "zen-pbl", 1.5, &["127.0.0.[10..11]"]),
        ],
        ..DnsblSettings::default()
    };
    let report = check_ip(&r, &settings, ip("192.0.2.10")).await;
    let found = by_name(&report);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found["dnsbl.zen-sbl"].0, 4.0);
    assert!(found["dnsbl.zen-sbl"].1.starts_with("127.0.0.3"));
    assert_eq!(found["dnsbl.zen-pbl"].0, 1.5);
    assert!(found["dnsbl.zen-pbl"].1.starts_with("127.0.0.10"));
    // The answer code 127.0.0.3 is excluded by the XBL part's filter: no finding.
    assert!(!found.contains_key("dnsbl.zen-xbl"));
    // Three entries, one question (and one TXT question for the explanation).
    assert_eq!(dns.count("10.2.0.192.zen.test.", RecordType::A), 1);
    assert_eq!(dns.count("10.2.0.192.zen.test.", RecordType::TXT), 1);
}

#[tokio::test]
async fn excluded_code_is_not_a_listing() {
    let dns = fake_dns().await;
    let r = resolver(dns.addr);
    let settings = DnsblSettings {
        zones: vec![with_codes("bl.test", "strict", 2.0, &["127.0.0.[5..11]"])],
        ..DnsblSettings::default()
    };
    let report = check_ip(&r, &settings, ip("192.0.2.10")).await;
    assert_eq!(report, DnsblReport::default());
}

#[tokio::test]
async fn refusal_codes_and_foreign_answers_are_unavailable_not_listed() {
    let dns = fake_dns().await;
    let r = resolver(dns.addr);
    let settings = DnsblSettings {
        zones: vec![
            zone("refused.test"),
            zone("outside.test"),
            zone("fail.test"),
        ],
        ..DnsblSettings::default()
    };
    let report = check_ip(&r, &settings, ip("192.0.2.10")).await;
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    let mut zones: Vec<&str> = report.unavailable.iter().map(|u| u.zone.as_str()).collect();
    zones.sort();
    assert_eq!(zones, vec!["fail.test", "outside.test", "refused.test"]);
    let refused = report
        .unavailable
        .iter()
        .find(|u| u.zone == "refused.test")
        .unwrap();
    assert!(
        refused.reason.contains("127.255.255.254"),
        "{}",
        refused.reason
    );
}

#[tokio::test]
async fn silent_zone_times_out_within_budget() {
    let dns = fake_dns().await;
    let r = resolver(dns.addr);
    let settings = DnsblSettings {
        zones: vec![zone("slow.test"), zone("bl.test")],
        timeout_ms: 400,
        ..DnsblSettings::default()
    };
    let started = Instant::now();
    let report = check_ip(&r, &settings, ip("192.0.2.10")).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(took >= Duration::from_millis(350), "took {took:?}");
    // The answering list still counts; the silent one is reported.
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].name, "dnsbl.bl.test");
    assert_eq!(
        report.unavailable,
        vec![Unavailable {
            zone: "slow.test".into(),
            reason: "timed out".into()
        }]
    );
}

#[tokio::test]
async fn no_zones_no_queries() {
    let dns = fake_dns().await;
    let r = resolver(dns.addr);
    let settings = DnsblSettings::default();
    assert_eq!(
        check_ip(&r, &settings, ip("192.0.2.10")).await,
        DnsblReport::default()
    );
    let urls = vec!["http://www.spammy.example/".to_string()];
    assert_eq!(
        check_urls(&r, &settings, &urls).await,
        DnsblReport::default()
    );
    assert!(dns.asked.lock().unwrap().is_empty());
}

#[tokio::test]
async fn uribl_registered_domain_from_subdomain_and_ip_literal() {
    let dns = fake_dns().await;
    let r = resolver(dns.addr);
    let mut uri = zone("uri.test");
    uri.weight = 2.5;
    let settings = DnsblSettings {
        uribl: vec![uri],
        ..DnsblSettings::default()
    };
    let urls: Vec<String> = [
        "https://click.www.Spammy.example/track?id=1",
        "http://clean.example/",
        "http://192.0.2.66/payload",
        "https://www.spammy.example/again",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let report = check_urls(&r, &settings, &urls).await;
    assert!(report.unavailable.is_empty(), "{:?}", report.unavailable);
    assert_eq!(report.findings.len(), 1, "{report:?}");
    let f = &report.findings[0];
    assert_eq!((f.name.as_str(), f.score), ("uribl.uri.test", 2.5));
    assert!(
        f.detail.contains("spammy.example=127.0.0.2"),
        "{}",
        f.detail
    );
    assert!(f.detail.contains("192.0.2.66=127.0.0.2"), "{}", f.detail);
    // The registered domain once, and the full host names as well.
    assert_eq!(dns.count("spammy.example.uri.test.", RecordType::A), 1);
    assert_eq!(
        dns.count("click.www.spammy.example.uri.test.", RecordType::A),
        1
    );
    assert_eq!(dns.count("www.spammy.example.uri.test.", RecordType::A), 1);
}

#[tokio::test]
async fn uribl_bitmask_and_lookup_bound() {
    let dns = fake_dns().await;
    let r = resolver(dns.addr);
    let mut bit3 = zone("multi.test");
    bit3.name = Some("multi-bit3".into());
    bit3.mask = Some(0x08);
    let mut bit2 = zone("multi.test");
    bit2.name = Some("multi-bit2".into());
    bit2.mask = Some(0x04);
    let settings = DnsblSettings {
        uribl: vec![bit3, bit2],
        uribl_max_lookups: 3,
        ..DnsblSettings::default()
    };
    let mut urls = vec!["http://spammy.example/".to_string()];
    urls.extend((0..50).map(|i| format!("http://host{i}.example/")));
    let report = check_urls(&r, &settings, &urls).await;
    let found = by_name(&report);
    assert_eq!(found.keys().collect::<Vec<_>>(), vec!["uribl.multi-bit3"]);
    let asked = dns.asked.lock().unwrap().len();
    assert_eq!(asked, 3, "at most uribl_max_lookups names, each asked once");
}

#[tokio::test]
async fn uribl_silent_zone_is_unavailable() {
    let dns = fake_dns().await;
    let r = resolver(dns.addr);
    let settings = DnsblSettings {
        uribl: vec![zone("slow.test"), zone("uri.test")],
        timeout_ms: 300,
        ..DnsblSettings::default()
    };
    let urls = vec!["http://spammy.example/".to_string()];
    let started = Instant::now();
    let report = check_urls(&r, &settings, &urls).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.unavailable.len(), 1);
    assert_eq!(report.unavailable[0].zone, "slow.test");
    assert!(report.unavailable[0].reason.starts_with("timed out"));
}

#[tokio::test]
async fn fcrdns_outcomes() {
    let dns = fake_dns().await;
    let r = resolver(dns.addr);
    let settings = FcrdnsSettings::default();
    let check = |s: &'static str| {
        let r = r.clone();
        let settings = settings.clone();
        async move { fcrdns(&r, ip(s), &settings).await }
    };

    let pass = check("192.0.2.10").await;
    assert_eq!(pass, Fcrdns::Pass("mail.good.test".into()));
    assert!(pass.findings(ip("192.0.2.10"), &settings).is_empty());

    assert_eq!(
        check(V6_LISTED).await,
        Fcrdns::Pass("mail6.good.test".into())
    );
    // The second PTR name confirms; the first does not exist.
    assert_eq!(
        check("192.0.2.50").await,
        Fcrdns::Pass("mx.other.test".into())
    );

    let mismatch = check("192.0.2.20").await;
    assert_eq!(mismatch, Fcrdns::Fail(vec!["host.bad.test".into()]));
    let f = mismatch.findings(ip("192.0.2.20"), &settings);
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].name.as_str(), f[0].score), ("fcrdns.mismatch", 0.5));

    let none = check("192.0.2.30").await;
    assert_eq!(none, Fcrdns::NoPtr);
    let f = none.findings(ip("192.0.2.30"), &settings);
    assert_eq!((f[0].name.as_str(), f[0].score), ("fcrdns.none", 1.0));

    let temp = check("192.0.2.40").await;
    assert!(matches!(temp, Fcrdns::TempError(_)), "{temp:?}");
    assert!(temp.findings(ip("192.0.2.40"), &settings).is_empty());

    // Only the first three PTR names are followed: the fourth would have matched.
    let bounded = check("192.0.2.60").await;
    assert_eq!(
        bounded,
        Fcrdns::Fail(vec![
            "one.bad.test".into(),
            "two.bad.test".into(),
            "three.bad.test".into()
        ])
    );
    assert_eq!(dns.count("four.good.test.", RecordType::A), 0);
}

#[tokio::test]
async fn fcrdns_times_out_within_budget() {
    // A server that never answers: a bound socket nobody reads.
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let r = resolver(black_hole.local_addr().unwrap());
    let settings = FcrdnsSettings {
        timeout_ms: 300,
        ..FcrdnsSettings::default()
    };
    let started = Instant::now();
    let result = fcrdns(&r, ip("192.0.2.70"), &settings).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(result, Fcrdns::TempError("timed out".into()));
}
