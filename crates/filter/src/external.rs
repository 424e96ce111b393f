//! External spam engines as findings: rspamd (its normal worker's `/checkv2`) and
//! SpamAssassin's spamd (the SPAMC/1.5 protocol).
//!
//! Each configured engine is asked about the message at the same time, within one time
//! budget. An engine that answers gives one finding (`rspamd` or `spamd`) whose score is
//! the engine's own score times `weight`, so the rules and thresholds of
//! [`crate::rules`] treat it like any other check. An engine that cannot be asked (down,
//! silent past the budget, an error, a reply that is not what the protocol says) gives no
//! finding: it is listed in [`ExternalReport::unavailable`] and logged, and the caller
//! decides with `fail_open` whether that refuses the message for now.
//!
//! Both clients are written by hand on tokio. rspamd speaks plain HTTP/1.x, and one
//! request per connection (`Connection: close`, a `Content-Length` body) with the reply
//! read to its end under a size bound is all this needs: an HTTP client crate would add
//! a large dependency tree (connection pools, TLS, redirects, chunked and compressed
//! bodies) for none of which a loopback scanner has a use. spamd's protocol is a request
//! line, two header lines and the message; its reply is a status line, headers and the
//! symbol list.
//!
//! Every byte from the engines is distrusted: replies are bounded in size, parsed
//! strictly, and scores must be finite numbers. Values sent as protocol headers (the
//! client's HELO, the envelope addresses) have control characters removed, so that a
//! client cannot add header lines of its own.
//!
//! Errors: a mistake in the `[external]` section is an [`ExternalConfigError`]; why one
//! engine gave no answer is an [`EngineError`], whose text goes into
//! [`ExternalReport::unavailable`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::finding::Finding;

/// The finding name of rspamd's verdict.
pub const RSPAMD_FINDING: &str = "rspamd";
/// The finding name of spamd's verdict.
pub const SPAMD_FINDING: &str = "spamd";

/// The largest rspamd reply read. A reply lists the message's URLs and e-mail addresses
/// as well as the symbols; 2 MiB holds thousands of them.
pub const MAX_RSPAMD_REPLY: usize = 2 << 20;
/// The largest spamd reply read (status, headers and the symbol names).
pub const MAX_SPAMD_REPLY: usize = 256 << 10;
/// Longest value of one header sent to an engine; longer values are cut.
const MAX_HEADER_VALUE: usize = 512;
/// The most `Rcpt` headers sent to rspamd (its own default limit is 1024).
const MAX_RCPT_HEADERS: usize = 1000;
/// How many of rspamd's symbols the finding's detail names (the heaviest first).
const DETAIL_SYMBOLS: usize = 10;
/// Longest finding detail, in bytes.
const MAX_DETAIL: usize = 400;
/// Characters of an engine's error text kept in an `unavailable` entry.
const MAX_ERROR_TEXT: usize = 200;

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

/// The `[external]` section of `portcullis.toml`. No engine is asked unless its address is
/// set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalSettings {
    /// rspamd's normal worker, `host:port` (rspamd's default is `127.0.0.1:11333`).
    pub rspamd: Option<String>,
    /// Sent as rspamd's `Password` header when set.
    pub rspamd_password: Option<String>,
    /// spamd, `host:port` (spamd's default is `127.0.0.1:783`).
    pub spamd: Option<String>,
    /// Sent as spamd's `User` header when set: whose preferences spamd applies.
    pub spamd_user: Option<String>,
    /// Budget of one message's check, every engine together, in milliseconds.
    pub timeout_ms: u64,
    /// Multiplies an engine's score into the finding's score.
    pub weight: f64,
    /// When an engine cannot be asked: go on without its finding (true) or refuse the
    /// message with a temporary error (false).
    pub fail_open: bool,
}

impl Default for ExternalSettings {
    fn default() -> Self {
        ExternalSettings {
            rspamd: None,
            rspamd_password: None,
            spamd: None,
            spamd_user: None,
            timeout_ms: 10_000,
            weight: 1.0,
            fail_open: true,
        }
    }
}

