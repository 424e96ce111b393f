//! Delivery status notifications (RFC 3464 report format, RFC 3461 semantics, RFC 3834
//! auto-reply marking), built with mail-builder. It only builds the message; deciding
//! whom to notify (NOTIFY, null sender) and queueing the DSN belong to the scheduler.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnKind {
    Failure,
    Delay,
    Success,
}

#[derive(Debug, Clone)]
pub struct DsnInput<'a> {
    /// Our host name.
    pub reporting_mta: &'a str,
    pub original_envelope_id: Option<&'a str>,
    /// Unix seconds.
    pub arrival_date: i64,
    /// The envelope sender, who receives this report. Never empty: see `should_bounce`.
    pub original_sender: &'a str,
    /// From: address, e.g. `MAILER-DAEMON@host`.
    pub postmaster: &'a str,
    pub recipients: &'a [DsnRecipient],
    pub kind: DsnKind,
    /// The original message, CRLF line endings.
    pub original: &'a [u8],
    /// RET=FULL: include the whole original (when under `max_original_size`), else
    /// only its header.
    pub return_full: bool,
    pub max_original_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    pub address: String,
    /// ORCPT as received: `rfc822;user@example.org`, or a bare address.
    pub orcpt: Option<String>,
    /// Enhanced status code, e.g. `5.1.1`.
    pub status: String,
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
    pub action: String,
    pub remote_mta: Option<String>,
    /// `smtp; 550 5.1.1 No such user` (a bare reply gets the `smtp; ` type added).
    pub diagnostic: Option<String>,
    pub last_attempt: Option<i64>,
    pub will_retry_until: Option<i64>,
}

/// False for the null sender: a DSN is never sent about a DSN (RFC 5321 §4.5.5), and the
/// caller must not call `build_dsn` then.
pub fn should_bounce(sender: &str) -> bool {
    !sender.is_empty() && sender != "<>"
}

/// The complete DSN message, CRLF throughout, ready to be queued from the null sender.
pub fn build_dsn(input: &DsnInput) -> Vec<u8> {
    let subject = match input.kind {
        DsnKind::Failure => "Undelivered Mail Returned to Sender",
        DsnKind::Delay => "Delayed Mail (still being retried)",
        DsnKind::Success => "Successful Mail Delivery Report",
    };

    let human = MimePart::new(
        ContentType::new("text/plain").attribute("charset", "utf-8"),
        BodyPart::Text(human_text(input).into()),
    );
    let status = status_fields(input).into_bytes();
    let status_encoding = transfer_encoding(&status);
    let status = MimePart::new(
        ContentType::new("message/delivery-status"),
        BodyPart::Binary(status.into()),
    )
    .transfer_encoding(status_encoding);
    let original = original_part(input);

    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        BodyPart::Multipart(vec![human, status, original]),
    );

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let message_id = format!(
        "{now}.{:016x}@{}",
        rand::random::<u64>(),
        input.reporting_mta
    );

    let mut out = Vec::with_capacity(input.original.len().min(input.max_original_size) + 4096);
    MessageBuilder::new()
        .from(("Mail Delivery System", input.postmaster))
        .to(input.original_sender)
        .subject(subject)
        .date(Date::new(now as i64))
        .message_id(MessageId::new(message_id))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(report)
        .serialize(&mut out);
    out
}

fn human_text(input: &DsnInput) -> String {
    let mut text = format!(
        "This is the mail system at host {}.\r\n\r\n",
        input.reporting_mta
    );
    text.push_str(match input.kind {
        DsnKind::Failure => {
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients. The reasons are below.\r\n"
        }
        DsnKind::Delay => {
            "Your message could not be delivered yet to one or more recipients.\r\n\
             It is still in the queue and delivery will be retried; you do not\r\n\
             need to resend it.\r\n"
        }
        DsnKind::Success => "Your message was successfully delivered to the recipients below.\r\n",
    });
    for rcpt in input.recipients {
        text.push_str(&format!("\r\n<{}>: ", one_line(&rcpt.address)));
        match &rcpt.diagnostic {
            Some(diag) => text.push_str(&one_line(diag)),
            None => text.push_str(&format!(
                "{} ({})",
                one_line(&rcpt.action),
                one_line(&rcpt.status)
            )),
        }
        text.push_str("\r\n");
        if let Some(until) = rcpt.will_retry_until {
            text.push_str(&format!(
                "    Will keep trying until {}.\r\n",
                Date::new(until).to_rfc822()
            ));
        }
    }
    text
}

