//! The clamd client against a real clamd (Debian `clamav-daemon`), started by each test
//! in a temporary directory with a one-line signature database (`support/clamd.rs`): the
//! EICAR test file's MD5 and size. No official database and no network are involved.
//!
//! These tests fail (they do not skip) when clamd is not installed: `ci/test` installs it.
//! `PORTCULLIS_CLAMD` may name another clamd binary.

mod support;

use base64::Engine;
use portcullis_filter::clamd::{Endpoint, ScanResult, Scanner, Unavailable};
use std::io::{Cursor, Write};
use std::time::{Duration, Instant};
use support::clamd::{EICAR, SIGNATURE, STREAM_MAX, free_port, start_clamd};

fn zip_of(name: &str, content: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file(name, opts).unwrap();
    w.write_all(content).unwrap();
    w.finish().unwrap().into_inner()
}

/// A message with a text body and one base64 attachment.
fn message_with(name: &str, ctype: &str, content: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(content);
    let mut body = String::new();
    for line in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(line).unwrap());
        body.push_str("\r\n");
    }
    format!(
        "From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: see attached\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BOUND\"\r\n\r\n\
         --BOUND\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe file.\r\n\
         --BOUND\r\nContent-Type: {ctype}; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{body}--BOUND--\r\n"
    )
    .into_bytes()
}

fn assert_infected(result: &ScanResult, what: &str) {
    match result {
        ScanResult::Infected(name) => assert!(
            name.starts_with(SIGNATURE),
            "{what}: unexpected signature {name}"
        ),
        other => panic!("{what}: expected Infected, got {other:?}"),
    }
}

#[test]
fn eicar_test_string_matches_the_signature() {
    // The hdb line in these tests is only right if the constant is the real EICAR file.
    assert_eq!(EICAR.len(), 68);
    assert!(EICAR.starts_with(b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR"));
    assert!(EICAR.ends_with(b"-TEST-FILE!$H+H*"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_through_tcp_and_unix() {
    let clamd = start_clamd("scan").await;
    let budget = Duration::from_secs(30);
    let clean =
        b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hello\r\n\r\nNothing to see.\r\n";
    let plain_msg = message_with("eicar.com", "application/octet-stream", EICAR);
    let zipped = zip_of("eicar.com", EICAR);
    let zip_msg = message_with("eicar.zip", "application/zip", &zipped);
    let nested = zip_of("inner.zip", &zipped);
    let nested_msg = message_with("nested.zip", "application/zip", &nested);

    for endpoint in [&clamd.tcp, &clamd.unix] {
        let scanner = Scanner::new(vec![endpoint.clone()], budget);
        let on = |what: &str| format!("{what} over {endpoint}");
        assert_infected(&scanner.scan(EICAR).await, &on("plain EICAR"));
        assert_infected(
            &scanner.scan(&plain_msg).await,
            &on("EICAR attached (base64)"),
        );
        assert_infected(&scanner.scan(&zip_msg).await, &on("EICAR zipped"));
        assert_infected(
            &scanner.scan(&nested_msg).await,
            &on("EICAR in a zip in a zip"),
        );
        assert_eq!(
            scanner.scan(clean).await,
            ScanResult::Clean,
            "{}",
            on("clean")
        );
        // Longer than one INSTREAM chunk, still clean.
        let long = message_with("data.bin", "application/octet-stream", &vec![b'q'; 300_000]);
        assert_eq!(
            scanner.scan(&long).await,
            ScanResult::Clean,
            "{}",
            on("long")
        );
        // The finding an infection maps to.
        let finding = scanner.scan(EICAR).await.finding().unwrap();
        assert_eq!(finding.name, "av.virus");
        assert!(finding.detail.starts_with(SIGNATURE));
        assert!(scanner.ping().await.is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limit_failover_and_dead_endpoints() {
    let clamd = start_clamd("failover").await;
    let dead_tcp = Endpoint::Tcp(format!("127.0.0.1:{}", free_port()));
    let dead_unix = Endpoint::Unix(clamd.dir.join("nobody-here.sock"));
    let budget = Duration::from_secs(30);

    // clamd's StreamMaxLength is reported as such, not as a broken connection.
    let scanner = Scanner::new(vec![clamd.tcp.clone()], budget);
    let big = vec![b'z'; STREAM_MAX * 3];
    assert_eq!(
        scanner.scan(&big).await,
        ScanResult::Unavailable(Unavailable::SizeLimit)
    );
    let scanner = Scanner::new(vec![clamd.unix.clone()], budget);
    assert_eq!(
        scanner.scan(&big).await,
        ScanResult::Unavailable(Unavailable::SizeLimit)
    );

    // A dead endpoint first, then a live one: the scan still happens.
    let scanner = Scanner::new(
        vec![dead_tcp.clone(), dead_unix.clone(), clamd.unix.clone()],
        budget,
    );
    assert_infected(&scanner.scan(EICAR).await, "after two dead endpoints");
    let scanner = Scanner::new(vec![dead_unix.clone(), clamd.tcp.clone()], budget);
    assert_infected(&scanner.scan(EICAR).await, "after a dead unix socket");
    assert!(scanner.ping().await.is_ok());
    let pings = scanner.ping_all().await;
    assert!(pings[0].1.is_err() && pings[1].1.is_ok(), "{pings:?}");

    // Only dead endpoints: unavailable, quickly, naming each.
    let scanner = Scanner::new(vec![dead_tcp.clone(), dead_unix.clone()], budget);
    let start = Instant::now();
    match scanner.scan(EICAR).await {
        ScanResult::Unavailable(Unavailable::AllDown(why)) => {
            assert!(why.contains(&dead_tcp.to_string()), "{why}");
            assert!(why.contains(&dead_unix.to_string()), "{why}");
        }
        other => panic!("expected AllDown, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(scanner.ping().await.is_err());
}

/// A server that accepts connections and never answers: the scan gives up within its
/// time budget. (No clamd needed.)
#[tokio::test]
async fn silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s);
        }
    });
    let budget = Duration::from_millis(1500);
    let scanner = Scanner::new(vec![Endpoint::Tcp(addr.to_string())], budget);
    let start = Instant::now();
    let result = scanner.scan(EICAR).await;
    let took = start.elapsed();
    assert_eq!(
        result,
        ScanResult::Unavailable(Unavailable::Timeout(budget))
    );
    assert!(
        took >= budget && took < budget + Duration::from_secs(2),
        "{took:?}"
    );
    // A large message to a server that does not read: the budget holds too.
    let start = Instant::now();
    let result = scanner.scan(&vec![0u8; 20 << 20]).await;
    assert!(result.is_unavailable(), "{result:?}");
    assert!(start.elapsed() < budget + Duration::from_secs(2));
    assert!(scanner.ping().await.is_err());
    server.abort();
}