impl ExternalSettings {
    /// Is any engine configured?
    pub fn enabled(&self) -> bool {
        self.rspamd.is_some() || self.spamd.is_some()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Checks the section as a whole; the error names the key.
    pub fn validate(&self) -> Result<(), ExternalConfigError> {
        for (key, addr) in [("rspamd", &self.rspamd), ("spamd", &self.spamd)] {
            if let Some(addr) = addr
                && !valid_host_port(addr)
            {
                return Err(ExternalConfigError::NotHostPort {
                    key,
                    addr: addr.clone(),
                });
            }
        }
        for (key, value) in [
            ("rspamd_password", &self.rspamd_password),
            ("spamd_user", &self.spamd_user),
        ] {
            if let Some(v) = value
                && v.chars().any(|c| c.is_control())
            {
                return Err(ExternalConfigError::ControlCharacters { key });
            }
        }
        if self.timeout_ms == 0 {
            return Err(ExternalConfigError::ZeroTimeout);
        }
        if !self.weight.is_finite() {
            return Err(ExternalConfigError::WeightNotANumber);
        }
        Ok(())
    }
}

/// A mistake in the `[external]` section that serde cannot see; `key` names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalConfigError {
    #[error("external.{key}: {addr:?} is not host:port (e.g. 127.0.0.1:11333)")]
    NotHostPort { key: &'static str, addr: String },
    /// A value sent as a protocol header could add header lines of its own.
    #[error("external.{key}: control characters are not allowed")]
    ControlCharacters { key: &'static str },
    #[error("external.timeout_ms must be more than 0")]
    ZeroTimeout,
    #[error("external.weight must be a number")]
    WeightNotANumber,
}

/// Why one engine gave no answer: it could not be reached, was silent past the budget, or
/// answered with an error or something its protocol does not allow. Texts quoted from a
/// reply are cut short and have control characters replaced.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No connection to the engine.
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The connection broke while the message was being sent, and no reply came.
    #[error("connection broken while sending: {0}")]
    Send(#[source] std::io::Error),
    /// The engine closed the connection without a byte of reply.
    #[error("connection closed without a reply")]
    NoReply,
    /// The connection broke while the reply was being read.
    #[error("read: {0}")]
    Read(#[source] std::io::Error),
    /// The reply is longer than the engine's reply limit.
    #[error("reply larger than {0} bytes")]
    TooLarge(usize),
    /// No whole answer within the check's time budget.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The reply is shorter than its own length header says.
    #[error("reply cut short: {got} of {want} body bytes")]
    CutShort { got: usize, want: usize },
    /// rspamd's reply is not an HTTP/1.x reply (the excerpt shows its start).
    #[error("not an HTTP reply: {0:?}")]
    NotHttp(String),
    #[error("HTTP reply head is not text")]
    HttpHeadNotText,
    #[error("bad HTTP header line {0:?}")]
    BadHttpHeader(String),
    /// A length header (`Content-Length`, spamd's `Content-length`) that is not a number.
    #[error("bad {header} {value:?}")]
    BadLength { header: &'static str, value: String },
    /// A chunked or otherwise encoded body, which this client does not read.
    #[error("unsupported Transfer-Encoding {0:?}")]
    TransferEncoding(String),
    /// A compressed body (rspamd's `Compression`, `Content-Encoding`).
    #[error("unexpected compressed reply ({name}: {value})")]
    Compressed { name: String, value: String },
    /// rspamd answered with a status other than 200; the excerpt shows the body.
    #[error("HTTP {code}: {body}")]
    HttpStatus { code: String, body: String },
    /// rspamd's body is not the JSON of `/checkv2`.
    #[error("bad rspamd reply: {0}")]
    RspamdJson(#[source] serde_json::Error),
    #[error("bad rspamd reply: score is not a number")]
    RspamdScore,
    /// spamd's reply does not start with `SPAMD/` (the excerpt shows its start).
    #[error("not a spamd reply: {0:?}")]
    NotSpamd(String),
    #[error("spamd reply head is not text")]
    SpamdHeadNotText,
    /// spamd's status is an error code (`76 Bad header line`).
    #[error("spamd error {code}: {message}")]
    Spamd { code: String, message: String },
    #[error("bad spamd header line {0:?}")]
    BadSpamdHeader(String),
    #[error("spamd reply has no Spam header")]
    NoSpamHeader,
    /// A `Spam:` header that is not `True ; 15.3 / 5.0`.
    #[error("bad Spam header {0:?}")]
    BadSpamHeader(String),
    #[error("spamd symbols are not text")]
    SpamdSymbolsNotText,
}

/// `host:port`, `[v6]:port`: a non-empty host and a port number.
fn valid_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let host = match host.strip_prefix('[') {
        Some(v6) => match v6.strip_suffix(']') {
            Some(v6) => v6,
            None => return false,
        },
        None => host,
    };
    !host.is_empty()
        && !host.contains(|c: char| c.is_whitespace() || c == '/')
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}

// ---------------------------------------------------------------------------------------
// Input and output
// ---------------------------------------------------------------------------------------

/// What the engines are told about the message besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct ExternalContext<'a> {
    /// The client's address; rspamd uses the connection's address when it is `None`.
    pub ip: Option<IpAddr>,
    /// The client's EHLO/HELO name (empty: none given).
    pub helo: &'a str,
    /// The envelope sender; empty for the null sender `<>`.
    pub sender: &'a str,
    pub recipients: &'a [String],
    /// The gateway's message id, for both sides' logs.
    pub id: &'a str,
}

/// One engine's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineVerdict {
    /// `rspamd` or `spamd`.
    pub engine: &'static str,
    /// The engine's own score (before `weight`).
    pub score: f64,
    /// The engine's threshold: rspamd's `required_score` (its reject score), spamd's
    /// required score.
    pub required: f64,
    /// Whether the engine itself calls the message spam: rspamd's action is `reject`,
    /// `add header` or `rewrite subject`; spamd says `Spam: True`.
    pub spam: bool,
    /// rspamd's action (`no action`, `greylist`, `add header`, `rewrite subject`,
    /// `soft reject`, `reject`); `None` for spamd.
    pub action: Option<String>,
    /// The rules that matched with their scores (spamd gives names only: score 0).
    pub symbols: Vec<(String, f64)>,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExternalReport {
    /// One finding per engine that answered: `rspamd` / `spamd`, score = the engine's
    /// score times `weight`.
    pub findings: Vec<Finding>,
    /// The engines' answers in full, for logs and tests.
    pub verdicts: Vec<EngineVerdict>,
    /// Engines that gave no answer, as `engine address: reason`. Already logged.
    pub unavailable: Vec<String>,
}

impl ExternalReport {
    /// True when an engine was unavailable and `fail_open` is off: the caller answers with
    /// a temporary error (4xx) instead of going on.
    pub fn should_tempfail(&self, settings: &ExternalSettings) -> bool {
        !settings.fail_open && !self.unavailable.is_empty()
    }
}

/// Asks every configured engine about `raw` (the whole message as received, headers
/// included) at the same time, within `settings.timeout_ms` in all. Never fails: an
/// engine without an answer is reported in `unavailable` and logged as a warning.
pub async fn check(
    settings: &ExternalSettings,
    ctx: &ExternalContext<'_>,
    raw: &[u8],
) -> ExternalReport {
    let budget = settings.timeout();
    let rspamd = async {
        match &settings.rspamd {
            Some(addr) => Some(bounded(budget, ask_rspamd(addr, settings, ctx, raw)).await),
            None => None,
        }
    };
    let spamd = async {
        match &settings.spamd {
            Some(addr) => Some(bounded(budget, ask_spamd(addr, settings, raw)).await),
            None => None,
        }
    };
    let (rspamd, spamd) = tokio::join!(rspamd, spamd);

    let mut report = ExternalReport::default();
    let answers = [
        (RSPAMD_FINDING, settings.rspamd.as_deref(), rspamd),
        (SPAMD_FINDING, settings.spamd.as_deref(), spamd),
    ];
    for (engine, addr, answer) in answers {
        let (Some(addr), Some(answer)) = (addr, answer) else {
            continue;
        };
        match answer {
            Ok(verdict) => {
                report
                    .findings
                    .push(verdict_finding(&verdict, settings.weight));
                report.verdicts.push(verdict);
            }
            Err(reason) => {
                tracing::warn!(
                    id = ctx.id,
                    engine,
                    address = addr,
                    reason = %reason,
                    fail_open = settings.fail_open,
                    "external spam engine unavailable"
                );
                report
                    .unavailable
                    .push(format!("{engine} {addr}: {reason}"));
            }
        }
    }
    report
}

async fn bounded(
    budget: Duration,
    work: impl Future<Output = Result<EngineVerdict, EngineError>>,
) -> Result<EngineVerdict, EngineError> {
    match tokio::time::timeout(budget, work).await {
        Ok(result) => result,
        Err(_) => Err(EngineError::Timeout(budget)),
    }
}

/// The finding for one engine's answer.
fn verdict_finding(verdict: &EngineVerdict, weight: f64) -> Finding {
    let detail = match &verdict.action {
        Some(action) => {
            let mut heavy: Vec<&(String, f64)> =
                verdict.symbols.iter().filter(|(_, s)| *s != 0.0).collect();
            heavy.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then_with(|| a.0.cmp(&b.0)));
            let named: Vec<String> = heavy
                .iter()
                .take(DETAIL_SYMBOLS)
                .map(|(name, score)| format!("{name}({score:.2})"))
                .collect();
            if named.is_empty() {
                action.clone()
            } else {
                format!("{action}: {}", named.join(" "))
            }
        }
        None => verdict
            .symbols
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(","),
    };
    Finding::new(
        verdict.engine,
        verdict.score * weight,
        cut(detail, MAX_DETAIL),
    )
}

/// `s` cut to at most `max` bytes at a character boundary, `...` marking the cut.
fn cut(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str("...");
    s
}

/// A header value safe to send: control characters (CR, LF, NUL, ...) removed, surrounding
/// space trimmed, at most [`MAX_HEADER_VALUE`] bytes.
fn header_value(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    let mut end = clean.len().min(MAX_HEADER_VALUE);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean[..end].to_string()
}

/// Engine text for an error message: printable, short.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cut(clean.trim().to_string(), MAX_ERROR_TEXT)
}

// ---------------------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------------------

/// Connects, sends `head` and `body`, and reads the reply until the engine closes the
/// connection, at most `limit` bytes. The reply is read while the request is still being
/// sent, so that an early answer (an error about the request, sent before the engine
/// closes) is kept rather than lost behind a broken pipe. The write side stays open until
/// the reply is complete: the request's length is in its headers, and an HTTP server may
/// take a half-closed connection for an aborted one.
async fn exchange(
    addr: &str,
    head: &[u8],
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, EngineError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(EngineError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let send = async {
        writer.write_all(head).await?;
        writer.write_all(body).await?;
        writer.flush().await
    };
    let recv = read_bounded(&mut reader, limit);
    tokio::pin!(send);
    tokio::pin!(recv);
    let mut send_error = None;
    let mut sending = true;
    let reply = loop {
        tokio::select! {
            sent = &mut send, if sending => {
                sending = false;
                send_error = sent.err();
            }
            reply = &mut recv => break reply,
        }
    };
    let reply = reply?;
    if reply.is_empty() {
        return Err(match send_error {
            Some(e) => EngineError::Send(e),
            None => EngineError::NoReply,
        });
    }
    Ok(reply)
}

/// Reads until end of stream; more than `limit` bytes is an error.
async fn read_bounded(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: usize,
) -> Result<Vec<u8>, EngineError> {
    let mut out = Vec::with_capacity(8192.min(limit + 1));
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(n) => n,
            // A reset after a complete reply still leaves the reply usable; a reset
            // before any byte is a broken connection.
            Err(e) if !out.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(EngineError::Read(e)),
        };
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err(EngineError::TooLarge(limit));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

// ---------------------------------------------------------------------------------------
// rspamd
// ---------------------------------------------------------------------------------------

/// rspamd's `/checkv2` request head (the message follows as the body).
fn rspamd_request(
    addr: &str,
    settings: &ExternalSettings,
    ctx: &ExternalContext<'_>,
    body_len: usize,
) -> Vec<u8> {
    let mut head = String::with_capacity(256 + 64 * ctx.recipients.len().min(16));
    head.push_str("POST /checkv2 HTTP/1.1\r\n");
    head.push_str(&format!("Host: {}\r\n", header_value(addr)));
    head.push_str("Connection: close\r\n");
    head.push_str(&format!("Content-Length: {body_len}\r\n"));
    if let Some(ip) = ctx.ip {
        head.push_str(&format!("IP: {ip}\r\n"));
    }
    let helo = header_value(ctx.helo);
    if !helo.is_empty() {
        head.push_str(&format!("Helo: {helo}\r\n"));
    }
    // rspamd reads `<>` as the null sender.
    let sender = header_value(ctx.sender);
    if sender.is_empty() {
        head.push_str("From: <>\r\n");
    } else {
        head.push_str(&format!("From: {sender}\r\n"));
    }
    for rcpt in ctx.recipients.iter().take(MAX_RCPT_HEADERS) {
        let rcpt = header_value(rcpt);
        if !rcpt.is_empty() {
            head.push_str(&format!("Rcpt: {rcpt}\r\n"));
        }
    }
    let id = header_value(ctx.id);
    if !id.is_empty() {
        head.push_str(&format!("Queue-Id: {id}\r\n"));
    }
    if let Some(password) = &settings.rspamd_password {
        head.push_str(&format!("Password: {}\r\n", header_value(password)));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

async fn ask_rspamd(
    addr: &str,
    settings: &ExternalSettings,
    ctx: &ExternalContext<'_>,
    raw: &[u8],
) -> Result<EngineVerdict, EngineError> {
    let head = rspamd_request(addr, settings, ctx, raw.len());
    let reply = exchange(addr, &head, raw, MAX_RSPAMD_REPLY).await?;
    let body = http_body(&reply)?;
    parse_rspamd(body)
}

/// The body of a complete HTTP/1.x reply with status 200; anything else is an error.
fn http_body(reply: &[u8]) -> Result<&[u8], EngineError> {
    let Some(end) = memchr::memmem::find(reply, b"\r\n\r\n") else {
        return Err(EngineError::NotHttp(excerpt(reply)));
    };
    let head = std::str::from_utf8(&reply[..end]).map_err(|_| EngineError::HttpHeadNotText)?;
    let body = &reply[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(EngineError::NotHttp(excerpt(status.as_bytes())));
    }
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(EngineError::BadHttpHeader(excerpt(line.as_bytes())));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| EngineError::BadLength {
                header: "Content-Length",
                value: excerpt(value.as_bytes()),
            })?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(EngineError::TransferEncoding(value.to_string()));
        } else if name.eq_ignore_ascii_case("compression")
            || (name.eq_ignore_ascii_case("content-encoding")
                && !value.eq_ignore_ascii_case("identity"))
        {
            return Err(EngineError::Compressed {
                name: name.to_string(),
                value: value.to_string(),
            });
        }
    }
    let body = match length {
        Some(n) if body.len() < n => {
            return Err(EngineError::CutShort {
                got: body.len(),
                want: n,
            });
        }
        Some(n) => &body[..n],
        None => body,
    };
    if code != "200" {
        return Err(EngineError::HttpStatus {
            code: code.to_string(),
            body: excerpt(body),
        });
    }
    Ok(body)
}

#[derive(Deserialize)]
struct RspamdReply {
    score: f64,
    #[serde(default)]
    required_score: Option<f64>,
    action: String,
    #[serde(default)]
    symbols: BTreeMap<String, RspamdSymbol>,
}

#[derive(Deserialize)]
struct RspamdSymbol {
    #[serde(default)]
    score: f64,
}

/// rspamd's JSON reply to `/checkv2`.
fn parse_rspamd(body: &[u8]) -> Result<EngineVerdict, EngineError> {
    let reply: RspamdReply = serde_json::from_slice(body).map_err(EngineError::RspamdJson)?;
    if !reply.score.is_finite() {
        return Err(EngineError::RspamdScore);
    }
    let required = reply
        .required_score
        .filter(|r| r.is_finite())
        .unwrap_or(f64::NAN);
    let action = header_value(&reply.action);
    let spam = matches!(action.as_str(), "reject" | "add header" | "rewrite subject");
    let symbols = reply
        .symbols
        .into_iter()
        .map(|(name, sym)| {
            let score = if sym.score.is_finite() {
                sym.score
            } else {
                0.0
            };
            (header_value(&name), score)
        })
        .collect();
    Ok(EngineVerdict {
        engine: RSPAMD_FINDING,
        score: reply.score,
        required,
        spam,
        action: Some(action),
        symbols,
    })
}

// ---------------------------------------------------------------------------------------
// spamd
// ---------------------------------------------------------------------------------------

/// The SPAMC/1.5 `SYMBOLS` request head (the message follows).
fn spamd_request(settings: &ExternalSettings, body_len: usize) -> Vec<u8> {
    let mut head = format!("SYMBOLS SPAMC/1.5\r\nContent-length: {body_len}\r\n");
    if let Some(user) = &settings.spamd_user {
        let user = header_value(user);
        if !user.is_empty() {
            head.push_str(&format!("User: {user}\r\n"));
        }
    }
    head.push_str("\r\n");
    head.into_bytes()
}

async fn ask_spamd(
    addr: &str,
    settings: &ExternalSettings,
    raw: &[u8],
) -> Result<EngineVerdict, EngineError> {
    let head = spamd_request(settings, raw.len());
    let reply = exchange(addr, &head, raw, MAX_SPAMD_REPLY).await?;
    parse_spamd(&reply)
}

/// spamd's reply to `SYMBOLS`: `SPAMD/1.1 0 EX_OK`, headers among which
/// `Spam: True ; 15.3 / 5.0`, an empty line, the symbol names separated by commas.
fn parse_spamd(reply: &[u8]) -> Result<EngineVerdict, EngineError> {
    let (head, body) = match memchr::memmem::find(reply, b"\r\n\r\n") {
        Some(end) => (&reply[..end], &reply[end + 4..]),
        // No symbols: some versions end the reply after the headers.
        None if reply.ends_with(b"\r\n") => (&reply[..reply.len() - 2], &reply[reply.len()..]),
        None => return Err(EngineError::NotSpamd(excerpt(reply))),
    };
    let head = std::str::from_utf8(head).map_err(|_| EngineError::SpamdHeadNotText)?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let protocol = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    let message = parts.next().unwrap_or("");
    if !protocol.starts_with("SPAMD/") {
        return Err(EngineError::NotSpamd(excerpt(status.as_bytes())));
    }
    if code != "0" {
        return Err(EngineError::Spamd {
            code: excerpt(code.as_bytes()),
            message: excerpt(message.as_bytes()),
        });
    }
    let mut verdict = None;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(EngineError::BadSpamdHeader(excerpt(line.as_bytes())));
        };
        if name.trim().eq_ignore_ascii_case("spam") {
            verdict = Some(parse_spam_header(value)?);
        } else if name.trim().eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| EngineError::BadLength {
                        header: "Content-length",
                        value: excerpt(value.as_bytes()),
                    })?,
            );
        }
    }
    let Some((spam, score, required)) = verdict else {
        return Err(EngineError::NoSpamHeader);
    };
    let body = match length {
        Some(n) if body.len() < n => {
            return Err(EngineError::CutShort {
                got: body.len(),
                want: n,
            });
        }
        Some(n) => &body[..n],
        None => body,
    };
    let body = std::str::from_utf8(body).map_err(|_| EngineError::SpamdSymbolsNotText)?;
    let symbols = body
        .split([',', '\r', '\n'])
        .map(header_value)
        .filter(|s| !s.is_empty())
        .map(|s| (s, 0.0))
        .collect();
    Ok(EngineVerdict {
        engine: SPAMD_FINDING,
        score,
        required,
        spam,
        action: None,
        symbols,
    })
}

