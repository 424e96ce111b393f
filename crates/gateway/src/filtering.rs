//! The filter policy of a running gateway: the administrator's rules and lists from the
//! store (part of the policy snapshot), how list entries match a transaction, and how a
//! verdict's changes are made to a message (subject tag, attachment removal).

use ipnet::IpNet;
use mail_parser::MimeHeaders;
use portcullis_filter::lexical::{self, ContentEntry, ContentLists, Field};
use portcullis_filter::rules::{Change, Rule, RuleSet, SpamThresholds, default_rules};
use portcullis_smtp::Reply;
use portcullis_store::{ContentRow, ListEntry};
use std::net::IpAddr;

/// Rules ready to run and lists ready to match.
pub struct FilterPolicy {
    pub rules: RuleSet,
    pub lists: Lists,
    pub content: ContentLists,
}

impl std::fmt::Debug for FilterPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FilterPolicy({} rules)", self.rules.len())
    }
}

impl Default for FilterPolicy {
    fn default() -> Self {
        FilterPolicy::build(&[], Vec::new(), &[], &SpamThresholds::default())
    }
}

impl FilterPolicy {
    /// The stored rules (name, JSON) first, then the defaults. A stored rule that does not
    /// parse or validate is left out with an error in the log; the CLI refuses such rules,
    /// so only a hand-edited store has them.
    pub fn build(
        rules: &[(String, String)],
        lists: Vec<ListEntry>,
        content: &[ContentRow],
        t: &SpamThresholds,
    ) -> Self {
        let mut all: Vec<Rule> = Vec::new();
        for (name, json) in rules {
            match serde_json::from_str::<Rule>(json) {
                Ok(r) => match RuleSet::new(vec![r.clone()]) {
                    Ok(_) => all.push(r),
                    Err(e) => tracing::error!(rule = %name, error = %e, "stored rule left out"),
                },
                Err(e) => {
                    tracing::error!(rule = %name, error = %e, "stored rule is corrupt; left out")
                }
            }
        }
        all.extend(default_rules(t));
        let rules = RuleSet::new(all).unwrap_or_else(|e| {
            tracing::error!(error = %e, "rules do not compile; running the defaults only");
            // Config::validate checks the defaults, so this is only reached by a bug.
            RuleSet::new(default_rules(t))
                .or_else(|_| RuleSet::new(Vec::new()))
                .unwrap_or_else(|_| unreachable!("an empty rule set always compiles"))
        });
        // Entries the CLI checked; one that no longer compiles is left out, logged.
        let entries: Vec<ContentEntry> = content
            .iter()
            .filter_map(|r| {
                let e = content_entry(r)?;
                match lexical::validate(&e) {
                    Ok(()) => Some(e),
                    Err(err) => {
                        tracing::error!(list = %r.list, error = %err, "content pattern left out");
                        None
                    }
                }
            })
            .collect();
        let content = ContentLists::new(entries).unwrap_or_else(|e| {
            tracing::error!(error = %e, "content lists do not compile; none used");
            ContentLists::default()
        });
        FilterPolicy {
            rules,
            lists: Lists::new(lists),
            content,
        }
    }
}

/// A stored content pattern as the filter's entry; None for an unknown field.
pub fn content_entry(r: &ContentRow) -> Option<ContentEntry> {
    Some(ContentEntry {
        list: r.list.clone(),
        pattern: r.pattern.clone(),
        regex: r.regex,
        field: Field::parse(&r.field)?,
        score: r.score,
    })
}

/// Allow, block and valid-recipient lists, parsed.
#[derive(Debug, Default)]
pub struct Lists {
    entries: Vec<(ListEntry, Option<IpNet>)>,
}

/// Lowercased domain of an address.
fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

/// An address value matches a whole address (`user@example.com`) or a domain
/// (`example.com` or `@example.com`, subdomains included).
fn address_matches(value: &str, address: &str) -> bool {
    let address = address.to_ascii_lowercase();
    if let Some(domain) = value
        .strip_prefix('@')
        .or((!value.contains('@')).then_some(value))
    {
        let d = domain_of(&address);
        d == domain || d.ends_with(&format!(".{domain}"))
    } else {
        value == address
    }
}

