//! DANE for SMTP (RFC 7672, RFC 6698): TLSA lookups on a DNSSEC-validating resolver and a
//! rustls certificate verifier that checks the server's chain against the TLSA records.
//! Only DANE-TA(2) and DANE-EE(3) are used (RFC 7672 §3.1.3: PKIX-TA/PKIX-EE are not
//! for SMTP); selectors 0 (certificate) and 1 (SubjectPublicKeyInfo); matching types 0
//! (exact), 1 (SHA-256) and 2 (SHA-512). A DANE-TA record matches a trust anchor
//! certificate the server sends in its chain or, when the server leaves it out, holds the
//! anchor itself (full certificate or key, matching type 0; RFC 7671 §5.2.2). Which hosts
//! DANE applies to is `tls_policy`'s decision; this module answers "what do the validated
//! records say" and "does this chain match them".

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::net::NetError;
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, Der, ServerName, TrustAnchor, UnixTime};

use crate::mx::TokioResolver;

/// One TLSA record (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Whether RFC 7672 lets SMTP use this record: usage DANE-TA or DANE-EE, a known
    /// selector, and a known matching type with data of the right length.
    pub fn is_usable(&self) -> bool {
        let length_ok = match self.matching {
            0 => !self.data.is_empty(),
            1 => self.data.len() == 32,
            2 => self.data.len() == 64,
            _ => false,
        };
        matches!(self.usage, 2 | 3) && self.selector <= 1 && length_ok
    }

    /// Whether this record's association data matches `cert`.
    fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        let selected: Vec<u8> = match self.selector {
            0 => cert.as_ref().to_vec(),
            1 => match webpki::EndEntityCert::try_from(cert) {
                Ok(parsed) => parsed.subject_public_key_info().as_ref().to_vec(),
                Err(_) => return false,
            },
            _ => return false,
        };
        let digest = |alg| aws_lc_rs::digest::digest(alg, &selected).as_ref().to_vec();
        let value = match self.matching {
            0 => selected,
            1 => digest(&aws_lc_rs::digest::SHA256),
            2 => digest(&aws_lc_rs::digest::SHA512),
            _ => return false,
        };
        // Not secret: TLSA data is public, so a plain comparison is fine.
        value == self.data
    }
}

impl std::fmt::Display for Tlsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} ", self.usage, self.selector, self.matching)?;
        for b in self.data.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        if self.data.len() > 8 {
            write!(f, "...")?;
        }
        Ok(())
    }
}

/// How the chain was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaneMatch {
    /// The server certificate (or its key) is the one published: names and dates do
    /// not matter (RFC 7672 §3.1.1).
    EndEntity,
    /// The chain leads to a published trust anchor and the certificate names the host
    /// (RFC 7672 §3.1.2, §3.2).
    TrustAnchor,
}

