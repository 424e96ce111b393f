//! Incoming aggregate reports about our domains: DMARC (RFC 7489 §7.2) and TLS-RPT (RFC 8460).
//! Owns `reports`: one row per report, with summary counts for listing and the parsed report
//! as JSON for showing. Parsing is the caller's business; this module only keeps what it is given.

use crate::engine::on_pool;
use crate::log::{Bind, LIKE_ESCAPE, contains_pattern};
use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// Kinds of report.
pub const REPORT_KINDS: [&str; 2] = ["dmarc", "tlsrpt"];

/// Longest list returned by [`Store::report_list`].
pub const MAX_REPORT_LIMIT: i64 = 10_000;

/// One report as listed: what it is, who sent it, and its counts; read as `COLUMNS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ReportSummary {
    pub id: String,
    /// `dmarc` or `tlsrpt`.
    pub kind: String,
    /// The reporting organization.
    pub org: String,
    /// The reporter's id of the report.
    pub report_id: String,
    /// The policy domain the report is about.
    pub domain: String,
    /// Start of the period covered, unix seconds.
    #[sqlx(rename = "date_begin")]
    pub begin: i64,
    /// End of the period covered, unix seconds.
    #[sqlx(rename = "date_end")]
    pub end: i64,
    pub received_at: i64,
    /// DMARC: messages; TLS-RPT: sessions.
    pub messages: i64,
    /// DMARC: messages with an aligned DKIM or SPF pass; TLS-RPT: successful sessions.
    pub pass: i64,
    /// DMARC: messages failing DMARC; TLS-RPT: failed sessions.
    pub fail: i64,
}

/// A stored report: its summary and the parsed report as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredReport {
    #[sqlx(flatten)]
    pub summary: ReportSummary,
    pub report: String,
}

/// Filter for [`Store::report_list`].
#[derive(Debug, Clone, Default)]
pub struct ReportQuery {
    pub kind: Option<String>,
    pub domain: Option<String>,
    /// Reporting organizations whose name contains this (any case).
    pub org: Option<String>,
    /// Reports whose period ends at or after this (unix seconds).
    pub since: Option<i64>,
    /// Reports whose period begins before this (unix seconds).
    pub until: Option<i64>,
    /// What the caller may see: None is every domain; an empty list matches nothing.
    pub domains: Option<Vec<String>>,
    /// 0 or less: 1000.
    pub limit: i64,
    pub offset: i64,
}

const COLUMNS: &str =
    "id, kind, org, report_id, domain, date_begin, date_end, received_at, messages, pass, fail";

