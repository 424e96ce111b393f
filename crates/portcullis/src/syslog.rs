//! Log lines to a syslog collector as RFC 5424 messages, beside the text or JSON on
//! stderr (`[log] syslog`): over UDP (RFC 5426, one datagram a message), TCP (RFC 6587
//! octet-counting framing) or TLS (RFC 5425, rustls).
//!
//! Hand-written rather than the `syslog` crate (version 7) that DESIGN.md names: that
//! crate has no TLS transport at all (its fork with TLS uses native-tls/OpenSSL, not
//! rustls), and it writes on the caller's thread, so that a slow or unreachable
//! collector would hold up whatever logs, the SMTP sessions included. Here a
//! [`tracing_subscriber::Layer`] formats each event and hands it to a bounded channel;
//! one writer thread sends, connects and reconnects with backoff. When the channel is
//! full or the collector is down, lines are dropped and counted ([`dropped`]), never
//! waited for; the count goes to the collector as its own line once it is back.
//!
//! Each message carries the event's fields as structured data under the SD-ID
//! [`SD_ID`]: `portcullis@32473`. 32473 is the private enterprise number RFC 5612
//! reserves for documentation, a placeholder until the project has its own number.
//! The queue id (the `id` field), when the event has one, is also the MSGID.

use std::fmt::Write as _;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The SD-ID of the fields of an event (see the module's documentation).
pub const SD_ID: &str = "portcullis@32473";

/// The APP-NAME of every message.
const APP_NAME: &str = "portcullis";

/// Lines waiting for the writer at most; more are dropped.
const QUEUE_LINES: usize = 8192;

/// The longest message sent (bytes); a longer message is cut (at a character boundary).
/// rsyslog's default limit is 8 KiB; RFC 5426 asks receivers for at least 2 KiB.
const MAX_MESSAGE: usize = 8192;

/// First and longest wait before connecting again after a failure.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Connecting and each write are bounded: a collector that stops reading costs dropped
/// lines, not a stuck writer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines handed to the writer and not yet sent or dropped by it.
static PENDING: AtomicU64 = AtomicU64::new(0);

/// Wait (at most `limit`) for the writer to have dealt with every line queued so far:
/// at the end of `serve`, so that its last lines reach the collector.
pub fn flush(limit: Duration) {
    let until = Instant::now() + limit;
    while PENDING.load(Ordering::Acquire) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines dropped since start (queue full, collector unreachable, a failed write).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Where the collector is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Target {
    /// `udp://HOST:PORT`, `tcp://HOST:PORT` or `tls://HOST:PORT` (an IPv6 host in
    /// brackets); the error says what is wrong.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not udp://HOST:PORT, tcp://… or tls://…"))?;
        let transport = match scheme {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            _ => return Err(format!("`{scheme}`: the scheme must be udp, tcp or tls")),
        };
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("`{url}`: give the port (e.g. {scheme}://{rest}:514)"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{port}` is not a port number"))?;
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            return Err(format!("`{url}`: `{host}` is not a host name or address"));
        }
        Ok(Target {
            transport,
            host: host.to_string(),
            port,
        })
    }
}

/// The code of a facility name (RFC 5424 section 6.2.1).
pub fn facility(name: &str) -> Option<u8> {
    const NAMES: [&str; 12] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp",
    ];
    if let Some(i) = NAMES.iter().position(|n| *n == name) {
        return Some(i as u8);
    }
    let n: u8 = name.strip_prefix("local")?.parse().ok()?;
    (n <= 7).then_some(16 + n)
}

/// RFC 5424 severity of a tracing level.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// The layer that formats events and queues them for the writer.
pub struct SyslogLayer {
    tx: SyncSender<Vec<u8>>,
    facility: u8,
    hostname: String,
    procid: String,
}

/// Start the writer thread for `target` and make the layer feeding it. The TLS
/// settings are checked here (a bad `syslog_ca` is an error at start); the collector
/// need not be up.
pub fn layer(
    target: &Target,
    facility: u8,
    hostname: &str,
    ca: Option<&Path>,
) -> anyhow::Result<SyslogLayer> {
    let tls = match target.transport {
        Transport::Tls => Some(Arc::new(crate::cli::remote::tls_config(ca, "syslog_ca")?)),
        _ => None,
    };
    let (tx, rx) = sync_channel(QUEUE_LINES);
    let writer = Writer {
        target: target.clone(),
        tls,
        conn: None,
        next_attempt: Instant::now(),
        backoff: BACKOFF_FIRST,
        reported: 0,
    };
    std::thread::Builder::new()
        .name("syslog".into())
        .spawn(move || writer.run(rx))?;
    Ok(SyslogLayer {
        tx,
        facility,
        hostname: header_field(hostname, 255),
        procid: std::process::id().to_string(),
    })
}

impl<S: Subscriber> Layer<S> for SyslogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = format_message(
            self.facility * 8 + severity(event.metadata().level()),
            now_millis(),
            &self.hostname,
            &self.procid,
            &fields,
        );
        PENDING.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                PENDING.fetch_sub(1, Ordering::AcqRel);
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// An event's message and its other fields, in the order given.
#[derive(Default)]
struct Fields {
    message: String,
    params: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.params.push((field.name(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.params.push((field.name(), text));
        }
    }
}

/// Unix time in milliseconds.
fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A header field: printable US-ASCII only (RFC 5424 section 6), at most `max`
/// characters, `-` when empty.
fn header_field(value: &str, max: usize) -> String {
    let v: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`.
fn format_message(pri: u8, millis: i64, hostname: &str, procid: &str, fields: &Fields) -> Vec<u8> {
    let secs = millis.div_euclid(1000);
    let stamp = portcullis_gateway::dates::iso(secs);
    // `…T21:22:12Z` → `…T21:22:12.345Z`.
    let stamp = format!(
        "{}.{:03}Z",
        stamp.trim_end_matches('Z'),
        millis.rem_euclid(1000)
    );
    let msgid = fields
        .params
        .iter()
        .find(|(k, _)| *k == "id")
        .map(|(_, v)| header_field(v, 32))
        .unwrap_or_else(|| "-".into());
    let mut line = format!("<{pri}>1 {stamp} {hostname} {APP_NAME} {procid} {msgid} ");
    if fields.params.is_empty() {
        line.push('-');
    } else {
        line.push('[');
        line.push_str(SD_ID);
        for (name, value) in &fields.params {
            let name = header_field(name, 32).replace(['=', ']', '"'], "_");
            let _ = write!(line, " {name}=\"");
            // Inside a PARAM-VALUE, `"`, `\` and `]` are escaped (section 6.3.3).
            for c in value.chars() {
                if matches!(c, '"' | '\\' | ']') {
                    line.push('\\');
                }
                line.push(if c.is_control() { ' ' } else { c });
            }
            line.push('"');
        }
        line.push(']');
    }
    if !fields.message.is_empty() {
        line.push(' ');
        // One line: a collector splitting on newlines must not see a second message.
        line.extend(
            fields
                .message
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c }),
        );
    }
    if line.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line.into_bytes()
}

/// A connection to the collector.
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn send(&mut self, msg: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(msg).map(|_| ()),
            Conn::Tcp(s) => write_framed(s, msg),
            Conn::Tls(s) => write_framed(s.as_mut(), msg),
        }
    }
}