/// Checks a presented chain against TLSA records. `names` are the reference identifiers
/// for DANE-TA (the MX host name, which is also the TLSA base domain here).
pub fn verify_chain(
    records: &[Tlsa],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    names: &[String],
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<DaneMatch, VerifyError> {
    let usable: Vec<&Tlsa> = records.iter().filter(|r| r.is_usable()).collect();
    if usable.is_empty() {
        return Err(VerifyError::NoUsableRecords);
    }
    if usable.iter().any(|r| r.usage == 3 && r.matches(end_entity)) {
        return Ok(DaneMatch::EndEntity);
    }
    let ee = webpki::EndEntityCert::try_from(end_entity).map_err(VerifyError::ServerCertificate)?;
    // The topmost certificate the server sent: an anchor made of a bare key is named
    // after its issuer, which is where path building looks for the next certificate.
    let top_intermediate = intermediates
        .last()
        .and_then(|c| webpki::EndEntityCert::try_from(c).ok());
    let top = if intermediates.is_empty() {
        Some(&ee)
    } else {
        top_intermediate.as_ref()
    };
    let mut last = VerifyError::NoMatch;
    for record in usable.iter().filter(|r| r.usage == 2) {
        let record_cert = CertificateDer::from(record.data.as_slice());
        let mut anchors: Vec<TrustAnchor<'_>> = Vec::new();
        // RFC 7672 §3.1.2: the server is expected to send the trust anchor in its chain.
        for ta in intermediates.iter().filter(|c| record.matches(c)) {
            match webpki::anchor_from_trusted_cert(ta) {
                Ok(a) => anchors.push(a),
                Err(e) => last = VerifyError::AnchorCertificate(e),
            }
        }
        // RFC 7671 §5.2.2: when it does not, a record holding the full certificate or
        // key is the trust anchor itself; a digest is of no use without the certificate.
        if anchors.is_empty() {
            match record_anchor(record, &record_cert, top) {
                Ok(a) => anchors.push(a),
                Err(e) => {
                    last = e;
                    continue;
                }
            }
        }
        for anchor in anchors {
            let anchors = [anchor];
            let chain = ee.verify_for_usage(
                algorithms.all,
                &anchors,
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            );
            if let Err(e) = chain {
                last = VerifyError::Chain(e);
                continue;
            }
            let named = names.iter().any(|n| {
                ServerName::try_from(n.as_str())
                    .is_ok_and(|sn| ee.verify_is_valid_for_subject_name(&sn).is_ok())
            });
            if named {
                return Ok(DaneMatch::TrustAnchor);
            }
            last = VerifyError::Name {
                names: names.to_vec(),
            };
        }
    }
    Err(last)
}

/// The trust anchor a DANE-TA record holds itself, for a server that does not send the
/// anchor's certificate: `2 0 0` holds the certificate, `2 1 0` the SubjectPublicKeyInfo.
/// A bare key gets the issuer name of `top` (the topmost presented certificate) as its
/// subject, so that the chain leads to it; the name carries no trust, the key does.
fn record_anchor<'a>(
    record: &'a Tlsa,
    record_cert: &'a CertificateDer<'a>,
    top: Option<&'a webpki::EndEntityCert<'a>>,
) -> Result<TrustAnchor<'a>, VerifyError> {
    let shown = format!("{} {} {}", record.usage, record.selector, record.matching);
    if record.matching != 0 {
        return Err(VerifyError::DigestOnly { record: shown });
    }
    match record.selector {
        0 => webpki::anchor_from_trusted_cert(record_cert).map_err(|source| {
            VerifyError::RecordCertificate {
                record: shown,
                source,
            }
        }),
        1 => {
            use x509_parser::prelude::FromDer;
            let bad = |reason: String| VerifyError::RecordKey {
                record: shown.clone(),
                reason,
            };
            let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&record.data)
                .map_err(|e| bad(e.to_string()))?;
            if !rest.is_empty() {
                return Err(bad("trailing data".into()));
            }
            // webpki's anchors hold the SubjectPublicKeyInfo and the Name without their
            // outer SEQUENCE header (as `anchor_from_trusted_cert` fills them in).
            let (_, outer) =
                x509_parser::asn1_rs::Any::from_der(spki.raw).map_err(|e| bad(e.to_string()))?;
            let top = top.ok_or(VerifyError::TopCertificate)?;
            Ok(TrustAnchor {
                subject: Der::from_slice(top.issuer()),
                subject_public_key_info: Der::from_slice(outer.data),
                name_constraints: None,
            })
        }
        _ => Err(VerifyError::UnknownSelector { record: shown }),
    }
}

