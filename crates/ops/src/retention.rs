//! `portcullis retention run`: the retention job's pass ([`portcullis_gateway::retention`])
//! once, now, for an administrator; the counts go to the audit log.

use crate::{Access, Ops, Result, Scope};
use portcullis_gateway::retention::{Purged, run};
use portcullis_queue::spool::now;

impl Ops {
    /// Delete what is older than the `[retention]` settings now; how much of each kind.
    pub async fn retention_run(&self) -> Result<Purged> {
        self.actor()
            .require(Access::ManageMessages, &Scope::Global)?;
        let purged = run(self.config(), self.store(), now()).await?;
        tracing::info!(
            log = purged.log,
            quarantine = purged.quarantine,
            reports = purged.reports,
            audit = purged.audit,
            "retention run: {purged}"
        );
        let after = serde_json::to_value(purged).ok();
        self.audit("retention.run", "store", None, after).await?;
        Ok(purged)
    }
}
