//! Where mail for a domain goes: MX lookup with implicit MX and null MX (RFC 5321 §5.1,
//! RFC 7505), and host address lookup, on the one shared caching resolver. It does not
//! connect anywhere and knows nothing of routes, MTA-STS or DANE (`dane` builds its
//! validating resolver from the same settings).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use portcullis_smtp::Reply;
use rand::seq::SliceRandom;

use hickory_resolver::ResolverBuilder;
/// The resolver type, re-exported so that callers need not name hickory.
pub use hickory_resolver::TokioResolver;

/// Builds the process's one resolver. With no `nameservers` it reads the system
/// configuration (/etc/resolv.conf); otherwise it asks exactly those servers, over UDP
/// and TCP. Answers are cached (hickory's cache, TTL-bound).
pub fn build_resolver(
    nameservers: &[SocketAddr],
    timeout: Duration,
) -> Result<TokioResolver, NetError> {
    resolver_builder(nameservers, timeout)?.build()
}

/// The builder behind [`build_resolver`], for a resolver with other options (the
/// DNSSEC-validating one of `dane`).
pub fn resolver_builder(
    nameservers: &[SocketAddr],
    timeout: Duration,
) -> Result<ResolverBuilder<TokioRuntimeProvider>, NetError> {
    let mut builder = if nameservers.is_empty() {
        TokioResolver::builder_tokio()?
    } else {
        let servers = nameservers
            .iter()
            .map(|addr| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = addr.port();
                        c
                    })
                    .collect();
                NameServerConfig::new(addr.ip(), true, connections)
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.timeout = timeout;
    // Both families, IPv4 first: most MX hosts are reachable over IPv4 and many
    // gateways have no IPv6 route.
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    Ok(builder)
}

/// One mail exchanger, in the order to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    /// Lower case, without the trailing dot.
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MxError {
    /// The domain publishes a null MX (RFC 7505): it accepts no mail.
    #[error("domain accepts no mail (null MX)")]
    NullMx,
    /// NXDOMAIN.
    #[error("domain does not exist")]
    NoSuchDomain,
    /// The name exists but has no MX and no address, or the host has no address.
    #[error("no address records")]
    NoAddress,
    /// An address literal such as `[192.0.2.1]`: the caller connects to it directly and
    /// must not ask DNS.
    #[error("address literal is not a DNS name")]
    AddressLiteral,
    /// SERVFAIL, timeout, network error: try again later.
    #[error("temporary DNS failure: {0}")]
    Temporary(String),
}

impl MxError {
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            MxError::NullMx | MxError::NoSuchDomain | MxError::NoAddress
        )
    }

    /// The reply recorded for the recipients and quoted in a DSN.
    pub fn as_reply(&self) -> Reply {
        match self {
            MxError::NullMx => Reply::new(
                556,
                "5.1.10",
                "recipient domain does not accept mail (null MX)",
            ),
            MxError::NoSuchDomain => Reply::new(550, "5.1.2", "recipient domain does not exist"),
            MxError::NoAddress => {
                Reply::new(550, "5.4.4", "no mail exchanger or address for domain")
            }
            // A caller bug must not bounce mail, so it is transient.
            MxError::AddressLiteral => {
                Reply::new(451, "4.3.5", "address literal passed to MX lookup")
            }
            MxError::Temporary(e) => Reply::new(451, "4.4.3", format!("DNS lookup failed: {e}")),
        }
    }
}

/// The mail exchangers for `domain`, best first. No MX records means the domain itself
/// (implicit MX) when it has an address. Does not accept address literals.
pub async fn resolve_mx(resolver: &TokioResolver, domain: &str) -> Result<Vec<MxHost>, MxError> {
    if domain.starts_with('[') {
        return Err(MxError::AddressLiteral);
    }
    let name = fqdn(domain);
    let records = match resolver.mx_lookup(name.as_str()).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                _ => None,
            })
            .collect(),
        Err(e) if e.is_nx_domain() => return Err(MxError::NoSuchDomain),
        Err(e) if e.is_no_records_found() => Vec::new(),
        Err(e) => return Err(MxError::Temporary(e.to_string())),
    };
    if records.is_empty() {
        resolve_addrs(resolver, domain).await?;
        return Ok(vec![MxHost {
            preference: 0,
            host: normalize(domain),
        }]);
    }
    order_mx(records)
}

