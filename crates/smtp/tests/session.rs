//! Drives the sans-IO session with scripted client bytes and a scripted policy, and
//! checks the replies a client would see.

use portcullis_smtp::{Event, Limits, Reply, Session, SessionConfig};

fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.test".into(),
        limits: Limits {
            max_message_size: 1000,
            max_recipients: 3,
            ..Limits::default()
        },
        starttls: true,
        implicit_tls: false,
        auth: true,
        auth_required: false,
    }
}

/// A test harness: accepts everything except recipients starting with "bad", records
/// stored messages.
struct Harness {
    session: Session,
    out: String,
    events: Vec<Event>,
    body: Vec<u8>,
    messages: Vec<Vec<u8>>,
    closed: bool,
}

impl Harness {
    fn new(cfg: SessionConfig) -> Self {
        let mut h = Harness {
            session: Session::new(cfg),
            out: String::new(),
            events: Vec::new(),
            body: Vec::new(),
            messages: Vec::new(),
            closed: false,
        };
        h.pump();
        h
    }

    fn send(&mut self, bytes: &[u8]) -> String {
        self.out.clear();
        self.session.feed(bytes);
        self.pump();
        self.out.clone()
    }

    fn pump(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            match &ev {
                Event::Mail(_) => self.session.decide(Reply::new(250, "2.1.0", "Ok")),
                Event::Rcpt(r) if r.address.starts_with("bad") => {
                    self.session
                        .decide(Reply::new(550, "5.1.1", "No such user"))
                }
                Event::Rcpt(_) => self.session.decide(Reply::new(250, "2.1.5", "Ok")),
                Event::DataStart => self.session.decide(Reply::new(354, "", "Go ahead")),
                Event::Body => {
                    let b = std::mem::take(self.session.body());
                    self.body.extend_from_slice(&b);
                }
                Event::DataEnd { .. } => {
                    let b = std::mem::take(self.session.body());
                    self.body.extend_from_slice(&b);
                    self.messages.push(std::mem::take(&mut self.body));
                    self.session.decide(Reply::new(250, "2.0.0", "Queued"));
                }
                Event::DataAborted => self.body.clear(),
                Event::Auth { username, password } => {
                    let ok = username == "alice" && password == "secret";
                    self.session.decide(if ok {
                        Reply::new(235, "2.7.0", "Authentication successful")
                    } else {
                        Reply::new(535, "5.7.8", "Authentication failed")
                    });
                }
                Event::StartTls => self.session.tls_started(),
                Event::Close => self.closed = true,
                _ => {}
            }
            self.events.push(ev);
        }
        let out = std::mem::take(self.session.output());
        self.out.push_str(&String::from_utf8_lossy(&out));
    }
}

fn codes(out: &str) -> Vec<u16> {
    out.lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .filter_map(|l| l[..3].parse().ok())
        .collect()
}

#[test]
fn greeting_and_ehlo_extensions() {
    let mut h = Harness::new(config());
    assert_eq!(h.out, "220 mx.test ESMTP Portcullis\r\n");
    let out = h.send(b"EHLO client.test\r\n");
    for ext in [
        "PIPELINING",
        "SIZE 1000",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
        "CHUNKING",
        "DSN",
    ] {
        assert!(out.contains(ext), "{ext} missing in {out}");
    }
    assert!(!out.contains("AUTH"), "AUTH offered before TLS: {out}");
}

#[test]
fn pipelined_transaction_in_one_packet() {
    let mut h = Harness::new(config());
    let out = h.send(
        b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<bad@y.test>\r\nDATA\r\n",
    );
    assert_eq!(codes(&out), vec![250, 250, 250, 550, 354]);
    let out = h.send(b"Subject: hi\r\n\r\n..x\r\n.\r\nQUIT\r\n");
    assert_eq!(codes(&out), vec![250, 221]);
    assert_eq!(h.messages, vec![b"Subject: hi\r\n\r\n.x\r\n".to_vec()]);
    assert!(h.closed);
}

#[test]
fn sequence_errors() {
    let mut h = Harness::new(config());
    assert_eq!(codes(&h.send(b"MAIL FROM:<a@x>\r\n")), vec![503]);
    h.send(b"EHLO c\r\n");
    assert_eq!(codes(&h.send(b"RCPT TO:<b@y>\r\n")), vec![503]);
    assert_eq!(codes(&h.send(b"DATA\r\n")), vec![503]);
    h.send(b"MAIL FROM:<a@x>\r\n");
    assert_eq!(codes(&h.send(b"MAIL FROM:<a@x>\r\n")), vec![503]);
    assert_eq!(codes(&h.send(b"DATA\r\n")), vec![554]);
    assert_eq!(codes(&h.send(b"FOO bar\r\n")), vec![502]);
    assert_eq!(codes(&h.send(b"EXPN list\r\n")), vec![502]);
    assert_eq!(codes(&h.send(b"VRFY u\r\n")), vec![252]);
}

