//! The network side of sending TLS-RPT reports (RFC 8460): finding a policy domain's
//! `_smtp._tls` TXT record through our resolver, and posting a report to an `https:`
//! reporting address with the same TLS trust as MTA-STS policy fetches (WebPKI roots
//! plus `extra_ca_file`). Counting the sessions is `tls_policy`'s job; building the
//! report and mailing it is the binary's.

use std::time::Duration;

use crate::mta_sts::{HttpsClientError, error_chain};
use crate::mx::TokioResolver;

/// The media type of a gzipped report (RFC 8460 §6.4).
pub const GZIP_MEDIA_TYPE: &str = "application/tlsrpt+gzip";

/// What the `_smtp._tls` lookup said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordLookup {
    /// Exactly one record starting with `v=TLSRPTv1` (its text, strings joined).
    Found(String),
    /// No such record, or several (RFC 8460 §3: then the domain has none).
    Absent,
    /// The lookup failed (SERVFAIL, timeout): try again later.
    Failed(String),
}

/// Looks up `_smtp._tls.<domain>` TXT.
pub async fn lookup_record(resolver: &TokioResolver, domain: &str) -> RecordLookup {
    let name = format!("_smtp._tls.{}.", domain.trim_end_matches('.'));
    match crate::mx::txt_records(resolver, &name, is_tlsrpt_record).await {
        // RFC 8460 §3: not exactly one record means none.
        Ok(records) => match <[String; 1]>::try_from(records) {
            Ok([one]) => RecordLookup::Found(one),
            Err(_) => RecordLookup::Absent,
        },
        Err(e) => RecordLookup::Failed(format!("{name}: {e}")),
    }
}

/// Whether a TXT record is a TLS-RPT record: it starts with `v=TLSRPTv1` and then `;`
/// (blanks allowed around it) or nothing.
pub fn is_tlsrpt_record(text: &str) -> bool {
    text.strip_prefix("v=TLSRPTv1").is_some_and(|rest| {
        rest.trim_start_matches([' ', '\t']).is_empty()
            || rest.trim_start_matches([' ', '\t']).starts_with(';')
    })
}

/// Posts gzipped reports over HTTPS (RFC 8460 §5.4).
pub struct ReportPoster {
    client: reqwest::Client,
}

impl ReportPoster {
    /// `tls` must verify certificates (WebPKI roots plus any extra CAs). Host names are
    /// resolved by `resolver`, never the system's.
    pub fn new(
        resolver: TokioResolver,
        tls: rustls::ClientConfig,
        timeout: Duration,
    ) -> Result<ReportPoster, HttpsClientError> {
        let client = crate::mta_sts::https_client(resolver, tls, timeout)?;
        Ok(ReportPoster { client })
    }

    /// POSTs `gzipped` to `url`; the HTTP status on success (2xx).
    pub async fn post(&self, url: &str, gzipped: Vec<u8>) -> Result<u16, PostError> {
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, GZIP_MEDIA_TYPE)
            .body(gzipped)
            .send()
            .await
            .map_err(|source| PostError::Request {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err(PostError::Status {
                url: url.to_string(),
                status,
            })
        }
    }
}

/// Why a report could not be posted; `url` is the reporting address.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// No connection, a certificate that does not verify, a timeout, a broken transfer.
    #[error("{url}: {}", error_chain(source))]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The receiver answered, but not with 2xx.
    #[error("{url}: HTTP status {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_tlsrpt_records() {
        assert!(is_tlsrpt_record("v=TLSRPTv1; rua=mailto:r@example.com"));
        assert!(is_tlsrpt_record("v=TLSRPTv1;rua=https://r.example.com/x"));
        assert!(is_tlsrpt_record("v=TLSRPTv1 ; rua=mailto:r@example.com"));
        assert!(!is_tlsrpt_record("v=TLSRPTv10; rua=mailto:r@example.com"));
        assert!(!is_tlsrpt_record("v=STSv1; id=1"));
        assert!(!is_tlsrpt_record("rua=mailto:r@example.com; v=TLSRPTv1"));
    }
}
