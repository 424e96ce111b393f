//! Testing a domain's routes: one probe per route (greeting, EHLO, STARTTLS as the
//! route's TLS mode asks, QUIT; no mail, no credentials), with the whole dialogue kept
//! for the person who asked. The probe itself is the queue's (`portcullis_queue::probe`),
//! over the transport that delivery uses.

use crate::{Access, Ops, OpsError, Result, Scope};
use portcullis_gateway::policy::tls_mode;
use portcullis_queue::client::TlsConfigs;
use portcullis_queue::probe::{ProbeReport, ProbeSettings, probe};
use serde_json::json;
use std::time::Duration;

/// The bound of each step of a probe (resolving, connecting, each reply, the handshake).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound of one route's whole probe. Routes are probed side by side, so a domain's
/// test ends within this, under the console's 60 s request limit.
pub const ROUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// One route and what its probe found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RouteTest {
    pub priority: u32,
    /// The route's TLS mode.
    pub tls_mode: String,
    /// The route logs in with this user on delivery (the test does not).
    pub auth_user: Option<String>,
    #[serde(flatten)]
    pub report: ProbeReport,
}

impl Ops {
    /// Probe every route of `domain`, in priority order. Opening connections on request
    /// is an action, so it takes the right to change the domain's policy, and is audited.
    pub async fn test_route(&self, domain: &str) -> Result<Vec<RouteTest>> {
        let scope = Scope::domain(domain);
        self.actor().require(Access::WritePolicy, &scope)?;
        let name = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let mut found = self
            .store
            .list_domains()
            .await?
            .into_iter()
            .find(|d| d.name == name)
            .ok_or_else(|| OpsError::not_found("domain", domain))?;
        found.routes.sort_by_key(|r| r.priority);
        let configs = self.client_tls()?;
        let settings = ProbeSettings {
            helo_name: self.config.hostname.clone(),
            step_timeout: STEP_TIMEOUT,
            total_timeout: ROUTE_TIMEOUT,
        };
        let mut probes = tokio::task::JoinSet::new();
        for (i, r) in found.routes.into_iter().enumerate() {
            let (configs, settings) = (configs.clone(), settings.clone());
            probes.spawn(async move {
                let report = probe(&r.host, r.port, tls_mode(&r.tls), &configs, &settings).await;
                let test = RouteTest {
                    priority: r.priority,
                    tls_mode: r.tls,
                    auth_user: r.auth_user,
                    report,
                };
                (i, test)
            });
        }
        let mut tests: Vec<(usize, RouteTest)> = Vec::new();
        while let Some(done) = probes.join_next().await {
            tests.push(done.map_err(|e| OpsError::Failed {
                what: "route test".into(),
                reason: e.to_string(),
            })?);
        }
        tests.sort_by_key(|(i, _)| *i);
        let tests: Vec<RouteTest> = tests.into_iter().map(|(_, t)| t).collect();
        let outcome: Vec<serde_json::Value> = tests
            .iter()
            .map(|t| {
                json!({
                    "route": format!("{}:{}", t.report.host, t.report.port),
                    "error": t.report.error,
                })
            })
            .collect();
        self.audit("domain.test", &name, None, Some(json!(outcome)))
            .await?;
        Ok(tests)
    }

    /// The client TLS configurations delivery uses: WebPKI roots plus
    /// `delivery.extra_ca_file`.
    pub(crate) fn client_tls(&self) -> Result<TlsConfigs> {
        let failed = |what: &str, reason: String| OpsError::Failed {
            what: what.to_string(),
            reason,
        };
        let extra_ca = match &self.config.delivery.extra_ca_file {
            Some(path) => TlsConfigs::read_pem_certificates(path)
                .map_err(|e| failed("delivery.extra_ca_file", e.to_string()))?,
            None => Vec::new(),
        };
        TlsConfigs::new(&extra_ca).map_err(|e| failed("TLS client setup", e.to_string()))
    }
}
