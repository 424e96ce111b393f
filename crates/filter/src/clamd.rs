//! Antivirus through clamd: a small client for clamd's `INSTREAM` and `PING` commands.
//!
//! The whole raw message is streamed to clamd, which decodes MIME and unpacks archives
//! itself. A [`Scanner`] knows several clamd endpoints (TCP `host:port` or
//! `unix:/path/to/clamd.sock`) and tries them in order, moving to the next one when a
//! connection cannot be made, breaks before clamd answered, or clamd reports an error of
//! its own (not a size-limit error: the next clamd would say the same). The whole scan,
//! every endpoint included, runs within one time budget.
//!
//! The scanner never decides what an unavailable scanner means for the message: it
//! returns [`ScanResult::Unavailable`] with the reason, and the caller applies its
//! fail-open or fail-closed policy.
//!
//! Protocol (clamd(8)): the client sends `zINSTREAM\0`, then the data as chunks, each
//! preceded by its length as a 4-byte big-endian integer, then a chunk of length zero.
//! clamd answers one NUL-terminated line: `stream: OK`, `stream: <signature> FOUND`, or
//! a line ending in `ERROR`; when the stream is longer than its `StreamMaxLength` it
//! answers `INSTREAM size limit exceeded. ERROR` and closes the connection.
//!
//! Errors: a configured endpoint that does not parse is an [`EndpointError`]; a health
//! check that fails is a [`PingError`]. A scan never fails: it returns
//! [`ScanResult::Unavailable`].

use crate::finding::Finding;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

/// The finding name of an infected message.
pub const VIRUS_FINDING: &str = "av.virus";
/// The score an infection adds: enough for any spam threshold, rules usually reject on
/// the name anyway.
pub const VIRUS_SCORE: f64 = 100.0;

/// Bytes sent per INSTREAM chunk.
const CHUNK: usize = 64 * 1024;
/// The longest reply line accepted from clamd.
const MAX_REPLY: usize = 4096;
/// Default time allowed for one connection attempt (the whole-scan budget still applies).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port` (a name, an IPv4 address or a bracketed IPv6 address).
    Tcp(String),
    /// A unix-domain socket path (`unix:/run/clamav/clamd.ctl`).
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses `host:port`, `[v6]:port`, `unix:/path` or an absolute path.
    pub fn parse(s: &str) -> Result<Endpoint, EndpointError> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(EndpointError::EmptySocketPath(s.to_string()));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        let well_formed = s
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !well_formed {
            return Err(EndpointError::Malformed(s.to_string()));
        }
        Ok(Endpoint::Tcp(s.to_string()))
    }
}

/// A clamd endpoint in the configuration that does not parse; the endpoint as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// `unix:` with nothing after it.
    #[error("clamd endpoint {0:?}: empty socket path")]
    EmptySocketPath(String),
    /// Neither `host:port` (with a port number) nor a socket path.
    #[error("clamd endpoint {0:?}: expected host:port or unix:/path")]
    Malformed(String),
}

