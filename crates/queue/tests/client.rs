//! The outbound SMTP client against a small scripted SMTP server on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_queue::client::*;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// `user`/`pass` as AUTH PLAIN sends them.
const PLAIN_TOKEN: &str = "AHVzZXIAcGFzcw==";

#[derive(Clone, Default)]
struct Script {
    caps: Vec<&'static str>,
    /// Offer STARTTLS with this configuration.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Hold replies to MAIL and RCPT until DATA arrives, so a client that waits for each
    /// reply (no pipelining) hangs instead of passing.
    batch_until_data: bool,
    /// Answer 220 to STARTTLS, then close (a broken TLS stack).
    break_tls: bool,
}

#[derive(Default)]
struct Log {
    connections: usize,
    commands: Vec<String>,
    /// Message bodies exactly as received (still dot-stuffed), without the final dot.
    bodies: Vec<Vec<u8>>,
}

struct Fake {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl Fake {
    fn commands(&self) -> Vec<String> {
        self.log.lock().expect("log lock").commands.clone()
    }
    fn bodies(&self) -> Vec<Vec<u8>> {
        self.log.lock().expect("log lock").bodies.clone()
    }
    fn connections(&self) -> usize {
        self.log.lock().expect("log lock").connections
    }
}

async fn fake_server(script: Script) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log = Arc::new(Mutex::new(Log::default()));
    let shared = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            shared.lock().expect("log lock").connections += 1;
            tokio::spawn(serve(tcp, script.clone(), shared.clone()));
        }
    });
    Fake { addr, log }
}

async fn serve(mut tcp: TcpStream, script: Script, log: Arc<Mutex<Log>>) {
    let _ = tcp.write_all(b"220 fake.test ESMTP\r\n").await;
    let mut reader = BufReader::new(tcp);
    if !session(&mut reader, &script, &log, false).await {
        return;
    }
    let (Some(config), false) = (script.tls.clone(), script.break_tls) else {
        return;
    };
    let tcp = reader.into_inner();
    let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await else {
        return;
    };
    session(&mut BufReader::new(tls), &script, &log, true).await;
}

/// Runs commands until QUIT or EOF; true when the client asked for STARTTLS.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    script: &Script,
    log: &Mutex<Log>,
    is_tls: bool,
) -> bool {
    let mut held: Vec<String> = Vec::new();
    let (mut in_transaction, mut accepted) = (false, 0);
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let cmd = line.trim_end().to_string();
        log.lock().expect("log lock").commands.push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let mut caps = script.caps.clone();
            if script.tls.is_some() && !is_tls {
                caps.push("STARTTLS");
            }
            if is_tls {
                caps.push("AUTH PLAIN LOGIN");
            }
            let mut out = String::from("250-fake.test\r\n");
            for (i, cap) in caps.iter().enumerate() {
                let sep = if i + 1 == caps.len() { ' ' } else { '-' };
                out.push_str(&format!("250{sep}{cap}\r\n"));
            }
            if caps.is_empty() {
                out = "250 fake.test\r\n".into();
            }
            out
        } else if upper == "STARTTLS" {
            let _ = io.write_all(b"220 2.0.0 go ahead\r\n").await;
            return true;
        } else if upper.starts_with("AUTH PLAIN") {
            if cmd.ends_with(PLAIN_TOKEN) {
                "235 2.7.0 ok\r\n".into()
            } else {
                "535 5.7.8 bad credentials\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM:<TEMPFAIL") {
            "451 4.3.0 try later\r\n".into()
        } else if upper.starts_with("MAIL") {
            in_transaction = true;
            "250 2.1.0 ok\r\n".into()
        } else if !in_transaction && upper.starts_with("RCPT") {
            "503 5.5.1 need MAIL first\r\n".into()
        } else if upper.starts_with("RCPT TO:<BAD") {
            "550 5.1.1 no such user\r\n".into()
        } else if upper.starts_with("RCPT") {
            accepted += 1;
            "250 2.1.5 ok\r\n".into()
        } else if upper == "DATA" && accepted == 0 {
            let all_held = std::mem::take(&mut held).concat();
            let _ = io.write_all(all_held.as_bytes()).await;
            "554 5.5.1 no valid recipients\r\n".into()
        } else if upper == "DATA" {
            (in_transaction, accepted) = (false, 0);
            let all_held = std::mem::take(&mut held).concat();
            let _ = io.write_all(all_held.as_bytes()).await;
            let _ = io.write_all(b"354 go ahead\r\n").await;
            let mut body = Vec::new();
            loop {
                let mut l = Vec::new();
                if io.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                    return false;
                }
                if l == b".\r\n" {
                    break;
                }
                body.extend_from_slice(&l);
            }
            let n = {
                let mut log = log.lock().expect("log lock");
                log.bodies.push(body);
                log.bodies.len()
            };
            format!("250 2.0.0 queued as {n}\r\n")
        } else if upper == "QUIT" {
            let _ = io.write_all(b"221 2.0.0 bye\r\n").await;
            return false;
        } else {
            if upper == "RSET" {
                (in_transaction, accepted) = (false, 0);
            }
            "250 2.0.0 ok\r\n".into()
        };
        if script.batch_until_data && (upper.starts_with("MAIL") || upper.starts_with("RCPT")) {
            held.push(reply);
        } else {
            let _ = io.write_all(reply.as_bytes()).await;
        }
    }
}

