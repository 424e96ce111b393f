//! The text of a message as checks read it: MIME-decoded, HTML turned to text, with the
//! URLs it links to. Parsed once per message and shared by the spam classifier, the
//! content rules and URIBL lookups.
//!
//! Everything here is bounded: the body text, the HTML read per part, the headers kept,
//! the URLs collected and the depth of attached messages, so that a hostile message costs
//! at most a fixed amount of work.

use mail_parser::{Address, HeaderValue, Message, PartType};

/// Most bytes of decoded body text kept (all parts together).
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// Most bytes of one HTML part read; the rest is ignored.
pub const MAX_HTML_BYTES: usize = 1024 * 1024;
/// Most distinct URLs collected from one message.
pub const MAX_URLS: usize = 100;
/// Longest URL kept; longer ones are cut.
pub const MAX_URL_LEN: usize = 2048;
/// Most header fields kept.
pub const MAX_HEADERS: usize = 256;
/// Longest header value kept.
pub const MAX_HEADER_VALUE: usize = 8 * 1024;
/// How deep attached messages (message/rfc822) are opened.
pub const MAX_NESTING: usize = 3;

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
    /// Facts about the parts the body came from.
    pub parts: PartStats,
    /// Distinct HTML element names (`font`) and element attributes (`font.color`) used,
    /// lower case, in order of first use, at most [`MAX_MARKUP`].
    pub markup: Vec<String>,
}

/// Most distinct element and attribute names kept per message.
pub const MAX_MARKUP: usize = 64;

/// Facts about the text parts of a message, for heuristics and classifier meta tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartStats {
    /// text/* parts other than HTML.
    pub plain_parts: usize,
    pub html_parts: usize,
    /// Bytes of visible text the HTML parts hold.
    pub html_text_bytes: usize,
    /// `<img>` tags in the HTML parts.
    pub html_images: usize,
    /// Links whose visible text names a different domain than the link goes to.
    pub deceptive_links: usize,
    /// HTML elements styled to hide their text (`display:none`, `visibility:hidden`,
    /// a zero or one-pixel font) that hold text.
    pub hidden_text: usize,
    /// `<form>` elements in the HTML parts.
    pub forms: usize,
}

impl MessageText {
    /// The first header field called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every header field called `name` (lower case), in message order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn extract(msg: &Message<'_>) -> MessageText {
    let mut out = MessageText {
        subject: msg.subject().unwrap_or_default().to_string(),
        headers: headers(msg),
        ..Default::default()
    };
    let mut urls = UrlSet::default();
    collect_parts(msg, &mut out, &mut urls, 0);
    out.urls = urls.urls;
    out
}

fn collect_parts(msg: &Message<'_>, out: &mut MessageText, urls: &mut UrlSet, depth: usize) {
    for part in &msg.parts {
        if out.body.len() >= MAX_BODY_BYTES {
            return;
        }
        match &part.body {
            PartType::Text(text) => {
                out.parts.plain_parts += 1;
                urls.scan_text(text);
                push_bounded(&mut out.body, text);
            }
            PartType::Html(html) => {
                out.parts.html_parts += 1;
                let room = MAX_BODY_BYTES.saturating_sub(out.body.len());
                let converted = html_to_text(html, room, urls);
                out.parts.html_text_bytes += converted.text.len();
                out.parts.html_images += converted.images;
                out.parts.deceptive_links += converted.deceptive_links;
                out.parts.hidden_text += converted.hidden_text;
                out.parts.forms += converted.forms;
                for m in converted.markup {
                    if out.markup.len() < MAX_MARKUP && !out.markup.contains(&m) {
                        out.markup.push(m);
                    }
                }
                urls.scan_text(&converted.text);
                push_bounded(&mut out.body, &converted.text);
            }
            PartType::Message(inner) if depth < MAX_NESTING => {
                if let Some(subject) = inner.subject() {
                    push_bounded(&mut out.body, subject);
                }
                collect_parts(inner, out, urls, depth + 1);
            }
            _ => {}
        }
    }
}

