//! The spam classifier's model: token counts and trained message counts. Owns the
//! `bayes_tokens` and `bayes_totals` tables. The store only keeps numbers; tokenizing and
//! the arithmetic of classification are the filter's.
//!
//! Training arrives as a delta (per token, the change of its spam and ham counts) and is
//! applied in one transaction with multi-row upserts, so training thousands of messages is a
//! few hundred statements, and a gateway reading the model sees all of a training run or
//! none of it.

use std::collections::HashMap;

use sqlx::AssertSqlSafe;

use crate::engine::{on_conn, on_pool};
use crate::{Store, StoreError};

/// Rows per upsert statement: 3 parameters each, under the 999 bound parameters that old
/// SQLite builds allow (PostgreSQL allows 65,535).
const UPSERT_ROWS: usize = 300;

/// The whole stored model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BayesCounts {
    pub spam_messages: i64,
    pub ham_messages: i64,
    /// (token, spam count, ham count)
    pub tokens: Vec<(String, i64, i64)>,
}

/// Message and token counts of the stored model, without the tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BayesSummary {
    pub spam_messages: i64,
    pub ham_messages: i64,
    pub tokens: i64,
    /// Unix seconds of the last training; 0 if never trained.
    pub updated_at: i64,
}

fn upsert_sql(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO bayes_tokens (token, spam_count, ham_count) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        let n = row * 3;
        sql.push_str(&format!("(${}, ${}, ${})", n + 1, n + 2, n + 3));
    }
    sql.push_str(
        " ON CONFLICT (token) DO UPDATE SET \
         spam_count = bayes_tokens.spam_count + excluded.spam_count, \
         ham_count = bayes_tokens.ham_count + excluded.ham_count",
    );
    sql
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Store {
    /// Reads the whole model in one consistent snapshot.
    pub async fn load_bayes(&self) -> Result<BayesCounts, StoreError> {
        let context = "loading the spam classifier model";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(context))?;
        let totals: Option<(i64, i64)> = on_conn!(&mut tx, |c| sqlx::query_as(
            "SELECT spam_messages, ham_messages FROM bayes_totals WHERE id = 1"
        )
        .fetch_optional(c)
        .await)
        .map_err(StoreError::query(context))?;
        let tokens: Vec<(String, i64, i64)> = on_conn!(&mut tx, |c| sqlx::query_as(
            "SELECT token, spam_count, ham_count FROM bayes_tokens"
        )
        .fetch_all(c)
        .await)
        .map_err(StoreError::query(context))?;
        tx.commit().await.map_err(StoreError::query(context))?;
        let (spam_messages, ham_messages) = totals.unwrap_or_default();
        Ok(BayesCounts {
            spam_messages,
            ham_messages,
            tokens,
        })
    }

    /// The size of the model.
    pub async fn bayes_summary(&self) -> Result<BayesSummary, StoreError> {
        let context = "counting the spam classifier model";
        let totals: Option<(i64, i64, i64)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT spam_messages, ham_messages, updated_at FROM bayes_totals WHERE id = 1",
        )
        .fetch_optional(p)
        .await)
        .map_err(StoreError::query(context))?;
        let (tokens,): (i64,) = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM bayes_tokens"
        )
        .fetch_one(p)
        .await)
        .map_err(StoreError::query(context))?;
        let (spam_messages, ham_messages, updated_at) = totals.unwrap_or_default();
        Ok(BayesSummary {
            spam_messages,
            ham_messages,
            tokens,
            updated_at,
        })
    }

    /// Applies a training delta in one transaction: adds `spam_messages` and `ham_messages`
    /// to the message counts and each (token, spam change, ham change) to the token counts.
    /// Negative changes untrain; counts never go below zero, and tokens left with no count
    /// are removed.
    pub async fn apply_bayes_delta(
        &self,
        spam_messages: i64,
        ham_messages: i64,
        tokens: &[(&str, i64, i64)],
    ) -> Result<(), StoreError> {
        let context = "training the spam classifier";
        // One row per token (PostgreSQL refuses an upsert that touches a row twice).
        let mut merged: HashMap<&str, (i64, i64)> = HashMap::with_capacity(tokens.len());
        for &(token, s, h) in tokens {
            let e = merged.entry(token).or_default();
            e.0 += s;
            e.1 += h;
        }
        let mut rows: Vec<(&str, i64, i64)> = merged
            .into_iter()
            .filter(|(_, (s, h))| *s != 0 || *h != 0)
            .map(|(t, (s, h))| (t, s, h))
            .collect();
        // A stable order keeps lock order and page writes predictable.
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let negative = rows.iter().any(|(_, s, h)| *s < 0 || *h < 0);

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(context))?;
        let full_sql = upsert_sql(UPSERT_ROWS);
        for chunk in rows.chunks(UPSERT_ROWS) {
            let sql = if chunk.len() == UPSERT_ROWS {
                full_sql.clone()
            } else {
                upsert_sql(chunk.len())
            };
            on_conn!(&mut tx, |c| {
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for &(token, s, h) in chunk {
                    query = query.bind(token).bind(s).bind(h);
                }
                query.execute(c).await.map(|r| r.rows_affected())
            })
            .map_err(StoreError::query(context))?;
        }
        if negative {
            for sql in [
                "UPDATE bayes_tokens SET spam_count = 0 WHERE spam_count < 0",
                "UPDATE bayes_tokens SET ham_count = 0 WHERE ham_count < 0",
                "DELETE FROM bayes_tokens WHERE spam_count <= 0 AND ham_count <= 0",
            ] {
                on_conn!(&mut tx, |c| sqlx::query(sql)
                    .execute(c)
                    .await
                    .map(|r| r.rows_affected()))
                .map_err(StoreError::query(context))?;
            }
        }
        on_conn!(&mut tx, |c| sqlx::query(
            "INSERT INTO bayes_totals (id, spam_messages, ham_messages, updated_at) \
             VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET \
             spam_messages = CASE WHEN bayes_totals.spam_messages + $4 < 0 THEN 0 \
                 ELSE bayes_totals.spam_messages + $4 END, \
             ham_messages = CASE WHEN bayes_totals.ham_messages + $5 < 0 THEN 0 \
                 ELSE bayes_totals.ham_messages + $5 END, \
             updated_at = excluded.updated_at",
        )
        .bind(spam_messages.max(0))
        .bind(ham_messages.max(0))
        .bind(now())
        .bind(spam_messages)
        .bind(ham_messages)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(context))?;
        tx.commit().await.map_err(StoreError::query(context))?;
        Ok(())
    }

    /// Forgets the whole model.
    pub async fn reset_bayes(&self) -> Result<(), StoreError> {
        let context = "resetting the spam classifier";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(context))?;
        for sql in ["DELETE FROM bayes_tokens", "DELETE FROM bayes_totals"] {
            on_conn!(&mut tx, |c| sqlx::query(sql)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))
            .map_err(StoreError::query(context))?;
        }
        tx.commit().await.map_err(StoreError::query(context))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut counts: BayesCounts) -> BayesCounts {
        counts.tokens.sort();
        counts
    }

    store_test! {
        async fn empty_model(s) {
            assert_eq!(s.load_bayes().await.unwrap(), BayesCounts::default());
            assert_eq!(s.bayes_summary().await.unwrap(), BayesSummary::default());
        }
    }

    store_test! {
        async fn train_accumulates_and_untrain_clamps(s) {
            s.apply_bayes_delta(2, 1, &[("free", 2, 0), ("hello", 0, 1), ("both", 1, 1)])
                .await
                .unwrap();
            s.apply_bayes_delta(1, 0, &[("free", 1, 0), ("free", 1, 0), ("new", 1, 0)])
                .await
                .unwrap();
            let m = sorted(s.load_bayes().await.unwrap());
            assert_eq!((m.spam_messages, m.ham_messages), (3, 1));
            assert_eq!(
                m.tokens,
                [
                    ("both".to_string(), 1, 1),
                    ("free".to_string(), 4, 0),
                    ("hello".to_string(), 0, 1),
                    ("new".to_string(), 1, 0),
                ]
            );
            // Untraining more than was trained: nothing negative, emptied tokens removed.
            s.apply_bayes_delta(-5, 0, &[("new", -3, 0), ("both", -1, 0), ("ghost", -1, -1)])
                .await
                .unwrap();
            let m = sorted(s.load_bayes().await.unwrap());
            assert_eq!((m.spam_messages, m.ham_messages), (0, 1));
            assert_eq!(
                m.tokens,
                [
                    ("both".to_string(), 0, 1),
                    ("free".to_string(), 4, 0),
                    ("hello".to_string(), 0, 1),
                ]
            );
            let summary = s.bayes_summary().await.unwrap();
            assert_eq!(summary.tokens, 3);
            assert!(summary.updated_at > 0);
            s.reset_bayes().await.unwrap();
            assert_eq!(s.load_bayes().await.unwrap(), BayesCounts::default());
        }
    }

    store_test! {
        async fn large_delta_is_batched(s) {
            let names: Vec<String> = (0..(UPSERT_ROWS * 3 + 7))
                .map(|i| format!("t{i}"))
                .collect();
            let rows: Vec<(&str, i64, i64)> = names.iter().map(|n| (n.as_str(), 1, 2)).collect();
            s.apply_bayes_delta(10, 20, &rows).await.unwrap();
            s.apply_bayes_delta(10, 20, &rows).await.unwrap();
            let m = s.load_bayes().await.unwrap();
            assert_eq!(m.tokens.len(), names.len());
            assert!(m.tokens.iter().all(|(_, sp, h)| (*sp, *h) == (2, 4)));
            assert_eq!((m.spam_messages, m.ham_messages), (20, 40));
        }
    }
}