impl Store {
    /// Keeps a report. A report already stored (same kind, organization and report id) is
    /// left as it is: returns the id of the stored report and whether this call stored it.
    pub async fn report_insert(&self, r: &StoredReport) -> Result<(String, bool), StoreError> {
        let s = &r.summary;
        let context = format!(
            "storing {} report {:?} from {:?}",
            s.kind, s.report_id, s.org
        );
        if !REPORT_KINDS.contains(&s.kind.as_str()) {
            return Err(StoreError::invalid(
                context,
                format!("kind must be one of {}", REPORT_KINDS.join(", ")),
            ));
        }
        if s.id.is_empty() {
            return Err(StoreError::invalid(context, "empty id"));
        }
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO reports \
             (id, kind, org, report_id, domain, date_begin, date_end, received_at, messages, \
              pass, fail, report) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (kind, org, report_id) DO NOTHING",
        )
        .bind(&s.id)
        .bind(&s.kind)
        .bind(&s.org)
        .bind(&s.report_id)
        .bind(s.domain.to_ascii_lowercase())
        .bind(s.begin)
        .bind(s.end)
        .bind(s.received_at)
        .bind(s.messages)
        .bind(s.pass)
        .bind(s.fail)
        .bind(&r.report)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        if done == 1 {
            return Ok((s.id.clone(), true));
        }
        let (id,): (String,) = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT id FROM reports WHERE kind = $1 AND org = $2 AND report_id = $3",
        )
        .bind(&s.kind)
        .bind(&s.org)
        .bind(&s.report_id)
        .fetch_one(p)
        .await)
        .map_err(StoreError::query(&context))?;
        Ok((id, false))
    }

    /// Reports, newest (by arrival) first.
    pub async fn report_list(&self, q: &ReportQuery) -> Result<Vec<ReportSummary>, StoreError> {
        let limit = if q.limit <= 0 {
            1000
        } else {
            q.limit.min(MAX_REPORT_LIMIT)
        };
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        let mut bind = |b: Bind| {
            binds.push(b);
            binds.len()
        };
        if let Some(kind) = &q.kind {
            let n = bind(Bind::Text(kind.to_ascii_lowercase()));
            conditions.push(format!("kind = ${n}"));
        }
        if let Some(domain) = &q.domain {
            let n = bind(Bind::Text(
                domain.trim_end_matches('.').to_ascii_lowercase(),
            ));
            conditions.push(format!("domain = ${n}"));
        }
        if let Some(org) = q.org.as_deref().filter(|o| !o.is_empty()) {
            let n = bind(Bind::Text(contains_pattern(&org.to_lowercase())));
            conditions.push(format!("LOWER(org) LIKE ${n} ESCAPE '{LIKE_ESCAPE}'"));
        }
        if let Some(since) = q.since {
            let n = bind(Bind::Int(since));
            conditions.push(format!("date_end >= ${n}"));
        }
        if let Some(until) = q.until {
            let n = bind(Bind::Int(until));
            conditions.push(format!("date_begin < ${n}"));
        }
        match &q.domains {
            None => {}
            Some(domains) if domains.is_empty() => conditions.push("1 = 0".into()),
            Some(domains) => {
                let parts: Vec<String> = domains
                    .iter()
                    .map(|d| {
                        let n = bind(Bind::Text(d.trim_end_matches('.').to_ascii_lowercase()));
                        format!("${n}")
                    })
                    .collect();
                conditions.push(format!("domain IN ({})", parts.join(", ")));
            }
        }
        let l = bind(Bind::Int(limit));
        let o = bind(Bind::Int(q.offset.max(0)));
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM reports {filter} \
             ORDER BY received_at DESC, id DESC LIMIT ${l} OFFSET ${o}"
        );
        let rows: Vec<ReportSummary> = on_pool!(&self.pool, |p| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for b in &binds {
                query = match b {
                    Bind::Text(text) => query.bind(text),
                    Bind::Int(int) => query.bind(int),
                };
            }
            query.fetch_all(p).await
        })
        .map_err(StoreError::query("listing reports"))?;
        Ok(rows)
    }

    /// One report by its id.
    pub async fn report_get(&self, id: &str) -> Result<Option<StoredReport>, StoreError> {
        on_pool!(&self.pool, |p| sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {COLUMNS}, report FROM reports WHERE id = $1")
        ))
        .bind(id)
        .fetch_optional(p)
        .await)
        .map_err(StoreError::query(format!("reading report {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(
        id: &str,
        kind: &str,
        org: &str,
        report_id: &str,
        domain: &str,
        at: i64,
    ) -> StoredReport {
        StoredReport {
            summary: ReportSummary {
                id: id.into(),
                kind: kind.into(),
                org: org.into(),
                report_id: report_id.into(),
                domain: domain.into(),
                begin: at - 86400,
                end: at,
                received_at: at,
                messages: 10,
                pass: 7,
                fail: 3,
            },
            report: format!("{{\"id\":\"{report_id}\"}}"),
        }
    }

    store_test! {
        async fn insert_list_get_and_duplicates(store) {
            let a = report("A1", "dmarc", "Mail Co", "r-1", "Example.COM", 1000);
            assert_eq!(
                store.report_insert(&a).await.expect("insert"),
                ("A1".to_string(), true)
            );
            // The same report again, under a new id: kept once, the first id answers.
            let again = report("A2", "dmarc", "Mail Co", "r-1", "example.com", 2000);
            assert_eq!(
                store.report_insert(&again).await.expect("insert"),
                ("A1".to_string(), false)
            );
            // Same report id from another organization, or of another kind: a different report.
            store
                .report_insert(&report("B1", "dmarc", "Other", "r-1", "example.com", 3000))
                .await
                .expect("insert");
            store
                .report_insert(&report(
                    "C1",
                    "tlsrpt",
                    "Mail Co",
                    "r-1",
                    "example.org",
                    4000,
                ))
                .await
                .expect("insert");
            assert!(
                store
                    .report_insert(&report("D1", "arf", "X", "1", "example.com", 1))
                    .await
                    .is_err()
            );

            let all = store
                .report_list(&ReportQuery::default())
                .await
                .expect("list");
            let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(ids, ["C1", "B1", "A1"]);
            assert_eq!(all[2].domain, "example.com");

            let dmarc = store
                .report_list(&ReportQuery {
                    kind: Some("dmarc".into()),
                    ..Default::default()
                })
                .await
                .expect("list");
            assert_eq!(dmarc.len(), 2);
            let org = store
                .report_list(&ReportQuery {
                    kind: Some("tlsrpt".into()),
                    domain: Some("EXAMPLE.org.".into()),
                    limit: 5,
                    ..Default::default()
                })
                .await
                .expect("list");
            assert_eq!(org.len(), 1);
            assert_eq!(org[0].id, "C1");
            let one = store
                .report_list(&ReportQuery {
                    limit: 1,
                    ..Default::default()
                })
                .await
                .expect("list");
            assert_eq!(one.len(), 1);
            let second = store
                .report_list(&ReportQuery {
                    limit: 1,
                    offset: 1,
                    ..Default::default()
                })
                .await
                .expect("list");
            assert_eq!(second[0].id, "B1");
            // Narrowed to what a caller sees, by organization and by period.
            let seen = |q: ReportQuery| {
                let store = store.clone();
                async move {
                    let rows = store.report_list(&q).await.expect("list");
                    rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
                }
            };
            let only = |d: &[&str]| Some(d.iter().map(|s| s.to_string()).collect());
            assert_eq!(
                seen(ReportQuery { domains: only(&["example.org"]), ..Default::default() }).await,
                ["C1"]
            );
            assert!(seen(ReportQuery { domains: only(&[]), ..Default::default() }).await.is_empty());
            assert_eq!(
                seen(ReportQuery { org: Some("mail c".into()), ..Default::default() }).await,
                ["C1", "A1"]
            );
            assert_eq!(
                seen(ReportQuery { org: Some("100%".into()), ..Default::default() }).await,
                Vec::<String>::new()
            );
            assert_eq!(
                seen(ReportQuery { since: Some(3500), ..Default::default() }).await,
                ["C1"]
            );
            // Periods end at `at` and begin a day before.
            assert_eq!(
                seen(ReportQuery {
                    until: Some(1000 - 86400 + 1),
                    ..Default::default()
                })
                .await,
                ["A1"]
            );

            let got = store.report_get("A1").await.expect("get").expect("found");
            assert_eq!(got.summary, all[2]);
            assert_eq!(got.report, "{\"id\":\"r-1\"}");
            assert!(store.report_get("nope").await.expect("get").is_none());
        }
    }
}
