//! The server certificate: the configured PEM files, or a self-signed certificate made
//! at first start under `<data_dir>/tls` so that STARTTLS and port 465 work out of the box.

use rustls::ServerConfig;
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The verifying TLS client configurations for outbound connections and HTTPS fetches:
/// WebPKI roots plus the CAs of `delivery.extra_ca_file`.
pub fn client_configs(
    config: &crate::config::Config,
) -> anyhow::Result<portcullis_queue::client::TlsConfigs> {
    use portcullis_queue::client::TlsConfigs;
    let extra_ca = match &config.delivery.extra_ca_file {
        Some(path) => TlsConfigs::read_pem_certificates(path)
            .map_err(|e| anyhow::anyhow!("delivery.extra_ca_file: {e}"))?,
        None => Vec::new(),
    };
    TlsConfigs::new(&extra_ca).map_err(|e| anyhow::anyhow!("TLS client setup: {e}"))
}

/// The server certificate of every TLS listener (SMTP and console), replaceable while
/// the gateway runs: a reload (SIGHUP) reads the files again, and the next handshakes use
/// the new certificate while connections already open keep theirs.
#[derive(Debug)]
pub struct ServerCert {
    current: std::sync::RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    /// The configured PEM files, or the self-signed certificate under `data_dir/tls`.
    pub fn load(
        cert: Option<&Path>,
        key: Option<&Path>,
        data_dir: &Path,
        hostname: &str,
    ) -> Result<Arc<ServerCert>, String> {
        Ok(Arc::new(ServerCert {
            current: std::sync::RwLock::new(Arc::new(certified_key(
                cert, key, data_dir, hostname,
            )?)),
        }))
    }

    /// Read the files again; on an error the certificate in use stays.
    pub fn reload(
        &self,
        cert: Option<&Path>,
        key: Option<&Path>,
        data_dir: &Path,
        hostname: &str,
    ) -> Result<(), String> {
        let fresh = Arc::new(certified_key(cert, key, data_dir, hostname)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The TLS server settings (TLS 1.2 and 1.3, no client certificates) around `cert`.
pub fn server_config(cert: Arc<ServerCert>) -> Result<Arc<ServerConfig>, String> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    Ok(Arc::new(config))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certified_key(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    hostname: &str,
) -> Result<CertifiedKey, String> {
    let (cert, key) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf()),
        _ => self_signed(data_dir, hostname)?,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))
}

fn self_signed(data_dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf), String> {
    let dir = data_dir.join("tls");
    let cert = dir.join("selfsigned.crt");
    let key = dir.join("selfsigned.key");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let names = vec![hostname.to_string(), "localhost".to_string()];
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot make a self-signed certificate: {e}"))?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, made.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    tracing::info!(cert = %cert.display(), "made a self-signed certificate");
    Ok((cert, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}