/// The `message/delivery-status` body (RFC 3464 §2.2, §2.3).
fn status_fields(input: &DsnInput) -> String {
    let mut out = String::with_capacity(256 + 256 * input.recipients.len());
    push_field(
        &mut out,
        "Reporting-MTA",
        &format!("dns; {}", input.reporting_mta),
    );
    if let Some(envid) = input.original_envelope_id {
        push_field(&mut out, "Original-Envelope-Id", envid);
    }
    push_field(
        &mut out,
        "Arrival-Date",
        &Date::new(input.arrival_date).to_rfc822(),
    );
    for rcpt in input.recipients {
        out.push_str("\r\n");
        if let Some(orcpt) = &rcpt.orcpt {
            push_field(&mut out, "Original-Recipient", &typed(orcpt, "rfc822"));
        }
        push_field(
            &mut out,
            "Final-Recipient",
            &format!("rfc822; {}", rcpt.address),
        );
        push_field(&mut out, "Action", &rcpt.action);
        push_field(&mut out, "Status", &rcpt.status);
        if let Some(mta) = &rcpt.remote_mta {
            push_field(&mut out, "Remote-MTA", &format!("dns; {mta}"));
        }
        if let Some(diag) = &rcpt.diagnostic {
            push_field(&mut out, "Diagnostic-Code", &typed(diag, "smtp"));
        }
        if let Some(at) = rcpt.last_attempt {
            push_field(&mut out, "Last-Attempt-Date", &Date::new(at).to_rfc822());
        }
        if let (DsnKind::Delay, Some(until)) = (input.kind, rcpt.will_retry_until) {
            push_field(&mut out, "Will-Retry-Until", &Date::new(until).to_rfc822());
        }
    }
    out
}

/// The original message or its header, as the third part.
fn original_part<'a>(input: &DsnInput<'a>) -> MimePart<'a> {
    let full = input.return_full && input.original.len() <= input.max_original_size;
    let (content_type, body): (&str, Cow<'a, [u8]>) = if full {
        ("message/rfc822", Cow::Borrowed(input.original))
    } else {
        (
            "text/rfc822-headers",
            Cow::Borrowed(header_block(input.original, input.max_original_size)),
        )
    };
    let encoding = transfer_encoding(&body);
    MimePart::new(ContentType::new(content_type), BodyPart::Binary(body))
        .transfer_encoding(encoding)
}

/// The header of `message` (up to and including the blank line's first CRLF), cut at a
/// line boundary when longer than `max` (when `max` is not zero).
fn header_block(message: &[u8], max: usize) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |p| p + 2);
    let mut header = &message[..end];
    if max > 0 && header.len() > max {
        let cut = header[..max]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        header = &header[..cut];
    }
    header
}

fn transfer_encoding(body: &[u8]) -> &'static str {
    if body.is_ascii() { "7bit" } else { "8bit" }
}

/// `type; value`, adding `default_type` when the value has none.
fn typed(value: &str, default_type: &str) -> String {
    match value.split_once(';') {
        Some((kind, rest))
            if !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            format!("{kind}; {}", rest.trim_start())
        }
        _ => format!("{default_type}; {value}"),
    }
}