fn settings() -> ClientSettings {
    ClientSettings {
        helo_name: "client.test".into(),
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(3),
        data_timeout: Duration::from_secs(5),
    }
}

fn configs() -> TlsConfigs {
    TlsConfigs::new(&[]).expect("TLS configs")
}

fn rcpt(address: &str) -> OutgoingRecipient {
    OutgoingRecipient {
        address: address.into(),
        notify: None,
        orcpt: None,
    }
}

fn message<'a>(
    sender: &'a str,
    recipients: &'a [OutgoingRecipient],
    data: &'a [u8],
) -> OutgoingMessage<'a> {
    OutgoingMessage {
        sender,
        recipients,
        data,
        eight_bit: false,
        smtputf8: false,
        envid: None,
        ret: None,
    }
}

fn self_signed() -> (Arc<rustls::ServerConfig>, CertificateDer<'static>) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let cert = key.cert.der().clone();
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], private)
    .expect("server config");
    (Arc::new(config), cert)
}

const BODY: &[u8] = b"Subject: test\r\n\r\nhello\r\n";

#[tokio::test]
async fn two_messages_on_one_connection() {
    let fake = fake_server(Script::default()).await;
    let mut client = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::None,
        None,
        &configs(),
        &settings(),
    )
    .await
    .expect("connect");
    assert!(!client.is_tls());
    assert_eq!(client.server_name(), "localhost");
    let rcpts = [rcpt("a@example.net")];
    for _ in 0..2 {
        let out = client
            .send(&message("s@example.org", &rcpts, BODY))
            .await
            .expect("send");
        assert!(matches!(&out[..], [RecipientOutcome::Delivered(r)] if r.code == 250));
    }
    client.quit().await;
    assert_eq!(fake.connections(), 1);
    assert_eq!(fake.bodies(), vec![BODY.to_vec(), BODY.to_vec()]);
    let cmds = fake.commands();
    assert!(
        !cmds.iter().any(|c| c == "RSET"),
        "no RSET after a good transaction: {cmds:?}"
    );
    assert_eq!(cmds.first().map(String::as_str), Some("EHLO client.test"));
    assert_eq!(cmds.last().map(String::as_str), Some("QUIT"));
}

