//! The route test against a small SMTP server on 127.0.0.1: the whole dialogue kept,
//! STARTTLS as the mode asks, the TLS session described, and a clear error for a
//! refused connection, a silent server, a missing STARTTLS and an untrusted certificate.

use std::sync::Arc;
use std::time::Duration;

use portcullis_queue::client::{TlsConfigs, TlsMode};
use portcullis_queue::probe::{ProbeSettings, Side, probe};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

fn tls_config() -> Arc<rustls::ServerConfig> {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let cert = key.cert.der().clone();
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], private)
    .expect("server config");
    Arc::new(config)
}

/// Answers EHLO (with STARTTLS when `tls` is given and the session is plain) and QUIT;
/// true when STARTTLS was asked for.
async fn commands<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    starttls: bool,
) -> bool {
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let upper = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") && starttls {
            b"250-fake.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
        } else if upper.starts_with("EHLO") {
            b"250-fake.test\r\n250 PIPELINING\r\n"
        } else if upper == "STARTTLS" {
            let _ = io.write_all(b"220 2.0.0 go ahead\r\n").await;
            return true;
        } else if upper == "QUIT" {
            let _ = io.write_all(b"221 2.0.0 bye\r\n").await;
            return false;
        } else {
            b"502 5.5.1 not here\r\n"
        };
        let _ = io.write_all(reply).await;
    }
}

async fn server(tls: Option<Arc<rustls::ServerConfig>>, greet: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                if !greet {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let _ = tcp.write_all(b"220 fake.test ESMTP\r\n").await;
                let mut io = BufReader::new(tcp);
                if !commands(&mut io, tls.is_some()).await {
                    return;
                }
                let Some(config) = tls else { return };
                let tcp = io.into_inner();
                if let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
                    commands(&mut BufReader::new(stream), false).await;
                }
            });
        }
    });
    port
}

fn settings() -> ProbeSettings {
    ProbeSettings {
        helo_name: "gw.test".into(),
        step_timeout: Duration::from_millis(500),
        total_timeout: Duration::from_secs(5),
    }
}

fn configs() -> TlsConfigs {
    TlsConfigs::new(&[]).expect("TLS configs")
}

#[tokio::test]
async fn starttls_dialogue_is_kept_whole() {
    let port = server(Some(tls_config()), true).await;
    let r = probe("localhost", port, TlsMode::Encrypt, &configs(), &settings()).await;
    assert!(r.ok(), "{:?}", r.error);
    let sent: Vec<&str> = r
        .lines
        .iter()
        .filter(|l| l.side == Side::Client)
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(sent, ["EHLO gw.test", "STARTTLS", "EHLO gw.test", "QUIT"]);
    let heard: Vec<&str> = r
        .lines
        .iter()
        .filter(|l| l.side == Side::Server)
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(heard[0], "220 fake.test ESMTP");
    assert!(heard.contains(&"250 STARTTLS"), "{heard:?}");
    assert_eq!(heard.last(), Some(&"221 2.0.0 bye"));
    let tls = r.tls.expect("TLS facts");
    assert!(tls.version.starts_with("TLSv1_"), "{}", tls.version);
    assert!(!tls.cipher.is_empty());
    assert!(tls.subject.contains("CN="), "{}", tls.subject);
    assert!(!tls.verified);
}

#[tokio::test]
async fn may_goes_plain_when_starttls_is_not_offered() {
    let port = server(None, true).await;
    let r = probe("127.0.0.1", port, TlsMode::May, &configs(), &settings()).await;
    assert!(r.ok(), "{:?}", r.error);
    assert!(r.tls.is_none());
    assert!(
        r.lines
            .iter()
            .any(|l| l.text.contains("STARTTLS not offered"))
    );
    let r = probe("127.0.0.1", port, TlsMode::Encrypt, &configs(), &settings()).await;
    let e = r.error.expect("an error");
    assert!(e.contains("does not offer STARTTLS"), "{e}");
}

#[tokio::test]
async fn verify_refuses_an_untrusted_certificate() {
    let port = server(Some(tls_config()), true).await;
    let r = probe("localhost", port, TlsMode::Verify, &configs(), &settings()).await;
    let e = r.error.expect("an error");
    assert!(e.starts_with("TLS:"), "{e}");
}

#[tokio::test]
async fn refused_and_silent_servers_are_clear_errors() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let r = probe("127.0.0.1", port, TlsMode::May, &configs(), &settings()).await;
    let e = r.error.expect("an error");
    assert!(e.contains("refused"), "{e}");

    let port = server(None, false).await;
    let started = std::time::Instant::now();
    let r = probe("127.0.0.1", port, TlsMode::May, &configs(), &settings()).await;
    let e = r.error.expect("an error");
    assert!(e.contains("timeout during greeting"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_whole_probe_is_bounded_and_keeps_what_it_heard() {
    let port = server(None, false).await;
    let settings = ProbeSettings {
        total_timeout: Duration::from_millis(200),
        ..settings()
    };
    let r = probe("127.0.0.1", port, TlsMode::May, &configs(), &settings).await;
    let e = r.error.expect("an error");
    assert!(e.contains("gave up after"), "{e}");
    assert!(r.lines[0].text.starts_with("connected to"), "{:?}", r.lines);
}
