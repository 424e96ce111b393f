//! The client side of one SMTP transaction against the sans-IO server session
//! (`portcullis_smtp::Session`): EHLO, MAIL, RCPT, DATA, the message dot-stuffed as a
//! client sends it, the end-of-data line. The session's DATA reader is what refuses SMTP
//! smuggling carriers (a bare CR or LF in the data); what it passes on is the message the
//! gateway checks, as it would be spooled.

use crate::gateway::{Decision, Gateway};
use portcullis_smtp::{Event, Limits, Reply, Session, SessionConfig};

/// What the client saw, and what the gateway decided when it got that far.
#[derive(Debug, Default)]
pub struct Transcript {
    /// The last reply: to the end of data, or to the command that was refused.
    pub reply: Option<Reply>,
    /// The command the last reply answered (`MAIL`, `DATA`, `end of data`).
    pub stage: &'static str,
    /// The session closed the connection.
    pub closed: bool,
    pub decision: Option<Decision>,
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

pub async fn transact(
    gateway: &Gateway,
    limits: Limits,
    envelope: &Envelope<'_>,
    message: &[u8],
) -> Transcript {
    let mut session = Session::new(SessionConfig {
        hostname: "mx.example.com".into(),
        limits,
        starttls: false,
        implicit_tls: false,
        auth: false,
        auth_required: false,
    });
    let mut t = Transcript::default();
    let mut spf = None;
    let mut body = Vec::new();
    let mut accepted: Vec<String> = Vec::new();
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
        while let Some(event) = session.poll_event() {
            match event {
                Event::Mail(m) => {
                    let (reply, checked) = gateway.mail(envelope.helo, &m.address).await;
                    spf = checked;
                    session.decide(reply);
                }
                Event::Rcpt(r) => {
                    accepted.push(r.address);
                    session.decide(Reply::new(250, "2.1.5", "Recipient ok"));
                }
                Event::DataStart => session.decide(Reply::new(354, "", "End data")),
                Event::Body => body.append(session.body()),
                Event::DataEnd { size } => {
                    body.append(session.body());
                    let (reply, decision) = gateway
                        .data_end(
                            &body,
                            envelope.helo,
                            envelope.sender,
                            &accepted,
                            spf.as_ref(),
                            size,
                        )
                        .await;
                    t.decision = Some(decision);
                    session.decide(reply);
                }
                Event::DataAborted => body.clear(),
                Event::Close => t.closed = true,
                Event::Auth { .. } => session.decide(Reply::new(502, "5.5.1", "No AUTH")),
                Event::Helo { .. } | Event::Reset | Event::StartTls => {}
            }
        }
        let out = std::mem::take(session.output());
        t.reply = replies(&out).pop().or(t.reply);
        let refused = t.reply.as_ref().is_some_and(|r| r.code >= 400);
        if refused || t.closed {
            break;
        }
    }
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
