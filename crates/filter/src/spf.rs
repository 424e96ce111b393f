//! SPF (RFC 7208) evaluation with viaspf, over the gateway's own hickory resolver.
//! mail-auth, which does the rest of mail authentication, evaluates SPF too, but treats
//! malformed records leniently (several records, bad CIDR lengths, bad domain-specs are
//! not `permerror`; see `tests/rfc7208.rs`); viaspf follows the RFC to the letter. Its
//! result is handed to mail-auth as an `SpfOutput` for DMARC and `Authentication-Results`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use async_trait::async_trait;
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::lookup::Lookup;
use mail_auth::hickory_resolver::net::NetError;
use mail_auth::hickory_resolver::proto::rr::{Name as HickoryName, RData};
use mail_auth::{SpfOutput, SpfResult};
use viaspf::lookup::{Lookup as SpfLookup, LookupError, LookupResult, Name};
use viaspf::{Config, DomainName, Sender};

/// viaspf's DNS questions, asked through hickory.
pub struct HickoryLookup<'a>(pub &'a TokioResolver);

fn lookup_error(e: NetError) -> LookupError {
    if e.is_no_records_found() || e.is_nx_domain() {
        LookupError::NoRecords
    } else if matches!(e, NetError::Timeout) {
        LookupError::Timeout
    } else {
        LookupError::Dns(Some(Box::new(e)))
    }
}

/// The name to ask hickory for, label by label: names in SPF records may hold characters
/// (a colon, say) that hickory's text parser refuses but DNS carries. One that cannot be
/// encoded at all (an over-long label) has no records.
fn fqdn(name: &Name) -> Result<HickoryName, LookupError> {
    let labels = name
        .as_str()
        .trim_end_matches('.')
        .split('.')
        .map(str::as_bytes);
    let mut n = HickoryName::from_labels(labels).map_err(|_| LookupError::NoRecords)?;
    n.set_fqdn(true);
    Ok(n)
}

/// A name from a DNS answer as viaspf takes it, from its raw labels (hickory's text form
/// escapes characters such as ':').
fn to_name(n: &HickoryName) -> Option<Name> {
    let text = n
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join(".");
    Name::new(&text).ok()
}

#[async_trait]
impl SpfLookup for HickoryLookup<'_> {
    async fn lookup_a<'lookup, 'a>(&'lookup self, name: &'a Name) -> LookupResult<Vec<Ipv4Addr>> {
        let found = self
            .0
            .ipv4_lookup(fqdn(name)?)
            .await
            .map_err(lookup_error)?;
        Ok(data(&found, |d| match d {
            RData::A(a) => Some(a.0),
            _ => None,
        }))
    }

    async fn lookup_aaaa<'lookup, 'a>(
        &'lookup self,
        name: &'a Name,
    ) -> LookupResult<Vec<Ipv6Addr>> {
        let found = self
            .0
            .ipv6_lookup(fqdn(name)?)
            .await
            .map_err(lookup_error)?;
        Ok(data(&found, |d| match d {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        }))
    }

    async fn lookup_mx<'lookup, 'a>(&'lookup self, name: &'a Name) -> LookupResult<Vec<Name>> {
        let found = self.0.mx_lookup(fqdn(name)?).await.map_err(lookup_error)?;
        let mut mx = data(&found, |d| match d {
            RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
            _ => None,
        });
        mx.sort_by_key(|(p, _)| *p);
        Ok(mx.into_iter().filter_map(|(_, n)| to_name(&n)).collect())
    }

    async fn lookup_txt<'lookup, 'a>(&'lookup self, name: &'a Name) -> LookupResult<Vec<String>> {
        let found = self.0.txt_lookup(fqdn(name)?).await.map_err(lookup_error)?;
        Ok(data(&found, |d| match d {
            RData::TXT(txt) => {
                let joined: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|d| d.iter().copied())
                    .collect();
                Some(String::from_utf8_lossy(&joined).into_owned())
            }
            _ => None,
        }))
    }

    async fn lookup_ptr<'lookup>(&'lookup self, ip: IpAddr) -> LookupResult<Vec<Name>> {
        let found = self.0.reverse_lookup(ip).await.map_err(lookup_error)?;
        Ok(data(&found, |d| match d {
            RData::PTR(p) => to_name(&p.0),
            _ => None,
        }))
    }
}

/// The answers of the asked type (a lookup's answers may hold CNAMEs too).
fn data<T>(found: &Lookup, pick: impl Fn(&RData) -> Option<T>) -> Vec<T> {
    found
        .answers()
        .iter()
        .filter_map(|r| pick(&r.data))
        .collect()
}

/// `sender` as viaspf takes it. RFC 7208 §4.3: an empty local part becomes `postmaster`;
/// a local part that is not RFC 5321 dot-atom text (a space, say) is still the sender's,
/// so it is quoted rather than refused.
fn spf_sender(sender: &str) -> Option<Sender> {
    if let Ok(parsed) = sender.parse::<Sender>() {
        return Some(parsed);
    }
    let (local, domain) = sender.rsplit_once('@')?;
    if local.is_empty() {
        return Sender::new(domain).ok();
    }
    let quoted = local.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{quoted}\"@{domain}").parse().ok()
}

/// The result of `check_host()` for `sender` (an address, or `postmaster@<helo>` for the
/// HELO identity and the null sender), as mail-auth's `SpfOutput` for the domain.
pub async fn check_host(
    resolver: &TokioResolver,
    ip: IpAddr,
    helo: &str,
    sender: &str,
    timeout: Duration,
) -> SpfOutput {
    let domain = sender
        .rsplit_once('@')
        .map_or(sender, |(_, d)| d)
        .to_ascii_lowercase();
    let output = SpfOutput::new(domain);
    let Some(parsed) = spf_sender(sender) else {
        // RFC 7208 §4.3: a malformed domain gives none.
        return output.with_result(SpfResult::None);
    };
    let helo_domain = helo.parse::<DomainName>().ok();
    let config = Config::builder().timeout(timeout).build();
    let result = viaspf::evaluate_sender(
        &HickoryLookup(resolver),
        &config,
        ip,
        &parsed,
        helo_domain.as_ref(),
    )
    .await;
    output.with_result(match result.spf_result {
        viaspf::SpfResult::Pass => SpfResult::Pass,
        viaspf::SpfResult::Fail(_) => SpfResult::Fail,
        viaspf::SpfResult::Softfail => SpfResult::SoftFail,
        viaspf::SpfResult::Neutral => SpfResult::Neutral,
        viaspf::SpfResult::None => SpfResult::None,
        viaspf::SpfResult::Temperror => SpfResult::TempError,
        viaspf::SpfResult::Permerror => SpfResult::PermError,
    })
}