/// Appends `text` and a line break to `body`, keeping `body` within [`MAX_BODY_BYTES`].
fn push_bounded(body: &mut String, text: &str) {
    let room = MAX_BODY_BYTES.saturating_sub(body.len());
    if room == 0 {
        return;
    }
    body.push_str(cut(text, room.saturating_sub(1)));
    body.push('\n');
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn headers(msg: &Message<'_>) -> Vec<(String, String)> {
    let raw = msg.raw_message();
    msg.headers()
        .iter()
        .take(MAX_HEADERS)
        .map(|h| {
            let name = h.name.as_str().to_ascii_lowercase();
            let value = match &h.value {
                HeaderValue::Text(t) => unfold(t),
                HeaderValue::TextList(list) => list.join(", "),
                HeaderValue::Address(a) => render_addresses(a),
                _ => {
                    let start = (h.offset_start as usize).min(raw.len());
                    let end = (h.offset_end as usize).clamp(start, raw.len());
                    unfold(&String::from_utf8_lossy(&raw[start..end]))
                }
            };
            let value = cut(&value, MAX_HEADER_VALUE).to_string();
            (name, value)
        })
        .collect()
}

/// An address header as `Name <addr>, Name <addr>`, with encoded words already decoded.
fn render_addresses(address: &Address<'_>) -> String {
    let mut out = String::new();
    for addr in address.iter() {
        if !out.is_empty() {
            out.push_str(", ");
        }
        match (addr.name(), addr.address()) {
            (Some(name), Some(a)) => {
                out.push_str(name);
                out.push_str(" <");
                out.push_str(a);
                out.push('>');
            }
            (Some(name), None) => out.push_str(name),
            (None, Some(a)) => {
                out.push('<');
                out.push_str(a);
                out.push('>');
            }
            (None, None) => {}
        }
    }
    out
}

/// A raw header value with its folding removed and outer whitespace trimmed.
fn unfold(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut space = false;
    for c in raw.chars() {
        if c == '\r' || c == '\n' || c == '\t' || c == ' ' {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// The distinct URLs of a message, in order of first appearance, at most [`MAX_URLS`].
#[derive(Debug, Default)]
pub(crate) struct UrlSet {
    urls: Vec<String>,
}

impl UrlSet {
    fn add(&mut self, candidate: &str) {
        if self.urls.len() >= MAX_URLS {
            return;
        }
        if let Some(url) = normalize_url(candidate)
            && !self.urls.contains(&url)
        {
            self.urls.push(url);
        }
    }

    /// Finds `scheme://...` and bare `www.` URLs in plain text.
    fn scan_text(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut from = 0;
        while self.urls.len() < MAX_URLS {
            let Some(found) = next_url_start(bytes, from) else {
                return;
            };
            let end = url_end(bytes, found);
            self.add(&text[found..end]);
            from = end.max(found + 1);
        }
    }
}

/// Where the next URL in `bytes` at or after `from` begins: an `http(s)://` or `ftp://`
/// scheme, or `www.` at the start of a word.
fn next_url_start(bytes: &[u8], mut from: usize) -> Option<usize> {
    while from < bytes.len() {
        let rest = &bytes[from..];
        let colon = memchr::memmem::find(rest, b"://").map(|i| from + i);
        let www = find_www(rest).map(|i| from + i);
        let scheme = colon.and_then(|c| {
            let start = scheme_start(bytes, c);
            let scheme = &bytes[start..c];
            let known = [&b"http"[..], b"https", b"ftp"]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(scheme));
            known.then_some(start)
        });
        match (scheme, www) {
            (Some(s), Some(w)) => return Some(s.min(w)),
            (Some(s), None) => return Some(s),
            (None, Some(w)) if colon.is_none_or(|c| w < c) => return Some(w),
            (None, _) => match colon {
                // An unknown scheme: look again after it.
                Some(c) => from = c + 3,
                None => return None,
            },
        }
    }
    None
}

fn scheme_start(bytes: &[u8], colon: usize) -> usize {
    let mut start = colon;
    while start > 0 && colon - start < 8 && bytes[start - 1].is_ascii_alphabetic() {
        start -= 1;
    }
    start
}

/// `www.` at the start of a word (case-insensitive), relative to `bytes`.
fn find_www(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr2(b'w', b'W', &bytes[from..]).map(|i| from + i) {
        if bytes.len() >= i + 4
            && bytes[i..i + 4].eq_ignore_ascii_case(b"www.")
            && (i == 0
                || !matches!(bytes[i - 1], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'@' | b'/' | b'_'))
        {
            // `www.` inside a scheme URL is found by its scheme.
            return Some(i);
        }
        from = i + 1;
    }
    None
}

fn is_url_byte(b: u8) -> bool {
    b >= 0x80
        || (b.is_ascii_graphic()
            && !matches!(
                b,
                b'<' | b'>' | b'"' | b'\'' | b'`' | b'{' | b'}' | b'|' | b'\\' | b'^'
            ))
}

fn url_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < bytes.len() && end - start < MAX_URL_LEN && is_url_byte(bytes[end]) {
        end += 1;
    }
    // Sentence punctuation after a URL is not part of it.
    while end > start
        && matches!(
            bytes[end - 1],
            b'.' | b',' | b';' | b':' | b'!' | b'?' | b')'
        )
    {
        end -= 1;
    }
    // Keep the end on a character boundary (non-ASCII bytes are URL bytes).
    while end < bytes.len() && (bytes[end] & 0xC0) == 0x80 {
        end += 1;
    }
    end
}

/// A URL with a lower-case scheme and host and a scheme added to bare `www.` forms; `None`
/// for what is not a web URL with a plausible host.
fn normalize_url(candidate: &str) -> Option<String> {
    let candidate = candidate.trim();
    let (scheme, rest) = match candidate.find("://") {
        Some(i) => (candidate[..i].to_ascii_lowercase(), &candidate[i + 3..]),
        None if candidate.len() > 4 && candidate[..4].eq_ignore_ascii_case("www.") => {
            ("http".to_string(), candidate)
        }
        None => return None,
    };
    if !matches!(scheme.as_str(), "http" | "https" | "ftp") {
        return None;
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = host_of_authority(&rest[..authority_end]);
    if host.is_empty() || !host.contains('.') || host.starts_with('.') {
        return None;
    }
    let mut url = String::with_capacity(candidate.len() + 7);
    url.push_str(&scheme);
    url.push_str("://");
    url.push_str(&rest[..authority_end].to_ascii_lowercase());
    url.push_str(&rest[authority_end..]);
    Some(cut(&url, MAX_URL_LEN).to_string())
}

/// The host of `user:pass@host:port` (no user, no port).
fn host_of_authority(authority: &str) -> &str {
    let host = match authority.rfind('@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rfind(':') {
        Some(i) => &host[..i],
        None => host,
    }
}

/// The host of a URL as [`MessageText::urls`] holds them (lower case, no user or port).
pub fn url_host(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = host_of_authority(authority).trim_end_matches('.');
    (!host.is_empty()).then_some(host)
}

/// Whether a host is written as an IP address (dotted, bracketed, or a bare number).
pub fn host_is_ip(host: &str) -> bool {
    host.starts_with('[')
        || host.parse::<std::net::Ipv4Addr>().is_ok()
        || (!host.is_empty() && host.bytes().all(|b| b.is_ascii_digit()))
        || (host.split('.').count() == 4
            && host.split('.').all(|p| {
                let p = p.trim_start_matches("0x");
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_hexdigit())
            }))
}

/// The last two labels of a host (`mail.example.com` → `example.com`); enough to tell one
/// organisation's links from another's without a public suffix list.
pub fn base_domain(host: &str) -> &str {
    let host = host.trim_end_matches('.');
    match host.rmatch_indices('.').nth(1) {
        Some((i, _)) => &host[i + 1..],
        None => host,
    }
}

/// The visible text of one HTML part, and what was learnt reading it.
#[derive(Debug, Default)]
pub(crate) struct HtmlText {
    pub text: String,
    pub images: usize,
    pub deceptive_links: usize,
    pub hidden_text: usize,
    pub forms: usize,
    pub markup: Vec<String>,
}

/// Elements whose content is never shown.
const HIDDEN_ELEMENTS: [&str; 4] = ["script", "style", "template", "title"];

/// Elements that break a line (or a cell) in the rendered text.
const BLOCK_ELEMENTS: [&str; 22] = [
    "address",
    "article",
    "blockquote",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "li",
    "p",
    "pre",
    "table",
    "td",
    "tr",
];

/// Turns HTML into its visible text: tags dropped (block elements become line breaks),
/// comments, scripts and styles skipped, character references decoded, whitespace
/// collapsed. Link targets (`href`) and image sources go to `urls`. Reads at most
/// [`MAX_HTML_BYTES`] of input and writes at most `max_out` bytes; linear in the input.
pub(crate) fn html_to_text(html: &str, max_out: usize, urls: &mut UrlSet) -> HtmlText {
    let html = cut(html, MAX_HTML_BYTES);
    let bytes = html.as_bytes();
    let mut out = HtmlText {
        text: String::with_capacity(html.len().min(max_out) / 2),
        ..Default::default()
    };
    // The open link: its target host and where its text starts in the output.
    let mut link: Option<(String, usize)> = None;
    let mut i = 0;
    while i < bytes.len() && out.text.len() < max_out {
        match bytes[i] {
            b'<' => {
                i = read_markup(html, i, &mut out, &mut link, urls);
            }
            b'&' => {
                let (decoded, used) = decode_reference(&html[i..]);
                match decoded {
                    Reference::Char(c) => push_char(&mut out.text, c),
                    Reference::Nothing => {}
                    Reference::Literal => out.text.push('&'),
                }
                i += used;
            }
            _ => {
                let end = memchr::memchr2(b'<', b'&', &bytes[i..]).map_or(bytes.len(), |n| i + n);
                push_collapsed(&mut out.text, &html[i..end]);
                i = end;
            }
        }
    }
    if out.text.len() > max_out {
        let len = cut(&out.text, max_out).len();
        out.text.truncate(len);
    }
    let trimmed = out.text.trim_end().len();
    out.text.truncate(trimmed);
    out
}

/// Reads the markup starting at `bytes[start] == b'<'`; returns where the text resumes.
fn read_markup(
    html: &str,
    start: usize,
    out: &mut HtmlText,
    link: &mut Option<(String, usize)>,
    urls: &mut UrlSet,
) -> usize {
    let bytes = html.as_bytes();
    let rest = &bytes[start..];
    if rest.starts_with(b"<!--") {
        return memchr::memmem::find(&rest[4..], b"-->").map_or(bytes.len(), |n| start + 4 + n + 3);
    }
    let closing = rest.get(1) == Some(&b'/');
    let name_start = start + 1 + usize::from(closing);
    let name_len = bytes[name_start..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if name_len == 0 && !matches!(rest.get(1), Some(b'!' | b'?')) {
        // A lone `<` in text, as in "a < b".
        push_collapsed(&mut out.text, "<");
        return start + 1;
    }
    let end = tag_end(bytes, name_start + name_len);
    let mut name_buf = [0u8; 12];
    let name = if name_len <= name_buf.len() {
        name_buf[..name_len].copy_from_slice(&bytes[name_start..name_start + name_len]);
        name_buf[..name_len].make_ascii_lowercase();
        std::str::from_utf8(&name_buf[..name_len]).unwrap_or("")
    } else {
        ""
    };
    let attr_start = (name_start + name_len).min(bytes.len());
    let attr_end = if end > attr_start && bytes[end - 1] == b'>' {
        end - 1
    } else {
        end.max(attr_start)
    };
    let attributes = &html[attr_start..attr_end];
    if !closing && !name.is_empty() && out.markup.len() < MAX_MARKUP {
        note_markup(&mut out.markup, name, attributes);
    }

    if !closing && !name.is_empty() && hides_text(name, attributes) {
        // Counted when the hidden element holds visible-looking text before it closes.
        let rest = &bytes[end..];
        let close = memchr::memchr(b'<', rest).unwrap_or(rest.len());
        if rest[..close].iter().any(|b| b.is_ascii_alphanumeric()) {
            out.hidden_text += 1;
        }
    }
    if name == "form" && !closing {
        out.forms += 1;
    }
    if !closing && HIDDEN_ELEMENTS.contains(&name) {
        // Skip to the matching end tag (or the end of the input).
        let mut closer = [0u8; 12];
        closer[0] = b'<';
        closer[1] = b'/';
        closer[2..2 + name.len()].copy_from_slice(name.as_bytes());
        let closer = &closer[..2 + name.len()];
        return find_ignore_case(&bytes[end..], closer)
            .map_or(bytes.len(), |n| tag_end(bytes, end + n + closer.len()));
    }
    if BLOCK_ELEMENTS.contains(&name) {
        if !out.text.is_empty() && !out.text.ends_with('\n') {
            if out.text.ends_with(' ') {
                out.text.pop();
            }
            out.text.push('\n');
        }
    } else if name == "a" && !closing {
        finish_link(out, link);
        if let Some(href) = attribute(attributes, "href") {
            urls.add(&href);
            let host = url_host(&href).map(str::to_string).unwrap_or_default();
            *link = Some((host, out.text.len()));
        }
    } else if name == "a" && closing {
        finish_link(out, link);
    } else if name == "img" && !closing {
        out.images += 1;
        if let Some(src) = attribute(attributes, "src") {
            urls.add(&src);
        }
        if let Some(alt) = attribute(attributes, "alt") {
            push_collapsed(&mut out.text, &alt);
        }
    } else if (name == "area" || name == "form") && !closing {
        let key = if name == "form" { "action" } else { "href" };
        if let Some(target) = attribute(attributes, key) {
            urls.add(&target);
        }
    }
    end
}

/// Whether an element's attributes hide its text from the reader: `display:none`,
/// `visibility:hidden`, a font of zero or one pixel (or `<font size=0|1>`'s smaller
/// cousin `font-size:0`).
fn hides_text(name: &str, attributes: &str) -> bool {
    // Most tags have no style: skip the attribute parse for them.
    if attributes.len() < 4
        || (name != "font"
            && !attributes
                .as_bytes()
                .windows(5)
                .any(|w| w.eq_ignore_ascii_case(b"style")))
    {
        return false;
    }
    if let Some(style) = attribute(attributes, "style") {
        let style: String = style
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        if style.contains("display:none")
            || style.contains("visibility:hidden")
            || style.contains("font-size:0")
            || style.contains("font-size:1px")
        {
            return true;
        }
    }
    name == "font" && attribute(attributes, "size").is_some_and(|s| s.trim() == "0")
}

/// Records an element name and its attribute names (`font`, `font.color`).
fn note_markup(markup: &mut Vec<String>, name: &str, attributes: &str) {
    let mut add = |item: String| {
        if markup.len() < MAX_MARKUP && !markup.contains(&item) {
            markup.push(item);
        }
    };
    add(name.to_string());
    let bytes = attributes.as_bytes();
    let mut i = 0;
    let mut seen = 0;
    while i < bytes.len() && seen < 8 {
        while i < bytes.len() && !bytes[i].is_ascii_alphabetic() {
            // Skip quoted values whole.
            if bytes[i] == b'"' || bytes[i] == b'\'' {
                let q = bytes[i];
                i = memchr::memchr(q, &bytes[i + 1..]).map_or(bytes.len(), |n| i + 1 + n + 1);
            } else {
                i += 1;
            }
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-') {
            i += 1;
        }
        if i > start && i - start <= 16 {
            add(format!(
                "{name}.{}",
                attributes[start..i].to_ascii_lowercase()
            ));
            seen += 1;
        }
        // Skip an unquoted value.
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\'' {
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
            }
        }
    }
}

/// Closes the open link: a link whose text is itself a URL or domain naming another
/// organisation than the target is deceptive (the classic phishing shape).
fn finish_link(out: &mut HtmlText, link: &mut Option<(String, usize)>) {
    let Some((target, from)) = link.take() else {
        return;
    };
    if target.is_empty() || from > out.text.len() {
        return;
    }
    let shown = out.text[from..].trim();
    let shown = shown
        .split_once("://")
        .map_or(shown, |(_, rest)| rest)
        .split(['/', ' ', '?', '#'])
        .next()
        .unwrap_or("")
        .trim_end_matches(['.', ',', ';', ':']);
    let looks_like_host = shown.len() >= 4
        && shown.contains('.')
        && !shown.contains('@')
        && shown
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && shown
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    if looks_like_host {
        let shown = shown.to_ascii_lowercase();
        if base_domain(&shown) != base_domain(&target) {
            out.deceptive_links += 1;
        }
    }
}

/// Index just past the `>` that ends the tag whose attributes start at `from`, honouring
/// quoted attribute values; the end of the input when there is none.
fn tag_end(bytes: &[u8], from: usize) -> usize {
    let mut quote: Option<u8> = None;
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return i + 1,
            None => {}
        }
        i += 1;
    }
    bytes.len()
}

