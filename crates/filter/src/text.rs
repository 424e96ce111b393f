//! The text of a message as checks read it: MIME-decoded, HTML turned to text, with the
//! URLs it links to. Parsed once per message and shared by the spam classifier, the
//! content rules and URIBL lookups.
//! PLACEHOLDER: the classifier work replaces this with the real extraction.

/// What content checks read.
#[derive(Debug, Clone, Default)]
pub struct MessageText {
    pub subject: String,
    /// Every text part, decoded; HTML parts as plain text.
    pub body: String,
    /// Header fields as (lower-case name, unfolded value), in message order.
    pub headers: Vec<(String, String)>,
    /// URLs found in the body (text and HTML links), deduplicated, at most a bounded number.
    pub urls: Vec<String>,
}

pub fn extract(msg: &mail_parser::Message<'_>) -> MessageText {
    MessageText {
        subject: msg.subject().unwrap_or_default().to_string(),
        ..Default::default()
    }
}
