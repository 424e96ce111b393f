//! A route test: one connection to one server that goes as far as a delivery would
//! before MAIL (greeting, EHLO, STARTTLS as the route's TLS mode asks, EHLO again) and
//! then says QUIT, keeping every line sent and received so that an administrator can
//! read the whole dialogue. It sends no mail and no credentials.
//!
//! It speaks over the same transport as the delivery client (`tls`: the stream, reply
//! framing, the STARTTLS handshake and its injection check), so what it shows is what
//! delivery would meet. Unlike delivery it never falls back: a failed handshake in mode
//! `may` is reported, with a note that delivery would continue in plain text.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::client::{TlsConfigs, TlsMode};
use crate::client_error::ClientError;
use crate::tls::{Conn, Stream, parse_reply, start_tls};

/// Who said a line of the dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// We sent it.
    Client,
    /// The server answered it.
    Server,
    /// What happened between lines: connected, TLS up, closed.
    Note,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Line {
    pub side: Side,
    pub text: String,
}

/// The TLS session the probe got.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsFacts {
    /// `TLSv1_3`.
    pub version: String,
    /// `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The subject of the server's certificate, `CN=mail.example.com`.
    pub subject: String,
    pub issuer: String,
    /// The certificate was checked against the host name and trusted roots (mode
    /// `verify`); otherwise any certificate was taken.
    pub verified: bool,
}

/// Everything one probe learnt.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProbeReport {
    pub host: String,
    pub port: u16,
    /// The address connected to, once the name resolved.
    pub address: Option<SocketAddr>,
    pub lines: Vec<Line>,
    pub tls: Option<TlsFacts>,
    pub elapsed_ms: u64,
    /// Why the probe stopped early; `None`: the dialogue went up to QUIT.
    pub error: Option<String>,
}

impl ProbeReport {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// How a probe behaves.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub helo_name: String,
    /// Bound of each step: resolving, connecting, each reply, the handshake.
    pub step_timeout: Duration,
    /// Bound of the whole probe (a server that answers each step just in time).
    pub total_timeout: Duration,
}

/// Probe `host:port` with the TLS mode of a route. `Dane` requires STARTTLS like
/// `encrypt`; the TLSA match itself needs DNSSEC answers and is left to delivery (the
/// report says so).
pub async fn probe(
    host: &str,
    port: u16,
    mode: TlsMode,
    configs: &TlsConfigs,
    settings: &ProbeSettings,
) -> ProbeReport {
    let started = Instant::now();
    let mut run = Run {
        lines: Vec::new(),
        tls: None,
        address: None,
    };
    let dialogue = run.dialogue(host, port, mode, configs, settings);
    let result = match timeout(settings.total_timeout, dialogue).await {
        Ok(result) => result,
        Err(_) => Err(format!("gave up after {:?} in all", settings.total_timeout)),
    };
    ProbeReport {
        host: host.to_string(),
        port,
        address: run.address,
        lines: run.lines,
        tls: run.tls,
        elapsed_ms: started.elapsed().as_millis() as u64,
        error: result.err(),
    }
}

struct Run {
    lines: Vec<Line>,
    tls: Option<TlsFacts>,
    address: Option<SocketAddr>,
}

impl Run {
    fn note(&mut self, text: impl Into<String>) {
        self.lines.push(Line {
            side: Side::Note,
            text: text.into(),
        });
    }

    async fn send(
        &mut self,
        conn: &mut Conn,
        line: &str,
        limit: Duration,
        stage: &'static str,
    ) -> Result<(), String> {
        self.lines.push(Line {
            side: Side::Client,
            text: line.to_string(),
        });
        conn.write(format!("{line}\r\n").as_bytes(), limit, stage)
            .await
            .map_err(|e| e.to_string())
    }

    /// One whole reply, each of its lines kept as the server wrote it.
    async fn reply(
        &mut self,
        conn: &mut Conn,
        limit: Duration,
        stage: &'static str,
    ) -> Result<(u16, Vec<u8>), String> {
        let raw = conn
            .read_raw(limit, stage)
            .await
            .map_err(|e| e.to_string())?;
        for line in String::from_utf8_lossy(&raw).lines() {
            self.lines.push(Line {
                side: Side::Server,
                text: line.to_string(),
            });
        }
        let reply = parse_reply(&raw).map_err(|e| e.to_string())?;
        Ok((reply.code, raw))
    }

