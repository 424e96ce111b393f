//! What inbound messages contribute to the DMARC aggregate reports the gateway sends.
//! Owns `dmarc_results`: one row per message (policy domain, time, the report record as
//! JSON) until its day has been reported. A report run first claims the rows it will
//! send, so two runs (two nodes, or the CLI beside a running gateway) never report the
//! same rows; it deletes them once the report is durably queued. A run that dies leaves
//! its claim behind, which expires after [`DMARC_CLAIM_SECS`]: its rows are reported by a
//! later run, at worst a second time, never lost silently.

use crate::engine::{on_conn, on_pool};
use crate::{Store, StoreError};

/// Seconds after which a claim is taken to belong to a run that died.
pub const DMARC_CLAIM_SECS: i64 = 3600;

/// One message's contribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcResultRow {
    pub id: String,
    /// The policy domain, lower case.
    pub domain: String,
    /// Unix seconds.
    pub received_at: i64,
    /// The record, the published policy and the destinations, as JSON.
    pub result: String,
}

impl Store {
    /// Keep contributions, all in one transaction.
    pub async fn dmarc_results_insert(&self, rows: &[DmarcResultRow]) -> Result<(), StoreError> {
        let context = format!("storing {} DMARC report results", rows.len());
        for r in rows {
            if r.id.is_empty() || r.domain.is_empty() {
                return Err(StoreError::invalid(&context, "empty id or domain"));
            }
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(&context))?;
        for r in rows {
            on_conn!(&mut tx, |c| sqlx::query(
                "INSERT INTO dmarc_results (id, domain, received_at, result) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&r.id)
            .bind(r.domain.to_ascii_lowercase())
            .bind(r.received_at)
            .bind(&r.result)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(StoreError::query(&context))?;
        }
        tx.commit().await.map_err(StoreError::query(&context))?;
        Ok(())
    }

    /// Claim for the run `token` every row received in `begin..end` that no live run has
    /// claimed, and return them ordered by domain, time and id.
    pub async fn dmarc_results_claim(
        &self,
        begin: i64,
        end: i64,
        token: &str,
        now: i64,
    ) -> Result<Vec<DmarcResultRow>, StoreError> {
        let context = format!("claiming DMARC report results from {begin} to {end}");
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE dmarc_results SET claim = $1, claimed_at = $2 \
             WHERE received_at >= $3 AND received_at < $4 \
             AND (claim IS NULL OR claimed_at < $5)",
        )
        .bind(token)
        .bind(now)
        .bind(begin)
        .bind(end)
        .bind(now - DMARC_CLAIM_SECS)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        let rows: Vec<(String, String, i64, String)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT id, domain, received_at, result FROM dmarc_results WHERE claim = $1 \
             ORDER BY domain, received_at, id",
        )
        .bind(token)
        .fetch_all(p)
        .await)
        .map_err(StoreError::query(&context))?;
        Ok(rows
            .into_iter()
            .map(|(id, domain, received_at, result)| DmarcResultRow {
                id,
                domain,
                received_at,
                result,
            })
            .collect())
    }

    /// Delete the rows of `domain` received in `begin..end` that the run `token` claimed
    /// (their report is queued); how many.
    pub async fn dmarc_results_delete(
        &self,
        token: &str,
        domain: &str,
        begin: i64,
        end: i64,
    ) -> Result<u64, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM dmarc_results WHERE claim = $1 AND domain = $2 \
             AND received_at >= $3 AND received_at < $4",
        )
        .bind(token)
        .bind(domain)
        .bind(begin)
        .bind(end)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(format!(
            "deleting reported DMARC results of {domain}"
        )))?;
        Ok(done)
    }

    /// Give back the claim of the run `token` on the rows of `domain` received in
    /// `begin..end` (their report could not be sent now); how many.
    pub async fn dmarc_results_release(
        &self,
        token: &str,
        domain: &str,
        begin: i64,
        end: i64,
    ) -> Result<u64, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE dmarc_results SET claim = NULL, claimed_at = NULL \
             WHERE claim = $1 AND domain = $2 AND received_at >= $3 AND received_at < $4",
        )
        .bind(token)
        .bind(domain)
        .bind(begin)
        .bind(end)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(format!(
            "releasing DMARC results of {domain}"
        )))?;
        Ok(done)
    }

    /// Forget rows received before `before`, reported or not; how many.
    pub async fn dmarc_results_purge(&self, before: i64) -> Result<u64, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM dmarc_results WHERE received_at < $1"
        )
        .bind(before)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query("purging old DMARC report results"))?;
        Ok(done)
    }

    /// Rows kept, per policy domain, for `begin..end`: (domain, rows), ordered by domain.
    pub async fn dmarc_results_count(
        &self,
        begin: i64,
        end: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT domain, COUNT(*) FROM dmarc_results \
             WHERE received_at >= $1 AND received_at < $2 GROUP BY domain ORDER BY domain",
        )
        .bind(begin)
        .bind(end)
        .fetch_all(p)
        .await)
        .map_err(StoreError::query("counting DMARC report results"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, domain: &str, at: i64) -> DmarcResultRow {
        DmarcResultRow {
            id: id.into(),
            domain: domain.into(),
            received_at: at,
            result: format!("{{\"id\":\"{id}\"}}"),
        }
    }

    store_test! {
        async fn claim_send_delete_and_purge(store) {
            store
                .dmarc_results_insert(&[
                    row("a", "Sender.Test", 86_400 + 10),
                    row("b", "sender.test", 86_400 + 20),
                    row("c", "other.test", 86_400 + 30),
                    row("d", "sender.test", 2 * 86_400 + 5),
                ])
                .await
                .unwrap();
            // A second copy of a row is kept once.
            store
                .dmarc_results_insert(&[row("a", "sender.test", 86_400 + 10)])
                .await
                .unwrap();
            assert_eq!(
                store.dmarc_results_count(86_400, 2 * 86_400).await.unwrap(),
                vec![
                    ("other.test".to_string(), 1),
                    ("sender.test".to_string(), 2)
                ]
            );
            let now = 3 * 86_400;
            let claimed = store
                .dmarc_results_claim(86_400, 2 * 86_400, "run1", now)
                .await
                .unwrap();
            let ids: Vec<&str> = claimed.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(ids, ["c", "a", "b"]);
            assert_eq!(claimed[1].domain, "sender.test");
            // A second run finds them taken.
            assert!(
                store
                    .dmarc_results_claim(0, 4 * 86_400, "run2", now + 60)
                    .await
                    .unwrap()
                    .iter()
                    .all(|r| r.id == "d")
            );
            assert_eq!(
                store
                    .dmarc_results_delete("run1", "sender.test", 86_400, 2 * 86_400)
                    .await
                    .unwrap(),
                2
            );
            // Released rows go to the next run; a stale claim (a run that died) as well.
            assert_eq!(
                store
                    .dmarc_results_release("run1", "other.test", 86_400, 2 * 86_400)
                    .await
                    .unwrap(),
                1
            );
            let again = store
                .dmarc_results_claim(0, 4 * 86_400, "run3", now + 120)
                .await
                .unwrap();
            assert_eq!(
                again.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                ["c"]
            );
            let later = now + 120 + DMARC_CLAIM_SECS + 1;
            let stale = store
                .dmarc_results_claim(0, 4 * 86_400, "run4", later)
                .await
                .unwrap();
            assert_eq!(
                stale.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                ["c", "d"]
            );
            assert_eq!(store.dmarc_results_purge(2 * 86_400).await.unwrap(), 1);
            assert_eq!(
                store.dmarc_results_count(0, 4 * 86_400).await.unwrap(),
                vec![("sender.test".to_string(), 1)]
            );
        }
    }
}