/// Control characters (a multi-line remote reply, a hostile address) must not start a
/// new field.
fn one_line(value: &str) -> String {
    value
        .split(|c: char| c.is_control())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes `Name: value` folded at spaces near 78 columns (RFC 5322 §2.2.3).
fn push_field(out: &mut String, name: &str, value: &str) {
    let value = one_line(value);
    let mut column = name.len() + 2;
    out.push_str(name);
    out.push(':');
    for (i, word) in value.split(' ').enumerate() {
        if i > 0 && column + 1 + word.len() > 78 {
            out.push_str("\r\n ");
            column = 1;
        } else {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += word.len();
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders, PartType};

    const ORIGINAL: &[u8] = b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hello\r\n\
        Message-ID: <orig@example.org>\r\n\r\nHi Bob,\r\n.leading dot\r\n";

    fn recipients() -> Vec<DsnRecipient> {
        vec![
            DsnRecipient {
                address: "bob@example.net".into(),
                orcpt: Some("rfc822;Bob@Example.net".into()),
                status: "5.1.1".into(),
                action: "failed".into(),
                remote_mta: Some("mx.example.net".into()),
                diagnostic: Some("smtp; 550 5.1.1 No such user\r\nInjected: header".into()),
                last_attempt: Some(1_700_000_100),
                will_retry_until: None,
            },
            DsnRecipient {
                address: "carol@example.net".into(),
                orcpt: None,
                status: "4.4.1".into(),
                action: "delayed".into(),
                remote_mta: None,
                diagnostic: Some("451 4.4.1 connection refused".into()),
                last_attempt: Some(1_700_000_100),
                will_retry_until: Some(1_700_400_000),
            },
        ]
    }

    fn input<'a>(rcpts: &'a [DsnRecipient], kind: DsnKind, full: bool) -> DsnInput<'a> {
        DsnInput {
            reporting_mta: "gw.example.org",
            original_envelope_id: Some("env-42"),
            arrival_date: 1_700_000_000,
            original_sender: "alice@example.org",
            postmaster: "MAILER-DAEMON@gw.example.org",
            recipients: rcpts,
            kind,
            original: ORIGINAL,
            return_full: full,
            max_original_size: 1 << 20,
        }
    }

    fn assert_crlf(raw: &[u8]) {
        for (i, &b) in raw.iter().enumerate() {
            if b == b'\n' {
                assert_eq!(raw.get(i.wrapping_sub(1)), Some(&b'\r'), "bare LF at {i}");
            }
        }
    }

    #[test]
    fn failure_dsn_structure() {
        let rcpts = recipients();
        let raw = build_dsn(&input(&rcpts[..1], DsnKind::Failure, true));
        assert_crlf(&raw);
        let msg = MessageParser::default().parse(&raw).expect("DSN parses");
        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        assert_eq!(
            msg.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert!(
            msg.message_id()
                .is_some_and(|id| id.ends_with("@gw.example.org"))
        );
        assert!(msg.date().is_some());
        let from = msg.from().and_then(|a| a.first()).and_then(|a| a.address());
        assert_eq!(from, Some("MAILER-DAEMON@gw.example.org"));
        let to = msg.to().and_then(|a| a.first()).and_then(|a| a.address());
        assert_eq!(to, Some("alice@example.org"));

        let root = msg.root_part();
        let ct = root.content_type().expect("content type");
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let parts = root.sub_parts().expect("three parts");
        assert_eq!(parts.len(), 3);

        let text = msg.parts[parts[0] as usize]
            .text_contents()
            .expect("text part");
        assert!(text.contains("<bob@example.net>: smtp; 550 5.1.1 No such user Injected: header"));

        let status_part = &msg.parts[parts[1] as usize];
        assert_eq!(
            status_part.content_type().and_then(|c| c.subtype()),
            Some("delivery-status")
        );
        let status = std::str::from_utf8(status_part.contents()).expect("ASCII fields");
        for field in [
            "Reporting-MTA: dns; gw.example.org\r\n",
            "Original-Envelope-Id: env-42\r\n",
            "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n",
            "\r\n\r\nOriginal-Recipient: rfc822; Bob@Example.net\r\n",
            "Final-Recipient: rfc822; bob@example.net\r\n",
            "Action: failed\r\n",
            "Status: 5.1.1\r\n",
            "Remote-MTA: dns; mx.example.net\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 No such user Injected: header\r\n",
            "Last-Attempt-Date: ",
        ] {
            assert!(status.contains(field), "missing {field:?} in {status}");
        }
        assert!(!status.contains("Will-Retry-Until"));
        assert!(!status.contains("\r\nInjected:"));

        match &msg.parts[parts[2] as usize].body {
            PartType::Message(original) => {
                assert_eq!(original.subject(), Some("hello"));
                assert!(original.raw_message().ends_with(b".leading dot\r\n"));
            }
            other => panic!("expected message/rfc822, got {other:?}"),
        }
    }

    #[test]
    fn delay_dsn_headers_only() {
        let rcpts = recipients();
        let raw = build_dsn(&input(&rcpts[1..], DsnKind::Delay, false));
        assert_crlf(&raw);
        let msg = MessageParser::default().parse(&raw).expect("DSN parses");
        assert_eq!(msg.subject(), Some("Delayed Mail (still being retried)"));
        let parts = msg.root_part().sub_parts().expect("parts");
        assert!(
            msg.parts[parts[0] as usize]
                .text_contents()
                .expect("text")
                .contains("Will keep trying until")
        );
        let status = std::str::from_utf8(msg.parts[parts[1] as usize].contents()).expect("ASCII");
        assert!(status.contains("Action: delayed\r\n"));
        assert!(status.contains("Diagnostic-Code: smtp; 451 4.4.1 connection refused\r\n"));
        assert!(status.contains("Will-Retry-Until: "));
        assert!(!status.contains("Original-Recipient"));

        let original = &msg.parts[parts[2] as usize];
        assert_eq!(
            original.content_type().and_then(|c| c.subtype()),
            Some("rfc822-headers")
        );
        let headers = original.text_contents().expect("headers as text");
        assert!(headers.contains("Subject: hello"));
        assert!(!headers.contains("Hi Bob"));
    }

    #[test]
    fn oversized_original_falls_back_to_headers() {
        let rcpts = recipients();
        let mut inp = input(&rcpts[..1], DsnKind::Failure, true);
        inp.max_original_size = 100;
        let raw = build_dsn(&inp);
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("text/rfc822-headers"));
        assert!(!text.contains("Hi Bob"));
    }

    #[test]
    fn helpers() {
        assert!(!should_bounce(""));
        assert!(should_bounce("alice@example.org"));
        let mut out = String::new();
        push_field(
            &mut out,
            "Diagnostic-Code",
            &format!("smtp; 550 {}", "word ".repeat(30)),
        );
        assert!(out.lines().all(|l| l.len() <= 78));
        assert!(out.contains("\r\n word"));
        assert_eq!(
            header_block(b"A: 1\r\nB: 2\r\n\r\nbody", 0),
            b"A: 1\r\nB: 2\r\n"
        );
        assert_eq!(header_block(b"A: 1\r\nB: 2\r\n\r\nbody", 8), b"A: 1\r\n");
    }
}
