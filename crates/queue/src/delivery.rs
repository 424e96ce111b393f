//! One delivery attempt of one message: recipients grouped by domain, each group sent to
//! its destination (configured routes, a smarthost, or the domain's MX hosts), over a
//! connection reused from earlier messages when one is idle. Produces a result per
//! recipient; retry timing and bounces are the scheduler's job.

use crate::client::{
    ClientError, ClientSettings, DsnRet, OutgoingMessage, OutgoingRecipient, RecipientOutcome,
    SmtpClient, TlsConfigs, TlsMode,
};
use crate::mx::{self, TokioResolver};
use crate::spool::{Envelope, Ret};
use crate::tls_policy::{
    AppliedPolicy, DaneStatus, Decision, Origin, Receiver, Security, TransportSecurity, decide,
    failure_kind, sts_failure_kind,
};
use portcullis_smtp::Reply;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One server to try, with how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHost {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub auth: Option<(String, String)>,
}

/// Where a recipient domain's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Configured servers (a domain's own servers, or a smarthost), in order.
    Hosts(Vec<RouteHost>),
    /// The domain's MX hosts (RFC 5321 §5.1).
    Mx,
}

/// Chooses the destination of a recipient domain; the binary implements it from policy.
pub trait Router: Send + Sync {
    fn route(&self, domain: &str) -> Destination;
}

/// The result of one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `dsn_relayed`: the next hop did not offer DSN, so a NOTIFY=SUCCESS request ends
    /// here and we owe the sender a "relayed" notice (RFC 3461 §5.2.2).
    Delivered {
        reply: Reply,
        host: String,
        dsn_relayed: bool,
        /// Whether the connection that took it was encrypted.
        tls: bool,
    },
    Deferred {
        reply: Reply,
        host: Option<String>,
    },
    Failed {
        reply: Reply,
        host: Option<String>,
    },
}

/// Idle connections kept for the next message to the same server.
pub struct ConnectionPool {
    idle: Mutex<HashMap<String, Vec<(SmtpClient, Instant)>>>,
    max_idle: Duration,
    max_per_key: usize,
}

impl ConnectionPool {
    pub fn new(max_idle: Duration) -> Self {
        ConnectionPool {
            idle: Mutex::new(HashMap::new()),
            max_idle,
            max_per_key: 32,
        }
    }

    fn take(&self, key: &str) -> Option<SmtpClient> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        while let Some((client, since)) = list.pop() {
            if since.elapsed() < self.max_idle && client.is_usable() {
                return Some(client);
            }
        }
        None
    }

    fn put(&self, key: String, client: SmtpClient) {
        if self.max_idle.is_zero() || !client.is_usable() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(key).or_default();
        list.retain(|(_, since)| since.elapsed() < self.max_idle);
        if list.len() < self.max_per_key {
            list.push((client, Instant::now()));
        }
    }

    /// Close connections idle for too long (called now and then by the scheduler).
    pub fn expire(&self) -> Vec<SmtpClient> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let mut expired = Vec::new();
        for list in idle.values_mut() {
            let (keep, old): (Vec<_>, Vec<_>) = std::mem::take(list)
                .into_iter()
                .partition(|(_, since)| since.elapsed() < self.max_idle);
            *list = keep;
            expired.extend(old.into_iter().map(|(c, _)| c));
        }
        idle.retain(|_, l| !l.is_empty());
        expired
    }
}

/// What a delivery attempt needs, shared by every attempt.
pub struct Deliverer {
    pub resolver: TokioResolver,
    pub tls: TlsConfigs,
    pub client: ClientSettings,
    pub router: Box<dyn Router>,
    pub pool: ConnectionPool,
    /// Port for MX delivery: 25, changed only by tests that run MX hosts on loopback.
    pub mx_port: u16,
    /// MTA-STS, DANE and the TLS result counters.
    pub security: TransportSecurity,
}

/// The domain of an address, lower-cased (`""` when there is none).
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

impl Deliverer {
    /// Try every recipient whose index is in `pending`; one outcome per index.
    pub async fn attempt(
        &self,
        envelope: &Envelope,
        message: &[u8],
        pending: &[usize],
    ) -> Vec<(usize, Outcome)> {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for &i in pending {
            let domain = domain_of(&envelope.recipients[i].address);
            match groups.iter_mut().find(|(d, _)| *d == domain) {
                Some((_, list)) => list.push(i),
                None => groups.push((domain, vec![i])),
            }
        }
        let mut results = Vec::with_capacity(pending.len());
        for (domain, indexes) in groups {
            let outcomes = self
                .deliver_group(envelope, message, &domain, &indexes)
                .await;
            results.extend(indexes.into_iter().zip(outcomes));
        }
        results
    }

