//! The health of the services the gateway leans on, as the dashboard shows it: the store
//! (a query), DNS (a lookup through the gateway's own resolver), each clamd endpoint (a
//! `PING`) and each downstream route and the smarthost (greeting, EHLO, STARTTLS as the
//! route's TLS mode asks, QUIT; the probe of the route test with shorter bounds). Every
//! check runs side by side and is bounded, so the whole answer comes within
//! [`CHECK_TIMEOUT`] plus a little, whatever is down.

use crate::{Access, Ops, Result, Scope};
use portcullis_gateway::policy::{parse_host_port, tls_mode};
use portcullis_queue::probe::{ProbeSettings, probe};
use portcullis_queue::spool::now;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The bound of each check (a route's whole dialogue, one clamd `PING`, the DNS lookup).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Routes probed at most: a gateway with hundreds of domains gets the first ones (by
/// name), and the answer says how many were left out.
pub const MAX_ROUTES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It answered as it should.
    Ok,
    /// It did not answer, or answered wrongly: `detail` says how.
    Failed,
    /// Not configured (no clamd endpoint, no route): nothing to check.
    Off,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Off => "off",
        }
    }
}

/// One service and what its check found.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceCheck {
    /// `store`, `dns`, `clamd`, `route` or `smarthost`.
    pub service: &'static str,
    /// What was asked: the store's engine, the name looked up, `host:port`; for a route,
    /// `domain → host:port`.
    pub target: String,
    pub status: Status,
    pub detail: String,
    pub elapsed_ms: u64,
}

/// Every check, store and DNS first, then clamd, then the routes.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceHealth {
    /// Unix seconds when the checks started.
    pub checked_at: i64,
    pub checks: Vec<ServiceCheck>,
    /// Routes not probed because of [`MAX_ROUTES`].
    pub routes_left_out: usize,
}

impl ServiceHealth {
    /// Whether every configured service answered.
    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Failed)
    }
}