/// RFC 6587 section 3.4.1 octet counting: `LEN SP MSG`.
fn write_framed(w: &mut impl Write, msg: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(msg.len() + 8);
    frame.extend_from_slice(msg.len().to_string().as_bytes());
    frame.push(b' ');
    frame.extend_from_slice(msg);
    w.write_all(&frame)?;
    w.flush()
}

struct Writer {
    target: Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<Conn>,
    /// While disconnected: no connection attempt before this.
    next_attempt: Instant,
    backoff: Duration,
    /// The drop count last told to the collector.
    reported: u64,
}

impl Writer {
    fn run(mut self, rx: Receiver<Vec<u8>>) {
        loop {
            let line = match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(line) => Some(line),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if self.conn.is_none() && Instant::now() >= self.next_attempt {
                self.connect();
            }
            if self.conn.is_some() {
                self.report_drops();
            }
            if let Some(line) = line {
                if !self.send(&line) {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
                PENDING.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Send one message; false when it could not be (not connected, or the write
    /// failed, which closes the connection).
    fn send(&mut self, line: &[u8]) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match conn.send(line) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("portcullis: syslog: sending failed, reconnecting: {e}");
                self.conn = None;
                self.failed();
                false
            }
        }
    }

    /// Tell the collector how many lines it missed, once it can hear it.
    fn report_drops(&mut self) {
        let now = dropped();
        if now == self.reported {
            return;
        }
        let fields = Fields {
            message: format!(
                "{} log lines were dropped (syslog collector slow or unreachable)",
                now - self.reported
            ),
            params: vec![("dropped_total", now.to_string())],
        };
        let line = format_message(2 * 8 + 4, now_millis(), "-", "-", &fields);
        if self.send(&line) {
            self.reported = now;
        }
    }

    fn failed(&mut self) {
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn connect(&mut self) {
        match self.open() {
            Ok(conn) => {
                self.conn = Some(conn);
                self.backoff = BACKOFF_FIRST;
            }
            Err(e) => {
                eprintln!(
                    "portcullis: syslog: cannot reach {}:{} (retrying in {:?}): {e}",
                    self.target.host, self.target.port, self.backoff
                );
                self.failed();
            }
        }
    }

    fn open(&self) -> std::io::Result<Conn> {
        let t = &self.target;
        let addr = (t.host.as_str(), t.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("the host name has no address"))?;
        if t.transport == Transport::Udp {
            let local = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let socket = UdpSocket::bind(local)?;
            socket.connect(addr)?;
            return Ok(Conn::Udp(socket));
        }
        let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            return Ok(Conn::Tcp(tcp));
        };
        let name = rustls_pki_types::ServerName::try_from(t.host.clone())
            .map_err(|e| std::io::Error::other(format!("server name {}: {e}", t.host)))?;
        let conn =
            rustls::ClientConnection::new(tls.clone(), name).map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        // The handshake now, so that a certificate the collector's CA did not sign is
        // an error of connecting, said once, not of every line.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Conn::Tls(Box::new(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("tcp://[::1]:6514").unwrap();
        assert_eq!(
            (t.transport, t.host.as_str(), t.port),
            (Transport::Tcp, "::1", 6514)
        );
        assert_eq!(Target::parse("udp://127.0.0.1:514").unwrap().port, 514);
        assert!(Target::parse("tls://log.example.org").is_err());
        assert!(Target::parse("http://x:1").is_err());
        assert!(Target::parse("udp://x:0").is_err());
        assert!(Target::parse("127.0.0.1:514").is_err());
    }

    #[test]
    fn facilities() {
        assert_eq!(facility("mail"), Some(2));
        assert_eq!(facility("local7"), Some(23));
        assert_eq!(facility("local8"), None);
        assert_eq!(facility("mai"), None);
    }

    #[test]
    fn message_format() {
        let fields = Fields {
            message: "checked\nsecond line".into(),
            params: vec![
                ("id", "1a2b3c".into()),
                ("client", "192.0.2.7".into()),
                ("verdict", "quarantine:\"spam]\\".into()),
            ],
        };
        let line = format_message(2 * 8 + 6, 1_796_000_000_123, "mx.test", "42", &fields);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "<22>1 2026-11-30T00:53:20.123Z mx.test portcullis 42 1a2b3c \
             [portcullis@32473 id=\"1a2b3c\" client=\"192.0.2.7\" \
             verdict=\"quarantine:\\\"spam\\]\\\\\"] checked second line"
        );
        let bare = format_message(2 * 8 + 3, 0, "h", "1", &Fields::default());
        assert_eq!(
            String::from_utf8(bare).unwrap(),
            "<19>1 1970-01-01T00:00:00.000Z h portcullis 1 - -"
        );
        let long = Fields {
            message: "é".repeat(MAX_MESSAGE),
            params: Vec::new(),
        };
        let cut = format_message(22, 0, "h", "1", &long);
        assert!(cut.len() <= MAX_MESSAGE);
        assert!(String::from_utf8(cut).is_ok());
    }

    #[test]
    fn octet_counting() {
        let mut out = Vec::new();
        write_framed(&mut out, b"<22>1 x").unwrap();
        assert_eq!(out, b"7 <22>1 x");
    }
}