#[test]
fn recipient_limit_is_452() {
    let mut h = Harness::new(config());
    let out = h.send(
        b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@y>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nRCPT TO:<d@y>\r\n",
    );
    assert_eq!(codes(&out), vec![250, 250, 250, 250, 250, 452]);
    assert!(out.contains("452 4.5.3"));
}

#[test]
fn size_declared_and_streamed() {
    let mut h = Harness::new(config());
    assert!(
        h.send(b"EHLO c\r\nMAIL FROM:<a@x> SIZE=5000\r\n")
            .contains("552 5.3.4")
    );
    h.send(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
    let big = vec![b'a'; 2000];
    h.send(&big);
    let out = h.send(b"\r\n.\r\n");
    assert!(out.contains("552 5.3.4"), "{out}");
    assert!(h.messages.is_empty());
    assert!(h.events.contains(&Event::DataAborted));
    // The session goes on after the refusal.
    assert_eq!(codes(&h.send(b"NOOP\r\n")), vec![250]);
}

#[test]
fn line_too_long() {
    let mut h = Harness::new(config());
    let mut line = b"EHLO ".to_vec();
    line.extend(vec![b'a'; 5000]);
    line.extend_from_slice(b"\r\n");
    assert!(h.send(&line).contains("500 5.5.6"));
    assert_eq!(codes(&h.send(b"EHLO ok\r\n")), vec![250]);
}

#[test]
fn bare_lf_in_data_rejects_and_closes() {
    let mut h = Harness::new(config());
    h.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
    let out = h.send(
        b"Subject: a\r\n\r\nhello\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nspoof\r\n.\r\n",
    );
    assert_eq!(codes(&out), vec![521], "{out}");
    assert!(h.messages.is_empty());
    assert!(h.closed);
    // Nothing after the bare LF was taken as a command.
    assert_eq!(
        h.events
            .iter()
            .filter(|e| matches!(e, Event::Mail(_)))
            .count(),
        1
    );
}

#[test]
fn starttls_discards_pipelined_plaintext_and_offers_auth() {
    let mut h = Harness::new(config());
    h.send(b"EHLO c\r\n");
    let out = h.send(b"STARTTLS\r\nMAIL FROM:<injected@x>\r\n");
    assert_eq!(codes(&out), vec![220]);
    assert!(h.session.is_tls());
    assert!(!h.events.iter().any(|e| matches!(e, Event::Mail(_))));
    let out = h.send(b"EHLO c\r\n");
    assert!(out.contains("AUTH PLAIN LOGIN"));
    assert!(!out.contains("STARTTLS"));
}

#[test]
fn auth_requires_tls_and_checks_credentials() {
    let mut cfg = config();
    cfg.auth_required = true;
    let mut h = Harness::new(cfg);
    h.send(b"EHLO c\r\n");
    assert!(
        h.send(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
            .contains("538 5.7.11")
    );
    assert!(h.send(b"MAIL FROM:<a@x>\r\n").contains("530 5.7.0"));
    h.send(b"STARTTLS\r\n");
    h.send(b"EHLO c\r\n");
    // alice / wrong
    assert!(
        h.send(b"AUTH PLAIN AGFsaWNlAHdyb25n\r\n")
            .contains("535 5.7.8")
    );
    assert!(h.send(b"AUTH LOGIN\r\n").contains("334 VXNlcm5hbWU6"));
    assert!(h.send(b"YWxpY2U=\r\n").contains("334 UGFzc3dvcmQ6"));
    assert!(h.send(b"c2VjcmV0\r\n").contains("235 2.7.0"));
    assert_eq!(h.session.authenticated(), Some("alice"));
    assert_eq!(codes(&h.send(b"MAIL FROM:<alice@x>\r\n")), vec![250]);
}

#[test]
fn too_many_auth_failures_close() {
    let mut cfg = config();
    cfg.implicit_tls = true;
    let mut h = Harness::new(cfg);
    h.send(b"EHLO c\r\n");
    for _ in 0..3 {
        h.send(b"AUTH PLAIN AGFsaWNlAHdyb25n\r\n");
    }
    assert!(h.closed);
}

#[test]
fn bdat_chunks_and_last() {
    let mut h = Harness::new(config());
    let out = h.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 5\r\nHello");
    assert_eq!(codes(&out), vec![250, 250, 250, 250]);
    assert!(out.contains("5 octets received"));
    let out = h.send(b"BDAT 8 LAST\r\n, world\n");
    assert_eq!(codes(&out), vec![250]);
    assert_eq!(h.messages, vec![b"Hello, world\n".to_vec()]);
    // BDAT without a transaction: the chunk is read and thrown away.
    let out = h.send(b"BDAT 4 LAST\r\nabcdNOOP\r\n");
    assert_eq!(codes(&out), vec![503, 250]);
}

#[test]
fn bdat_too_big() {
    let mut h = Harness::new(config());
    h.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n");
    let mut chunk = b"BDAT 1500 LAST\r\n".to_vec();
    chunk.extend(vec![b'x'; 1500]);
    assert!(h.send(&chunk).contains("552 5.3.4"));
    assert!(h.messages.is_empty());
}

#[test]
fn dsn_parameters_are_parsed() {
    let mut h = Harness::new(config());
    h.send(
        b"EHLO c\r\nMAIL FROM:<a@x> RET=HDRS ENVID=abc123 BODY=8BITMIME\r\nRCPT TO:<b@y> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@y\r\n",
    );
    let mail = h.events.iter().find_map(|e| match e {
        Event::Mail(m) => Some(m.clone()),
        _ => None,
    });
    let mail = mail.expect("MAIL event");
    assert_eq!(mail.envid.as_deref(), Some("abc123"));
    assert!(mail.eight_bit);
    assert_eq!(mail.ret, Some(portcullis_smtp::Ret::Headers));
    let rcpt = h.events.iter().find_map(|e| match e {
        Event::Rcpt(r) => Some(r.clone()),
        _ => None,
    });
    let rcpt = rcpt.expect("RCPT event");
    assert_eq!(
        rcpt.notify,
        Some(vec!["SUCCESS".to_string(), "FAILURE".to_string()])
    );
    assert!(rcpt.orcpt.is_some());
}

#[test]
fn too_many_errors_disconnect() {
    let mut h = Harness::new(config());
    let mut junk = Vec::new();
    for _ in 0..25 {
        junk.extend_from_slice(b"XYZZY\r\n");
    }
    let out = h.send(&junk);
    assert!(out.contains("421 4.7.0"));
    assert!(h.closed);
}

#[test]
fn rcpt_between_bdat_chunks_is_refused() {
    // Found by the smtp_session fuzz target.
    let mut h = Harness::new(config());
    let out = h.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 1\r\nxRCPT TO:<c@y>\r\nBDAT 1 LAST\r\ny");
    assert_eq!(codes(&out), vec![250, 250, 250, 250, 503, 250], "{out}");
    let rcpts = h
        .events
        .iter()
        .filter(|e| matches!(e, Event::Rcpt(_)))
        .count();
    assert_eq!(rcpts, 1);
    assert_eq!(h.messages, vec![b"xy".to_vec()]);
}

#[test]
fn a_flood_of_pipelined_commands_does_not_grow_the_stack() {
    // Found in review: recursion per command overflowed the stack at ~5000 NOOPs.
    let mut h = Harness::new(config());
    let flood = b"NOOP\r\n".repeat(200_000);
    let out = h.send(&flood);
    assert_eq!(out.matches("250 2.0.0 Ok").count(), 200_000);
}

#[test]
fn the_tail_of_an_overlong_line_is_not_a_command() {
    let mut h = Harness::new(config());
    let mut line = vec![b'X'; 2100];
    line.extend_from_slice(b"RSET\r\n");
    let out = h.send(&line[..2048]);
    assert_eq!(codes(&out), vec![500]);
    let out = h.send(&line[2048..]);
    assert!(out.is_empty(), "the tail was executed: {out}");
    assert_eq!(codes(&h.send(b"NOOP\r\n")), vec![250]);
}

#[test]
fn refused_recipients_count_toward_the_error_limit() {
    let mut h = Harness::new(config());
    h.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\n");
    let mut probe = Vec::new();
    for i in 0..25 {
        probe.extend_from_slice(format!("RCPT TO:<bad{i}@y>\r\n").as_bytes());
    }
    let out = h.send(&probe);
    assert!(out.contains("421 4.7.0"), "{out}");
    assert!(h.closed);
}
