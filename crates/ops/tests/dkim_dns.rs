//! `dkim_check_dns` against a real DNS server on loopback: the gateway's resolver
//! (pointed at it by `[dns] nameservers`) asks it over UDP, so the answer path is the one a
//! running gateway uses. The server answers TXT questions from a table; a name not in it
//! is NXDOMAIN, and one name always fails (SERVFAIL).

use mail_auth::hickory_resolver::proto::op::{Message, OpCode, Query, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::TXT;
use mail_auth::hickory_resolver::proto::rr::{RData, Record, RecordType};
use portcullis_gateway::config::Config;
use portcullis_ops::dkim_check::DnsStatus;
use portcullis_ops::{Actor, Ops, Role, Via};
use portcullis_store::Store;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;

const BROKEN: &str = "broken._domainkey.example.com";

/// Answers one question from `zone` (owner names lower case, without the final dot).
fn answer(zone: &HashMap<String, Vec<String>>, query: &Message) -> Option<Message> {
    let q = query.queries.first()?.clone();
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(Query::query(q.name().clone(), q.query_type()));
    let owner = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if owner == BROKEN {
        reply.metadata.response_code = ResponseCode::ServFail;
        return Some(reply);
    }
    match zone.get(&owner) {
        Some(values) if q.query_type() == RecordType::TXT => {
            for v in values {
                // A long key is published as several character-strings of 255 bytes at most.
                let strings: Vec<&[u8]> = v.as_bytes().chunks(255).collect();
                let data = RData::TXT(TXT::from_bytes(strings));
                reply.add_answer(Record::from_rdata(q.name().clone(), 60, data));
            }
        }
        Some(_) => {}
        None => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    Some(reply)
}

async fn dns_server(zone: HashMap<String, Vec<String>>) -> SocketAddr {
    let zone = Arc::new(zone);
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let addr = socket.local_addr().expect("address");
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

/// The gateway's settings with `[dns] nameservers` pointing at `nameserver`.
fn config(nameserver: SocketAddr) -> Config {
    let mut config = Config {
        data_dir: std::env::temp_dir().join(format!("portcullis-dkim-dns-{}", std::process::id())),
        ..Config::default()
    };
    config.dns.nameservers = vec![nameserver];
    config.dns.timeout_secs = 2;
    config
}

#[tokio::test]
async fn published_records_are_compared_with_the_stored_keys() {
    let mut zone = HashMap::new();
    let store = Store::open("sqlite::memory:").await.expect("store");
    // The keys are made first, so that the zone can publish them.
    let admin = Ops::new(store.clone(), Config::default());
    for selector in ["good", "stale", "missing", "broken"] {
        admin
            .dkim_generate("example.com", Some(selector), "ed25519", false)
            .await
            .expect("generate");
    }
    let other = admin
        .dkim_generate("example.org", Some("other"), "ed25519", false)
        .await
        .expect("generate");
    let keys = admin.dkim_list(Some("example.com")).await.expect("list");
    let txt = |s: &str| {
        keys.iter()
            .find(|k| k.key.selector == s)
            .and_then(|k| k.txt.clone())
            .expect("a readable key")
    };
    zone.insert(
        "good._domainkey.example.com".to_string(),
        vec![
            "v=spf1 -all".to_string(),
            // Published with other spacing and tag order: still the same key.
            txt("good").replace("; ", ";  ").replace("p=", "t=s; p="),
        ],
    );
    let stale = txt("missing");
    zone.insert(
        "stale._domainkey.example.com".to_string(),
        vec![stale.clone()],
    );
    let server = dns_server(zone).await;
    let ops = Ops::new(store, config(server));

    let check = ops
        .dkim_check_dns("example.com", "good")
        .await
        .expect("check");
    assert_eq!(check.name, "good._domainkey.example.com.");
    assert!(
        matches!(check.status, DnsStatus::Matches { .. }),
        "{check:?}"
    );

    let check = ops
        .dkim_check_dns("Example.COM", "stale")
        .await
        .expect("check");
    assert_eq!(check.expected, txt("stale"));
    assert_eq!(
        check.status,
        DnsStatus::Differs {
            published: vec![stale]
        }
    );

    let check = ops
        .dkim_check_dns("example.com", "missing")
        .await
        .expect("check");
    assert_eq!(check.status, DnsStatus::NotFound);

    let check = ops
        .dkim_check_dns("example.com", "broken")
        .await
        .expect("check");
    assert!(matches!(check.status, DnsStatus::Error { .. }), "{check:?}");

    // No such key: an error of the request, not of DNS.
    let e = ops.dkim_check_dns("example.com", "nope").await.unwrap_err();
    assert_eq!(e.status(), 404);

    // A domain-admin checks its own domain's keys only.
    let dora = ops.acting_as(Actor {
        name: "dora".into(),
        role: Role::DomainAdmin,
        domains: vec!["example.org".into()],
        address: String::new(),
        read_only: true,
        via: Via::Api,
        remote: None,
    });
    assert_eq!(
        dora.dkim_check_dns("example.com", "good")
            .await
            .unwrap_err()
            .status(),
        403
    );
    let check = dora
        .dkim_check_dns("example.org", &other.selector)
        .await
        .expect("check");
    assert_eq!(check.status, DnsStatus::NotFound);
}
