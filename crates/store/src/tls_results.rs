//! Results of our own outbound TLS sessions, kept for the TLS-RPT reports (RFC 8460) we
//! send to the domains we deliver to. Owns `tls_results`: session counts per UTC day,
//! policy domain, applied policy and result. The gateway adds the counts it gathered in
//! memory now and then; a report claims the rows of one day and domain (so that two
//! nodes, or the command line and a node, never report them twice) and gives them back
//! when it could not be sent.

use crate::engine::{on_conn, on_pool};
use crate::{Store, StoreError};

/// One counter row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TlsResultRow {
    /// Unix seconds of 00:00 UTC of the day.
    pub day: i64,
    /// The recipient domain, lower case: the report goes to its `_smtp._tls` record.
    pub domain: String,
    /// `sts`, `tlsa` or `no-policy-found`.
    pub policy_type: String,
    /// The report's `policy-domain` when it is not `domain`: for DANE, the TLSA base
    /// domain (RFC 8460 §3). Empty: `domain`.
    pub policy_domain: String,
    /// The MTA-STS policy lines or the TLSA records.
    pub policy_strings: Vec<String>,
    /// The policy's mx patterns (MTA-STS) or the MX host (DANE).
    pub mx_hosts: Vec<String>,
    /// `success` or an RFC 8460 result type.
    pub result: String,
    /// Where a failed session went; empty for successes or when unknown.
    pub receiving_mx: String,
    pub receiving_ip: String,
    pub sessions: i64,
}

/// What [`Store::tls_results_claim`] got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClaim {
    /// The rows now owned by the claim.
    pub rows: Vec<TlsResultRow>,
    /// Whether rows of the same day and domain were claimed before (by an earlier
    /// report): a second report for that day must not be sent.
    pub reported_before: bool,
}

/// The key of a row (static text: sqlx takes only `&'static str` queries).
macro_rules! key_columns {
    () => {
        "day, domain, policy_type, policy_domain, policy_strings, mx_hosts, result, \
         receiving_mx, receiving_ip, report_id"
    };
}

/// A row of `tls_results` as read back; the lists are JSON text.
#[derive(sqlx::FromRow)]
struct Row {
    day: i64,
    domain: String,
    policy_type: String,
    policy_domain: String,
    policy_strings: String,
    mx_hosts: String,
    result: String,
    receiving_mx: String,
    receiving_ip: String,
    sessions: i64,
}

fn encode(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

fn decode(context: &str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(context, e.to_string()))
}

impl Store {
    /// Adds session counts to the rows not yet reported (in one transaction).
    pub async fn tls_results_add(&self, rows: &[TlsResultRow]) -> Result<(), StoreError> {
        let context = "adding TLS session results";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(context))?;
        for r in rows {
            if r.domain.is_empty() || r.sessions <= 0 {
                continue;
            }
            on_conn!(&mut tx, |c| sqlx::query(concat!(
                "INSERT INTO tls_results (",
                key_columns!(),
                ", sessions, reported_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '', $10, 0) ON CONFLICT (",
                key_columns!(),
                ") DO UPDATE SET sessions = tls_results.sessions + excluded.sessions"
            ))
            .bind(r.day)
            .bind(&r.domain)
            .bind(&r.policy_type)
            .bind(&r.policy_domain)
            .bind(encode(&r.policy_strings))
            .bind(encode(&r.mx_hosts))
            .bind(&r.result)
            .bind(&r.receiving_mx)
            .bind(&r.receiving_ip)
            .bind(r.sessions)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(StoreError::query(context))?;
        }
        tx.commit().await.map_err(StoreError::query(context))?;
        Ok(())
    }

