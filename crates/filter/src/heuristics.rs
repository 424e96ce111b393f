//! Heuristic rules that need no training: forged or impossible headers, obfuscated words,
//! shouting subjects, hidden HTML text, forms, URL shorteners and display names that
//! impersonate a protected domain. Each gives a modest `spam.*` finding; none makes a
//! message spam alone (the classifier or other rules must agree), so a legitimate sender
//! with one odd habit is not refused for it.
//!
//! These run on every message beside the older checks of [`crate::spam`]; they read the
//! parsed message and its extracted text and never touch the network.

use crate::finding::Finding;
use crate::text::{self, MessageText};

/// Scores of these rules.
pub mod scores {
    pub const DATE_MALFORMED: f64 = 1.0;
    pub const MESSAGE_ID_MALFORMED: f64 = 1.0;
    pub const SUBJECT_PUNCTUATION: f64 = 0.5;
    pub const OBFUSCATED_WORD: f64 = 1.5;
    pub const URL_SHORTENER: f64 = 0.5;
    pub const HTML_HIDDEN_TEXT: f64 = 1.0;
    /// A fact for rules, not a score: legitimate newsletters carry search and
    /// subscription forms as often as spam carries login forms.
    pub const HTML_FORM: f64 = 0.0;
    pub const IMPERSONATION: f64 = 3.0;
}

/// Link-shortening services: the target is hidden until the link is followed.
const SHORTENERS: [&str; 20] = [
    "bit.ly",
    "bitly.com",
    "tinyurl.com",
    "goo.gl",
    "t.co",
    "ow.ly",
    "is.gd",
    "v.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "tiny.cc",
    "rb.gy",
    "t.ly",
    "s.id",
    "qrco.de",
    "lnkd.in",
    "shorte.st",
    "adf.ly",
];

/// Words spam hides from filters by writing them with digits, symbols or separators.
const HIDDEN_WORDS: [&str; 32] = [
    "viagra",
    "cialis",
    "levitra",
    "pharmacy",
    "prescription",
    "casino",
    "mortgage",
    "refinance",
    "credit",
    "loan",
    "money",
    "cash",
    "free",
    "offer",
    "winner",
    "prize",
    "bonus",
    "discount",
    "cheap",
    "rolex",
    "replica",
    "enlarge",
    "penis",
    "weight",
    "diet",
    "investment",
    "bitcoin",
    "password",
    "account",
    "verify",
    "paypal",
    "urgent",
];

/// Every rule of this module over one message. `protected` names the domains whose
/// users a display name must not claim to be (the gateway's own domains).
pub fn check(
    msg: &mail_parser::Message<'_>,
    text: &MessageText,
    protected: &[String],
) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(detail) = date_malformed(msg, text) {
        out.push(Finding::new(
            "spam.date_malformed",
            scores::DATE_MALFORMED,
            detail,
        ));
    }
    if let Some(id) = text.header("message-id")
        && !message_id_well_formed(id)
    {
        out.push(Finding::new(
            "spam.message_id_malformed",
            scores::MESSAGE_ID_MALFORMED,
            format!("Message-ID {}", crate::text::cut(id, 60)),
        ));
    }
    if let Some(detail) = subject_punctuation(&text.subject) {
        out.push(Finding::new(
            "spam.subject_punctuation",
            scores::SUBJECT_PUNCTUATION,
            detail,
        ));
    }
    if let Some(word) = obfuscated_word(&text.subject).or_else(|| obfuscated_word(&text.body)) {
        out.push(Finding::new(
            "spam.obfuscated_word",
            scores::OBFUSCATED_WORD,
            format!("{} written as {}", word.0, crate::text::cut(&word.1, 40)),
        ));
    }
    if let Some(url) = text.urls.iter().find(|u| is_shortened(u)) {
        out.push(Finding::new(
            "spam.url_shortener",
            scores::URL_SHORTENER,
            format!("shortened link {}", crate::text::cut(url, 80)),
        ));
    }
    if text.parts.hidden_text > 0 {
        out.push(Finding::new(
            "spam.html_hidden_text",
            scores::HTML_HIDDEN_TEXT,
            format!("{} hidden HTML elements with text", text.parts.hidden_text),
        ));
    }
    if text.parts.forms > 0 {
        out.push(Finding::new(
            "spam.html_form",
            scores::HTML_FORM,
            format!("{} HTML forms", text.parts.forms),
        ));
    }
    if let Some(detail) = impersonation(msg, protected) {
        out.push(Finding::new(
            "spam.impersonation",
            scores::IMPERSONATION,
            detail,
        ));
    }
    out
}