impl Lists {
    pub fn new(entries: Vec<ListEntry>) -> Self {
        let entries = entries
            .into_iter()
            .map(|e| {
                let net = if e.field == "ip" {
                    e.value
                        .parse::<IpNet>()
                        .ok()
                        .or_else(|| e.value.parse::<IpAddr>().ok().map(IpNet::from))
                } else {
                    None
                };
                (e, net)
            })
            .collect();
        Lists { entries }
    }

    /// Does an entry's scope cover this party (a recipient inbound, the sender outbound)?
    fn in_scope(e: &ListEntry, party: &str) -> bool {
        e.scope.is_empty() || address_matches(&e.scope, party)
    }

    fn hit(
        &self,
        kind: &str,
        ip: IpAddr,
        sender: &str,
        recipient: &str,
        party: &str,
    ) -> Option<&ListEntry> {
        self.entries
            .iter()
            .filter(|(e, _)| e.kind == kind && Self::in_scope(e, party))
            .find(|(e, net)| match e.field.as_str() {
                "ip" => net.is_some_and(|n| n.contains(&ip)),
                "sender" => !sender.is_empty() && address_matches(&e.value, sender),
                "recipient" => address_matches(&e.value, recipient),
                _ => false,
            })
            .map(|(e, _)| e)
    }

    /// A recipient, checked against the lists: a block gives the refusal, an allow entry
    /// that matched is returned by its field (`ip`, `sender`, `recipient`); the caller
    /// decides whether a sender entry may count (an envelope sender can be forged).
    pub fn check(
        &self,
        ip: IpAddr,
        sender: &str,
        recipient: &str,
        inbound: bool,
    ) -> Result<Option<&str>, Reply> {
        let party = if inbound { recipient } else { sender };
        if let Some(e) = self.hit("block", ip, sender, recipient, party) {
            tracing::info!(field = %e.field, value = %e.value, scope = %e.scope, "block list hit");
            return Err(match e.field.as_str() {
                "ip" => Reply::new(554, "5.7.1", "Client address blocked by policy"),
                "sender" => Reply::new(550, "5.7.1", "Sender address blocked by policy"),
                _ => Reply::new(550, "5.7.1", "Recipient address blocked by policy"),
            });
        }
        if inbound {
            let domain = domain_of(recipient);
            let mut valid = self
                .entries
                .iter()
                .filter(|(e, _)| e.kind == "valid" && e.scope == domain)
                .peekable();
            if valid.peek().is_some()
                && !valid.any(|(e, _)| e.value == recipient.to_ascii_lowercase())
            {
                return Err(Reply::new(
                    550,
                    "5.1.1",
                    "Recipient address rejected: user unknown",
                ));
            }
        }
        Ok(self
            .hit("allow", ip, sender, recipient, party)
            .map(|e| e.field.as_str()))
    }
}

/// What a verdict's changes made of a message.
#[derive(Debug, Default)]
pub struct Changed {
    /// Header fields to add, for the envelope's prepend.
    pub headers: String,
    /// The rewritten message, when a subject tag or a removed attachment needed one
    /// (None: the stored body stands).
    pub body: Option<Vec<u8>>,
    /// Attachments a rule said to remove that could not be removed (inside an attached
    /// message, or the message's only part): the caller must not deliver them.
    pub not_stripped: Vec<String>,
    /// The rule that asked for them to be removed.
    pub strip_rule: Option<String>,
}

/// Apply a verdict's changes to a message.
pub fn apply_changes(raw: &[u8], changes: &[Change]) -> Changed {
    let mut headers = String::new();
    let mut body: Option<Vec<u8>> = None;
    let mut not_stripped = Vec::new();
    let mut strip_rule = None;
    for c in changes {
        match c {
            Change::AddHeader(name, value) => {
                headers.push_str(&format!("{name}: {value}\r\n"));
            }
            Change::TagSubject(tag) => {
                let current = body.as_deref().unwrap_or(raw);
                match tag_subject(current, tag) {
                    Some(new) => body = Some(new),
                    None => headers.push_str(&format!("Subject: {tag}\r\n")),
                }
            }
            Change::StripAttachments {
                names,
                notice,
                rule,
            } => {
                let current = body.as_deref().unwrap_or(raw);
                let stripped = strip_attachments(current, names, notice);
                if !stripped.missed.is_empty() {
                    strip_rule.get_or_insert_with(|| rule.clone());
                }
                not_stripped.extend(stripped.missed);
                if let Some(new) = stripped.message {
                    body = Some(new);
                }
            }
        }
    }
    Changed {
        headers,
        body,
        not_stripped,
        strip_rule,
    }
}