/// `True ; 15.3 / 5.0` → (spam, score, required).
fn parse_spam_header(value: &str) -> Result<(bool, f64, f64), EngineError> {
    let bad = || EngineError::BadSpamHeader(excerpt(value.as_bytes()));
    let (flag, scores) = value.split_once(';').ok_or_else(bad)?;
    let spam = match flag.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" => true,
        "false" | "no" => false,
        _ => return Err(bad()),
    };
    let (score, required) = scores.split_once('/').ok_or_else(bad)?;
    let score: f64 = score.trim().parse().map_err(|_| bad())?;
    let required: f64 = required.trim().parse().map_err(|_| bad())?;
    if !score.is_finite() || !required.is_finite() {
        return Err(bad());
    }
    Ok((spam, score, required))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::net::TcpListener;

    const MESSAGE: &[u8] =
        b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n";

    fn ctx<'a>(recipients: &'a [String]) -> ExternalContext<'a> {
        ExternalContext {
            ip: Some("192.0.2.7".parse().unwrap()),
            helo: "mx.example.org",
            sender: "a@example.org",
            recipients,
            id: "Q123",
        }
    }

    fn settings() -> ExternalSettings {
        ExternalSettings {
            timeout_ms: 2000,
            ..Default::default()
        }
    }

    /// Reads one request: head up to the empty line, then `Content-length` body bytes.
    async fn read_request(sock: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = memchr::memmem::find(&data, b"\r\n\r\n") {
                break i;
            }
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed before the request head ended");
            data.extend_from_slice(&buf[..n]);
            assert!(data.len() < 1 << 20);
        };
        let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .expect("no content length");
        let mut body = data[head_end + 4..].to_vec();
        while body.len() < length {
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed before the body ended");
            body.extend_from_slice(&buf[..n]);
        }
        (head, body)
    }

    /// A one-connection server: reads a request, checks it with `inspect`, answers `reply`
    /// and closes.
    async fn fake_server(
        reply: Vec<u8>,
        inspect: impl FnOnce(String, Vec<u8>) + Send + 'static,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let (head, body) = read_request(&mut sock).await;
            inspect(head, body);
            // The client may give up on an oversized reply: write errors end the server.
            let _ = sock.write_all(&reply).await;
            let _ = sock.shutdown().await;
        });
        (addr, task)
    }

    /// A server that accepts and never answers (held for at most 10 s).
    async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            if let Ok((sock, _)) = listener.accept().await {
                tokio::time::sleep(Duration::from_secs(10)).await;
                drop(sock);
            }
        });
        (addr, task)
    }

    /// An address where nothing listens.
    async fn closed_port() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        addr
    }

    fn http_json(json: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nServer: rspamd/3.4\r\n\
             Content-Length: {}\r\nContent-Type: application/json\r\n\r\n{json}",
            json.len()
        )
        .into_bytes()
    }

    const RSPAMD_JSON: &str = r#"{"is_skipped":false,"score":7.5,"required_score":15.0,
        "action":"add header","symbols":{
        "RDNS_NONE":{"name":"RDNS_NONE","score":1.0,"metric_score":1.0},
        "HFILTER_HOSTNAME_UNKNOWN":{"name":"HFILTER_HOSTNAME_UNKNOWN","score":2.5},
        "MIME_GOOD":{"name":"MIME_GOOD","score":-0.1,"options":["text/plain"]},
        "FROM_HAS_DN":{"name":"FROM_HAS_DN","score":0.0},
        "BAYES_SPAM":{"name":"BAYES_SPAM","score":4.1}},
        "messages":{},"message-id":"x@example.org","time_real":0.03}"#;

    #[tokio::test]
    async fn rspamd_request_and_finding() {
        let (addr, server) = fake_server(http_json(RSPAMD_JSON), |head, body| {
            let lines: Vec<&str> = head.split("\r\n").collect();
            assert_eq!(lines[0], "POST /checkv2 HTTP/1.1");
            for want in [
                "Connection: close",
                "IP: 192.0.2.7",
                "Helo: mx.example.org",
                "From: a@example.org",
                "Rcpt: b@example.com",
                "Rcpt: c@example.com",
                "Queue-Id: Q123",
                "Password: s3cret",
            ] {
                assert!(lines.contains(&want), "{want:?} missing from {head}");
            }
            assert_eq!(body, MESSAGE);
        })
        .await;
        let recipients = vec!["b@example.com".to_string(), "c@example.com".to_string()];
        let s = ExternalSettings {
            rspamd: Some(addr),
            rspamd_password: Some("s3cret".into()),
            weight: 2.0,
            ..settings()
        };
        let report = check(&s, &ctx(&recipients), MESSAGE).await;
        server.await.unwrap();
        assert!(report.unavailable.is_empty(), "{report:?}");
        assert_eq!(report.findings.len(), 1);
        let f = &report.findings[0];
        assert_eq!(f.name, "rspamd");
        assert_eq!(f.score, 15.0);
        assert_eq!(
            f.detail,
            "add header: BAYES_SPAM(4.10) HFILTER_HOSTNAME_UNKNOWN(2.50) RDNS_NONE(1.00) MIME_GOOD(-0.10)"
        );
        let v = &report.verdicts[0];
        assert!(v.spam);
        assert_eq!(v.score, 7.5);
        assert_eq!(v.required, 15.0);
        assert_eq!(v.action.as_deref(), Some("add header"));
        assert_eq!(v.symbols.len(), 5);
        assert!(!report.should_tempfail(&s));
    }

    #[tokio::test]
    async fn spamd_request_and_finding() {
        let reply = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 28\r\nSpam: True ; 15.3 / 5.0\r\n\r\nGTUBE,MISSING_DATE,NO_RELAYS".to_vec();
        let (addr, server) = fake_server(reply, |head, body| {
            let lines: Vec<&str> = head.split("\r\n").collect();
            assert_eq!(lines[0], "SYMBOLS SPAMC/1.5");
            let length = format!("Content-length: {}", MESSAGE.len());
            assert!(lines.contains(&length.as_str()), "{head}");
            assert!(lines.contains(&"User: filter"), "{head}");
            assert_eq!(body, MESSAGE);
        })
        .await;
        let s = ExternalSettings {
            spamd: Some(addr),
            spamd_user: Some("filter".into()),
            ..settings()
        };
        let report = check(&s, &ctx(&[]), MESSAGE).await;
        server.await.unwrap();
        assert!(report.unavailable.is_empty(), "{report:?}");
        let f = &report.findings[0];
        assert_eq!(f.name, "spamd");
        assert_eq!(f.score, 15.3);
        assert_eq!(f.detail, "GTUBE,MISSING_DATE,NO_RELAYS");
        let v = &report.verdicts[0];
        assert!(v.spam);
        assert_eq!((v.score, v.required), (15.3, 5.0));
    }

    #[tokio::test]
    async fn both_engines_at_once_one_down() {
        let (rspamd, server) = fake_server(http_json(RSPAMD_JSON), |_, _| {}).await;
        let s = ExternalSettings {
            rspamd: Some(rspamd),
            spamd: Some(closed_port().await),
            ..settings()
        };
        let report = check(&s, &ctx(&[]), MESSAGE).await;
        server.await.unwrap();
        assert_eq!(report.findings.len(), 1);
        assert_eq!(report.findings[0].name, "rspamd");
        assert_eq!(report.unavailable.len(), 1);
        assert!(
            report.unavailable[0].starts_with("spamd 127.0.0.1:"),
            "{report:?}"
        );
        assert!(report.unavailable[0].contains("connect"), "{report:?}");
        // fail_open (the default): go on; fail closed: tempfail.
        assert!(!report.should_tempfail(&s));
        let closed = ExternalSettings {
            fail_open: false,
            ..s
        };
        assert!(report.should_tempfail(&closed));
    }

    #[tokio::test]
    async fn silent_engines_are_bounded_by_the_timeout() {
        let (a, ta) = silent_server().await;
        let (b, tb) = silent_server().await;
        let s = ExternalSettings {
            rspamd: Some(a),
            spamd: Some(b),
            timeout_ms: 500,
            ..settings()
        };
        let started = Instant::now();
        let report = check(&s, &ctx(&[]), MESSAGE).await;
        let took = started.elapsed();
        ta.abort();
        tb.abort();
        assert!(took >= Duration::from_millis(490), "{took:?}");
        // Both were asked at once: one budget, not two.
        assert!(took < Duration::from_millis(950), "{took:?}");
        assert!(report.findings.is_empty());
        assert_eq!(report.unavailable.len(), 2);
        assert!(
            report
                .unavailable
                .iter()
                .all(|u| u.contains("no answer within"))
        );
    }

    #[tokio::test]
    async fn malformed_replies_are_unavailable() {
        let cases: Vec<(bool, Vec<u8>, &str)> = vec![
            (true, b"garbage\r\n\r\n".to_vec(), "not an HTTP reply"),
            (true, http_json("{\"score\": \"high\"}"), "bad rspamd reply"),
            (true, http_json("{\"action\":\"reject\"}"), "bad rspamd reply"),
            (true, http_json("[1,2]"), "bad rspamd reply"),
            (
                true,
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 31\r\n\r\n{\"error\":\"Unauthorized access\"}".to_vec(),
                "HTTP 403",
            ),
            (
                true,
                b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"score\":1}".to_vec(),
                "cut short",
            ),
            (
                true,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
                "Transfer-Encoding",
            ),
            (true, b"".to_vec(), "without a reply"),
            (false, b"SPAMD/1.1 76 Bad header line: Foo\r\n\r\n".to_vec(), "spamd error 76"),
            (false, b"SPAMD/1.1 0 EX_OK\r\n\r\nGTUBE".to_vec(), "no Spam header"),
            (false, b"SPAMD/1.1 0 EX_OK\r\nSpam: Maybe ; 1 / 5\r\n\r\n".to_vec(), "bad Spam header"),
            (false, b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 5\r\n\r\n".to_vec(), "bad Spam header"),
            (false, b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), "not a spamd reply"),
        ];
        for (is_rspamd, reply, want) in cases {
            let (addr, server) = fake_server(reply.clone(), |_, _| {}).await;
            let s = if is_rspamd {
                ExternalSettings {
                    rspamd: Some(addr),
                    ..settings()
                }
            } else {
                ExternalSettings {
                    spamd: Some(addr),
                    ..settings()
                }
            };
            let report = check(&s, &ctx(&[]), MESSAGE).await;
            server.await.unwrap();
            assert!(report.findings.is_empty(), "{reply:?}: {report:?}");
            assert_eq!(report.unavailable.len(), 1, "{reply:?}");
            assert!(
                report.unavailable[0].contains(want),
                "{:?}: want {want:?}, got {:?}",
                String::from_utf8_lossy(&reply),
                report.unavailable[0]
            );
        }
    }

    #[tokio::test]
    async fn oversized_replies_are_unavailable() {
        // A well-formed start, then more than the bound.
        let mut big = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"score\":1,\"action\":\"no action\",\"x\":\"".to_vec();
        big.resize(MAX_RSPAMD_REPLY + 10, b'a');
        let (addr, server) = fake_server(big, |_, _| {}).await;
        let s = ExternalSettings {
            rspamd: Some(addr),
            ..settings()
        };
        let report = check(&s, &ctx(&[]), MESSAGE).await;
        server.await.unwrap();
        assert!(report.findings.is_empty());
        assert!(
            report.unavailable[0].contains("reply larger than"),
            "{report:?}"
        );

        let mut big = b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 5.0\r\n\r\n".to_vec();
        big.resize(MAX_SPAMD_REPLY + 10, b'A');
        let (addr, server) = fake_server(big, |_, _| {}).await;
        let s = ExternalSettings {
            spamd: Some(addr),
            ..settings()
        };
        let report = check(&s, &ctx(&[]), MESSAGE).await;
        server.await.unwrap();
        assert!(report.findings.is_empty());
        assert!(
            report.unavailable[0].contains("reply larger than"),
            "{report:?}"
        );
    }

    #[tokio::test]
    async fn nothing_configured_asks_nothing() {
        let report = check(&settings(), &ctx(&[]), MESSAGE).await;
        assert_eq!(report, ExternalReport::default());
        assert!(!settings().enabled());
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let recipients = vec!["b@example.com\r\nIP: 10.0.0.1".to_string()];
        let c = ExternalContext {
            ip: None,
            helo: "evil\r\nPassword: x\r\n",
            sender: "",
            recipients: &recipients,
            id: "id\n1",
        };
        let head =
            String::from_utf8(rspamd_request("127.0.0.1:11333", &settings(), &c, 5)).unwrap();
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert!(lines.contains(&"Helo: evilPassword: x"), "{head}");
        assert!(lines.contains(&"Rcpt: b@example.comIP: 10.0.0.1"), "{head}");
        assert!(lines.contains(&"From: <>"), "{head}");
        assert!(lines.contains(&"Queue-Id: id1"), "{head}");
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("IP:") || l.starts_with("Password:"))
        );
        assert!(head.ends_with("\r\n\r\n"));
        assert_eq!(head.matches("\r\n\r\n").count(), 1);
        // Long values are cut.
        assert_eq!(header_value(&"x".repeat(2000)).len(), MAX_HEADER_VALUE);
    }

    #[test]
    fn spam_header_forms() {
        assert_eq!(
            parse_spam_header(" True ; 15.3 / 5.0").unwrap(),
            (true, 15.3, 5.0)
        );
        assert_eq!(
            parse_spam_header("False ; -1.2 / 5.0").unwrap(),
            (false, -1.2, 5.0)
        );
        assert_eq!(
            parse_spam_header("Yes ; 1000.0 / 5.0").unwrap(),
            (true, 1000.0, 5.0)
        );
        assert!(parse_spam_header("True 15 / 5").is_err());
        assert!(parse_spam_header("True ; 15").is_err());
        assert!(parse_spam_header("True ; inf / 5").is_err());
    }

    #[test]
    fn spamd_reply_without_symbols() {
        let v = parse_spamd(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 5.0\r\n\r\n").unwrap();
        assert!(!v.spam && v.symbols.is_empty());
        let v = parse_spamd(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 5.0\r\n").unwrap();
        assert_eq!(v.score, 0.0);
    }

    #[test]
    fn details_are_bounded() {
        let verdict = EngineVerdict {
            engine: SPAMD_FINDING,
            score: 1.0,
            required: 5.0,
            spam: false,
            action: None,
            symbols: (0..200)
                .map(|i| (format!("SYMBOL_NUMBER_{i}"), 0.0))
                .collect(),
        };
        let f = verdict_finding(&verdict, 1.0);
        assert!(f.detail.len() <= MAX_DETAIL);
        assert!(f.detail.ends_with("..."));
        assert_eq!(cut("ééé".into(), 5), "é...");
        assert_eq!(cut("ééé".into(), 4), "...");
    }

    #[test]
    fn settings_from_toml() {
        #[derive(Deserialize)]
        struct File {
            external: ExternalSettings,
        }
        let f: File = toml::from_str(
            "[external]\nrspamd = \"127.0.0.1:11333\"\nrspamd_password = \"pw\"\n\
             spamd = \"[::1]:783\"\ntimeout_ms = 5000\nweight = 0.5\nfail_open = false\n",
        )
        .unwrap();
        let s = f.external;
        assert_eq!(s.rspamd.as_deref(), Some("127.0.0.1:11333"));
        assert_eq!(s.spamd.as_deref(), Some("[::1]:783"));
        assert_eq!((s.timeout_ms, s.weight, s.fail_open), (5000, 0.5, false));
        assert!(s.enabled());
        s.validate().unwrap();

        let d: File = toml::from_str("[external]\n").unwrap();
        assert_eq!(d.external, ExternalSettings::default());
        assert_eq!(d.external.timeout_ms, 10_000);
        assert_eq!(d.external.weight, 1.0);
        assert!(d.external.fail_open);
        assert!(toml::from_str::<File>("[external]\nrspamd_url = \"x\"\n").is_err());

        for bad in [
            ExternalSettings {
                rspamd: Some("localhost".into()),
                ..Default::default()
            },
            ExternalSettings {
                spamd: Some("127.0.0.1:0".into()),
                ..Default::default()
            },
            ExternalSettings {
                spamd: Some("[::1:783".into()),
                ..Default::default()
            },
            ExternalSettings {
                rspamd_password: Some("a\r\nb".into()),
                ..Default::default()
            },
            ExternalSettings {
                timeout_ms: 0,
                ..Default::default()
            },
            ExternalSettings {
                weight: f64::NAN,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
