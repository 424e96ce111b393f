//! Drives the sans-IO SMTP server session with arbitrary client bytes, split into a few
//! reads, and a deterministic policy chosen by the input, and checks what must hold for
//! any client whatsoever.
//!
//! Input layout:
//! - byte 0: configuration and policy bits
//!   - bit 0: STARTTLS offered; bit 1: implicit TLS; bit 2: AUTH offered;
//!     bit 3: AUTH required for MAIL
//!   - bit 4: refuse recipients whose address length is odd
//!   - bit 5: refuse every other DataStart (the first one is refused)
//!   - bit 6: answer DataEnd with 451 instead of 250
//!   - bit 7: refuse senders whose address contains an `x`
//! - byte 1: how the rest is split into reads (low 3 bits: reads - 1; the rest seeds
//!   the cut points)
//! - the rest: the bytes the client sends.
//!
//! Invariants checked:
//! - no panic;
//! - every line of output is `DDD` then ` ` or `-`, ends in CRLF, and holds no other CR
//!   or LF (no reply can be split or injected by client input);
//! - output stays within 64 * (input + 1) + 4096 bytes;
//! - the body stored for one message never exceeds `max_message_size`;
//! - `DataEnd { size }` equals the bytes delivered, and a DATA body (as opposed to
//!   BDAT, which is binary) is empty or CRLF-terminated with no bare CR and no bare LF;
//! - events come in protocol order: RCPT only inside a transaction (and not in DATA), DataStart only with
//!   an accepted recipient, Body/DataEnd only after an accepted DataStart, MAIL only
//!   after HELO/EHLO and when none is open, AUTH only over TLS, MAIL only once
//!   authenticated when AUTH is required, and at most `max_recipients` accepted;
//! - after STARTTLS nothing already received is acted on (CVE-2011-0411);
//! The harness stops at Close, as a server does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_smtp::{Event, Limits, Reply, Session, SessionConfig};

const MAX_MESSAGE: usize = 4096;
const MAX_RECIPIENTS: usize = 3;

struct Policy {
    refuse_odd_rcpt: bool,
    refuse_data_start: bool,
    data_end_451: bool,
    refuse_x_sender: bool,
}

/// What the harness knows of the session, from the events and its own answers.
#[derive(Default)]
struct Model {
    helo: bool,
    mail: bool,
    recipients: usize,
    /// A DataStart was accepted and the message is not over.
    in_message: bool,
    /// The accepted DataStart was for DATA (not BDAT).
    data_mode: bool,
    /// Body bytes delivered for the current message.
    body: Vec<u8>,
    data_starts: usize,
    authenticated: bool,
}

impl Model {
    fn end_transaction(&mut self) {
        self.mail = false;
        self.recipients = 0;
        self.in_message = false;
        self.data_mode = false;
        self.body.clear();
    }
}

fn check_output(out: &[u8]) {
    let mut rest = out;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("output not CRLF-terminated: {:?}", String::from_utf8_lossy(rest)));
        let line = &rest[..end];
        assert!(
            line.len() >= 4
                && line[..3].iter().all(u8::is_ascii_digit)
                && (line[3] == b' ' || line[3] == b'-'),
            "bad reply line {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "CR or LF inside a reply line {:?}",
            String::from_utf8_lossy(line)
        );
        rest = &rest[end + 2..];
    }
}

fn no_bare_line_endings(body: &[u8]) -> bool {
    body.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => body.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && body[i - 1] == b'\r',
        _ => true,
    })
}