/// The value of attribute `key` (lower case) in a tag's attribute text, entity-decoded.
fn attribute(attributes: &str, key: &str) -> Option<String> {
    let bytes = attributes.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Skip to a name.
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && !matches!(bytes[i], b'=' | b'>' | b'/')
        {
            i += 1;
        }
        let name = &attributes[name_start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = "";
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let q = bytes[i];
                let start = i + 1;
                let end = memchr::memchr(q, &bytes[start..]).map_or(bytes.len(), |n| start + n);
                value = &attributes[start..end];
                i = end + 1;
            } else {
                let start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                    i += 1;
                }
                value = &attributes[start..i];
            }
        }
        if name.eq_ignore_ascii_case(key) {
            return Some(decode_references(value.trim()));
        }
        if name.is_empty() {
            i += 1;
        }
    }
    None
}

fn decode_references(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s.as_bytes()[i] == b'&' {
            let (decoded, used) = decode_reference(&s[i..]);
            match decoded {
                Reference::Char(c) => out.push(c),
                Reference::Nothing => {}
                Reference::Literal => out.push('&'),
            }
            i += used;
        } else {
            let end = memchr::memchr(b'&', &s.as_bytes()[i..]).map_or(s.len(), |n| i + n);
            out.push_str(&s[i..end]);
            i = end;
        }
    }
    out
}