fn check(
    service: &'static str,
    target: impl Into<String>,
    started: Instant,
    outcome: std::result::Result<String, String>,
) -> ServiceCheck {
    let (status, detail) = match outcome {
        Ok(d) => (Status::Ok, d),
        Err(d) => (Status::Failed, d),
    };
    ServiceCheck {
        service,
        target: target.into(),
        status,
        detail,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

fn off(service: &'static str, detail: &str) -> ServiceCheck {
    ServiceCheck {
        service,
        target: String::new(),
        status: Status::Off,
        detail: detail.into(),
        elapsed_ms: 0,
    }
}

impl Ops {
    /// Check the store, DNS, clamd and the downstream routes now. It opens connections to
    /// configured servers only (no mail, no credentials), so it takes the right to read
    /// the gateway's mail as the dashboard does, and is not audited.
    pub async fn service_health(&self) -> Result<ServiceHealth> {
        self.actor().require(Access::ReadMessages, &Scope::Global)?;
        let checked_at = now();
        let started = Instant::now();
        let domains = tokio::time::timeout(CHECK_TIMEOUT, self.store().list_domains()).await;
        let (store, mut domains) = match domains {
            Ok(Ok(d)) => {
                let detail = format!("{} domains read", d.len());
                (
                    check("store", self.store().engine(), started, Ok(detail)),
                    d,
                )
            }
            Ok(Err(e)) => (
                check("store", self.store().engine(), started, Err(e.to_string())),
                Vec::new(),
            ),
            Err(_) => (
                check(
                    "store",
                    self.store().engine(),
                    started,
                    Err(format!("no answer within {CHECK_TIMEOUT:?}")),
                ),
                Vec::new(),
            ),
        };
        domains.sort_by(|a, b| a.name.cmp(&b.name));
        // DNS: the MX of the first protected domain (or of our own name); any answer,
        // NXDOMAIN included, shows the resolver works.
        let name = domains
            .first()
            .map(|d| d.name.clone())
            .unwrap_or_else(|| self.config().hostname.clone());
        let dns = async {
            let started = Instant::now();
            let outcome = match self.resolver() {
                Err(e) => Err(e.to_string()),
                Ok(resolver) => {
                    match tokio::time::timeout(CHECK_TIMEOUT, resolver.mx_lookup(name.as_str()))
                        .await
                    {
                        Ok(Ok(l)) => Ok(format!("{} MX records", l.answers().len())),
                        Ok(Err(e)) if e.is_nx_domain() => Ok("answered: no such domain".into()),
                        Ok(Err(e)) if e.is_no_records_found() => {
                            Ok("answered: no MX record".into())
                        }
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
                    }
                }
            };
            check("dns", format!("MX {name}"), started, outcome)
        };
        let clamd = async {
            let av = &self.config().antivirus;
            if av.clamd.is_empty() {
                return vec![off(
                    "clamd",
                    "no clamd endpoint configured ([antivirus] clamd)",
                )];
            }
            let scanner =
                match portcullis_filter::clamd::Scanner::from_strs(&av.clamd, CHECK_TIMEOUT) {
                    Ok(s) => s,
                    Err(e) => {
                        let now = Instant::now();
                        return vec![check("clamd", av.clamd.join(", "), now, Err(e.to_string()))];
                    }
                };
            let pings = scanner.endpoints().iter().map(|endpoint| {
                let scanner = &scanner;
                async move {
                    let started = Instant::now();
                    let outcome = scanner
                        .ping_one(endpoint)
                        .await
                        .map(|()| "PONG".to_string())
                        .map_err(|e| e.to_string());
                    check("clamd", endpoint.to_string(), started, outcome)
                }
            });
            futures_util::future::join_all(pings).await
        };
        let mut targets: Vec<(&'static str, String, String, u16, String)> = Vec::new();
        if let Some((host, port)) = self
            .config()
            .delivery
            .smarthost
            .as_deref()
            .and_then(parse_host_port)
        {
            let tls = self.config().delivery.smarthost_tls.clone();
            targets.push(("smarthost", String::new(), host, port, tls));
        }
        for d in &domains {
            let mut routes = d.routes.clone();
            routes.sort_by_key(|r| r.priority);
            for r in routes {
                targets.push(("route", d.name.clone(), r.host, r.port, r.tls));
            }
        }
        let routes_left_out = targets.len().saturating_sub(MAX_ROUTES);
        targets.truncate(MAX_ROUTES);
        let routes = async {
            if targets.is_empty() {
                return vec![off("route", "no domain has a route")];
            }
            let configs = match self.client_tls() {
                Ok(c) => c,
                Err(e) => {
                    let now = Instant::now();
                    return vec![check("route", "TLS client setup", now, Err(e.to_string()))];
                }
            };
            let settings = ProbeSettings {
                helo_name: self.config().hostname.clone(),
                step_timeout: CHECK_TIMEOUT,
                total_timeout: CHECK_TIMEOUT,
            };
            let probes = targets.iter().map(|(service, domain, host, port, tls)| {
                let (configs, settings) = (&configs, &settings);
                async move {
                    let started = Instant::now();
                    let report = probe(host, *port, tls_mode(tls), configs, settings).await;
                    let target = if domain.is_empty() {
                        format!("{host}:{port}")
                    } else {
                        format!("{domain} → {host}:{port}")
                    };
                    let outcome = match report.error {
                        Some(e) => Err(e),
                        None => Ok(match &report.tls {
                            Some(t) => format!("SMTP answers, {} {}", t.version, t.cipher),
                            None => "SMTP answers, without TLS".to_string(),
                        }),
                    };
                    check(service, target, started, outcome)
                }
            });
            futures_util::future::join_all(probes).await
        };
        let (dns, clamd, routes) = tokio::join!(dns, clamd, routes);
        let mut checks = vec![store, dns];
        checks.extend(clamd);
        checks.extend(routes);
        Ok(ServiceHealth {
            checked_at,
            checks,
            routes_left_out,
        })
    }
}
