//! The content pipeline: parse the message once, then run every content check over it
//! (spam classifier and heuristics, attachment facts, content rules). The same pipeline
//! serves SMTP and `portcullis corpus train|eval`, so what the corpus tools measure is what
//! the gateway does. Checks that wait on the network (antivirus, URIBL) run beside it in
//! the gateway, on the report's parts.

use crate::attachments::{self, AttachmentFact, AttachmentLimits};
use crate::finding::Finding;
use crate::spam::SpamChecker;
use crate::text::{self, MessageText};

/// What the content checks found in one message.
#[derive(Debug, Clone, Default)]
pub struct ContentReport {
    pub findings: Vec<Finding>,
    pub attachments: Vec<AttachmentFact>,
    pub text: MessageText,
    pub message_id: Option<String>,
}

#[derive(Debug, Default)]
pub struct ContentScanner {
    pub spam: SpamChecker,
    pub attachment_limits: AttachmentLimits,
}

impl ContentScanner {
    pub fn scan(&self, raw: &[u8]) -> ContentReport {
        let Some(msg) = mail_parser::MessageParser::default().parse(raw) else {
            return ContentReport {
                findings: vec![Finding::new("content.unparsable", 0.0, "no header section")],
                ..Default::default()
            };
        };
        let text = text::extract(&msg);
        let mut findings = self.spam.check(&msg, &text);
        let attachments = attachments::facts(&msg, &self.attachment_limits);
        findings.extend(attachments::findings(&attachments));
        ContentReport {
            findings,
            attachments,
            message_id: msg.message_id().map(str::to_string),
            text,
        }
    }
}
