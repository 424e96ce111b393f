//! MX resolution against a tiny scripted DNS server on 127.0.0.1 (UDP).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, MX, SOA};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use portcullis_queue::mx::*;
use tokio::net::UdpSocket;

fn name(s: &str) -> Name {
    Name::from_str(s).expect("test name")
}

/// The answer for one question: response code and answer records.
fn answer(qname: &str, qtype: RecordType) -> (ResponseCode, Vec<RData>) {
    let mx = |p, host: &str| RData::MX(MX::new(p, name(host)));
    let a = |ip: [u8; 4]| RData::A(A(Ipv4Addr::from(ip)));
    match (qname, qtype) {
        ("multi.test.", RecordType::MX) => (
            ResponseCode::NoError,
            vec![
                mx(20, "mx2.multi.test."),
                mx(10, "mx1.multi.test."),
                mx(20, "mx3.multi.test."),
            ],
        ),
        ("null.test.", RecordType::MX) => (ResponseCode::NoError, vec![mx(0, ".")]),
        ("implicit.test.", RecordType::A) => (ResponseCode::NoError, vec![a([192, 0, 2, 7])]),
        ("implicit.test.", RecordType::AAAA) => (
            ResponseCode::NoError,
            vec![RData::AAAA(AAAA(
                Ipv6Addr::from_str("2001:db8::7").expect("v6"),
            ))],
        ),
        ("mx1.multi.test.", RecordType::A) => (ResponseCode::NoError, vec![a([192, 0, 2, 1])]),
        (n, _) if n.starts_with("nx.") => (ResponseCode::NXDomain, vec![]),
        (n, _) if n.starts_with("fail.") => (ResponseCode::ServFail, vec![]),
        _ => (ResponseCode::NoError, vec![]),
    }
}

async fn fake_dns() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
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
            let (code, rdatas) = answer(&qname, q.query_type());
            let mut response = Message::response(query.metadata.id, OpCode::Query);
            response.metadata.recursion_desired = query.metadata.recursion_desired;
            response.metadata.recursion_available = true;
            response.metadata.response_code = code;
            response.add_query(q.clone());
            for rdata in rdatas {
                response.add_answer(Record::from_rdata(q.name().clone(), 60, rdata));
            }
            if response.answers.is_empty() && code != ResponseCode::ServFail {
                let soa = SOA::new(
                    name("ns.test."),
                    name("hostmaster.test."),
                    1,
                    60,
                    60,
                    60,
                    60,
                );
                response.add_authority(Record::from_rdata(name("test."), 60, RData::SOA(soa)));
            }
            if let Ok(bytes) = response.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    addr
}

async fn resolver() -> TokioResolver {
    build_resolver(&[fake_dns().await], Duration::from_secs(2)).expect("resolver")
}

#[tokio::test]
async fn mx_sorted_by_preference() {
    let r = resolver().await;
    let hosts = resolve_mx(&r, "multi.test").await.expect("MX");
    assert_eq!(hosts.len(), 3);
    assert_eq!(
        hosts[0],
        MxHost {
            preference: 10,
            host: "mx1.multi.test".into()
        }
    );
    let mut rest: Vec<_> = hosts[1..]
        .iter()
        .map(|h| (h.preference, h.host.as_str()))
        .collect();
    rest.sort();
    assert_eq!(rest, vec![(20, "mx2.multi.test"), (20, "mx3.multi.test")]);
    let addrs = resolve_addrs(&r, &hosts[0].host).await.expect("address");
    assert_eq!(addrs, vec![IpAddr::from([192, 0, 2, 1])]);
}

#[tokio::test]
async fn null_mx() {
    let r = resolver().await;
    assert_eq!(resolve_mx(&r, "null.test").await, Err(MxError::NullMx));
}

#[tokio::test]
async fn no_mx_falls_back_to_address() {
    let r = resolver().await;
    let hosts = resolve_mx(&r, "implicit.test.").await.expect("implicit MX");
    assert_eq!(
        hosts,
        vec![MxHost {
            preference: 0,
            host: "implicit.test".into()
        }]
    );
    let addrs = resolve_addrs(&r, "implicit.test").await.expect("addresses");
    assert_eq!(addrs[0], IpAddr::from([192, 0, 2, 7]), "IPv4 first");
    assert_eq!(addrs.len(), 2);
    assert_eq!(resolve_mx(&r, "noaddr.test").await, Err(MxError::NoAddress));
}

#[tokio::test]
async fn nxdomain_and_servfail() {
    let r = resolver().await;
    let nx = resolve_mx(&r, "nx.test").await.expect_err("NXDOMAIN");
    assert_eq!(nx, MxError::NoSuchDomain);
    assert_eq!(nx.as_reply().status.as_deref(), Some("5.1.2"));
    let fail = resolve_mx(&r, "fail.test").await.expect_err("SERVFAIL");
    assert!(matches!(fail, MxError::Temporary(_)), "{fail:?}");
    assert!(fail.as_reply().is_transient());
    assert_eq!(
        resolve_mx(&r, "[192.0.2.1]").await,
        Err(MxError::AddressLiteral)
    );
}