/// Why a presented certificate chain does not satisfy the TLSA records. A DANE-TA check
/// tries every usable record and reports what went wrong with the last one tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no usable TLSA records")]
    NoUsableRecords,
    #[error("unparsable server certificate: {0:?}")]
    ServerCertificate(#[source] webpki::Error),
    #[error("certificate matches no TLSA record")]
    NoMatch,
    /// A certificate of the chain matched a DANE-TA record but cannot be an anchor.
    #[error("unusable trust anchor certificate: {0:?}")]
    AnchorCertificate(#[source] webpki::Error),
    /// A DANE-TA record (`record` is `usage selector matching`) holds only a digest, and
    /// the server did not send the certificate it is a digest of.
    #[error(
        "TLSA {record} is a digest of a trust anchor the server did not send; \
         it can only match a certificate in the presented chain"
    )]
    DigestOnly { record: String },
    #[error("TLSA {record} does not hold a usable certificate: {source:?}")]
    RecordCertificate {
        record: String,
        #[source]
        source: webpki::Error,
    },
    /// The record's data is not a DER SubjectPublicKeyInfo.
    #[error("TLSA {record} does not hold a public key: {reason}")]
    RecordKey { record: String, reason: String },
    #[error("unparsable certificate at the top of the server's chain")]
    TopCertificate,
    #[error("TLSA {record}: unknown selector")]
    UnknownSelector { record: String },
    #[error("chain to the TLSA trust anchor does not verify: {0:?}")]
    Chain(#[source] webpki::Error),
    /// The chain leads to the anchor, but the certificate names none of `names`.
    #[error(
        "certificate issued by the TLSA trust anchor is not valid for {}",
        names.join(" or ")
    )]
    Name { names: Vec<String> },
}

/// Why the DNSSEC-validating resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DaneSetupError {
    #[error("DNSSEC resolver: {0}")]
    Resolver(#[source] NetError),
    /// The configured trust anchor file cannot be read or parsed.
    #[error("trust anchor {}: {source}", path.display())]
    TrustAnchor {
        path: std::path::PathBuf,
        #[source]
        source: hickory_resolver::proto::serialize::txt::ParseError,
    },
}