#[tokio::test]
async fn pipelined_per_recipient_outcomes() {
    let fake = fake_server(Script {
        caps: vec!["PIPELINING", "SIZE 1000000", "DSN", "8BITMIME"],
        batch_until_data: true,
        ..Script::default()
    })
    .await;
    let mut client = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::None,
        None,
        &configs(),
        &settings(),
    )
    .await
    .expect("connect");
    assert!(client.extensions().pipelining);
    let rcpts = [
        rcpt("bad@example.net"),
        OutgoingRecipient {
            address: "good@example.net".into(),
            notify: Some(vec!["SUCCESS".into(), "FAILURE".into()]),
            orcpt: Some("rfc822;Good+1@example.net".into()),
        },
    ];
    let mut msg = message("s@example.org", &rcpts, BODY);
    msg.eight_bit = true;
    msg.envid = Some("id=1");
    msg.ret = Some(DsnRet::Headers);
    let out = client.send(&msg).await.expect("send");
    match &out[..] {
        [
            RecipientOutcome::PermFailed(bad),
            RecipientOutcome::Delivered(good),
        ] => {
            assert_eq!((bad.code, bad.status.as_deref()), (550, Some("5.1.1")));
            assert_eq!(good.code, 250);
        }
        other => panic!("unexpected outcomes {other:?}"),
    }
    // Every RCPT refused: the pipelined DATA gets a 554 and the session goes on.
    let bad = [rcpt("bad1@example.net"), rcpt("bad2@example.net")];
    let out = client
        .send(&message("s@example.org", &bad, BODY))
        .await
        .expect("send");
    assert!(
        out.iter()
            .all(|o| matches!(o, RecipientOutcome::PermFailed(r) if r.code == 550))
    );
    let out = client
        .send(&message("s@example.org", &rcpts[1..], BODY))
        .await
        .expect("send after all-rejected");
    assert!(matches!(&out[..], [RecipientOutcome::Delivered(_)]));
    assert_eq!(fake.bodies().len(), 2);
    let cmds = fake.commands();
    assert!(cmds.contains(&format!(
        "MAIL FROM:<s@example.org> SIZE={} BODY=8BITMIME RET=HDRS ENVID=id+3D1",
        BODY.len()
    )));
    assert!(
        cmds.contains(
            &"RCPT TO:<good@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Good+2B1@example.net"
                .to_string()
        )
    );
}

#[tokio::test]
async fn unpipelined_outcomes_and_all_rejected() {
    let fake = fake_server(Script::default()).await;
    let mut client = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::None,
        None,
        &configs(),
        &settings(),
    )
    .await
    .expect("connect");
    let rcpts = [rcpt("good@example.net"), rcpt("bad@example.net")];
    let out = client
        .send(&message("s@example.org", &rcpts, BODY))
        .await
        .expect("send");
    assert!(matches!(
        &out[..],
        [
            RecipientOutcome::Delivered(_),
            RecipientOutcome::PermFailed(_)
        ]
    ));

    let bad = [rcpt("bad1@example.net"), rcpt("bad2@example.net")];
    let out = client
        .send(&message("s@example.org", &bad, BODY))
        .await
        .expect("send");
    assert!(
        out.iter()
            .all(|o| matches!(o, RecipientOutcome::PermFailed(_)))
    );
    // The next transaction starts with the RSET the all-rejected one left owing.
    let out = client
        .send(&message("s@example.org", &rcpts[..1], BODY))
        .await
        .expect("send");
    assert!(matches!(&out[..], [RecipientOutcome::Delivered(_)]));
    let cmds = fake.commands();
    let data_count = cmds.iter().filter(|c| *c == "DATA").count();
    assert_eq!(data_count, 2, "no DATA when every RCPT failed: {cmds:?}");
    assert_eq!(cmds.iter().filter(|c| *c == "RSET").count(), 1, "{cmds:?}");
}