/// Header fields an outsider must not be able to set: `Authentication-Results` claiming
/// our authserv-id (RFC 8601 §5), and the spam verdict fields we write ourselves. A message
/// from outside with any of them comes back without them; None when it has none.
pub fn remove_forged_fields(raw: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    let end = header_end(raw);
    let mut out: Option<Vec<u8>> = None;
    let mut pos = 0;
    while pos < end {
        // A field runs to the next line that does not start with white space.
        let mut field_end = pos;
        loop {
            field_end = memchr::memmem::find(&raw[field_end..end], b"\r\n")
                .map_or(end, |p| field_end + p + 2);
            if field_end >= end || !matches!(raw[field_end], b' ' | b'\t') {
                break;
            }
        }
        let field = &raw[pos..field_end];
        let forged = field_named(field, "authentication-results")
            .is_some_and(|v| authserv_id_of(v).eq_ignore_ascii_case(authserv_id))
            || ["x-spam-status", "x-spam-score", "x-spam-flag"]
                .iter()
                .any(|n| field_named(field, n).is_some());
        match (&mut out, forged) {
            (None, true) => out = Some(raw[..pos].to_vec()),
            (Some(o), false) => o.extend_from_slice(field),
            _ => {}
        }
        pos = field_end;
    }
    if let Some(o) = &mut out {
        o.extend_from_slice(&raw[end..]);
    }
    out
}