/// A Date field that no mail program writes: unreadable, or a year before e-mail was
/// common or far beyond any clock error.
fn date_malformed(msg: &mail_parser::Message<'_>, text: &MessageText) -> Option<String> {
    let raw = text.header("date")?;
    match msg.date() {
        None => Some(format!("unreadable Date {}", crate::text::cut(raw, 40))),
        Some(d)
            if !(1990..=2099).contains(&d.year)
                || !d.is_valid()
                || d.day > days_in_month(d.year, d.month) =>
        {
            Some(format!("impossible Date {}", crate::text::cut(raw, 40)))
        }
        Some(_) => None,
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

/// `<local@domain>` without spaces, as every mail program writes it. A domain of one
/// label is fine: many clients write their machine's bare host name.
fn message_id_well_formed(id: &str) -> bool {
    let id = id.trim();
    let inner = id
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(id);
    let Some((local, domain)) = inner.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !inner.contains(char::is_whitespace)
        && domain.bytes().any(|b| b.is_ascii_alphanumeric())
}

/// Repeated `!`, `?` or `$` in a Subject: `!!!`, `$$$`, `?!?`.
fn subject_punctuation(subject: &str) -> Option<String> {
    let marks = subject.chars().filter(|c| matches!(c, '!' | '$')).count();
    let run = subject
        .as_bytes()
        .windows(2)
        .any(|w| matches!(w[0], b'!' | b'?' | b'$') && matches!(w[1], b'!' | b'?' | b'$'));
    (marks >= 3 || run).then(|| format!("Subject {}", crate::text::cut(subject, 60)))
}

/// The first word written to hide one of [`HIDDEN_WORDS`] (`v1agra`, `c-a-s-h`,
/// `fr\u{200B}ee`): the word read back and as written.
fn obfuscated_word(s: &str) -> Option<(&'static str, String)> {
    // Disguised words come early (the pitch); a bounded look keeps long mail cheap.
    let s = crate::text::cut(s, 16 * 1024);
    let mut plain = String::new();
    // Split on ASCII whitespace as bytes (cheaper than decoding every character); the
    // pieces stay valid UTF-8 since no multi-byte character holds an ASCII byte.
    for raw in s.as_bytes().split(u8::is_ascii_whitespace) {
        // Most words are plain letters: nothing disguised, nothing to read back.
        if raw.len() < 4 || raw.len() > 40 || raw.iter().all(u8::is_ascii_alphabetic) {
            continue;
        }
        let Ok(raw) = std::str::from_utf8(raw) else {
            continue;
        };
        let raw = raw.trim_matches(|c: char| matches!(c, '"' | '\'' | '(' | ')' | ',' | ':'));
        if raw.len() < 4 || raw.contains("://") || raw.contains('@') {
            continue;
        }
        plain.clear();
        let mut disguised = false;
        for c in raw.chars() {
            let read = match c {
                'a'..='z' => Some(c),
                'A'..='Z' => Some(c.to_ascii_lowercase()),
                '0' => Some('o'),
                '1' | '|' | '!' => Some('i'),
                '3' => Some('e'),
                '4' | '@' => Some('a'),
                '5' | '$' => Some('s'),
                '.' | '-' | '*' | '_' | '~' => None,
                c if text::is_invisible(c) => None,
                _ => {
                    plain.clear();
                    break;
                }
            };
            match read {
                Some(r) => {
                    disguised |= !c.is_ascii_alphabetic();
                    plain.push(r);
                }
                None => disguised = true,
            }
        }
        // The longest hidden word has 12 letters.
        if !disguised || plain.len() < 4 || plain.len() > 12 {
            continue;
        }
        // `1` may stand for `l` as well as `i`.
        let alt = plain.replace('i', "l");
        for word in HIDDEN_WORDS {
            if plain == word || alt == word {
                // A word ending in punctuation (`free!`, `cash.`) is just a sentence.
                let core = raw.trim_end_matches(['.', '!', '-', '_', '~', '*']);
                if core.len() < raw.len() && core.chars().all(|c| c.is_ascii_alphabetic()) {
                    continue;
                }
                return Some((word, raw.to_string()));
            }
        }
    }
    None
}

/// A link through a URL shortener.
fn is_shortened(url: &str) -> bool {
    text::url_host(url).is_some_and(|host| {
        let host = host.to_ascii_lowercase();
        let host = host.strip_prefix("www.").unwrap_or(&host);
        SHORTENERS.contains(&host)
    })
}

/// A From display name that names a protected domain (`IT desk at example.com`,
/// `"ceo@example.com"`) on mail whose address is elsewhere.
fn impersonation(msg: &mail_parser::Message<'_>, protected: &[String]) -> Option<String> {
    if protected.is_empty() {
        return None;
    }
    let from = msg.from()?.first()?;
    let name = from.name()?.to_ascii_lowercase();
    let address = from.address()?.to_ascii_lowercase();
    let sender_domain = address.rsplit_once('@')?.1;
    let ours = |d: &str| {
        protected.iter().any(|p| {
            let p = p.trim().to_ascii_lowercase();
            d == p || d.ends_with(&format!(".{p}"))
        })
    };
    if ours(sender_domain) {
        return None;
    }
    let named = protected.iter().find(|p| {
        let p = p.trim().to_ascii_lowercase();
        !p.is_empty()
            && name.match_indices(&p).any(|(i, _)| {
                // Whole labels only: `example.com` is not in `myexample.com`.
                let before = name[..i].chars().next_back();
                let after = name[i + p.len()..].chars().next();
                !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    })?;
    Some(format!(
        "From name names {named}, sender is {sender_domain}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(raw: &str, protected: &[&str]) -> Vec<Finding> {
        let msg = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .expect("parse");
        let text = text::extract(&msg);
        let protected: Vec<String> = protected.iter().map(|s| s.to_string()).collect();
        check(&msg, &text, &protected)
    }

    fn names(raw: &str) -> Vec<String> {
        run(raw, &[]).into_iter().map(|f| f.name).collect()
    }

    const HEAD: &str = "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n\
        Date: Mon, 23 Nov 2026 10:41:02 +0000\r\nMessage-ID: <1@example.com>\r\n";

    fn msg(extra_headers: &str, subject: &str, body: &str) -> String {
        format!("{HEAD}{extra_headers}Subject: {subject}\r\n\r\n{body}\r\n")
    }

    #[test]
    fn ordinary_mail_has_no_findings() {
        assert!(
            names(&msg(
                "",
                "Lunch tomorrow?",
                "Shall we meet at noon? Free at 12."
            ))
            .is_empty()
        );
    }

    #[test]
    fn malformed_dates() {
        let raw = msg("", "x", "y").replace("Mon, 23 Nov 2026 10:41:02 +0000", "sometime soon");
        assert_eq!(names(&raw), ["spam.date_malformed"]);
        let raw = msg("", "x", "y").replace("2026", "1970");
        assert_eq!(names(&raw), ["spam.date_malformed"]);
        let raw = msg("", "x", "y").replace("23 Nov 2026", "31 Feb 2026");
        assert_eq!(names(&raw), ["spam.date_malformed"]);
        // No Date at all is spam.no_date's business.
        let raw = msg("", "x", "y").replace("Date: Mon, 23 Nov 2026 10:41:02 +0000\r\n", "");
        assert!(names(&raw).is_empty());
    }

    #[test]
    fn malformed_message_ids() {
        for bad in ["<12345>", "<abc@.>", "<@example.com>", "<a b@example.com>"] {
            let raw = msg("", "x", "y").replace("<1@example.com>", bad);
            assert_eq!(names(&raw), ["spam.message_id_malformed"], "{bad}");
        }
        for good in [
            "<a.b$c@mail.example.net>",
            "<x@[192.0.2.1]>",
            "no-brackets@example.com",
            "<01c2$4f$0@workstation>",
        ] {
            let raw = msg("", "x", "y").replace("<1@example.com>", good);
            assert!(names(&raw).is_empty(), "{good}");
        }
    }

    #[test]
    fn subject_punctuation_rule() {
        assert!(subject_punctuation("Act now!!").is_some());
        assert!(subject_punctuation("Make $$$ fast").is_some());
        assert!(subject_punctuation("Really?!").is_some());
        assert!(subject_punctuation("Win! Now! Today!").is_some());
        assert!(subject_punctuation("Re: is this right?").is_none());
        assert!(subject_punctuation("Costs $5, not $6").is_none());
        assert_eq!(
            names(&msg("", "FREE offer!!!", "x")),
            ["spam.subject_punctuation"]
        );
    }

    #[test]
    fn obfuscated_words() {
        for w in [
            "V1AGRA",
            "v-i-a-g-r-a",
            "c.a.s.h",
            "fr\u{200B}ee",
            "m0ney",
            "cred1t",
        ] {
            assert!(obfuscated_word(&format!("buy {w} today")).is_some(), "{w}");
        }
        for w in [
            "viagra", "free!", "cash.", "Money", "mp3s", "win2k", "e.g.", "free-", "1234",
        ] {
            assert!(obfuscated_word(&format!("a {w} b")).is_none(), "{w}");
        }
        let f = run(&msg("", "hello", "Get your V1AGRA here"), &[]);
        assert_eq!(f.len(), 1);
        assert!(
            f[0].detail.contains("viagra written as V1AGRA"),
            "{}",
            f[0].detail
        );
    }

    #[test]
    fn shorteners_hidden_text_and_forms() {
        let html = "<html><body><p>Hello</p><a href=\"https://bit.ly/3xYz\">here</a>\
            <div style=\"display: none\">lorem ipsum words</div>\
            <span style=\"font-size:0px\"></span>\
            <form action=\"http://login.example.net/\"><input name=p></form></body></html>";
        let raw = msg("Content-Type: text/html\r\n", "hi", html);
        assert_eq!(
            names(&raw),
            [
                "spam.url_shortener",
                "spam.html_hidden_text",
                "spam.html_form"
            ]
        );
        let f = run(&raw, &[]);
        assert!(f[1].detail.starts_with("1 hidden"), "{}", f[1].detail);
        assert!(!is_shortened("https://bit.ly.example.com/x"));
        assert!(is_shortened("http://www.tinyurl.com/abc"));
    }

    #[test]
    fn display_name_impersonation() {
        let raw = |from: &str| msg("", "x", "y").replace("Alice <alice@example.com>", from);
        let names_p = |r: &str| -> Vec<String> {
            run(r, &["corp.example"])
                .into_iter()
                .map(|f| f.name)
                .collect()
        };
        assert_eq!(
            names_p(&raw("\"IT desk corp.example\" <helpdesk@free-mail.test>")),
            ["spam.impersonation"]
        );
        assert_eq!(
            names_p(&raw("\"ceo@corp.example\" <x@elsewhere.test>")),
            ["spam.impersonation"]
        );
        // Our own users, another domain that merely contains the name, or no list: nothing.
        assert!(names_p(&raw("\"IT desk corp.example\" <it@mail.corp.example>")).is_empty());
        assert!(names_p(&raw("\"news at mycorp.example\" <x@elsewhere.test>")).is_empty());
        assert!(names(&raw("\"IT desk corp.example\" <helpdesk@free-mail.test>")).is_empty());
    }

    #[test]
    fn hostile_input_is_bounded() {
        let body = "v1agra-".repeat(100_000);
        let raw = msg("", &"!".repeat(5000), &body);
        let f = run(&raw, &["x.example"]);
        assert!(f.iter().any(|f| f.name == "spam.subject_punctuation"));
        assert!(f.iter().all(|f| f.detail.len() < 200));
    }
}