    async fn deliver_group(
        &self,
        envelope: &Envelope,
        message: &[u8],
        domain: &str,
        indexes: &[usize],
    ) -> Vec<Outcome> {
        let id = envelope.id.as_str();
        let all = |o: Outcome| vec![o; indexes.len()];
        let (hosts, by_mx) = match self.hosts_for(domain).await {
            Ok(found) => found,
            Err((reply, permanent)) => {
                return all(if permanent {
                    Outcome::Failed { reply, host: None }
                } else {
                    Outcome::Deferred { reply, host: None }
                });
            }
        };
        let recipients: Vec<OutgoingRecipient> = indexes
            .iter()
            .map(|&i| {
                let r = &envelope.recipients[i];
                OutgoingRecipient {
                    address: r.address.clone(),
                    notify: r.notify.clone(),
                    orcpt: r.orcpt.clone(),
                }
            })
            .collect();
        let outgoing = OutgoingMessage {
            sender: &envelope.sender,
            recipients: &recipients,
            data: message,
            eight_bit: envelope.eight_bit,
            smtputf8: envelope.smtputf8,
            envid: envelope.envid.as_deref(),
            ret: envelope.ret.map(|r| match r {
                Ret::Full => DsnRet::Full,
                Ret::Headers => DsnRet::Headers,
            }),
        };
        let now = crate::spool::now();
        let literal = domain.starts_with('[');
        let mut sts_failed = false;
        let sts = match &self.security.mta_sts {
            Some(sts) if by_mx && !literal => match sts.policy(domain, now).await {
                Ok(found) => {
                    tracing::info!(id, domain, mode = %found.policy.mode.as_str(), policy_id = %found.id,
                        source = %found.how, mx = %found.policy.mx.join(" "), "MTA-STS policy applies");
                    Some(found)
                }
                Err(why) => {
                    tracing::info!(id, domain, reason = %why, "no MTA-STS policy");
                    // A policy announced but not to be had is a failure for TLS-RPT;
                    // the sessions that follow are not counted a second time.
                    if let Some(kind) = sts_failure_kind(&why.to_string()) {
                        self.security.counters.record(
                            now,
                            domain,
                            &AppliedPolicy::sts_unavailable(),
                            kind,
                            Receiver::default(),
                        );
                        sts_failed = true;
                    }
                    None
                }
            },
            _ => None,
        };
        let mut last_error = Reply::new(451, "4.4.0", format!("no servers for {domain}"));
        let mut last_permanent = false;
        let mut last_host = None;
        for route in &hosts {
            let origin = if by_mx {
                Origin::Mx { sts: sts.as_ref() }
            } else {
                Origin::Route(route.tls)
            };
            let (dane, dane_addrs) = if by_mx || route.tls == TlsMode::Dane {
                self.security
                    .dane_status(&route.host, route.port, now)
                    .await
            } else {
                (
                    DaneStatus::Off("not used for this route".into()),
                    Vec::new(),
                )
            };
            let security = match decide(&route.host, origin, &dane) {
                Decision::Skip { reply, why } => {
                    tracing::info!(id, host = %route.host, reason = %why, "host skipped by TLS policy; deferred");
                    let (policy, result) = match (&dane, &sts) {
                        (DaneStatus::Failed(_), _) => {
                            (AppliedPolicy::tlsa(&[], &route.host, &[]), "dnssec-invalid")
                        }
                        _ if route.tls == TlsMode::Dane => {
                            (AppliedPolicy::tlsa(&[], &route.host, &[]), "dane-required")
                        }
                        (_, Some(found)) => {
                            (AppliedPolicy::sts(&found.policy), "validation-failure")
                        }
                        (_, None) => (AppliedPolicy::sts_unavailable(), "validation-failure"),
                    };
                    self.security.counters.record(
                        now,
                        domain,
                        &policy,
                        result,
                        Receiver {
                            host: Some(&route.host),
                            ip: None,
                        },
                    );
                    last_error = reply;
                    last_permanent = false;
                    last_host = Some(route.host.clone());
                    continue;
                }
                Decision::Connect { security, why } => {
                    // Per message, so debug: the delivery line says whether TLS was used.
                    tracing::debug!(id, host = %route.host, policy = security.label(), reason = %why, "transport security");
                    security
                }
            };
            // The policy TLS-RPT names for sessions with this host; None: not counted
            // (configured routes without DANE).
            // DANE sessions name the TLSA base domain as policy domain (RFC 8460 §3).
            let applied = match (&security, &sts, &dane) {
                (Security::Dane(records, names), _, _) => {
                    Some(AppliedPolicy::tlsa(records, &route.host, names))
                }
                (_, _, DaneStatus::Unusable(names)) => {
                    Some(AppliedPolicy::tlsa(&[], &route.host, names))
                }
                _ if !by_mx => None,
                (_, Some(found), _) => Some(AppliedPolicy::sts(&found.policy)),
                (_, None, _) if sts_failed => None,
                (_, None, _) => Some(AppliedPolicy::none()),
            };
            let addrs = if !dane_addrs.is_empty() {
                dane_addrs
            } else {
                match self.addresses(&route.host).await {
                    Ok(a) => a,
                    Err(e) => {
                        last_error = e.as_reply();
                        last_permanent = false;
                        continue;
                    }
                }
            };
            for ip in addrs {
                let addr = SocketAddr::new(ip, route.port);
                let key = format!(
                    "{addr}|{}|{}|{}",
                    route.host,
                    security.label(),
                    route.auth.as_ref().map(|a| a.0.as_str()).unwrap_or("")
                );
                let host_label = format!("{}[{}]:{}", route.host, ip, route.port);
                last_host = Some(host_label.clone());
                // A pooled connection may have been closed by the server meanwhile; on
                // an error with one, try once more on a fresh connection.
                if let Some(mut client) = self.pool.take(&key) {
                    match client.send(&outgoing).await {
                        Ok(outcomes) => {
                            let outcomes = convert(&client, outcomes, &host_label);
                            self.pool.put(key, client);
                            return outcomes;
                        }
                        // Once the body went out the server may have the message: defer
                        // rather than risk a second copy on a fresh connection.
                        Err(e) if client.body_sent() => {
                            return all(deferred_or_failed(&e, Some(host_label)));
                        }
                        Err(_) => {}
                    }
                }
                let mut client = match self
                    .open(
                        id,
                        domain,
                        route,
                        addr,
                        &security,
                        applied.as_ref(),
                        &host_label,
                    )
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(id, host = %host_label, error = %e, "connection failed");
                        last_error = e.as_reply();
                        last_permanent = e.is_permanent();
                        continue;
                    }
                };
                return match client.send(&outgoing).await {
                    Ok(outcomes) => {
                        let outcomes = convert(&client, outcomes, &host_label);
                        self.pool.put(key, client);
                        outcomes
                    }
                    Err(e) => {
                        tracing::info!(id, host = %host_label, error = %e, "delivery failed");
                        all(deferred_or_failed(&e, Some(host_label)))
                    }
                };
            }
        }
        all(if last_permanent {
            Outcome::Failed {
                reply: last_error,
                host: last_host,
            }
        } else {
            Outcome::Deferred {
                reply: last_error,
                host: last_host,
            }
        })
    }

    /// Opens a session to one address of `route` with the security decided for it.
    /// TLS failures under DANE or an enforced MTA-STS policy are never downgraded: the
    /// host is given up for this attempt (the caller tries the next, then defers).
    /// Sessions are counted for TLS-RPT under `applied` (None: not counted).
    #[allow(clippy::too_many_arguments)]
    async fn open(
        &self,
        id: &str,
        domain: &str,
        route: &RouteHost,
        addr: SocketAddr,
        security: &Security,
        applied: Option<&AppliedPolicy>,
        label: &str,
    ) -> Result<SmtpClient, ClientError> {
        let host = route.host.as_str();
        let now = crate::spool::now();
        let count = |result: &'static str| {
            if let Some(policy) = applied {
                self.security.counters.record(
                    now,
                    domain,
                    policy,
                    result,
                    Receiver {
                        host: Some(host),
                        ip: Some(addr.ip()),
                    },
                );
            }
        };
        let connect = |mode: TlsMode, config: Option<std::sync::Arc<rustls::ClientConfig>>| {
            SmtpClient::connect_with(
                addr,
                host,
                mode,
                config,
                route.auth.clone(),
                &self.tls,
                &self.client,
            )
        };
        match security {
            Security::Mode(mode) => {
                let result = connect(*mode, None).await;
                match &result {
                    Ok(client) if client.is_tls() => count("success"),
                    Ok(_) if *mode != TlsMode::None => count("starttls-not-supported"),
                    Err(ClientError::Tls(e)) => count(failure_kind(e)),
                    _ => {}
                }
                result
            }
            Security::Dane(records, names) => {
                let names = if names.is_empty() {
                    vec![host.to_string()]
                } else {
                    names.clone()
                };
                let config =
                    crate::dane::client_config(self.tls.provider(), records.clone(), names)
                        .map_err(|e| ClientError::Tls(format!("DANE configuration: {e}")))?;
                match connect(TlsMode::Dane, Some(config)).await {
                    Ok(client) => {
                        tracing::info!(id, host = %label, "DANE: certificate authenticated by TLSA");
                        count("success");
                        Ok(client)
                    }
                    Err(ClientError::Tls(e)) => {
                        tracing::info!(id, host = %label, error = %e, "DANE: TLS or authentication failed; host not used, deferred");
                        count(failure_kind(&e));
                        Err(ClientError::Tls(format!("DANE for {host}: {e}")))
                    }
                    Err(e) => Err(e),
                }
            }
            Security::StsEnforce => match connect(TlsMode::Verify, None).await {
                Ok(client) => {
                    tracing::info!(id, host = %label, "MTA-STS: certificate verified");
                    count("success");
                    Ok(client)
                }
                Err(ClientError::Tls(e)) => {
                    tracing::info!(id, host = %label, error = %e, "MTA-STS enforce: TLS or certificate failed; host not used, deferred");
                    count(failure_kind(&e));
                    Err(ClientError::Tls(format!(
                        "MTA-STS policy of {domain} (enforce): {e}"
                    )))
                }
                Err(e) => Err(e),
            },
            Security::StsTesting { listed } => {
                if !listed {
                    tracing::info!(id, host = %label, "MTA-STS testing: host does not match the policy's mx patterns; delivering anyway");
                    count("validation-failure");
                }
                match connect(TlsMode::Verify, None).await {
                    Ok(client) => {
                        tracing::info!(id, host = %label, "MTA-STS testing: certificate verified");
                        if *listed {
                            count("success");
                        }
                        Ok(client)
                    }
                    Err(ClientError::Tls(e)) => {
                        tracing::info!(id, host = %label, error = %e, "MTA-STS testing: TLS or certificate failed (would defer under enforce); delivering with opportunistic TLS");
                        count(failure_kind(&e));
                        connect(TlsMode::May, None).await
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The hosts for `domain`, and whether they are its MX hosts (true) or configured
    /// routes / the smarthost (false).
    async fn hosts_for(&self, domain: &str) -> Result<(Vec<RouteHost>, bool), (Reply, bool)> {
        if domain.is_empty() {
            return Err((Reply::new(550, "5.1.3", "recipient has no domain"), true));
        }
        match self.router.route(domain) {
            Destination::Hosts(hosts) => Ok((hosts, false)),
            Destination::Mx => {
                if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
                    return Ok((vec![self.mx_route(literal)], true));
                }
                match mx::resolve_mx(&self.resolver, domain).await {
                    Ok(list) => Ok((
                        list.into_iter().map(|m| self.mx_route(&m.host)).collect(),
                        true,
                    )),
                    Err(e) => Err((e.as_reply(), e.is_permanent())),
                }
            }
        }
    }

    fn mx_route(&self, host: &str) -> RouteHost {
        RouteHost {
            host: host.to_string(),
            port: self.mx_port,
            tls: TlsMode::May,
            auth: None,
        }
    }

    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, mx::MxError> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let literal = literal.strip_prefix("IPv6:").unwrap_or(literal);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        mx::resolve_addrs(&self.resolver, host).await
    }
}

fn deferred_or_failed(e: &ClientError, host: Option<String>) -> Outcome {
    if e.is_permanent() {
        Outcome::Failed {
            reply: e.as_reply(),
            host,
        }
    } else {
        Outcome::Deferred {
            reply: e.as_reply(),
            host,
        }
    }
}

fn convert(client: &SmtpClient, outcomes: Vec<RecipientOutcome>, host: &str) -> Vec<Outcome> {
    let dsn_relayed = !client.extensions().dsn;
    let tls = client.is_tls();
    outcomes
        .into_iter()
        .map(|o| match o {
            RecipientOutcome::Delivered(reply) => Outcome::Delivered {
                reply,
                host: host.to_string(),
                dsn_relayed,
                tls,
            },
            RecipientOutcome::TempFailed(reply) => Outcome::Deferred {
                reply,
                host: Some(host.to_string()),
            },
            RecipientOutcome::PermFailed(reply) => Outcome::Failed {
                reply,
                host: Some(host.to_string()),
            },
        })
        .collect()
}
