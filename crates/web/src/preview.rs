//! A held message made safe to look at: its headers as text, its attachments by name, its
//! plain text, and its HTML through ammonia (no script, no remote content, no forms), to
//! be shown in a sandboxed frame under a CSP that forbids loading anything. Everything
//! here is untrusted text: the templates escape it, the frame isolates it.

use mail_parser::{MessageParser, MimeHeaders};
use serde::Serialize;

/// What the preview shows of a message.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Preview {
    pub subject: String,
    /// `Display Name <address>` of the From header.
    pub from: String,
    pub to: String,
    pub date: String,
    pub attachments: Vec<String>,
    pub text: String,
    /// Sanitized HTML body, if the message has one.
    pub html: Option<String>,
}

/// The longest text shown.
const MAX_TEXT: usize = 200_000;

pub fn preview(raw: &[u8]) -> Preview {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Preview {
            text: String::from_utf8_lossy(&raw[..raw.len().min(MAX_TEXT)]).into_owned(),
            ..Preview::default()
        };
    };
    let addr = |a: Option<&mail_parser::Address>| -> String {
        a.map(|a| {
            a.iter()
                .map(|x| match (x.name(), x.address()) {
                    (Some(n), Some(e)) => format!("{n} <{e}>"),
                    (None, Some(e)) => e.to_string(),
                    (Some(n), None) => n.to_string(),
                    (None, None) => String::new(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
    };
    let mut text: String = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    let html = msg
        .html_bodies()
        .next()
        .and_then(|p| p.text_contents())
        .map(sanitize);
    Preview {
        subject: msg.subject().unwrap_or_default().to_string(),
        from: addr(msg.from()),
        to: addr(msg.to()),
        date: msg.date().map(|d| d.to_rfc3339()).unwrap_or_default(),
        attachments: msg
            .attachments()
            .map(|a| a.attachment_name().unwrap_or("(unnamed)").to_string())
            .collect(),
        text,
        html,
    }
}

/// HTML without script, style sheets from elsewhere, forms, frames or remote images:
/// links keep their text and point nowhere but where they say (with no referrer).
pub fn sanitize(html: &str) -> String {
    ammonia::Builder::default()
        .url_schemes(["mailto"].into_iter().collect())
        .link_rel(Some("noopener noreferrer nofollow"))
        .rm_tags(["img"])
        .clean(html)
        .to_string()
}

/// The document shown in the preview frame.
pub fn frame_document(sanitized: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"></head><body>{sanitized}</body></html>"
    )
}

/// The frame's own policy: nothing may load, nothing may run.
pub const FRAME_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; \
     base-uri 'none'; form-action 'none'";