    /// EHLO and whether STARTTLS is offered; HELO when EHLO is refused for good.
    async fn ehlo(&mut self, conn: &mut Conn, settings: &ProbeSettings) -> Result<bool, String> {
        let limit = settings.step_timeout;
        self.send(conn, &format!("EHLO {}", settings.helo_name), limit, "EHLO")
            .await?;
        let (code, raw) = self.reply(conn, limit, "EHLO").await?;
        if code == 250 {
            let offers = smtp_proto::EhloResponse::parse(&mut raw.iter())
                .map(|e| e.capabilities & smtp_proto::EXT_START_TLS != 0)
                .unwrap_or(false);
            return Ok(offers);
        }
        if code < 500 {
            return Err(format!("EHLO refused with {code}"));
        }
        self.send(conn, &format!("HELO {}", settings.helo_name), limit, "HELO")
            .await?;
        match self.reply(conn, limit, "HELO").await? {
            (250, _) => Ok(false),
            (code, _) => Err(format!("HELO refused with {code}")),
        }
    }

    async fn dialogue(
        &mut self,
        host: &str,
        port: u16,
        mode: TlsMode,
        configs: &TlsConfigs,
        settings: &ProbeSettings,
    ) -> Result<(), String> {
        let limit = settings.step_timeout;
        let address = match timeout(limit, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(mut found)) => found
                .next()
                .ok_or_else(|| format!("{host} has no address"))?,
            Ok(Err(e)) => return Err(format!("{host} does not resolve: {e}")),
            Err(_) => return Err(format!("resolving {host} timed out after {limit:?}")),
        };
        self.address = Some(address);
        let tcp = match timeout(limit, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(format!("connecting to {address} failed: {e}")),
            Err(_) => return Err(format!("connecting to {address} timed out after {limit:?}")),
        };
        self.note(format!("connected to {address}"));
        let conn = Conn {
            stream: Stream::Plain(tcp),
            rbuf: Vec::new(),
        };
        let mut conn = self.session(conn, host, mode, configs, settings).await?;
        self.send(&mut conn, "QUIT", limit, "QUIT").await?;
        self.reply(&mut conn, limit, "QUIT").await?;
        let _ = conn.stream.shutdown().await;
        self.note("closed");
        Ok(())
    }

    async fn session(
        &mut self,
        mut plain: Conn,
        host: &str,
        mode: TlsMode,
        configs: &TlsConfigs,
        settings: &ProbeSettings,
    ) -> Result<Conn, String> {
        let limit = settings.step_timeout;
        let (code, _) = self.reply(&mut plain, limit, "greeting").await?;
        if !(200..300).contains(&code) {
            return Err(format!("the server refused the session with {code}"));
        }
        let offers_tls = self.ehlo(&mut plain, settings).await?;
        let required = matches!(mode, TlsMode::Encrypt | TlsMode::Verify | TlsMode::Dane);
        let want = match mode {
            TlsMode::None => false,
            TlsMode::May => offers_tls,
            _ if offers_tls => true,
            _ => {
                return Err(format!(
                    "{host} does not offer STARTTLS, which the route requires"
                ));
            }
        };
        if mode == TlsMode::May && !offers_tls {
            self.note("STARTTLS not offered: delivery goes in plain text");
        }
        if !want {
            return Ok(plain);
        }
        self.send(&mut plain, "STARTTLS", limit, "STARTTLS").await?;
        let (code, _) = self.reply(&mut plain, limit, "STARTTLS").await?;
        if code != 220 {
            if required {
                return Err(format!("STARTTLS refused with {code}"));
            }
            self.note("STARTTLS refused: delivery goes in plain text");
            return Ok(plain);
        }
        let verified = mode == TlsMode::Verify;
        let config = if verified {
            configs.verified()
        } else {
            configs.unverified()
        };
        let mut secure = match start_tls(plain, host, config, limit).await {
            Ok(conn) => conn,
            Err(e) => {
                let e = match e {
                    ClientError::Tls(why) => format!("TLS: {why}"),
                    other => other.to_string(),
                };
                if mode == TlsMode::May {
                    return Err(format!("{e} (delivery would retry once without TLS)"));
                }
                return Err(e);
            }
        };
        if let Stream::Tls(tls) = &secure.stream {
            let facts = tls_facts(tls.get_ref().1, verified);
            self.note(format!(
                "TLS {} {}, certificate {}",
                facts.version, facts.cipher, facts.subject
            ));
            self.tls = Some(facts);
        }
        if mode == TlsMode::Dane {
            self.note("DANE: TLSA records are not checked by this test; delivery checks them");
        }
        self.ehlo(&mut secure, settings).await?;
        Ok(secure)
    }
}

fn tls_facts(session: &rustls::ClientConnection, verified: bool) -> TlsFacts {
    use x509_parser::prelude::FromDer;
    let version = session
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let cipher = session
        .negotiated_cipher_suite()
        .map(|c| format!("{:?}", c.suite()))
        .unwrap_or_default();
    let (subject, issuer) = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|der| x509_parser::certificate::X509Certificate::from_der(der).ok())
        .map(|(_, cert)| (cert.subject().to_string(), cert.issuer().to_string()))
        .unwrap_or_else(|| ("(none)".into(), String::new()));
    TlsFacts {
        version,
        cipher,
        subject,
        issuer,
        verified,
    }
}