/// A rustls verifier that accepts exactly what the TLSA records allow.
#[derive(Debug)]
pub struct DaneVerifier {
    records: Vec<Tlsa>,
    names: Vec<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match verify_chain(
            &self.records,
            end_entity,
            intermediates,
            &self.names,
            now,
            &self.algorithms,
        ) {
            Ok(how) => {
                tracing::debug!(names = ?self.names, ?how, "DANE: certificate matches TLSA");
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(rustls::Error::General(format!("DANE: {e}"))),
        }
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

/// A client configuration for one host whose certificate must match `records`.
pub fn client_config(
    provider: Arc<CryptoProvider>,
    records: Vec<Tlsa>,
    names: Vec<String>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let verifier = Arc::new(DaneVerifier {
        records,
        names,
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What DNSSEC says about one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaneLookup {
    /// The host's addresses and its TLSA RRset validated. `records` are the usable ones;
    /// empty means TLSA records exist but none is usable, and TLS is still mandatory
    /// (RFC 7672 §2.2). `addrs` are the validated addresses to connect to.
    Secure {
        records: Vec<Tlsa>,
        published: usize,
        addrs: Vec<IpAddr>,
        /// The names the certificate may carry for DANE-TA: the TLSA base domain (first;
        /// also TLS-RPT's policy domain), and the MX host name when that was an alias.
        names: Vec<String>,
    },
    /// DANE does not apply: unsigned addresses or TLSA records, or no TLSA records.
    NotApplicable(String),
    /// Bogus or failed lookups: this host must not be used now (RFC 7672 §2.2).
    Failed(String),
}

/// Interval between checks that the nameservers let us validate DNSSEC.
const PROBE_OK_SECS: i64 = 3600;
const PROBE_FAILED_SECS: i64 = 900;

/// The validating resolver and whether validation works through our nameservers.
pub struct Dane {
    resolver: TokioResolver,
    /// A configured trust anchor (a test zone, a lab): the root probe is skipped.
    custom_anchor: bool,
    /// (validation works, when last checked).
    probe: Mutex<Option<(bool, i64)>>,
}

impl Dane {
    /// A second resolver on the same nameservers, with DNSSEC validation. The trust
    /// anchor is the root KSKs built into hickory, or the DNSKEY records in `anchor_file`.
    pub fn new(
        nameservers: &[SocketAddr],
        timeout: Duration,
        anchor_file: Option<&Path>,
    ) -> Result<Dane, DaneSetupError> {
        let mut builder =
            crate::mx::resolver_builder(nameservers, timeout).map_err(DaneSetupError::Resolver)?;
        builder.options_mut().validate = true;
        if let Some(path) = anchor_file {
            let anchors =
                TrustAnchors::from_file(path).map_err(|source| DaneSetupError::TrustAnchor {
                    path: path.to_path_buf(),
                    source,
                })?;
            builder = builder.with_trust_anchor(Arc::new(anchors));
        }
        let resolver = builder.build().map_err(DaneSetupError::Resolver)?;
        Ok(Dane {
            resolver,
            custom_anchor: anchor_file.is_some(),
            probe: Mutex::new(None),
        })
    }

    /// Whether validated answers can be had at all. A nameserver that strips DNSSEC
    /// records would make every answer bogus and stop all mail; instead DANE is off
    /// until the root DNSKEY validates (checked now and then), with a warning.
    pub async fn available(&self, now: i64) -> bool {
        if self.custom_anchor {
            return true;
        }
        if let Some((ok, at)) = *self.probe.lock().unwrap_or_else(|p| p.into_inner()) {
            let ttl = if ok { PROBE_OK_SECS } else { PROBE_FAILED_SECS };
            if now - at < ttl {
                return ok;
            }
        }
        let result = self.resolver.lookup(Name::root(), RecordType::DNSKEY).await;
        let ok = match &result {
            Ok(lookup) => {
                let keys: Vec<&Record> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == RecordType::DNSKEY)
                    .collect();
                !keys.is_empty() && keys.iter().all(|r| r.proof == Proof::Secure)
            }
            Err(_) => false,
        };
        let previous = self
            .probe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace((ok, now));
        if previous.map(|(was, _)| was) != Some(ok) {
            if ok {
                tracing::info!(
                    "DNSSEC validation works through the configured nameservers; DANE is on"
                );
            } else {
                let why = match result {
                    Ok(_) => "the root DNSKEY did not validate".to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(reason = %why, "DNSSEC validation is not possible through the configured nameservers; DANE is off until it is");
            }
        }
        ok
    }

    /// TLSA records for `host` at `port`, if the host's addresses are DNSSEC-secure
    /// (RFC 7672 §2.2.2: otherwise TLSA records are not looked up).
    pub async fn lookup(&self, host: &str, port: u16) -> DaneLookup {
        let host = host.trim_end_matches('.');
        let (addrs, expanded) = match self.resolver.lookup_ip(format!("{host}.").as_str()).await {
            Ok(lookup) => {
                let records = lookup.as_lookup().answers();
                match proof_of(records, |t| matches!(t, RecordType::A | RecordType::AAAA)) {
                    Some(Proof::Secure) => (
                        lookup.iter().collect::<Vec<IpAddr>>(),
                        cname_target(records, host),
                    ),
                    Some(Proof::Insecure) | None => {
                        return DaneLookup::NotApplicable(format!(
                            "addresses of {host} are not DNSSEC-signed"
                        ));
                    }
                    Some(p) => {
                        return DaneLookup::Failed(format!(
                            "addresses of {host} failed DNSSEC validation ({p})"
                        ));
                    }
                }
            }
            Err(e) => {
                return match classify(&e) {
                    Negative::NoData => {
                        DaneLookup::NotApplicable(format!("no addresses for {host}"))
                    }
                    Negative::Insecure => DaneLookup::NotApplicable(format!(
                        "addresses of {host} are not DNSSEC-signed"
                    )),
                    Negative::Failed => {
                        DaneLookup::Failed(format!("DNSSEC address lookup for {host}: {e}"))
                    }
                };
            }
        };
        // RFC 7672 §2.2.2: an MX host name that is an alias (its expansion validated
        // above) has its TLSA records looked for at the expanded name first, then at the
        // name itself; the certificate may then carry either name (§3.2.2).
        if let Some(target) = expanded {
            match self.tlsa(&target, port, &addrs).await {
                DaneLookup::Secure {
                    records,
                    published,
                    addrs,
                    ..
                } => {
                    return DaneLookup::Secure {
                        records,
                        published,
                        addrs,
                        names: vec![target, host.to_string()],
                    };
                }
                DaneLookup::Failed(why) => return DaneLookup::Failed(why),
                DaneLookup::NotApplicable(_) => {}
            }
        }
        self.tlsa(host, port, &addrs).await
    }

    /// The TLSA records at `_port._tcp.base`, as [`Dane::lookup`] reports them.
    async fn tlsa(&self, base: &str, port: u16, addrs: &[IpAddr]) -> DaneLookup {
        let name = format!("_{port}._tcp.{base}.");
        match self.resolver.lookup(name.as_str(), RecordType::TLSA).await {
            Ok(lookup) => {
                let answers = lookup.answers();
                match proof_of(answers, |t| t == RecordType::TLSA) {
                    None => DaneLookup::NotApplicable(format!("no TLSA records at {name}")),
                    Some(Proof::Insecure) => {
                        DaneLookup::NotApplicable(format!("TLSA records at {name} are not signed"))
                    }
                    Some(Proof::Secure) => {
                        let all: Vec<Tlsa> = answers
                            .iter()
                            .filter_map(|r| match &r.data {
                                RData::TLSA(t) => Some(Tlsa {
                                    usage: u8::from(t.cert_usage),
                                    selector: u8::from(t.selector),
                                    matching: u8::from(t.matching),
                                    data: t.cert_data.clone(),
                                }),
                                _ => None,
                            })
                            .collect();
                        let published = all.len();
                        DaneLookup::Secure {
                            records: all.into_iter().filter(Tlsa::is_usable).collect(),
                            published,
                            addrs: addrs.to_vec(),
                            names: vec![base.to_string()],
                        }
                    }
                    Some(p) => DaneLookup::Failed(format!(
                        "TLSA records at {name} failed validation ({p})"
                    )),
                }
            }
            Err(e) => match classify(&e) {
                Negative::NoData | Negative::Insecure => {
                    DaneLookup::NotApplicable(format!("no TLSA records at {name}"))
                }
                Negative::Failed => DaneLookup::Failed(format!("TLSA lookup {name}: {e}")),
            },
        }
    }
}

/// The name `host` expands to through the CNAME records among `records`, if it is an
/// alias (lower case, without the final dot).
fn cname_target(records: &[Record], host: &str) -> Option<String> {
    let mut name = format!("{}.", host.to_ascii_lowercase());
    let mut expanded = false;
    // A chain longer than this is a loop or an abuse; stop following it.
    for _ in 0..8 {
        let next = records.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name.to_ascii().eq_ignore_ascii_case(&name) => {
                Some(target.0.to_ascii().to_ascii_lowercase())
            }
            _ => None,
        });
        match next {
            Some(target) => {
                name = if target.ends_with('.') {
                    target
                } else {
                    format!("{target}.")
                };
                expanded = true;
            }
            None => break,
        }
    }
    expanded.then(|| name.trim_end_matches('.').to_string())
}

/// The weakest proof among the records of the wanted types (None: there are none).
fn proof_of(records: &[Record], wanted: impl Fn(RecordType) -> bool) -> Option<Proof> {
    let rank = |p: Proof| match p {
        Proof::Secure => 3,
        Proof::Insecure => 2,
        Proof::Bogus => 1,
        Proof::Indeterminate => 0,
    };
    records
        .iter()
        .filter(|r| wanted(r.record_type()) || r.record_type() == RecordType::CNAME)
        .map(|r| r.proof)
        .min_by_key(|p| rank(*p))
}

enum Negative {
    /// A (validated or insecure) denial: the name or type does not exist.
    NoData,
    /// An explicitly insecure denial.
    Insecure,
    /// SERVFAIL, timeout, or a denial that failed validation.
    Failed,
}

fn classify(e: &NetError) -> Negative {
    use hickory_resolver::net::DnsError;
    if e.is_no_records_found() || e.is_nx_domain() {
        return Negative::NoData;
    }
    match e {
        NetError::Dns(DnsError::Nsec { proof, .. }) => match proof {
            Proof::Secure => Negative::NoData,
            Proof::Insecure => Negative::Insecure,
            _ => Negative::Failed,
        },
        _ => Negative::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    fn sha256(b: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
            .as_ref()
            .to_vec()
    }

    fn spki(cert: &CertificateDer<'_>) -> Vec<u8> {
        webpki::EndEntityCert::try_from(cert)
            .expect("parse")
            .subject_public_key_info()
            .as_ref()
            .to_vec()
    }

    fn algorithms() -> WebPkiSupportedAlgorithms {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
    }

    fn self_signed(name: &str) -> CertificateDer<'static> {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        cert.der().clone()
    }

    /// A CA and a server certificate it issued for `name`.
    fn issued(name: &str) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test TA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::new(ca_params, ca_key);
        let ee_key = KeyPair::generate().expect("key");
        let ee = CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .signed_by(&ee_key, &issuer)
            .expect("ee");
        (ee.der().clone(), ca_cert.der().clone())
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    fn names(n: &str) -> Vec<String> {
        vec![n.to_string()]
    }

    #[test]
    fn dane_ee_spki_sha256_matches_whatever_the_name() {
        let cert = self_signed("some.other.name");
        let record = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: sha256(&spki(&cert)),
        };
        let got = verify_chain(
            &[record],
            &cert,
            &[],
            &names("mx.example"),
            now(),
            &algorithms(),
        );
        assert_eq!(got, Ok(DaneMatch::EndEntity));
    }

    #[test]
    fn dane_ee_full_cert_and_sha512_and_exact() {
        let cert = self_signed("mx.example");
        let sha512 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, cert.as_ref())
            .as_ref()
            .to_vec();
        for record in [
            Tlsa {
                usage: 3,
                selector: 0,
                matching: 1,
                data: sha256(cert.as_ref()),
            },
            Tlsa {
                usage: 3,
                selector: 0,
                matching: 2,
                data: sha512,
            },
            Tlsa {
                usage: 3,
                selector: 1,
                matching: 0,
                data: spki(&cert),
            },
        ] {
            assert_eq!(
                verify_chain(
                    std::slice::from_ref(&record),
                    &cert,
                    &[],
                    &[],
                    now(),
                    &algorithms()
                ),
                Ok(DaneMatch::EndEntity),
                "{record}"
            );
        }
    }

    #[test]
    fn mismatch_and_unusable_records_fail() {
        let cert = self_signed("mx.example");
        let other = self_signed("mx.example");
        let wrong = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: sha256(&spki(&other)),
        };
        let err = verify_chain(
            &[wrong],
            &cert,
            &[],
            &names("mx.example"),
            now(),
            &algorithms(),
        );
        assert!(
            err.expect_err("mismatch")
                .to_string()
                .contains("matches no TLSA")
        );
        // PKIX-EE (1) is not for SMTP even when it matches; a bad digest length is unusable.
        let pkix = Tlsa {
            usage: 1,
            selector: 1,
            matching: 1,
            data: sha256(&spki(&cert)),
        };
        let short = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![1, 2, 3],
        };
        assert!(!pkix.is_usable() && !short.is_usable());
        let err = verify_chain(&[pkix, short], &cert, &[], &[], now(), &algorithms());
        assert!(err.expect_err("unusable").to_string().contains("no usable"));
    }

    #[test]
    fn dane_ta_checks_chain_and_name() {
        let (ee, ca) = issued("mx.example");
        let ta = Tlsa {
            usage: 2,
            selector: 0,
            matching: 1,
            data: sha256(ca.as_ref()),
        };
        let ok = verify_chain(
            std::slice::from_ref(&ta),
            &ee,
            std::slice::from_ref(&ca),
            &names("mx.example"),
            now(),
            &algorithms(),
        );
        assert_eq!(ok, Ok(DaneMatch::TrustAnchor));
        // SPKI of the TA works the same.
        let ta_spki = Tlsa {
            usage: 2,
            selector: 1,
            matching: 1,
            data: sha256(&spki(&ca)),
        };
        assert_eq!(
            verify_chain(
                &[ta_spki],
                &ee,
                std::slice::from_ref(&ca),
                &names("mx.example"),
                now(),
                &algorithms()
            ),
            Ok(DaneMatch::TrustAnchor)
        );
        // Wrong name.
        let err = verify_chain(
            std::slice::from_ref(&ta),
            &ee,
            std::slice::from_ref(&ca),
            &names("other.example"),
            now(),
            &algorithms(),
        );
        assert!(
            err.expect_err("name").to_string().contains("not valid for"),
            "name must be checked"
        );
        // The TA not sent: no match.
        assert!(
            verify_chain(
                std::slice::from_ref(&ta),
                &ee,
                &[],
                &names("mx.example"),
                now(),
                &algorithms()
            )
            .is_err()
        );
        // A certificate from another CA, with the first CA in the chain: the chain fails.
        let (stranger, _) = issued("mx.example");
        let err = verify_chain(
            &[ta],
            &stranger,
            &[ca],
            &names("mx.example"),
            now(),
            &algorithms(),
        );
        assert!(
            err.expect_err("chain")
                .to_string()
                .contains("does not verify")
        );
    }

    #[test]
    fn dane_ta_not_sent_full_key_or_certificate_in_the_record() {
        // RFC 7671 §5.2.2: the server sends only its own certificate; the record holds
        // the CA's key (2 1 0) or certificate (2 0 0) and is the trust anchor itself.
        let (ee, ca) = issued("mx.example");
        let check = |records: &[Tlsa], name: &str| {
            verify_chain(records, &ee, &[], &names(name), now(), &algorithms())
                .map_err(|e| e.to_string())
        };
        let full_key = Tlsa {
            usage: 2,
            selector: 1,
            matching: 0,
            data: spki(&ca),
        };
        assert_eq!(
            check(std::slice::from_ref(&full_key), "mx.example"),
            Ok(DaneMatch::TrustAnchor)
        );
        let full_cert = Tlsa {
            usage: 2,
            selector: 0,
            matching: 0,
            data: ca.as_ref().to_vec(),
        };
        assert_eq!(
            check(std::slice::from_ref(&full_cert), "mx.example"),
            Ok(DaneMatch::TrustAnchor)
        );
        // A digest cannot stand for a certificate the server did not send.
        let digest = Tlsa {
            usage: 2,
            selector: 1,
            matching: 1,
            data: sha256(&spki(&ca)),
        };
        let err = check(&[digest], "mx.example").expect_err("digest");
        assert!(err.contains("did not send"), "{err}");
        // Another CA's key, as key or certificate: the chain does not verify.
        let (_, other_ca) = issued("mx.example");
        for wrong in [
            Tlsa {
                usage: 2,
                selector: 1,
                matching: 0,
                data: spki(&other_ca),
            },
            Tlsa {
                usage: 2,
                selector: 0,
                matching: 0,
                data: other_ca.as_ref().to_vec(),
            },
        ] {
            let err = check(std::slice::from_ref(&wrong), "mx.example").expect_err("wrong CA");
            assert!(err.contains("does not verify"), "{wrong}: {err}");
        }
        // The right CA, but the certificate names another host.
        for record in [full_key, full_cert] {
            let err = check(std::slice::from_ref(&record), "other.example").expect_err("name");
            assert!(
                err.contains("not valid for other.example"),
                "{record}: {err}"
            );
        }
        // Data that is no key at all.
        let junk = Tlsa {
            usage: 2,
            selector: 1,
            matching: 0,
            data: vec![0x30, 0x03, 0x02, 0x01, 0x01],
        };
        let err = check(&[junk], "mx.example").expect_err("junk");
        assert!(err.contains("does not hold a public key"), "{err}");
    }

    #[test]
    fn dane_ta_key_not_sent_with_an_intermediate_in_the_chain() {
        // Root (not sent) -> intermediate (sent) -> server: the anchor made of the root's
        // key takes the intermediate's issuer name and the chain verifies through it.
        let root_key = KeyPair::generate().expect("key");
        let mut root_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test Root");
        let root = root_params.self_signed(&root_key).expect("root");
        let root_issuer = Issuer::new(root_params, root_key);
        let mid_key = KeyPair::generate().expect("key");
        let mut mid_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        mid_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        mid_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test Intermediate");
        let mid = mid_params
            .signed_by(&mid_key, &root_issuer)
            .expect("intermediate");
        let mid_issuer = Issuer::new(mid_params, mid_key);
        let ee_key = KeyPair::generate().expect("key");
        let ee = CertificateParams::new(vec!["mx.example".to_string()])
            .expect("params")
            .signed_by(&ee_key, &mid_issuer)
            .expect("ee");
        let record = Tlsa {
            usage: 2,
            selector: 1,
            matching: 0,
            data: spki(root.der()),
        };
        assert_eq!(
            verify_chain(
                &[record],
                ee.der(),
                std::slice::from_ref(mid.der()),
                &names("mx.example"),
                now(),
                &algorithms()
            ),
            Ok(DaneMatch::TrustAnchor)
        );
    }

    #[test]
    fn cname_chains_are_followed_to_their_end() {
        use hickory_resolver::proto::rr::rdata::{A, CNAME};
        let name = |n: &str| Name::from_ascii(n).expect("name");
        let cname = |from: &str, to: &str| {
            Record::from_rdata(name(from), 60, RData::CNAME(CNAME(name(to))))
        };
        let a = Record::from_rdata(name("mx.example."), 60, RData::A(A::new(192, 0, 2, 1)));
        let records = vec![
            cname("Alias.Example.", "hop.example."),
            cname("hop.example.", "mx.example."),
            a.clone(),
        ];
        assert_eq!(
            cname_target(&records, "alias.example").as_deref(),
            Some("mx.example")
        );
        assert_eq!(cname_target(&records, "mx.example"), None);
        assert_eq!(cname_target(&[a], "mx.example"), None);
        // A loop ends after a few steps instead of running forever.
        let looped = vec![
            cname("a.example.", "b.example."),
            cname("b.example.", "a.example."),
        ];
        assert!(cname_target(&looped, "a.example").is_some());
    }

    #[test]
    fn verifier_in_a_client_config() {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cert = self_signed("mx.example");
        let record = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: sha256(&spki(&cert)),
        };
        let config = client_config(provider.clone(), vec![record], names("mx.example"));
        assert!(config.is_ok());
        let verifier = DaneVerifier {
            records: vec![],
            names: vec![],
            algorithms: provider.signature_verification_algorithms,
        };
        let name = ServerName::try_from("mx.example").expect("name");
        assert!(
            verifier
                .verify_server_cert(&cert, &[], &name, &[], now())
                .is_err()
        );
    }
}