    /// The days and domains that have rows no report claimed yet, for days from
    /// `from_day` (inclusive) to `before_day` (exclusive), oldest first.
    pub async fn tls_results_pending(
        &self,
        from_day: i64,
        before_day: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT DISTINCT day, domain FROM tls_results \
             WHERE report_id = '' AND day >= $1 AND day < $2 ORDER BY day, domain",
        )
        .bind(from_day)
        .bind(before_day)
        .fetch_all(p)
        .await)
        .map_err(StoreError::query("listing unreported TLS session results"))
    }

    /// Claims the unreported rows of one day and domain for the report `claim` (a
    /// unique id), at time `now`.
    pub async fn tls_results_claim(
        &self,
        day: i64,
        domain: &str,
        claim: &str,
        now: i64,
    ) -> Result<TlsClaim, StoreError> {
        let context = format!("claiming the TLS session results of {domain}");
        if claim.is_empty() {
            return Err(StoreError::invalid(context, "empty claim id"));
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(context.as_str()))?;
        on_conn!(&mut tx, |c| sqlx::query(
            "UPDATE tls_results SET report_id = $1, reported_at = $2 \
             WHERE day = $3 AND domain = $4 AND report_id = ''",
        )
        .bind(claim)
        .bind(now)
        .bind(day)
        .bind(domain)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(context.as_str()))?;
        let rows: Vec<Row> = on_conn!(&mut tx, |c| sqlx::query_as(
            "SELECT day, domain, policy_type, policy_domain, policy_strings, mx_hosts, result, \
             receiving_mx, receiving_ip, sessions FROM tls_results WHERE report_id = $1 \
             ORDER BY policy_type, policy_domain, policy_strings, mx_hosts, result, \
             receiving_mx, receiving_ip",
        )
        .bind(claim)
        .fetch_all(c)
        .await)
        .map_err(StoreError::query(context.as_str()))?;
        let (before,): (i64,) = on_conn!(&mut tx, |c| sqlx::query_as(
            "SELECT COUNT(*) FROM tls_results \
             WHERE day = $1 AND domain = $2 AND report_id <> '' AND report_id <> $3",
        )
        .bind(day)
        .bind(domain)
        .bind(claim)
        .fetch_one(c)
        .await)
        .map_err(StoreError::query(context.as_str()))?;
        tx.commit()
            .await
            .map_err(StoreError::query(context.as_str()))?;
        let rows = rows
            .into_iter()
            .map(|r| {
                Ok(TlsResultRow {
                    day: r.day,
                    domain: r.domain,
                    policy_type: r.policy_type,
                    policy_domain: r.policy_domain,
                    policy_strings: decode(&context, &r.policy_strings)?,
                    mx_hosts: decode(&context, &r.mx_hosts)?,
                    result: r.result,
                    receiving_mx: r.receiving_mx,
                    receiving_ip: r.receiving_ip,
                    sessions: r.sessions,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(TlsClaim {
            rows,
            reported_before: before > 0,
        })
    }

    /// Gives the rows of a claim back (its report could not be sent), adding them to
    /// rows counted meanwhile; how many rows were given back.
    pub async fn tls_results_release(&self, claim: &str) -> Result<u64, StoreError> {
        let context = format!("releasing TLS session results of report {claim}");
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(context.as_str()))?;
        on_conn!(&mut tx, |c| sqlx::query(concat!(
            "INSERT INTO tls_results (",
            key_columns!(),
            ", sessions, reported_at) \
             SELECT day, domain, policy_type, policy_domain, policy_strings, mx_hosts, result, \
             receiving_mx, receiving_ip, '', sessions, 0 FROM tls_results WHERE report_id = $1 \
             ON CONFLICT (",
            key_columns!(),
            ") DO UPDATE SET sessions = tls_results.sessions + excluded.sessions"
        ))
        .bind(claim)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(context.as_str()))?;
        let done = on_conn!(&mut tx, |c| sqlx::query(
            "DELETE FROM tls_results WHERE report_id = $1"
        )
        .bind(claim)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(context.as_str()))?;
        tx.commit()
            .await
            .map_err(StoreError::query(context.as_str()))?;
        Ok(done)
    }

    /// Forgets the rows of days before `before_day`, reported or not; how many.
    pub async fn tls_results_purge(&self, before_day: i64) -> Result<u64, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM tls_results WHERE day < $1"
        )
        .bind(before_day)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query("purging old TLS session results"))?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 1_795_392_000; // 2026-11-23T00:00:00Z

    fn row(domain: &str, result: &str, sessions: i64) -> TlsResultRow {
        let failure = result != "success";
        TlsResultRow {
            day: DAY,
            domain: domain.into(),
            policy_type: "sts".into(),
            policy_domain: String::new(),
            policy_strings: vec!["version: STSv1".into(), "mode: enforce".into()],
            mx_hosts: vec!["*.example.com".into()],
            result: result.into(),
            receiving_mx: if failure {
                "mx1.example.com".into()
            } else {
                String::new()
            },
            receiving_ip: if failure {
                "192.0.2.1".into()
            } else {
                String::new()
            },
            sessions,
        }
    }

    store_test! {
        async fn add_claim_release_and_purge(store) {
            store
                .tls_results_add(&[
                    row("example.com", "success", 3),
                    row("example.com", "certificate-expired", 1),
                    row("other.test", "success", 1),
                ])
                .await
                .unwrap();
            // Counts add up.
            store
                .tls_results_add(&[row("example.com", "success", 2)])
                .await
                .unwrap();
            assert_eq!(
                store.tls_results_pending(DAY, DAY + 86400).await.unwrap(),
                vec![(DAY, "example.com".into()), (DAY, "other.test".into())]
            );
            assert!(
                store
                    .tls_results_pending(DAY + 86400, DAY + 2 * 86400)
                    .await
                    .unwrap()
                    .is_empty()
            );

            let claim = store
                .tls_results_claim(DAY, "example.com", "r1", DAY + 90000)
                .await
                .unwrap();
            assert!(!claim.reported_before);
            assert_eq!(claim.rows.len(), 2);
            let success = claim.rows.iter().find(|r| r.result == "success").unwrap();
            assert_eq!(success.sessions, 5);
            assert_eq!(
                success.policy_strings,
                vec!["version: STSv1", "mode: enforce"]
            );
            let failure = claim.rows.iter().find(|r| r.result != "success").unwrap();
            assert_eq!(failure.receiving_ip, "192.0.2.1");
            // Claimed rows are no longer pending, nor claimed twice.
            assert_eq!(
                store.tls_results_pending(DAY, DAY + 86400).await.unwrap(),
                vec![(DAY, "other.test".into())]
            );
            let again = store
                .tls_results_claim(DAY, "example.com", "r2", DAY + 90001)
                .await
                .unwrap();
            assert!(again.rows.is_empty());
            assert!(again.reported_before);

            // Late counts and a release merge back into one unreported row.
            store
                .tls_results_add(&[row("example.com", "success", 1)])
                .await
                .unwrap();
            assert_eq!(store.tls_results_release("r1").await.unwrap(), 2);
            let back = store
                .tls_results_claim(DAY, "example.com", "r3", DAY + 90002)
                .await
                .unwrap();
            assert!(!back.reported_before);
            let success = back.rows.iter().find(|r| r.result == "success").unwrap();
            assert_eq!(success.sessions, 6);

            assert_eq!(store.tls_results_purge(DAY).await.unwrap(), 0);
            assert_eq!(store.tls_results_purge(DAY + 86400).await.unwrap(), 3);
        }
    }

    store_test! {
        async fn dane_rows_keep_their_policy_domain(store) {
            let dane = |policy_domain: &str, sessions| TlsResultRow {
                policy_type: "tlsa".into(),
                policy_domain: policy_domain.into(),
                policy_strings: vec!["3 1 1 00ff".into()],
                mx_hosts: vec!["mx.example.com".into()],
                ..row("example.com", "success", sessions)
            };
            store
                .tls_results_add(&[dane("mx.example.com", 2), dane("mx.hosting.test", 1)])
                .await
                .unwrap();
            store
                .tls_results_add(&[dane("mx.hosting.test", 4)])
                .await
                .unwrap();
            let claim = store
                .tls_results_claim(DAY, "example.com", "r1", DAY + 90000)
                .await
                .unwrap();
            let got: Vec<(&str, i64)> = claim
                .rows
                .iter()
                .map(|r| (r.policy_domain.as_str(), r.sessions))
                .collect();
            assert_eq!(got, vec![("mx.example.com", 2), ("mx.hosting.test", 5)]);
            assert!(claim.rows.iter().all(|r| r.domain == "example.com"));
            // Given back, they keep it too.
            assert_eq!(store.tls_results_release("r1").await.unwrap(), 2);
            let back = store
                .tls_results_claim(DAY, "example.com", "r2", DAY + 90001)
                .await
                .unwrap();
            assert_eq!(back.rows, claim.rows);
        }
    }
}