#[tokio::test]
async fn temporary_failure_on_mail_from() {
    let fake = fake_server(Script {
        caps: vec!["PIPELINING"],
        ..Script::default()
    })
    .await;
    let mut client = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::None,
        None,
        &configs(),
        &settings(),
    )
    .await
    .expect("connect");
    let rcpts = [rcpt("a@example.net"), rcpt("b@example.net")];
    let out = client
        .send(&message("tempfail@example.org", &rcpts, BODY))
        .await
        .expect("send");
    assert_eq!(out.len(), 2);
    for o in &out {
        assert!(
            matches!(o, RecipientOutcome::TempFailed(r) if r.code == 451 && r.status.as_deref() == Some("4.3.0"))
        );
    }
    assert!(client.is_usable());
    let out = client
        .send(&message("ok@example.org", &rcpts, BODY))
        .await
        .expect("send");
    assert!(
        out.iter()
            .all(|o| matches!(o, RecipientOutcome::Delivered(_)))
    );
    let cmds = fake.commands();
    let rset = cmds
        .iter()
        .position(|c| c == "RSET")
        .expect("RSET after the failed transaction");
    assert!(cmds[rset + 1].starts_with("MAIL FROM:<ok@"));
}

#[tokio::test]
async fn dot_stuffing() {
    let fake = fake_server(Script::default()).await;
    let mut client = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::None,
        None,
        &configs(),
        &settings(),
    )
    .await
    .expect("connect");
    let data = b".first line\r\nmiddle\r\n.\r\n..two\r\nlast line without CRLF";
    let rcpts = [rcpt("a@example.net")];
    let out = client
        .send(&message("s@example.org", &rcpts, data))
        .await
        .expect("send");
    assert!(matches!(&out[..], [RecipientOutcome::Delivered(_)]));
    // A body larger than one write chunk, with a dot at a chunk boundary's line start.
    let mut big = Vec::new();
    while big.len() < 200_000 {
        big.extend_from_slice(b".dot line\r\n");
        big.extend_from_slice(&[b'x'; 70_000]);
        big.extend_from_slice(b"\r\n");
    }
    let out = client
        .send(&message("s@example.org", &rcpts, &big))
        .await
        .expect("send big");
    assert!(matches!(&out[..], [RecipientOutcome::Delivered(_)]));
    let bodies = fake.bodies();
    assert_eq!(
        bodies[0],
        b"..first line\r\nmiddle\r\n..\r\n...two\r\nlast line without CRLF\r\n"
    );
    let unstuffed: Vec<u8> = String::from_utf8(bodies[1].clone())
        .expect("ASCII")
        .split_inclusive("\r\n")
        .map(|l| l.strip_prefix('.').unwrap_or(l))
        .collect::<String>()
        .into_bytes();
    assert_eq!(unstuffed, big);
}

#[tokio::test]
async fn smtputf8_required_but_not_offered() {
    let fake = fake_server(Script::default()).await;
    let mut client = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::None,
        None,
        &configs(),
        &settings(),
    )
    .await
    .expect("connect");
    let rcpts = [rcpt("josé@example.net")];
    let mut msg = message("s@example.org", &rcpts, BODY);
    msg.smtputf8 = true;
    let out = client.send(&msg).await.expect("send");
    assert!(
        matches!(&out[..], [RecipientOutcome::PermFailed(r)] if r.status.as_deref() == Some("5.6.7"))
    );
}

#[tokio::test]
async fn starttls_encrypt_and_auth_plain() {
    let (tls, _) = self_signed();
    let fake = fake_server(Script {
        tls: Some(tls),
        ..Script::default()
    })
    .await;
    let creds = Some(("user".to_string(), "pass".to_string()));
    let mut client = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::Encrypt,
        creds,
        &configs(),
        &settings(),
    )
    .await
    .expect("connect with TLS and AUTH");
    assert!(client.is_tls());
    let rcpts = [rcpt("a@example.net")];
    let out = client
        .send(&message("s@example.org", &rcpts, BODY))
        .await
        .expect("send");
    assert!(matches!(&out[..], [RecipientOutcome::Delivered(_)]));
    client.quit().await;
    let cmds = fake.commands();
    let starttls = cmds.iter().position(|c| c == "STARTTLS").expect("STARTTLS");
    let auth = cmds
        .iter()
        .position(|c| c.starts_with("AUTH PLAIN"))
        .expect("AUTH");
    assert!(starttls < auth);
    assert_eq!(
        cmds[starttls + 1],
        "EHLO client.test",
        "EHLO again after TLS"
    );

    let wrong = Some(("user".to_string(), "wrong".to_string()));
    let err = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::Encrypt,
        wrong,
        &configs(),
        &settings(),
    )
    .await
    .err()
    .expect("bad credentials fail");
    assert!(matches!(&err, ClientError::Auth(r) if r.code == 535));
    // Wrong credentials are our configuration error: the mail waits, it does not bounce.
    assert!(!err.is_permanent());
}

