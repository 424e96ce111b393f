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

/// A value of a report's enum (DMARC `Disposition`, TLS-RPT `ResultType`) as people
/// read it: its wire name (`starttls-not-supported`), else its name, in lower case.
pub fn report_word<T: serde::Serialize + std::fmt::Debug>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s.to_ascii_lowercase(),
        _ => format!("{v:?}").to_ascii_lowercase(),
    }
}

/// A UTC day given as `YYYY-MM-DD`, default yesterday; its start in unix seconds.
pub fn report_day(day: Option<&str>) -> Result<i64> {
    match day {
        Some(text) => portcullis_gateway::dates::parse_ymd(text)
            .ok_or_else(|| OpsError::invalid("day", text, "expected YYYY-MM-DD")),
        None => Ok(now().div_euclid(86_400) * 86_400 - 86_400),
    }
}

/// One day of a domain's reports: messages (DMARC) or sessions (TLS-RPT) that passed and
/// failed, counted on the day each report's period begins.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DayCount {
    /// Start of the UTC day, unix seconds.
    pub day: i64,
    pub pass: i64,
    pub fail: i64,
}

/// One reporting organization's counts over the charted days.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OrgCount {
    pub org: String,
    pub pass: i64,
    pub fail: i64,
}

/// What a domain's reports of one kind say over the last days.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReportTrend {
    pub domain: String,
    pub kind: String,
    /// Oldest first, one per day, days without reports at zero.
    pub days: Vec<DayCount>,
    /// Most messages first.
    pub orgs: Vec<OrgCount>,
}

/// Days a trend covers at most.
pub const MAX_TREND_DAYS: i64 = 366;

impl Ops {
    /// The domains whose reports the actor may read: None for all of them.
    fn report_domains(&self) -> Result<Option<Vec<String>>> {
        let actor = self.actor();
        if actor.role == crate::Role::DomainAdmin {
            return Ok(Some(actor.domains.clone()));
        }
        actor.require(Access::ReadPolicy, &Scope::Global)?;
        Ok(None)
    }

    /// Stored reports, newest first, narrowed to the domains the actor may read.
    pub async fn report_list(&self, query: &ReportQuery) -> Result<Vec<ReportSummary>> {
        let domains = self.report_domains()?;
        let mut query = query.clone();
        query.domains = match (domains, query.domains.take()) {
            (None, asked) => asked,
            (Some(own), None) => Some(own),
            (Some(own), Some(asked)) => {
                Some(asked.into_iter().filter(|d| own.contains(d)).collect())
            }
        };
        Ok(self.store.report_list(&query).await?)
    }

    /// One report; a report about a domain the actor may not read is not found.
    pub async fn report_get(&self, id: &str) -> Result<StoredReport> {
        self.report_domains()?;
        self.store
            .report_get(id)
            .await?
            .filter(|r| {
                self.actor()
                    .may(Access::ReadPolicy, &Scope::domain(&r.summary.domain))
            })
            .ok_or_else(|| OpsError::not_found("report", id))
    }

    /// Pass and fail per day and per reporting organization of `domain`'s reports of
    /// `kind` whose period begins within the last `days` days (up to today).
    pub async fn report_trend(&self, domain: &str, kind: &str, days: i64) -> Result<ReportTrend> {
        let domain = crate::dkim::check_domain(domain)?;
        if !portcullis_store::REPORT_KINDS.contains(&kind) {
            return Err(OpsError::invalid("kind", kind, "use dmarc or tlsrpt"));
        }
        let days = days.clamp(1, MAX_TREND_DAYS);
        let today = now().div_euclid(86_400) * 86_400;
        let first = today - (days - 1) * 86_400;
        let rows = self
            .report_list(&ReportQuery {
                kind: Some(kind.to_string()),
                domain: Some(domain.clone()),
                since: Some(first),
                limit: portcullis_store::MAX_REPORT_LIMIT,
                ..Default::default()
            })
            .await?;
        let mut trend = ReportTrend {
            domain,
            kind: kind.to_string(),
            days: (0..days)
                .map(|i| DayCount {
                    day: first + i * 86_400,
                    ..Default::default()
                })
                .collect(),
            orgs: Vec::new(),
        };
        for r in rows {
            let day = r.begin.div_euclid(86_400) * 86_400;
            if day < first {
                continue;
            }
            let Some(slot) = trend.days.get_mut(((day - first) / 86_400) as usize) else {
                continue;
            };
            slot.pass += r.pass;
            slot.fail += r.fail;
            match trend.orgs.iter_mut().find(|o| o.org == r.org) {
                Some(o) => {
                    o.pass += r.pass;
                    o.fail += r.fail;
                }
                None => trend.orgs.push(OrgCount {
                    org: r.org,
                    pass: r.pass,
                    fail: r.fail,
                }),
            }
        }
        trend.orgs.sort_by(|a, b| {
            (b.pass + b.fail)
                .cmp(&(a.pass + a.fail))
                .then(a.org.cmp(&b.org))
        });
        Ok(trend)
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

    pub(crate) fn resolver(&self) -> Result<mail_auth::hickory_resolver::TokioResolver> {
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
