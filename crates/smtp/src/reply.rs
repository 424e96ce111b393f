//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463), shared by the
//! server session and the delivery client so that a remote reply can be logged and
//! relayed in a DSN exactly as it was received.

use std::fmt;

/// One SMTP reply: a three-digit code, an optional enhanced status code and text lines.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code such as `5.7.1`, without the surrounding text.
    pub status: Option<String>,
    /// Text lines, without the code and without CRLF. Never empty when written.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, status: &str, text: impl Into<String>) -> Self {
        Reply {
            code,
            status: (!status.is_empty()).then(|| status.to_string()),
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply (EHLO), where only the first line carries the text given.
    pub fn multiline(code: u16, lines: Vec<String>) -> Self {
        Reply {
            code,
            status: None,
            lines,
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The wire form, each line ending in CRLF.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_to(&mut out);
        out
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        let count = self.lines.len().max(1);
        for i in 0..count {
            let sep = if i + 1 == count { ' ' } else { '-' };
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            if let Some(status) = &self.status {
                out.extend_from_slice(status.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Parse the enhanced status code off the front of each line of a reply received
    /// from a peer that advertised ENHANCEDSTATUSCODES.
    pub fn from_remote(code: u16, text: &str) -> Self {
        let mut status = None;
        let mut lines = Vec::new();
        for line in text.lines() {
            let mut line = line.trim_end();
            if let Some((first, rest)) = line.split_once(' ')
                && is_enhanced_code(first)
            {
                status.get_or_insert_with(|| first.to_string());
                line = rest;
            } else if is_enhanced_code(line) {
                status.get_or_insert_with(|| line.to_string());
                line = "";
            }
            lines.push(line.to_string());
        }
        Reply {
            code,
            status,
            lines,
        }
    }
}

/// `class.subject.detail` with class 2, 4 or 5 (RFC 3463 §2).
pub fn is_enhanced_code(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(a), Some(b), Some(c), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    matches!(a, "2" | "4" | "5")
        && (1..=3).contains(&b.len())
        && (1..=3).contains(&c.len())
        && b.bytes().chain(c.bytes()).all(|c| c.is_ascii_digit())
}

impl fmt::Display for Reply {
    /// One line for logs: `550 5.7.1 text text`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(status) = &self.status {
            write!(f, " {status}")?;
        }
        for line in &self.lines {
            write!(f, " {line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_single_and_multi() {
        assert_eq!(
            Reply::new(250, "2.1.0", "Sender ok").to_bytes(),
            b"250 2.1.0 Sender ok\r\n"
        );
        let ehlo = Reply::multiline(250, vec!["mx.example".into(), "PIPELINING".into()]);
        assert_eq!(ehlo.to_bytes(), b"250-mx.example\r\n250 PIPELINING\r\n");
    }

    #[test]
    fn remote_reply_keeps_status() {
        let r = Reply::from_remote(550, "5.1.1 No such user\nsecond line");
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.lines, vec!["No such user", "second line"]);
        assert!(r.is_permanent());
        assert!(!is_enhanced_code("6.1.1"));
        assert!(!is_enhanced_code("5.1"));
    }
}