/// Addresses of one host, IPv4 first.
pub async fn resolve_addrs(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, MxError> {
    if host.starts_with('[') {
        return Err(MxError::AddressLiteral);
    }
    match resolver.lookup_ip(fqdn(host).as_str()).await {
        Ok(lookup) => {
            let mut addrs: Vec<IpAddr> = lookup.iter().collect();
            addrs.sort_by_key(|a| a.is_ipv6());
            addrs.dedup();
            if addrs.is_empty() {
                Err(MxError::NoAddress)
            } else {
                Ok(addrs)
            }
        }
        Err(e) if e.is_nx_domain() => Err(MxError::NoSuchDomain),
        Err(e) if e.is_no_records_found() => Err(MxError::NoAddress),
        Err(e) => Err(MxError::Temporary(e.to_string())),
    }
}

/// Orders MX records (preference, exchange): by preference, equal preferences in random
/// order to spread load (RFC 5321 §5.1). Only null-MX records is `NullMx`; a null MX
/// mixed with real ones is a misconfiguration and the real ones are used.
pub fn order_mx(records: Vec<(u16, String)>) -> Result<Vec<MxHost>, MxError> {
    let mut hosts: Vec<MxHost> = records
        .into_iter()
        .map(|(preference, host)| MxHost {
            preference,
            host: normalize(&host),
        })
        .collect();
    if hosts.is_empty() {
        return Err(MxError::NoAddress);
    }
    hosts.retain(|mx| !mx.host.is_empty());
    if hosts.is_empty() {
        return Err(MxError::NullMx);
    }
    hosts.shuffle(&mut rand::rng());
    hosts.sort_by_key(|mx| mx.preference);
    let mut seen = std::collections::HashSet::new();
    hosts.retain(|mx| seen.insert(mx.host.clone()));
    Ok(hosts)
}

/// Lower case, no trailing dot; `.` (the root) becomes empty.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Absolute name, so that resolv.conf search domains are never appended.
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The TXT records at `name` (each record's strings joined) that `wanted` accepts; none
/// when the name or the type does not exist. Other failures (SERVFAIL, timeout) are errors.
pub async fn txt_records(
    resolver: &TokioResolver,
    name: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<String>, NetError> {
    match resolver.txt_lookup(name).await {
        Ok(lookup) => Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .filter(|t| wanted(t))
            .collect()),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_preference_and_keeps_all() {
        let records = vec![
            (20, "b.example.".to_string()),
            (10, "A.example.".to_string()),
            (20, "c.example.".to_string()),
            (30, "a.example.".to_string()),
        ];
        let hosts = order_mx(records).expect("real MX records");
        assert_eq!(hosts[0].host, "a.example");
        assert_eq!(
            hosts.len(),
            3,
            "the duplicate host keeps its best preference"
        );
        assert!(hosts.windows(2).all(|w| w[0].preference <= w[1].preference));
    }

    #[test]
    fn equal_preferences_are_shuffled() {
        let records: Vec<(u16, String)> = (0..8).map(|i| (10, format!("mx{i}.example."))).collect();
        let first: Vec<String> = (0..50)
            .map(|_| order_mx(records.clone()).expect("records")[0].host.clone())
            .collect();
        assert!(
            first.iter().any(|h| h != &first[0]),
            "always the same first host"
        );
    }

    #[test]
    fn null_mx() {
        assert_eq!(order_mx(vec![(0, ".".to_string())]), Err(MxError::NullMx));
        let mixed = order_mx(vec![(0, ".".to_string()), (10, "mx.example.".to_string())]);
        assert_eq!(mixed.expect("real MX wins")[0].host, "mx.example");
        assert_eq!(MxError::NullMx.as_reply().status.as_deref(), Some("5.1.10"));
        assert!(MxError::NullMx.is_permanent());
        assert!(!MxError::Temporary("x".into()).is_permanent());
    }
}
