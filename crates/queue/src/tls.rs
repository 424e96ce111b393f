//! The outbound transport under `client`: the rustls client configurations (one per
//! verification policy, built once per process and shared), the stream that is plain TCP
//! before STARTTLS and TLS after it, and reading whole replies off it. It does not speak
//! SMTP commands or decide when to use TLS; `client` does.
//!
//! `client` uses this module, never the other way round: failures are reported as
//! [`ClientError`], which lives in `client_error` so that this module need not know
//! `client` (see `client_error` for the arrows).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use portcullis_smtp::Reply;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use smtp_proto::response::parser::ResponseReceiver;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;

use crate::client_error::ClientError;

/// A reply longer than this is a broken or hostile server, not a long EHLO list.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// The client configurations, built once and shared by every delivery.
#[derive(Clone, Debug)]
pub struct TlsConfigs {
    /// Any certificate is accepted (modes `may` and `encrypt`): opportunistic TLS
    /// protects against passive eavesdropping only, and most MX certificates would fail
    /// verification anyway.
    unverified: Arc<ClientConfig>,
    /// Webpki roots plus the administrator's extra CAs, checked against the host name.
    verified: Arc<ClientConfig>,
    /// The crypto provider both use, for configurations built per host (DANE).
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl TlsConfigs {
    /// Builds both configurations. `extra_ca_der` are DER certificates trusted in addition
    /// to the webpki roots (a private CA for internal servers, say).
    pub fn new(extra_ca_der: &[CertificateDer<'_>]) -> Result<TlsConfigs, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());

        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for der in extra_ca_der {
            roots.add(der.clone())?;
        }
        let verified = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let accept_any = Arc::new(AcceptAnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        });
        let unverified = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(accept_any)
            .with_no_client_auth();

        Ok(TlsConfigs {
            unverified: Arc::new(unverified),
            verified: Arc::new(verified),
            provider,
        })
    }

    /// Reads the certificates of a PEM file (extra CAs to trust).
    pub fn read_pem_certificates(
        path: &std::path::Path,
    ) -> Result<Vec<CertificateDer<'static>>, PemError> {
        use rustls_pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|source| PemError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        if certs.is_empty() {
            return Err(PemError::NoCertificates {
                path: path.to_path_buf(),
            });
        }
        Ok(certs)
    }

    pub fn unverified(&self) -> Arc<ClientConfig> {
        self.unverified.clone()
    }

    pub fn verified(&self) -> Arc<ClientConfig> {
        self.verified.clone()
    }

    pub fn provider(&self) -> Arc<rustls::crypto::CryptoProvider> {
        self.provider.clone()
    }
}

/// Why a PEM file of extra CAs gave no certificates.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file cannot be read, or holds something that is not PEM.
    #[error("{}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{}: no certificates", path.display())]
    NoCertificates { path: std::path::PathBuf },
}

/// Accepts any certificate chain but still checks the handshake signatures, so that the
/// peer at least holds the key of the certificate it presented.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A connection to the remote server, before or after STARTTLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The socket plus the bytes read but not yet consumed as replies.
pub(crate) struct Conn {
    pub(crate) stream: Stream,
    pub(crate) rbuf: Vec<u8>,
}

impl Conn {
    pub(crate) async fn write(
        &mut self,
        data: &[u8],
        limit: Duration,
        stage: &'static str,
    ) -> Result<(), ClientError> {
        let io = async {
            self.stream.write_all(data).await?;
            self.stream.flush().await
        };
        match timeout(limit, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ClientError::Io(e)),
            Err(_) => Err(ClientError::Timeout(stage)),
        }
    }

    /// Reads one complete reply and returns its raw bytes.
    pub(crate) async fn read_raw(
        &mut self,
        limit: Duration,
        stage: &'static str,
    ) -> Result<Vec<u8>, ClientError> {
        let read = async {
            loop {
                if let Some(end) = complete_reply_len(&self.rbuf) {
                    return Ok(self.rbuf.drain(..end).collect());
                }
                if self.rbuf.len() > MAX_REPLY_BYTES {
                    return Err(ClientError::Protocol(format!("reply to {stage} too long")));
                }
                let mut chunk = [0u8; 4096];
                let n = self
                    .stream
                    .read(&mut chunk)
                    .await
                    .map_err(ClientError::Io)?;
                if n == 0 {
                    return Err(ClientError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("connection closed by server during {stage}"),
                    )));
                }
                self.rbuf.extend_from_slice(&chunk[..n]);
            }
        };
        timeout(limit, read)
            .await
            .map_err(|_| ClientError::Timeout(stage))?
    }

    pub(crate) async fn read_reply(
        &mut self,
        limit: Duration,
        stage: &'static str,
    ) -> Result<Reply, ClientError> {
        let raw = self.read_raw(limit, stage).await?;
        parse_reply(&raw)
    }

    pub(crate) async fn command(
        &mut self,
        line: &str,
        limit: Duration,
        stage: &'static str,
    ) -> Result<Reply, ClientError> {
        self.write(line.as_bytes(), limit, stage).await?;
        self.read_reply(limit, stage).await
    }
}

/// Length of the first complete (possibly multi-line) reply in `buf`.
fn complete_reply_len(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl + 1];
        start += nl + 1;
        if line.get(3) != Some(&b'-') {
            return Some(start);
        }
    }
    None
}

pub(crate) fn parse_reply(raw: &[u8]) -> Result<Reply, ClientError> {
    let mut receiver = ResponseReceiver::default();
    let response = receiver
        .parse(&mut raw.iter())
        .map_err(|e| ClientError::Protocol(format!("malformed reply: {e:?}")))?;
    if !(200..600).contains(&response.code) {
        return Err(ClientError::Protocol(format!(
            "reply code {} out of range",
            response.code
        )));
    }
    let [class, subject, detail] = response.esc;
    Ok(Reply {
        code: response.code,
        status: (class != 0).then(|| format!("{class}.{subject}.{detail}")),
        lines: response.message.split('\n').map(str::to_string).collect(),
    })
}

pub(crate) async fn start_tls(
    conn: Conn,
    server_name: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
    limit: Duration,
) -> Result<Conn, ClientError> {
    // Bytes after the 220 were sent before TLS: accepting them would let a man in the
    // middle inject replies into the encrypted session (CVE-2011-0411).
    if !conn.rbuf.is_empty() {
        return Err(ClientError::Protocol(
            "data received after the STARTTLS reply".into(),
        ));
    }
    let Stream::Plain(tcp) = conn.stream else {
        return Err(ClientError::Protocol("STARTTLS on a TLS session".into()));
    };
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| ClientError::Tls(format!("invalid server name {server_name:?}: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = match timeout(limit, connector.connect(name, tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            return Err(ClientError::Tls(format!(
                "handshake with {server_name} failed: {e}"
            )));
        }
        // A handshake that stalls is a TLS failure, so `may` falls back to plain text.
        Err(_) => {
            return Err(ClientError::Tls(format!(
                "handshake with {server_name} timed out"
            )));
        }
    };
    Ok(Conn {
        stream: Stream::Tls(Box::new(tls)),
        rbuf: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_framing_and_parsing() {
        assert_eq!(complete_reply_len(b"250-a\r\n250 b\r\nxx"), Some(14));
        assert_eq!(complete_reply_len(b"250-a\r\n250"), None);
        let r = parse_reply(b"550-5.1.1 No such\r\n550 5.1.1 user\r\n").expect("valid reply");
        assert_eq!(r.code, 550);
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.lines, vec!["No such", "user"]);
        assert!(parse_reply(b"hello\r\n").is_err());
    }
}