/// The authserv-id an `Authentication-Results` value starts with (RFC 8601 §2.2): after
/// folding white space and comments, a token or a quoted string.
fn authserv_id_of(value: &[u8]) -> String {
    // Skip folding white space and (nested) comments.
    let mut i = 0;
    loop {
        while i < value.len() && value[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < value.len() && value[i] == b'(' {
            let mut depth = 0;
            while i < value.len() {
                match value[i] {
                    b'\\' => i += 1,
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            continue;
        }
        break;
    }
    let mut id = Vec::new();
    if value.get(i) == Some(&b'"') {
        i += 1;
        while i < value.len() && value[i] != b'"' {
            if value[i] == b'\\' {
                i += 1;
            }
            if let Some(&b) = value.get(i) {
                id.push(b);
            }
            i += 1;
        }
    } else {
        while i < value.len()
            && !matches!(value[i], b';' | b'(' | b'"')
            && !value[i].is_ascii_whitespace()
        {
            id.push(value[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&id).into_owned()
}

/// The value of a header field if its name is `name` (case-insensitive).
fn field_named<'a>(field: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let colon = memchr::memchr(b':', field)?;
    let (n, v) = field.split_at(colon);
    (n.trim_ascii_end().eq_ignore_ascii_case(name.as_bytes())).then(|| &v[1..])
}

fn header_end(raw: &[u8]) -> usize {
    if raw.starts_with(b"\r\n") {
        return 0;
    }
    memchr::memmem::find(raw, b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(raw.len())
}

/// Put `tag` in front of the first Subject field's value; None when there is none.
pub fn tag_subject(raw: &[u8], tag: &str) -> Option<Vec<u8>> {
    let end = header_end(raw);
    let mut pos = 0;
    while pos < end {
        let line_end = memchr::memmem::find(&raw[pos..end], b"\r\n").map_or(end, |p| pos + p + 2);
        let line = &raw[pos..line_end];
        // `Subject:` or the obsolete `Subject :` (RFC 5322 §4.5).
        let colon = memchr::memchr(b':', line)
            .filter(|&c| line[..c].trim_ascii_end().eq_ignore_ascii_case(b"subject"));
        if let Some(colon) = colon {
            let value = pos + colon + 1;
            let mut at = value;
            while at < line_end && raw[at] == b' ' {
                at += 1;
            }
            // Already tagged: leave it, so a message scanned twice is not tagged twice.
            if raw[at..line_end].starts_with(tag.as_bytes()) {
                return Some(raw.to_vec());
            }
            let mut out = Vec::with_capacity(raw.len() + tag.len() + 1);
            out.extend_from_slice(&raw[..value]);
            out.push(b' ');
            out.extend_from_slice(tag.as_bytes());
            out.push(b' ');
            out.extend_from_slice(&raw[at..]);
            return Some(out);
        }
        pos = line_end;
    }
    None
}

/// The outcome of [`strip_attachments`].
#[derive(Debug, Default)]
pub struct Stripped {
    /// The message without them; None when nothing was removed.
    pub message: Option<Vec<u8>>,
    /// Named attachments that are not top-level parts that can be cut out (inside an
    /// attached message, or the whole message), left in place.
    pub missed: Vec<String>,
}

/// Replace the named top-level attachments (all when `names` is empty) by a short text
/// part carrying the notice.
pub fn strip_attachments(raw: &[u8], names: &[String], notice: &str) -> Stripped {
    let Some(msg) = mail_parser::MessageParser::default().parse(raw) else {
        return Stripped {
            message: None,
            missed: names.to_vec(),
        };
    };
    let mut missed = Vec::new();
    let mut cuts: Vec<(usize, usize, String)> = Vec::new();
    for part in msg.attachments() {
        let name = part.attachment_name().unwrap_or("").to_string();
        if !(names.is_empty() || names.contains(&name)) {
            continue;
        }
        let (start, end) = (part.offset_header as usize, part.offset_end as usize);
        // A message without MIME structure has its body as the only "part": its header
        // section cannot be cut away.
        if start > 0 && start < end && end <= raw.len() {
            cuts.push((start, end, name));
        } else {
            missed.push(name);
        }
    }
    // Names the rule matched that are not top-level attachments (inside an attached
    // message): they would go through untouched.
    for n in names {
        if !cuts.iter().any(|c| &c.2 == n) && !missed.contains(n) {
            missed.push(n.clone());
        }
    }
    if cuts.is_empty() {
        return Stripped {
            message: None,
            missed,
        };
    }
    cuts.sort_by_key(|c| c.0);
    let mut out = Vec::with_capacity(raw.len());
    let mut pos = 0;
    for (start, end, name) in cuts {
        if start < pos {
            continue;
        }
        out.extend_from_slice(&raw[pos..start]);
        let safe: String = name
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .take(200)
            .collect();
        out.extend_from_slice(
            format!(
                "Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline\r\n\r\n{notice}\r\nRemoved: {safe}\r\n"
            )
            .as_bytes(),
        );
        pos = end;
    }
    out.extend_from_slice(&raw[pos..]);
    Stripped {
        message: Some(out),
        missed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, field: &str, value: &str, scope: &str) -> ListEntry {
        ListEntry {
            kind: kind.into(),
            field: field.into(),
            value: value.into(),
            scope: scope.into(),
            comment: String::new(),
        }
    }

    #[test]
    fn lists_block_allow_and_valid() {
        let lists = Lists::new(vec![
            entry("block", "ip", "192.0.2.0/24", ""),
            entry("block", "sender", "spam.test", ""),
            entry(
                "allow",
                "sender",
                "friend@partner.test",
                "boss@example.test",
            ),
            entry("valid", "recipient", "boss@example.test", "example.test"),
            entry("valid", "recipient", "info@example.test", "example.test"),
        ]);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let bad_ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(
            lists
                .check(bad_ip, "a@b.test", "info@example.test", true)
                .unwrap_err()
                .code,
            554
        );
        let r = lists
            .check(ip, "x@mail.spam.test", "info@example.test", true)
            .unwrap_err();
        assert_eq!((r.code, r.status.as_deref().unwrap_or("")), (550, "5.7.1"));
        let r = lists
            .check(ip, "a@b.test", "nobody@example.test", true)
            .unwrap_err();
        assert_eq!((r.code, r.status.as_deref().unwrap_or("")), (550, "5.1.1"));
        // A domain without a valid list accepts anyone.
        assert_eq!(lists.check(ip, "a@b.test", "x@other.test", true), Ok(None));
        // Allowed for the boss only.
        assert_eq!(
            lists.check(ip, "Friend@partner.test", "boss@example.test", true),
            Ok(Some("sender"))
        );
        assert_eq!(
            lists.check(ip, "friend@partner.test", "info@example.test", true),
            Ok(None)
        );
    }

    #[test]
    fn forged_fields_removed() {
        let raw = b"Received: x\r\nAuthentication-Results: gw.test;\r\n\tspf=pass\r\nAuthentication-Results: other.test; dkim=pass\r\nX-Spam-Status: No\r\nSubject: hi\r\n\r\nAuthentication-Results: gw.test; body\r\n";
        let out = remove_forged_fields(raw, "GW.test").unwrap();
        assert_eq!(
            out,
            b"Received: x\r\nAuthentication-Results: other.test; dkim=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: gw.test; body\r\n".to_vec()
        );
        assert!(remove_forged_fields(b"Subject: x\r\n\r\nbody", "gw.test").is_none());
        // Comments and quotes before or around the authserv-id do not hide it.
        for evasive in [
            &b"Authentication-Results: (x) gw.test; dmarc=pass\r\n\r\nb"[..],
            b"Authentication-Results: \"gw.test\"; dmarc=pass\r\n\r\nb",
            b"Authentication-Results:\r\n (a (nested) one)\r\n gw.test(x); dmarc=pass\r\n\r\nb",
        ] {
            assert_eq!(
                remove_forged_fields(evasive, "gw.test").unwrap(),
                b"\r\nb".to_vec(),
                "{evasive:?}"
            );
        }
        assert!(
            remove_forged_fields(
                b"Authentication-Results: gw.test.evil; x\r\n\r\nb",
                "gw.test"
            )
            .is_none()
        );
        let v1 = b"Authentication-Results: gw.test 1; spf=pass\r\n\r\n";
        assert_eq!(
            remove_forged_fields(v1, "gw.test").unwrap(),
            b"\r\n".to_vec()
        );
    }

    #[test]
    fn subject_tagging() {
        let raw = b"From: a@b\r\nsubject:  Hello\r\n\r\nSubject: not this\r\n";
        let out = tag_subject(raw, "[SPAM]").unwrap();
        assert_eq!(
            out,
            b"From: a@b\r\nsubject: [SPAM] Hello\r\n\r\nSubject: not this\r\n".to_vec()
        );
        assert_eq!(tag_subject(&out, "[SPAM]").unwrap(), out);
        assert!(tag_subject(b"From: a@b\r\n\r\nSubject: body\r\n", "[SPAM]").is_none());
        let c = apply_changes(
            b"From: a@b\r\n\r\nx\r\n",
            &[Change::TagSubject("[SPAM]".into())],
        );
        assert_eq!(c.headers, "Subject: [SPAM]\r\n");
        assert!(c.body.is_none());
        // The obsolete form with space before the colon is the same field.
        let obs = tag_subject(b"Subject : old\r\n\r\nx", "[T]").unwrap();
        assert_eq!(obs, b"Subject : [T] old\r\n\r\nx".to_vec());
        // No header section: nothing in the body is taken for a Subject.
        assert!(tag_subject(b"\r\nSubject: body\r\n", "[T]").is_none());
    }

    #[test]
    fn attachment_stripping() {
        let raw = concat!(
            "From: a@b.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n",
            "Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n",
            "--BB\r\nContent-Type: text/plain\r\n\r\nHello there\r\n",
            "--BB\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n",
            "Content-Disposition: attachment; filename=\"evil.exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
            "--BB\r\nContent-Type: application/pdf; name=\"ok.pdf\"\r\n",
            "Content-Disposition: attachment; filename=\"ok.pdf\"\r\n\r\n%PDF-1.4 fake\r\n",
            "--BB--\r\n"
        )
        .as_bytes();
        let stripped = strip_attachments(raw, &["evil.exe".into()], "Removed by policy.");
        assert!(stripped.missed.is_empty());
        let out = stripped.message.unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("TVqQ"), "{text}");
        assert!(text.contains("Removed: evil.exe"));
        assert!(text.contains("%PDF-1.4 fake"));
        assert!(text.contains("Hello there"));
        // Still a well-formed message with three parts.
        let parsed = mail_parser::MessageParser::default().parse(&out).unwrap();
        assert_eq!(parsed.attachments().count(), 1);
        assert!(parsed.body_text(0).unwrap().contains("Hello there"));
        let s = strip_attachments(raw, &["nested.exe".into()], "x");
        assert!(s.message.is_none() && s.missed == vec!["nested.exe".to_string()]);
        assert!(
            strip_attachments(b"Subject: x\r\n\r\nplain\r\n", &[], "x")
                .message
                .is_none()
        );
        // A message that is one attachment cannot lose it: reported, not ignored.
        let single = b"Subject: x\r\nContent-Type: application/octet-stream; name=\"a.exe\"\r\nContent-Disposition: attachment; filename=\"a.exe\"\r\n\r\nMZ\r\n";
        assert_eq!(
            strip_attachments(single, &["a.exe".into()], "x").missed,
            vec!["a.exe".to_string()]
        );
    }
}
