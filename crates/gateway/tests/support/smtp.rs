//! The client side of one SMTP transaction against the real server session
//! (`portcullis_smtp::Session`), its events handed to a real `Handler` (the gateway's
//! `SmtpHandler`) as the listener does (`portcullis_smtp::server`, `drive`): EHLO, MAIL,
//! RCPT, DATA, the message dot-stuffed as a client sends it, the end-of-data line. The
//! session's DATA reader is what refuses SMTP smuggling carriers (a bare CR or LF in the
//! data); what it passes on is what the gateway spools and scans. Only the socket is left
//! out: bytes go into the session, its output is read back as the client's replies.

use portcullis_smtp::server::Handler;
use portcullis_smtp::{Event, Limits, Reply, Session, SessionConfig};

/// What the client saw.
#[derive(Debug, Default)]
pub struct Transcript {
    /// The last reply: to the end of data, or to the command that was refused.
    pub reply: Option<Reply>,
    /// The command the last reply answered (`connect`, `MAIL`, `DATA`, `end of data`).
    pub stage: &'static str,
    /// The session closed the connection.
    pub closed: bool,
    /// The handler's reply to the end of data, with its text (`Ok: queued as <id>`).
    pub data_end: Option<Reply>,
}

impl Transcript {
    /// The queue id in the reply to the end of data.
    pub fn queue_id(&self) -> Option<&str> {
        let text = self.data_end.as_ref()?.lines.first()?;
        text.split("queued as ").nth(1).map(str::trim)
    }
}

pub struct Envelope<'a> {
    pub helo: &'a str,
    pub sender: &'a str,
    pub recipients: &'a [String],
}

/// The message as a client puts it on the wire after DATA: a `.` starting a line (after
/// CRLF) doubled, CRLF added when the message does not end in one, then `.` CRLF. Bare
/// CR and LF are sent as they are, as a smuggling client sends them.
pub fn data_stream(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at_line_start = true;
    for (i, &b) in message.iter().enumerate() {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n' && i > 0 && message[i - 1] == b'\r';
    }
    if !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The replies in a chunk of session output: code and enhanced status of each.
fn replies(output: &[u8]) -> Vec<Reply> {
    let text = String::from_utf8_lossy(output);
    let mut out = Vec::new();
    for line in text.split("\r\n") {
        let Some(code) = line.get(..3).and_then(|c| c.parse::<u16>().ok()) else {
            continue;
        };
        // Only the last line of a multi-line reply (`250 ` not `250-`).
        if line.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        out.push(Reply::from_remote(code, line.get(4..).unwrap_or("")));
    }
    out
}

/// The session's events, each handed to `handler` as the listener's `drive` hands them.
async fn dispatch<H: Handler>(session: &mut Session, handler: &mut H, t: &mut Transcript) {
    while let Some(event) = session.poll_event() {
        match event {
            Event::Helo { name, .. } => {
                handler.reset();
                handler.helo(session, &name);
            }
            Event::Auth { username, password } => {
                let reply = handler.auth(session, &username, &password).await;
                session.decide(reply);
            }
            Event::Mail(mail) => {
                let reply = handler.mail(session, &mail).await;
                session.decide(reply);
            }
            Event::Rcpt(rcpt) => {
                let reply = handler.rcpt(session, &rcpt).await;
                session.decide(reply);
            }
            Event::DataStart => {
                let reply = handler.data_start(session).await;
                session.decide(reply);
            }
            Event::Body => {
                let body = std::mem::take(session.body());
                handler.data_chunk(&body).await;
            }
            Event::DataEnd { size } => {
                let tail = std::mem::take(session.body());
                if !tail.is_empty() {
                    handler.data_chunk(&tail).await;
                }
                let reply = handler.data_end(session, size).await;
                t.data_end = Some(reply.clone());
                session.decide(reply);
            }
            Event::DataAborted => {
                session.body().clear();
                handler.data_aborted().await;
            }
            Event::Reset => handler.reset(),
            Event::StartTls => panic!("STARTTLS is not offered in these tests"),
            Event::Close => t.closed = true,
        }
    }
}

/// One connection with one transaction: the handler's connect check, then each command
/// in turn until one is refused or the session hangs up; the handler is reset at the
/// end, as the listener resets it when a connection ends.
pub async fn transact<H: Handler>(
    handler: &mut H,
    limits: Limits,
    envelope: &Envelope<'_>,
    message: &[u8],
) -> Transcript {
    let mut t = Transcript {
        stage: "connect",
        ..Transcript::default()
    };
    if let Some(reply) = handler.connect().await {
        t.reply = Some(reply);
        return t;
    }
    let mut session = Session::new(SessionConfig {
        hostname: "mx.example.com".into(),
        limits,
        starttls: false,
        implicit_tls: false,
        auth: false,
        auth_required: false,
    });
    let mut steps: Vec<(&'static str, Vec<u8>)> = vec![
        ("EHLO", format!("EHLO {}\r\n", envelope.helo).into_bytes()),
        (
            "MAIL",
            format!("MAIL FROM:<{}>\r\n", envelope.sender).into_bytes(),
        ),
    ];
    for r in envelope.recipients {
        steps.push(("RCPT", format!("RCPT TO:<{r}>\r\n").into_bytes()));
    }
    steps.push(("DATA", b"DATA\r\n".to_vec()));
    steps.push(("end of data", data_stream(message)));
    session.output().clear();
    for (stage, bytes) in steps {
        t.stage = stage;
        session.feed(&bytes);
        dispatch(&mut session, handler, &mut t).await;
        let out = std::mem::take(session.output());
        t.reply = replies(&out).pop().or(t.reply);
        let refused = t.reply.as_ref().is_some_and(|r| r.code >= 400);
        if refused || t.closed {
            break;
        }
    }
    handler.reset();
    t
}

#[cfg(test)]
mod tests {
    #[test]
    fn dot_stuffing_only_at_crlf_line_starts() {
        assert_eq!(
            super::data_stream(b".a\r\n.b\nc\r\n"),
            b"..a\r\n..b\nc\r\n.\r\n".to_vec()
        );
        assert_eq!(super::data_stream(b"x"), b"x\r\n.\r\n".to_vec());
    }
}
