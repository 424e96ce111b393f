//! Reports: the incoming DMARC aggregate and TLS-RPT reports about our domains kept in the
//! store (list, show, import of a saved message), and sending the outgoing ones of a day
//! now, whatever the schedule says.

use crate::{Access, Ops, OpsError, Result, Scope};
use mail_auth::MessageAuthenticator;
use portcullis_gateway::dmarc_reports::Queued;
use portcullis_gateway::reports::{IntakeError, MAX_MESSAGE_SIZE, take_in};
use portcullis_gateway::tlsrpt::{Outcome, Sender};
use portcullis_queue::client::TlsConfigs;
use portcullis_queue::spool::now;
use portcullis_store::{ReportQuery, ReportSummary, StoredReport};
use serde_json::json;
use std::time::Duration;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportedReport {
    Stored(String),
    AlreadyStored(String),
}

/// A UTC day given as `YYYY-MM-DD`, default yesterday; its start in unix seconds.
pub fn report_day(day: Option<&str>) -> Result<i64> {
    match day {
        Some(text) => portcullis_gateway::dates::parse_ymd(text)
            .ok_or_else(|| OpsError::invalid("day", text, "expected YYYY-MM-DD")),
        None => Ok(now().div_euclid(86_400) * 86_400 - 86_400),
    }
}

impl Ops {
    pub async fn report_list(&self, query: &ReportQuery) -> Result<Vec<ReportSummary>> {
        self.actor().require(Access::ReadPolicy, &Scope::Global)?;
        Ok(self.store.report_list(query).await?)
    }

    pub async fn report_get(&self, id: &str) -> Result<StoredReport> {
        self.actor().require(Access::ReadPolicy, &Scope::Global)?;
        self.store
            .report_get(id)
            .await?
            .ok_or_else(|| OpsError::not_found("report", id))
    }

    /// Take in a report message as received (`origin` names it in errors).
    pub async fn report_import(&self, raw: &[u8], origin: &str) -> Result<ImportedReport> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        if raw.len() > MAX_MESSAGE_SIZE {
            return Err(OpsError::Document {
                origin: origin.to_string(),
                reason: format!("larger than {} MiB, not a report", MAX_MESSAGE_SIZE >> 20),
            });
        }
        match take_in(&self.store, raw).await {
            Ok((id, true)) => {
                self.audit(
                    "report.import",
                    &id,
                    None,
                    Some(json!({ "origin": origin })),
                )
                .await?;
                Ok(ImportedReport::Stored(id))
            }
            Ok((id, false)) => Ok(ImportedReport::AlreadyStored(id)),
            Err(IntakeError::NotAReport(why)) => Err(OpsError::Document {
                origin: origin.to_string(),
                reason: format!("not a DMARC aggregate or TLS-RPT report: {why}"),
            }),
            Err(IntakeError::Store(e)) => Err(e.into()),
        }
    }

    fn resolver(&self) -> Result<mail_auth::hickory_resolver::TokioResolver> {
        let dns = &self.config.dns;
        portcullis_queue::mx::build_resolver(
            &dns.nameservers,
            Duration::from_secs(dns.timeout_secs),
        )
        .map_err(|e| OpsError::Failed {
            what: "DNS resolver".into(),
            reason: e.to_string(),
        })
    }

    /// Build and queue the DMARC aggregate reports of the day starting at `day`.
    pub async fn report_send_dmarc(&self, day: i64) -> Result<Vec<Queued>> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        let resolver = MessageAuthenticator(self.resolver()?);
        let queued = portcullis_gateway::dmarc_reports::send(
            &self.config,
            &self.store,
            &self.injector()?,
            &resolver,
            day,
            day + 86_400,
        )
        .await
        .map_err(OpsError::failed("DMARC aggregate reports"))?;
        self.audit(
            "report.send_dmarc",
            &day.to_string(),
            None,
            Some(json!({ "reports": queued.len() })),
        )
        .await?;
        Ok(queued)
    }

    /// Build and send the TLS-RPT reports of the day starting at `day`, one outcome per
    /// policy domain.
    pub async fn report_send_tlsrpt(&self, day: i64) -> Result<Vec<(String, Outcome)>> {
        self.actor().require(Access::WritePolicy, &Scope::Global)?;
        let failed = |what: &str, e: String| OpsError::Failed {
            what: what.to_string(),
            reason: e,
        };
        let extra_ca = match &self.config.delivery.extra_ca_file {
            Some(path) => TlsConfigs::read_pem_certificates(path)
                .map_err(|e| failed("delivery.extra_ca_file", e.to_string()))?,
            None => Vec::new(),
        };
        let tls =
            TlsConfigs::new(&extra_ca).map_err(|e| failed("TLS client setup", e.to_string()))?;
        let sender = Sender::new(
            &self.config,
            self.store.clone(),
            self.injector()?,
            self.resolver()?,
            &tls,
        )
        .map_err(OpsError::failed("TLS-RPT sender"))?;
        let outcomes = sender
            .send_day(day)
            .await
            .map_err(OpsError::failed("TLS-RPT reports"))?;
        self.audit(
            "report.send_tlsrpt",
            &day.to_string(),
            None,
            Some(json!({ "domains": outcomes.len() })),
        )
        .await?;
        Ok(outcomes)
    }
}