#[tokio::test]
async fn verify_rejects_self_signed_and_accepts_extra_ca() {
    let (tls, cert) = self_signed();
    let fake = fake_server(Script {
        tls: Some(tls),
        ..Script::default()
    })
    .await;
    let err = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::Verify,
        None,
        &configs(),
        &settings(),
    )
    .await
    .err()
    .expect("self-signed certificate is refused");
    assert!(matches!(err, ClientError::Tls(_)), "{err}");
    assert!(!err.is_permanent());
    assert_eq!(err.as_reply().status.as_deref(), Some("4.7.5"));

    let trusting = TlsConfigs::new(&[cert]).expect("extra CA");
    let client = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::Verify,
        None,
        &trusting,
        &settings(),
    )
    .await
    .expect("trusted via extra CA");
    assert!(client.is_tls());
}

#[tokio::test]
async fn auth_refused_without_tls() {
    let fake = fake_server(Script::default()).await;
    let creds = Some(("user".to_string(), "pass".to_string()));
    let err = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::May,
        creds,
        &configs(),
        &settings(),
    )
    .await
    .err()
    .expect("no credentials in clear text");
    assert!(matches!(err, ClientError::AuthUnavailable(_)), "{err}");
    assert!(!fake.commands().iter().any(|c| c.starts_with("AUTH")));
}

#[tokio::test]
async fn encrypt_requires_starttls() {
    let fake = fake_server(Script::default()).await;
    let err = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::Encrypt,
        None,
        &configs(),
        &settings(),
    )
    .await
    .err()
    .expect("no STARTTLS offered");
    assert!(matches!(err, ClientError::Tls(_)));
}

#[tokio::test]
async fn may_falls_back_to_plain_after_failed_handshake() {
    let (tls, _) = self_signed();
    let fake = fake_server(Script {
        tls: Some(tls),
        break_tls: true,
        ..Script::default()
    })
    .await;
    let mut client = SmtpClient::connect(
        fake.addr,
        "localhost",
        TlsMode::May,
        None,
        &configs(),
        &settings(),
    )
    .await
    .expect("plain-text retry");
    assert!(!client.is_tls());
    assert_eq!(fake.connections(), 2);
    let rcpts = [rcpt("a@example.net")];
    let out = client
        .send(&message("s@example.org", &rcpts, BODY))
        .await
        .expect("send");
    assert!(matches!(&out[..], [RecipientOutcome::Delivered(_)]));
}

#[tokio::test]
async fn errors_map_to_replies() {
    // Nothing listens on a port we just released.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let err = SmtpClient::connect(
        addr,
        "localhost",
        TlsMode::None,
        None,
        &configs(),
        &settings(),
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(err, ClientError::Connect(_)));
    assert_eq!(err.as_reply().status.as_deref(), Some("4.4.1"));
    assert_eq!(
        ClientError::Timeout("DATA").as_reply().to_string(),
        "451 4.4.2 timeout after DATA"
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        if let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tcp.write_all(b"554 5.7.1 go away\r\n").await;
        }
    });
    let err = SmtpClient::connect(
        addr,
        "localhost",
        TlsMode::None,
        None,
        &configs(),
        &settings(),
    )
    .await
    .err()
    .expect("refused greeting");
    assert!(matches!(&err, ClientError::Greeting(r) if r.code == 554));
    assert!(err.is_permanent());
}
