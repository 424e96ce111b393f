//! The `[dns]` table of a case served by a small authoritative DNS server on 127.0.0.1
//! (UDP), so that the gateway asks its own resolver (`portcullis_queue::mx::build_resolver`)
//! and nothing is short-cut: SPF through viaspf, DKIM keys and DMARC policies through
//! mail-auth, DNSBL, URIBL and FCrDNS through the gateway's lookups. A value is a TXT
//! record, or `A:<address>`, `AAAA:<address>`, `PTR:<name>` for those types; a name in the
//! table answers questions of a type it has with those records (other types: no data); a
//! name not in it is NXDOMAIN; the value `"SERVFAIL"` makes every question about the name
//! fail.

use mail_auth::hickory_resolver::proto::op::{Message, OpCode, Query, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::{A, AAAA, PTR, SOA, TXT};
use mail_auth::hickory_resolver::proto::rr::{Name, RData, Record};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;

/// TXT records by lower-case owner name without the final dot.
pub type Zone = HashMap<String, Vec<String>>;

const SERVFAIL: &str = "SERVFAIL";

fn name(s: &str) -> Name {
    let mut n = Name::from_labels(s.trim_end_matches('.').split('.').map(str::as_bytes))
        .expect("a DNS name in [dns]");
    n.set_fqdn(true);
    n
}

/// A TXT record of one value, cut into character-strings of at most 255 bytes
/// (RFC 1035 §3.3.14), as a long DKIM key is published.
fn txt(value: &str) -> RData {
    let chunks: Vec<&[u8]> = if value.is_empty() {
        vec![b""]
    } else {
        value.as_bytes().chunks(255).collect()
    };
    RData::TXT(TXT::from_bytes(chunks))
}

/// One value of the table as the record it stands for.
fn record_data(value: &str) -> RData {
    if let Some(a) = value.strip_prefix("A:") {
        RData::A(A(a.trim().parse().expect("an IPv4 address after A:")))
    } else if let Some(a) = value.strip_prefix("AAAA:") {
        RData::AAAA(AAAA(a.trim().parse().expect("an IPv6 address after AAAA:")))
    } else if let Some(n) = value.strip_prefix("PTR:") {
        RData::PTR(PTR(name(n.trim())))
    } else {
        txt(value)
    }
}

fn answer(zone: &Zone, query: &Message) -> Option<Message> {
    let q = query.queries.first()?.clone();
    let mut response = Message::response(query.metadata.id, OpCode::Query);
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    response.add_query(Query::query(q.name().clone(), q.query_type()));
    let key = q
        .name()
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(".");
    match zone.get(&key) {
        Some(values) if values.iter().any(|v| v == SERVFAIL) => {
            response.metadata.response_code = ResponseCode::ServFail;
            return Some(response);
        }
        Some(values) => {
            for data in values.iter().map(|v| record_data(v)) {
                if data.record_type() == q.query_type() {
                    response.add_answer(Record::from_rdata(q.name().clone(), 60, data));
                }
            }
        }
        None => response.metadata.response_code = ResponseCode::NXDomain,
    }
    if response.answers.is_empty() {
        let soa = SOA::new(name("ns.test"), name("hostmaster.test"), 1, 60, 60, 60, 60);
        response.add_authority(Record::from_rdata(Name::root(), 60, RData::SOA(soa)));
    }
    Some(response)
}

/// Serves `zone` on a fresh loopback UDP port until the runtime ends.
pub async fn serve(zone: Zone) -> SocketAddr {
    let zone = Arc::new(zone);
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind a UDP port");
    let addr = socket.local_addr().expect("local address");
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if let Some(bytes) = answer(&zone, &query).and_then(|r| r.to_vec().ok()) {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    addr
}