/// Cut `data` into at most `n` reads at points drawn from `seed`.
fn split(data: &[u8], n: usize, seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(0x9e37_79b9) | 1;
    let mut cuts: Vec<usize> = (1..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as usize) % (data.len() + 1)
        })
        .collect();
    cuts.push(0);
    cuts.push(data.len());
    cuts.sort_unstable();
    cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let (flags, split_byte, client) = (input[0], input[1], &input[2..]);
    let cfg = SessionConfig {
        hostname: "mx.fuzz.test".into(),
        limits: Limits {
            max_line_length: 512,
            max_recipients: MAX_RECIPIENTS,
            max_message_size: MAX_MESSAGE,
            max_errors: 10,
            max_auth_failures: 2,
        },
        starttls: flags & 1 != 0,
        implicit_tls: flags & 2 != 0,
        auth: flags & 4 != 0,
        auth_required: flags & 8 != 0,
    };
    let auth_required = cfg.auth_required;
    let policy = Policy {
        refuse_odd_rcpt: flags & 0x10 != 0,
        refuse_data_start: flags & 0x20 != 0,
        data_end_451: flags & 0x40 != 0,
        refuse_x_sender: flags & 0x80 != 0,
    };
    let bound = 64 * (input.len() + 1) + 4096;

    let mut session = Session::new(cfg);
    let mut model = Model::default();
    let mut written = 0usize;
    let mut closed = false;

    for read in split(client, usize::from(split_byte & 7) + 1, split_byte >> 3) {
        session.feed(read);
        while let Some(event) = session.poll_event() {
            match event {
                Event::Helo { .. } => {
                    // EHLO/HELO ends any transaction.
                    model.end_transaction();
                    model.helo = true;
                }
                Event::Auth { username, password } => {
                    assert!(session.is_tls(), "AUTH asked for without TLS");
                    assert!(!model.authenticated, "AUTH asked for twice");
                    assert!(!model.mail, "AUTH inside a transaction");
                    let ok = password == "secret" && !username.is_empty();
                    model.authenticated = ok;
                    session.decide(if ok {
                        Reply::new(235, "2.7.0", "Authentication successful")
                    } else {
                        Reply::new(535, "5.7.8", "Authentication failed")
                    });
                }
                Event::Mail(mail) => {
                    assert!(model.helo, "MAIL before HELO/EHLO");
                    assert!(!model.mail, "nested MAIL reached the policy");
                    assert!(!model.in_message, "MAIL inside a message");
                    assert!(mail.size <= MAX_MESSAGE, "oversized SIZE reached the policy");
                    if auth_required {
                        assert!(model.authenticated, "MAIL without the required AUTH");
                    }
                    let ok = !(policy.refuse_x_sender && mail.address.contains('x'));
                    model.mail = ok;
                    model.recipients = 0;
                    session.decide(if ok {
                        Reply::new(250, "2.1.0", "Ok")
                    } else {
                        Reply::new(550, "5.7.1", "Sender refused")
                    });
                }
                Event::Rcpt(rcpt) => {
                    assert!(model.mail, "RCPT without MAIL reached the policy");
                    // RFC 3030: the envelope is complete before the first BDAT chunk, and
                    // inside DATA a RCPT would be smuggling.
                    assert!(!model.in_message, "RCPT inside a message");
                    assert!(model.recipients < MAX_RECIPIENTS, "too many RCPT reached the policy");
                    let ok = !(policy.refuse_odd_rcpt && rcpt.address.len() % 2 == 1);
                    if ok {
                        model.recipients += 1;
                    }
                    session.decide(if ok {
                        Reply::new(250, "2.1.5", "Ok")
                    } else {
                        Reply::new(550, "5.1.1", "No such user")
                    });
                }
                Event::DataStart => {
                    assert!(model.mail && model.recipients > 0, "DataStart without recipients");
                    assert!(!model.in_message, "DataStart inside a message");
                    // Before the answer, a BDAT session is already reading its chunk; a
                    // DATA one is still reading commands.
                    let bdat = session.in_body();
                    model.data_starts += 1;
                    let ok = !(policy.refuse_data_start && model.data_starts % 2 == 1);
                    if ok {
                        model.in_message = true;
                        model.data_mode = !bdat;
                        model.body.clear();
                        session.decide(Reply::new(354, "", "Go ahead"));
                    } else {
                        if bdat {
                            // The refused chunk is discarded, then the transaction ends.
                            model.mail = false;
                            model.recipients = 0;
                        }
                        session.decide(Reply::new(451, "4.3.0", "Try later"));
                    }
                }
                Event::Body => {
                    assert!(model.in_message, "Body outside a message");
                    let b = std::mem::take(session.body());
                    model.body.extend_from_slice(&b);
                    assert!(model.body.len() <= MAX_MESSAGE, "stored body exceeds the limit");
                }
                Event::DataEnd { size } => {
                    assert!(model.in_message, "DataEnd without an accepted DataStart");
                    let b = std::mem::take(session.body());
                    model.body.extend_from_slice(&b);
                    assert!(model.body.len() <= MAX_MESSAGE, "stored body exceeds the limit");
                    assert!(size <= MAX_MESSAGE, "DataEnd for an oversized message");
                    assert_eq!(size, model.body.len(), "DataEnd size differs from the body");
                    if model.data_mode {
                        assert!(
                            no_bare_line_endings(&model.body),
                            "DATA body with a bare CR or LF reached DataEnd: {:?}",
                            String::from_utf8_lossy(&model.body)
                        );
                        assert!(
                            model.body.is_empty() || model.body.ends_with(b"\r\n"),
                            "DATA body not CRLF-terminated"
                        );
                    }
                    model.end_transaction();
                    session.decide(if policy.data_end_451 {
                        Reply::new(451, "4.3.0", "Queue unavailable")
                    } else {
                        Reply::new(250, "2.0.0", "Queued")
                    });
                }
                Event::DataAborted => {
                    session.body().clear();
                    model.end_transaction();
                }
                Event::Reset => model.end_transaction(),
                Event::StartTls => {
                    assert!(!session.is_tls(), "STARTTLS inside TLS");
                    model.end_transaction();
                    model.helo = false;
                    written += session.output().len();
                    check_output(session.output());
                    session.output().clear();
                    session.tls_started();
                    // Whatever was pipelined after STARTTLS came in plain text.
                    let next = session.poll_event();
                    assert!(
                        matches!(next, None | Some(Event::Close)),
                        "plain-text input acted on after STARTTLS: {next:?}"
                    );
                    if next == Some(Event::Close) {
                        closed = true;
                    }
                }
                Event::Close => closed = true,
            }
            if closed {
                break;
            }
        }
        written += session.output().len();
        check_output(session.output());
        session.output().clear();
        assert!(written <= bound, "output {written} bytes for input {}", input.len());
        if closed {
            break;
        }
    }
});