/// Why a health check (`PING`) failed.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// The scanner has no endpoint to ask.
    #[error("no clamd endpoint configured")]
    NoEndpoints,
    /// No connection could be made to the endpoint.
    #[error(transparent)]
    Connect(ConnectError),
    /// The connection broke while `PING` was being sent.
    #[error("sending PING: {0}")]
    Send(#[source] std::io::Error),
    /// The connection broke before a whole reply came.
    #[error("reading PONG: {0}")]
    Read(#[source] std::io::Error),
    /// clamd answered something other than `PONG`.
    #[error("unexpected reply to PING: {0:?}")]
    UnexpectedReply(String),
    /// No `PONG` within the scanner's time budget.
    #[error("no PONG within {0:?}")]
    Timeout(Duration),
    /// Every endpoint failed ([`Scanner::ping`]); each with its own error.
    #[error("{}", list_failures(.0))]
    AllFailed(Vec<(Endpoint, PingError)>),
}

/// `endpoint: error; endpoint: error`.
fn list_failures(failures: &[(Endpoint, PingError)]) -> String {
    failures
        .iter()
        .map(|(endpoint, e)| format!("{endpoint}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why no connection to one endpoint could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Refused, unreachable, no such socket, ...
    #[error("connect: {0}")]
    Io(#[source] std::io::Error),
    /// The connection was not made within the connect timeout.
    #[error("connect: no connection within {0:?}")]
    Timeout(Duration),
}

impl std::str::FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::parse(s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => f.write_str(addr),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why a scan has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// No endpoint is configured.
    NoEndpoints,
    /// Every endpoint refused or broke the connection; the last error per endpoint.
    AllDown(String),
    /// The time budget ran out.
    Timeout(Duration),
    /// The message is longer than clamd's `StreamMaxLength`. Trying again will not help:
    /// the caller decides whether such a message passes unscanned.
    SizeLimit,
    /// clamd answered with an error or something that is not a scan result.
    Protocol(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NoEndpoints => f.write_str("no clamd endpoint configured"),
            Unavailable::AllDown(why) => write!(f, "no clamd reachable: {why}"),
            Unavailable::Timeout(d) => write!(f, "clamd did not answer within {d:?}"),
            Unavailable::SizeLimit => {
                f.write_str("message exceeds clamd's StreamMaxLength (INSTREAM size limit)")
            }
            Unavailable::Protocol(why) => write!(f, "clamd error: {why}"),
        }
    }
}

/// The outcome of one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanResult {
    Clean,
    /// The signature name clamd reported (`Eicar-Test-Signature`).
    Infected(String),
    Unavailable(Unavailable),
}

impl ScanResult {
    /// The finding for an infection (`av.virus`, detail = signature name); `None` for a
    /// clean or an unavailable result.
    pub fn finding(&self) -> Option<Finding> {
        match self {
            ScanResult::Infected(name) => {
                Some(Finding::new(VIRUS_FINDING, VIRUS_SCORE, name.clone()))
            }
            _ => None,
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, ScanResult::Unavailable(_))
    }
}

/// A clamd client over one or more endpoints. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Scanner {
    endpoints: Vec<Endpoint>,
    timeout: Duration,
    connect_timeout: Duration,
}

/// What one endpoint gave.
enum Attempt {
    /// Connection refused, reset, closed without a reply: try the next endpoint.
    Transport(String),
    /// clamd answered.
    Answer(ScanResult),
}

impl Scanner {
    /// A scanner trying `endpoints` in order, each scan bounded by `timeout` in total.
    pub fn new(endpoints: Vec<Endpoint>, timeout: Duration) -> Scanner {
        Scanner {
            endpoints,
            timeout,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Parses each endpoint with [`Endpoint::parse`].
    pub fn from_strs<S: AsRef<str>>(
        endpoints: &[S],
        timeout: Duration,
    ) -> Result<Scanner, EndpointError> {
        let endpoints = endpoints
            .iter()
            .map(|s| Endpoint::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Scanner::new(endpoints, timeout))
    }

    /// The time allowed to connect to one endpoint before moving to the next (default 2 s,
    /// never more than the whole-scan budget).
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Scanner {
        self.connect_timeout = connect_timeout;
        self
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Scans a whole raw message (or any bytes).
    pub async fn scan(&self, data: &[u8]) -> ScanResult {
        if self.endpoints.is_empty() {
            return ScanResult::Unavailable(Unavailable::NoEndpoints);
        }
        match tokio::time::timeout(self.timeout, self.scan_endpoints(data)).await {
            Ok(result) => result,
            Err(_) => ScanResult::Unavailable(Unavailable::Timeout(self.timeout)),
        }
    }

    async fn scan_endpoints(&self, data: &[u8]) -> ScanResult {
        let mut errors = Vec::new();
        let mut clamd_errors = false;
        for endpoint in &self.endpoints {
            let attempt = match self.connect(endpoint).await {
                Ok(Conn::Tcp(s)) => instream(s, data).await,
                #[cfg(unix)]
                Ok(Conn::Unix(s)) => instream(s, data).await,
                Err(e) => Attempt::Transport(e.to_string()),
            };
            let error = match attempt {
                // An error reported by this clamd (out of memory, a full temporary
                // directory) may not happen on the next one: try it.
                Attempt::Answer(ScanResult::Unavailable(Unavailable::Protocol(e))) => {
                    clamd_errors = true;
                    e
                }
                Attempt::Answer(result) => return result,
                Attempt::Transport(e) => e,
            };
            tracing::debug!(%endpoint, %error, "clamd endpoint failed, trying the next");
            errors.push(format!("{endpoint}: {error}"));
        }
        let errors = errors.join("; ");
        ScanResult::Unavailable(if clamd_errors {
            Unavailable::Protocol(errors)
        } else {
            Unavailable::AllDown(errors)
        })
    }

    /// Health check: `PING` every endpoint (within the scanner's time budget each) and
    /// report which answer `PONG`.
    pub async fn ping_all(&self) -> Vec<(Endpoint, Result<(), PingError>)> {
        let mut out = Vec::with_capacity(self.endpoints.len());
        for endpoint in &self.endpoints {
            out.push((endpoint.clone(), self.ping_one(endpoint).await));
        }
        out
    }

    /// Health check: `Ok` when at least one endpoint answers `PONG`.
    pub async fn ping(&self) -> Result<(), PingError> {
        if self.endpoints.is_empty() {
            return Err(PingError::NoEndpoints);
        }
        let mut errors = Vec::new();
        for endpoint in &self.endpoints {
            match self.ping_one(endpoint).await {
                Ok(()) => return Ok(()),
                Err(e) => errors.push((endpoint.clone(), e)),
            }
        }
        Err(PingError::AllFailed(errors))
    }

    /// `PING` one endpoint, bounded by the scanner's time budget.
    pub async fn ping_one(&self, endpoint: &Endpoint) -> Result<(), PingError> {
        let work = async {
            match self.connect(endpoint).await.map_err(PingError::Connect)? {
                Conn::Tcp(s) => ping(s).await,
                #[cfg(unix)]
                Conn::Unix(s) => ping(s).await,
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(PingError::Timeout(self.timeout)),
        }
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<Conn, ConnectError> {
        let limit = self.connect_timeout.min(self.timeout);
        let connecting = async {
            match endpoint {
                Endpoint::Tcp(addr) => {
                    let s = tokio::net::TcpStream::connect(addr.as_str()).await?;
                    s.set_nodelay(true)?;
                    Ok::<_, std::io::Error>(Conn::Tcp(s))
                }
                #[cfg(unix)]
                Endpoint::Unix(path) => {
                    Ok(Conn::Unix(tokio::net::UnixStream::connect(path).await?))
                }
                #[cfg(not(unix))]
                Endpoint::Unix(_) => {
                    Err(std::io::Error::other("unix sockets are not supported here"))
                }
            }
        };
        match tokio::time::timeout(limit, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(ConnectError::Io(e)),
            Err(_) => Err(ConnectError::Timeout(limit)),
        }
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// One INSTREAM exchange on a connected stream. The reply is read while sending, so that
/// an early answer (clamd's size-limit error, sent before it closes the connection) is
/// seen at once rather than lost behind a broken pipe.
async fn instream<S: AsyncRead + AsyncWrite + Unpin>(stream: S, data: &[u8]) -> Attempt {
    let (mut reader, writer) = tokio::io::split(stream);
    let mut writer = BufWriter::with_capacity(CHUNK + 4, writer);
    let send = send_stream(&mut writer, data);
    let recv = read_reply(&mut reader);
    tokio::pin!(send);
    tokio::pin!(recv);
    let mut sending = true;
    let mut send_error = None;
    let reply = loop {
        tokio::select! {
            sent = &mut send, if sending => {
                sending = false;
                send_error = sent.err();
            }
            reply = &mut recv => break reply,
        }
    };
    match reply {
        Ok(line) if !line.is_empty() => Attempt::Answer(parse_reply(&line)),
        Ok(_) => Attempt::Transport(match send_error {
            Some(e) => format!("sending: {e}"),
            None => "connection closed without a reply".into(),
        }),
        Err(e) => Attempt::Transport(match send_error {
            Some(s) => format!("sending: {s}; reading the reply: {e}"),
            None => format!("reading the reply: {e}"),
        }),
    }
}

async fn send_stream<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> std::io::Result<()> {
    w.write_all(b"zINSTREAM\0").await?;
    for chunk in data.chunks(CHUNK) {
        // `chunks` yields at most CHUNK bytes, far below u32::MAX.
        w.write_all(&(chunk.len() as u32).to_be_bytes()).await?;
        w.write_all(chunk).await?;
    }
    w.write_all(&0u32.to_be_bytes()).await?;
    w.flush().await
}

/// Reads one NUL-terminated (or EOF-terminated) reply, at most [`MAX_REPLY`] bytes.
async fn read_reply<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(64);
    let mut byte = [0u8; 256];
    loop {
        let n = r.read(&mut byte).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&byte[..n]);
        if let Some(end) = buf.iter().position(|&b| b == 0) {
            buf.truncate(end);
            break;
        }
        if buf.len() > MAX_REPLY {
            return Err(std::io::Error::other("reply too long"));
        }
    }
    Ok(String::from_utf8_lossy(&buf).trim().to_string())
}

/// Turns one clamd reply line into a result.
fn parse_reply(line: &str) -> ScanResult {
    let line = line.trim_end_matches(['\0', '\n', '\r', ' ']);
    if line.contains("size limit exceeded") {
        return ScanResult::Unavailable(Unavailable::SizeLimit);
    }
    // Replies name the stream first ("stream: ..."); a session id may precede it.
    let body = line.rsplit_once(": ").map_or(line, |(_, b)| b);
    if let Some(name) = body.strip_suffix(" FOUND") {
        let name = name.trim();
        if name.is_empty() {
            return ScanResult::Unavailable(Unavailable::Protocol(format!(
                "FOUND without a name: {line:?}"
            )));
        }
        return ScanResult::Infected(name.to_string());
    }
    if body == "OK" {
        return ScanResult::Clean;
    }
    if line.ends_with("ERROR") {
        return ScanResult::Unavailable(Unavailable::Protocol(line.to_string()));
    }
    ScanResult::Unavailable(Unavailable::Protocol(format!("unexpected reply {line:?}")))
}

async fn ping<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> Result<(), PingError> {
    s.write_all(b"zPING\0").await.map_err(PingError::Send)?;
    s.flush().await.map_err(PingError::Send)?;
    let reply = read_reply(&mut s).await.map_err(PingError::Read)?;
    if reply == "PONG" {
        Ok(())
    } else {
        Err(PingError::UnexpectedReply(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("127.0.0.1:3310").unwrap(),
            Endpoint::Tcp("127.0.0.1:3310".into())
        );
        assert_eq!(
            Endpoint::parse("[::1]:3310").unwrap(),
            Endpoint::Tcp("[::1]:3310".into())
        );
        assert_eq!(
            Endpoint::parse("unix:/run/clamav/clamd.ctl").unwrap(),
            Endpoint::Unix("/run/clamav/clamd.ctl".into())
        );
        assert_eq!(
            Endpoint::parse("/run/clamav/clamd.ctl").unwrap(),
            Endpoint::Unix("/run/clamav/clamd.ctl".into())
        );
        assert_eq!(
            Endpoint::parse("unix:/x").unwrap().to_string(),
            "unix:/x".to_string()
        );
        for bad in ["", "localhost", "host:", ":3310", "host:99999", "unix:"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn replies() {
        assert_eq!(parse_reply("stream: OK"), ScanResult::Clean);
        assert_eq!(
            parse_reply("stream: Eicar-Test-Signature FOUND"),
            ScanResult::Infected("Eicar-Test-Signature".into())
        );
        assert_eq!(
            parse_reply("1: stream: Win.Test.EICAR_HDB-1 FOUND"),
            ScanResult::Infected("Win.Test.EICAR_HDB-1".into())
        );
        assert_eq!(
            parse_reply("INSTREAM size limit exceeded. ERROR"),
            ScanResult::Unavailable(Unavailable::SizeLimit)
        );
        assert!(matches!(
            parse_reply("stream: Can't allocate memory ERROR"),
            ScanResult::Unavailable(Unavailable::Protocol(_))
        ));
        assert!(matches!(
            parse_reply("UNKNOWN COMMAND"),
            ScanResult::Unavailable(Unavailable::Protocol(_))
        ));
        assert!(matches!(
            parse_reply("stream:  FOUND"),
            ScanResult::Unavailable(Unavailable::Protocol(_))
        ));
    }

    #[test]
    fn finding_of_an_infection() {
        let f = ScanResult::Infected("Eicar-Test-Signature".into())
            .finding()
            .unwrap();
        assert_eq!(f.name, "av.virus");
        assert_eq!(f.detail, "Eicar-Test-Signature");
        assert!(f.score >= 100.0);
        assert!(ScanResult::Clean.finding().is_none());
        assert!(
            ScanResult::Unavailable(Unavailable::SizeLimit)
                .finding()
                .is_none()
        );
    }

    /// The wire format, checked against an in-process fake clamd.
    #[tokio::test]
    async fn wire_format_and_size_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let mut received = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut cmd = [0u8; 10];
                s.read_exact(&mut cmd).await.unwrap();
                assert_eq!(&cmd, b"zINSTREAM\0");
                let mut body = Vec::new();
                let mut too_big = false;
                loop {
                    let mut len = [0u8; 4];
                    s.read_exact(&mut len).await.unwrap();
                    let len = u32::from_be_bytes(len) as usize;
                    if len == 0 {
                        break;
                    }
                    assert!(len <= CHUNK);
                    let mut chunk = vec![0u8; len];
                    s.read_exact(&mut chunk).await.unwrap();
                    body.extend_from_slice(&chunk);
                    if body.len() > 100_000 {
                        too_big = true;
                        break;
                    }
                }
                if too_big {
                    s.write_all(b"INSTREAM size limit exceeded. ERROR\0")
                        .await
                        .unwrap();
                } else {
                    s.write_all(b"stream: OK\0").await.unwrap();
                }
                drop(s);
                received.push(body.len());
            }
            received
        });
        let scanner = Scanner::from_strs(&[addr], Duration::from_secs(10)).unwrap();
        let small = vec![7u8; 70_000];
        assert_eq!(scanner.scan(&small).await, ScanResult::Clean);
        let big = vec![7u8; 5_000_000];
        assert_eq!(
            scanner.scan(&big).await,
            ScanResult::Unavailable(Unavailable::SizeLimit)
        );
        let received = server.await.unwrap();
        assert_eq!(received[0], 70_000);
    }

    /// A fake clamd answering every INSTREAM with `reply`.
    async fn fake_clamd(reply: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut cmd = [0u8; 10];
                    s.read_exact(&mut cmd).await?;
                    loop {
                        let mut len = [0u8; 4];
                        s.read_exact(&mut len).await?;
                        let len = u32::from_be_bytes(len) as usize;
                        if len == 0 {
                            break;
                        }
                        let mut chunk = vec![0u8; len];
                        s.read_exact(&mut chunk).await?;
                    }
                    s.write_all(reply).await?;
                    std::io::Result::Ok(())
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn clamd_errors_fail_over() {
        let broken = fake_clamd(b"stream: Can't create temporary directory ERROR\0").await;
        let found = fake_clamd(b"stream: Test.Sig FOUND\0").await;
        let scanner = Scanner::from_strs(&[&broken, &found], Duration::from_secs(5)).unwrap();
        assert_eq!(
            scanner.scan(b"data").await,
            ScanResult::Infected("Test.Sig".into())
        );
        let scanner = Scanner::from_strs(&[&broken, &broken], Duration::from_secs(5)).unwrap();
        match scanner.scan(b"data").await {
            ScanResult::Unavailable(Unavailable::Protocol(e)) => {
                assert!(e.contains("temporary directory"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        // A size-limit answer is final: the next clamd is not asked.
        let limited = fake_clamd(b"INSTREAM size limit exceeded. ERROR\0").await;
        let scanner = Scanner::from_strs(&[&limited, &found], Duration::from_secs(5)).unwrap();
        assert_eq!(
            scanner.scan(b"data").await,
            ScanResult::Unavailable(Unavailable::SizeLimit)
        );
    }

    #[tokio::test]
    async fn no_endpoints() {
        let scanner = Scanner::new(Vec::new(), Duration::from_secs(1));
        assert_eq!(
            scanner.scan(b"x").await,
            ScanResult::Unavailable(Unavailable::NoEndpoints)
        );
        assert!(scanner.ping().await.is_err());
    }
}
