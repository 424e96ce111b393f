//! Monitoring: the Prometheus metrics of the running gateway (for whole-gateway roles), and
//! its readiness, which anyone may ask (a load balancer, an orchestrator, a monitoring
//! system): the store answers a query and the spool takes a file.

use crate::{Access, Ops, OpsError, Result, Scope};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Renders the metrics of this process in Prometheus' text format.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// How long the store may take to answer the readiness query.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// The name of the file that the readiness check writes and removes in the spool's
/// `tmp/`, where every message arrives first.
const PROBE_FILE: &str = "ready-probe";

/// Whether the gateway can take mail now, and if not, why.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    pub status: &'static str,
    /// What failed (`store: ...`, `spool: ...`); absent when ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.reason.is_none()
    }
}

impl Ops {
    /// The metrics in Prometheus' text format; administrators and auditors only (they
    /// count every domain's mail).
    pub fn metrics(&self) -> Result<String> {
        self.actor().require(Access::ReadMetrics, &Scope::Global)?;
        match &self.metrics {
            Some(render) => Ok(render()),
            None => Err(OpsError::State {
                name: "metrics".into(),
                state: "not collected in this process".into(),
                hint: "a running gateway (portcullis serve) collects them".into(),
            }),
        }
    }

    /// Ready when the store answers a query within [`READY_TIMEOUT`] and a file can be
    /// written in the spool. No authorization: it says no more than "mail would be
    /// refused now" and why.
    pub async fn readiness(&self) -> Readiness {
        let store = match tokio::time::timeout(READY_TIMEOUT, self.store().schema_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("store: {e}")),
            Err(_) => Err(format!(
                "store: no answer within {} s",
                READY_TIMEOUT.as_secs()
            )),
        };
        let spool_tmp = self.config().data_dir.join("spool").join("tmp");
        let reason = match store {
            Err(e) => Some(e),
            Ok(()) => tokio::task::spawn_blocking(move || probe_write(&spool_tmp))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                .err(),
        };
        Readiness {
            status: if reason.is_none() {
                "ready"
            } else {
                "unavailable"
            },
            reason,
        }
    }
}

/// Create, write and remove a small file in `dir`; the error says what failed.
fn probe_write(dir: &std::path::Path) -> std::result::Result<(), String> {
    use std::io::Write;
    let path = dir.join(PROBE_FILE);
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(b"ok"));
    let _ = std::fs::remove_file(&path);
    written.map_err(|e| format!("spool: cannot write in {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, Role};
    use portcullis_gateway::config::Config;
    use portcullis_store::Store;

    async fn ops(dir: &std::path::Path) -> Ops {
        let config = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        let store = Store::open("sqlite::memory:").await.expect("store");
        Ops::new(store, config)
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pc-monitoring-{name}-{}",
            portcullis_queue::spool::new_id()
        ));
        std::fs::create_dir_all(dir.join("spool").join("tmp")).expect("dirs");
        dir
    }

    #[tokio::test]
    async fn ready_until_the_spool_is_gone() {
        let dir = temp("ready");
        let ops = ops(&dir).await;
        let r = ops.readiness().await;
        assert!(r.ready(), "{r:?}");
        assert_eq!(r.status, "ready");
        assert!(!dir.join("spool/tmp").join(PROBE_FILE).exists());
        std::fs::rename(dir.join("spool"), dir.join("spool.away")).expect("move");
        let r = ops.readiness().await;
        assert_eq!(r.status, "unavailable");
        let reason = r.reason.unwrap_or_default();
        assert!(reason.starts_with("spool: cannot write in"), "{reason}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn metrics_for_whole_gateway_roles_only() {
        let dir = temp("metrics");
        let ops = ops(&dir).await;
        assert!(matches!(ops.metrics(), Err(OpsError::State { .. })));
        let ops = ops.with_metrics(Arc::new(|| "portcullis_up 1\n".to_string()));
        assert_eq!(ops.metrics().expect("admin"), "portcullis_up 1\n");
        let mut helpdesk = Actor::system("t");
        helpdesk.role = Role::Helpdesk;
        let e = ops.acting_as(helpdesk).metrics().unwrap_err();
        assert!(matches!(e, OpsError::Forbidden(_)), "{e}");
        let mut auditor = Actor::system("t");
        auditor.role = Role::Auditor;
        assert!(ops.acting_as(auditor).metrics().is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