enum Reference {
    Char(char),
    /// A reference to something invisible (soft hyphen, zero-width joiners).
    Nothing,
    /// Not a reference: a plain `&`.
    Literal,
}

/// Decodes the character reference at the start of `s` (which starts with `&`); returns
/// what it stands for and how many bytes it used.
fn decode_reference(s: &str) -> (Reference, usize) {
    let bytes = s.as_bytes();
    let limit = bytes.len().min(12);
    let Some(semi) = bytes[1..limit]
        .iter()
        .position(|&b| b == b';')
        .map(|n| n + 1)
    else {
        return (Reference::Literal, 1);
    };
    let body = &s[1..semi];
    let c = if let Some(num) = body.strip_prefix('#') {
        let value = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => num.parse::<u32>().ok(),
        };
        match value {
            Some(v) => char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER),
            None => return (Reference::Literal, 1),
        }
    } else {
        match body {
            "amp" | "AMP" => '&',
            "lt" | "LT" => '<',
            "gt" | "GT" => '>',
            "quot" | "QUOT" => '"',
            "apos" => '\'',
            "nbsp" | "ensp" | "emsp" | "thinsp" => ' ',
            "copy" => '©',
            "reg" => '®',
            "trade" => '™',
            "euro" => '€',
            "pound" => '£',
            "yen" => '¥',
            "cent" => '¢',
            "deg" => '°',
            "hellip" => '…',
            "mdash" => '—',
            "ndash" => '–',
            "lsquo" | "rsquo" => '\'',
            "ldquo" | "rdquo" => '"',
            "laquo" => '«',
            "raquo" => '»',
            "bull" => '•',
            "middot" => '·',
            "times" => '×',
            "shy" | "zwj" | "zwnj" => return (Reference::Nothing, semi + 1),
            _ => return (Reference::Literal, 1),
        }
    };
    if is_invisible(c) {
        return (Reference::Nothing, semi + 1);
    }
    (Reference::Char(c), semi + 1)
}

/// Characters that render as nothing, used to split words so filters miss them.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{180E}'
    )
}

fn push_char(out: &mut String, c: char) {
    if c.is_whitespace() {
        if !out.is_empty() && !out.ends_with([' ', '\n']) {
            out.push(' ');
        }
    } else {
        out.push(c);
    }
}

/// Appends text with runs of whitespace collapsed to one space.
fn push_collapsed(out: &mut String, text: &str) {
    for (i, piece) in text.split(|c: char| c.is_ascii_whitespace()).enumerate() {
        if i > 0 && !out.is_empty() && !out.ends_with([' ', '\n']) {
            out.push(' ');
        }
        out.push_str(piece);
    }
}

fn find_ignore_case(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle.first()?;
    let mut from = 0;
    while let Some(i) = memchr::memchr(*first, &hay[from..]).map(|n| from + n) {
        if hay.len() >= i + needle.len() && hay[i..i + needle.len()].eq_ignore_ascii_case(needle) {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(s: &str) -> (HtmlText, Vec<String>) {
        let mut urls = UrlSet::default();
        let out = html_to_text(s, usize::MAX, &mut urls);
        (out, urls.urls)
    }

    fn parse(raw: &str) -> MessageText {
        let msg = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .expect("parse");
        extract(&msg)
    }

    #[test]
    fn html_tags_scripts_styles_and_entities() {
        let (out, _) = html(
            "<html><head><title>t</title><style>p{color:red}</style></head><body>\
             <p>Caf&eacute; &amp; <b>b</b>ar&nbsp;&#65;&#x42;</p><script>alert('x<y')</script>\
             <!-- hidden <p>text</p> -->vi<!-- -->agra<br>next &unknown; 3 < 4</body></html>",
        );
        assert_eq!(
            out.text,
            "Caf&eacute; & bar AB\nviagra\nnext &unknown; 3 < 4"
        );
    }

    #[test]
    fn html_hidden_text_and_forms() {
        let (out, _) = html(
            "<p>Shown</p><div STYLE=\"Display: None\">hidden words</div>\
             <span style='font-size:1px'>tiny</span><font size=0>zero</font>\
             <p style=\"color:red\">red is visible</p><div style=\"display:none\"></div>\
             <form action=\"http://x.example/\"><input></form>",
        );
        // The empty hidden div holds no text and does not count.
        assert_eq!((out.hidden_text, out.forms), (3, 1));
    }

    #[test]
    fn html_links_and_images() {
        let (out, urls) = html(
            "<a href=\"http://Click.Example.NET/x?a=1&amp;b=2\">www.mybank.com</a> \
             <A HREF='https://www.mybank.com/login'>https://www.mybank.com/</A> \
             <img src=\"http://img.example.org/a.gif\" alt=\"Buy now\"> <img src=cid:part1>",
        );
        assert_eq!(
            urls,
            [
                "http://click.example.net/x?a=1&b=2",
                "https://www.mybank.com/login",
                "http://img.example.org/a.gif",
            ]
        );
        assert_eq!(out.images, 2);
        assert_eq!(out.deceptive_links, 1);
        assert!(out.text.contains("Buy now"));
    }

    #[test]
    fn html_unterminated_is_bounded() {
        let (out, _) = html("<p>text<script>never closed");
        assert_eq!(out.text, "text");
        let (out, _) = html("a <a href=\"x");
        assert_eq!(out.text, "a");
        let long = "<b>x</b>".repeat(10_000);
        let mut urls = UrlSet::default();
        assert_eq!(html_to_text(&long, 100, &mut urls).text.len(), 100);
    }

    #[test]
    fn urls_in_text() {
        let mut set = UrlSet::default();
        set.scan_text(
            "See http://Example.COM/Path?q=1. Or (www.test.org), HTTPS://1.2.3.4:8080/x, \
             mailto:a@b.c, javascript://x, http://user@evil.example/ and http://Example.COM/Path?q=1",
        );
        assert_eq!(
            set.urls,
            [
                "http://example.com/Path?q=1",
                "http://www.test.org",
                "https://1.2.3.4:8080/x",
                "http://user@evil.example/",
            ]
        );
        assert_eq!(url_host("https://1.2.3.4:8080/x"), Some("1.2.3.4"));
        assert_eq!(url_host("http://user@evil.example/"), Some("evil.example"));
        assert!(host_is_ip("1.2.3.4"));
        assert!(host_is_ip("0x7f.0.0.1"));
        assert!(!host_is_ip("example.com"));
        assert_eq!(base_domain("a.b.example.com"), "example.com");
        assert_eq!(base_domain("example"), "example");
    }

    #[test]
    fn url_count_is_bounded() {
        let text: String = (0..500).map(|i| format!("http://h{i}.example/ ")).collect();
        let mut set = UrlSet::default();
        set.scan_text(&text);
        assert_eq!(set.urls.len(), MAX_URLS);
    }

    #[test]
    fn extracts_parts_headers_and_urls() {
        let t = parse(
            "From: =?utf-8?q?J=C3=B6rg?= <j@example.com>\r\n\
             To: a@example.org\r\n\
             Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\n\
             X-Long: one\r\n two\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n\
             Sch=F6n, see http://example.com/a\r\n\
             --b\r\nContent-Type: text/html\r\n\r\n\
             <p>Hello <a href=\"http://link.example.net/\">here</a></p>\r\n--b--\r\n",
        );
        assert_eq!(t.subject, "Grüße");
        assert_eq!(t.header("from"), Some("Jörg <j@example.com>"));
        assert_eq!(t.header("x-long"), Some("one two"));
        assert!(t.body.contains("Schön, see"));
        assert!(t.body.contains("Hello here"));
        assert_eq!(t.urls, ["http://example.com/a", "http://link.example.net/"]);
        assert_eq!(t.parts.plain_parts, 1);
        assert_eq!(t.parts.html_parts, 1);
    }
}
