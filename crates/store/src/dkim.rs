//! Outbound DKIM signing keys. Owns the `dkim_keys` table: one row per (domain, selector),
//! with the private key, the public key that goes into the DNS TXT record, and where the key
//! is in its life: `pending` (made, not yet signing), `active` (signs), `retiring` (stopped
//! signing, still published) and `retired` (may be unpublished). The filter crate parses the
//! keys and signs; the store only keeps them.

use crate::domains::normalize_domain;
use crate::engine::{Conn, on_conn, on_pool};
use crate::{Store, StoreError};
use std::collections::BTreeSet;
use std::fmt;

/// Signing algorithms a key may have (the `a=` tag of the signature).
pub const DKIM_ALGORITHMS: [&str; 2] = ["rsa-sha256", "ed25519-sha256"];
/// States of a key, in the order a key goes through them.
pub const DKIM_STATES: [&str; 4] = ["pending", "active", "retiring", "retired"];

/// One DKIM key as stored; read as the columns of `select_keys!`.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DkimKey {
    /// The signing domain (`d=`), lower case, without a trailing dot.
    pub domain: String,
    /// The selector (`s=`): the key's record is `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// One of [`DKIM_ALGORITHMS`].
    pub algorithm: String,
    /// Base64 of the private key as PKCS#8 DER. A secret: never logged (see `Debug`).
    pub private_key: String,
    /// Base64 of the `p=` value of the TXT record.
    pub public_key: String,
    /// Unix seconds.
    pub created_at: i64,
    /// One of [`DKIM_STATES`].
    pub state: String,
    /// When the key stopped signing (it became retiring or retired), unix seconds.
    pub retired_at: Option<i64>,
}

impl fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .field("private_key", &"<redacted>")
            .field("public_key", &self.public_key)
            .field("created_at", &self.created_at)
            .field("state", &self.state)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// A query over every column of `dkim_keys`, the fields of [`DkimKey`]; a macro so that the
/// SQL stays a static string.
macro_rules! select_keys {
    ($rest:literal) => {
        concat!(
            "SELECT domain, selector, algorithm, private_key, public_key, created_at, state, \
             retired_at FROM dkim_keys ",
            $rest
        )
    };
}

/// Selectors compare case-insensitively in DNS; one spelling is kept.
fn normalize_selector(selector: &str) -> String {
    selector.trim().to_ascii_lowercase()
}

fn check_state(context: &str, state: &str) -> Result<(), StoreError> {
    if DKIM_STATES.contains(&state) {
        Ok(())
    } else {
        Err(StoreError::invalid(
            context,
            format!("state {state:?} is not one of {DKIM_STATES:?}"),
        ))
    }
}

fn check_key(context: &str, key: &DkimKey) -> Result<(), StoreError> {
    if key.domain.is_empty()
        || key
            .domain
            .chars()
            .any(|c| c.is_whitespace() || c == '@' || c == '/')
    {
        return Err(StoreError::invalid(
            context,
            "the domain is empty or has spaces, '@' or '/'",
        ));
    }
    if key.selector.is_empty()
        || !key
            .selector
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(StoreError::invalid(
            context,
            "a selector is made of letters, digits, '-' and '.'",
        ));
    }
    if !DKIM_ALGORITHMS.contains(&key.algorithm.as_str()) {
        return Err(StoreError::invalid(
            context,
            format!(
                "algorithm {:?} is not one of {DKIM_ALGORITHMS:?}",
                key.algorithm
            ),
        ));
    }
    if key.private_key.trim().is_empty() || key.public_key.trim().is_empty() {
        return Err(StoreError::invalid(context, "a key is empty"));
    }
    check_state(context, &key.state)
}

fn normalized(key: &DkimKey) -> DkimKey {
    DkimKey {
        domain: normalize_domain(&key.domain),
        selector: normalize_selector(&key.selector),
        ..key.clone()
    }
}

async fn insert_key(mut conn: Conn<'_>, key: &DkimKey) -> Result<(), StoreError> {
    let context = format!("adding DKIM key {}._domainkey.{}", key.selector, key.domain);
    check_key(&context, key)?;
    // A selector is never overwritten: its record may be published, and mail signed with the
    // old key would stop verifying.
    let done = on_conn!(&mut conn, |c| sqlx::query(
        "INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key, \
         created_at, state, retired_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (domain, selector) DO NOTHING",
    )
    .bind(&key.domain)
    .bind(&key.selector)
    .bind(&key.algorithm)
    .bind(&key.private_key)
    .bind(&key.public_key)
    .bind(key.created_at)
    .bind(&key.state)
    .bind(key.retired_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::query(&context))?;
    if done == 0 {
        return Err(StoreError::invalid(
            context,
            "the domain already has a key with this selector; choose another selector",
        ));
    }
    Ok(())
}

/// Moves the active keys of `domain` whose algorithm is in `algorithms` to `retiring`, except
/// `keep`; returns the selectors moved.
async fn retire_active(
    mut conn: Conn<'_>,
    domain: &str,
    algorithms: &BTreeSet<String>,
    keep: &BTreeSet<String>,
    now: i64,
    context: &str,
) -> Result<Vec<String>, StoreError> {
    let active: Vec<(String, String)> = on_conn!(&mut conn, |c| sqlx::query_as(
        "SELECT selector, algorithm FROM dkim_keys WHERE domain = $1 AND state = 'active' \
         ORDER BY selector",
    )
    .bind(domain)
    .fetch_all(c)
    .await)
    .map_err(StoreError::query(context))?;
    let mut moved = Vec::new();
    for (selector, algorithm) in active {
        if keep.contains(&selector) || !algorithms.contains(&algorithm) {
            continue;
        }
        on_conn!(&mut conn, |c| sqlx::query(
            "UPDATE dkim_keys SET state = 'retiring', retired_at = $3 \
             WHERE domain = $1 AND selector = $2",
        )
        .bind(domain)
        .bind(&selector)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(context))?;
        moved.push(selector);
    }
    Ok(moved)
}

impl Store {
    /// Adds keys (one transaction: all or none). A selector already used by the domain is
    /// refused, whatever state its key is in.
    pub async fn add_dkim_keys(&self, keys: &[DkimKey]) -> Result<(), StoreError> {
        let context = "adding DKIM keys";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(context))?;
        for key in keys {
            insert_key(tx.conn(), &normalized(key)).await?;
        }
        tx.commit().await.map_err(StoreError::query(context))?;
        Ok(())
    }

    /// Every key, or those of one domain, ordered by domain, creation and selector.
    pub async fn list_dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKey>, StoreError> {
        let rows: Vec<DkimKey> = match domain {
            Some(d) => {
                on_pool!(&self.pool, |p| sqlx::query_as(select_keys!(
                    "WHERE domain = $1 \
                 ORDER BY domain, created_at, selector"
                ))
                .bind(normalize_domain(d))
                .fetch_all(p)
                .await)
            }
            None => {
                on_pool!(&self.pool, |p| sqlx::query_as(select_keys!(
                    "ORDER BY domain, created_at, selector"
                ))
                .fetch_all(p)
                .await)
            }
        }
        .map_err(StoreError::query("listing DKIM keys"))?;
        Ok(rows)
    }

    /// The keys that sign: of one domain, or (None) of every domain.
    pub async fn active_dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKey>, StoreError> {
        let rows: Vec<DkimKey> = match domain {
            Some(d) => {
                on_pool!(&self.pool, |p| sqlx::query_as(select_keys!(
                    "WHERE state = 'active' AND domain = $1 \
                 ORDER BY domain, created_at, selector"
                ))
                .bind(normalize_domain(d))
                .fetch_all(p)
                .await)
            }
            None => {
                on_pool!(&self.pool, |p| sqlx::query_as(select_keys!(
                    "WHERE state = 'active' \
                 ORDER BY domain, created_at, selector"
                ))
                .fetch_all(p)
                .await)
            }
        }
        .map_err(StoreError::query("listing active DKIM keys"))?;
        Ok(rows)
    }

    /// Sets the state of one key; whether it exists. `retired_at` is set (once) when the key
    /// stops signing and cleared if it is made pending or active again.
    pub async fn set_dkim_key_state(
        &self,
        domain: &str,
        selector: &str,
        state: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let domain = normalize_domain(domain);
        let selector = normalize_selector(selector);
        let context = format!("setting DKIM key {selector}._domainkey.{domain} {state}");
        check_state(&context, state)?;
        let stops_signing = matches!(state, "retiring" | "retired");
        let done = on_pool!(&self.pool, |p| {
            let query = if stops_signing {
                sqlx::query(
                    "UPDATE dkim_keys SET state = $3, retired_at = COALESCE(retired_at, $4) \
                     WHERE domain = $1 AND selector = $2",
                )
                .bind(&domain)
                .bind(&selector)
                .bind(state)
                .bind(now)
            } else {
                sqlx::query(
                    "UPDATE dkim_keys SET state = $3, retired_at = NULL \
                     WHERE domain = $1 AND selector = $2",
                )
                .bind(&domain)
                .bind(&selector)
                .bind(state)
            };
            query.execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(StoreError::query(&context))?;
        Ok(done > 0)
    }

    /// Removes one key; whether it existed.
    pub async fn delete_dkim_key(&self, domain: &str, selector: &str) -> Result<bool, StoreError> {
        let domain = normalize_domain(domain);
        let selector = normalize_selector(selector);
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM dkim_keys WHERE domain = $1 AND selector = $2"
        )
        .bind(&domain)
        .bind(&selector)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(format!(
            "deleting DKIM key {selector}._domainkey.{domain}"
        )))?;
        Ok(done > 0)
    }

    /// Key rotation in one transaction: adds `new_keys` (all of `domain`, state `active`) and
    /// moves the domain's previously active keys of the same algorithms to `retiring`. Returns
    /// the selectors moved to retiring.
    pub async fn rotate_dkim_keys(
        &self,
        domain: &str,
        new_keys: &[DkimKey],
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let domain = normalize_domain(domain);
        let context = format!("rotating the DKIM keys of {domain}");
        let new_keys: Vec<DkimKey> = new_keys.iter().map(normalized).collect();
        if let Some(k) = new_keys
            .iter()
            .find(|k| k.domain != domain || k.state != "active")
        {
            return Err(StoreError::invalid(
                context,
                format!("new key {} is not an active key of the domain", k.selector),
            ));
        }
        let algorithms: BTreeSet<String> = new_keys.iter().map(|k| k.algorithm.clone()).collect();
        let keep: BTreeSet<String> = new_keys.iter().map(|k| k.selector.clone()).collect();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(&context))?;
        let moved = retire_active(tx.conn(), &domain, &algorithms, &keep, now, &context).await?;
        for key in &new_keys {
            insert_key(tx.conn(), key).await?;
        }
        tx.commit().await.map_err(StoreError::query(&context))?;
        Ok(moved)
    }

    /// Makes the pending keys of `domain` active and moves its previously active keys of the
    /// same algorithms to `retiring`, in one transaction. Returns (activated, moved to
    /// retiring) selectors.
    pub async fn activate_dkim_keys(
        &self,
        domain: &str,
        now: i64,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let domain = normalize_domain(domain);
        let context = format!("activating the pending DKIM keys of {domain}");
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(&context))?;
        let pending: Vec<(String, String)> = on_conn!(&mut tx, |c| sqlx::query_as(
            "SELECT selector, algorithm FROM dkim_keys WHERE domain = $1 AND state = 'pending' \
             ORDER BY selector",
        )
        .bind(&domain)
        .fetch_all(c)
        .await)
        .map_err(StoreError::query(&context))?;
        if pending.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let algorithms: BTreeSet<String> = pending.iter().map(|(_, a)| a.clone()).collect();
        let keep: BTreeSet<String> = pending.iter().map(|(s, _)| s.clone()).collect();
        let moved = retire_active(tx.conn(), &domain, &algorithms, &keep, now, &context).await?;
        on_conn!(&mut tx, |c| sqlx::query(
            "UPDATE dkim_keys SET state = 'active', retired_at = NULL \
             WHERE domain = $1 AND state = 'pending'",
        )
        .bind(&domain)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        tx.commit().await.map_err(StoreError::query(&context))?;
        Ok((pending.into_iter().map(|(s, _)| s).collect(), moved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(domain: &str, selector: &str, algorithm: &str, state: &str) -> DkimKey {
        DkimKey {
            domain: domain.to_string(),
            selector: selector.to_string(),
            algorithm: algorithm.to_string(),
            private_key: format!("private-{selector}"),
            public_key: format!("public-{selector}"),
            created_at: 1_000,
            state: state.to_string(),
            retired_at: None,
        }
    }

    fn selectors(keys: &[DkimKey]) -> Vec<(&str, &str)> {
        keys.iter()
            .map(|k| (k.selector.as_str(), k.state.as_str()))
            .collect()
    }

    store_test! {
        async fn add_list_and_active(store) {
            store
                .add_dkim_keys(&[
                    key("Example.COM.", "RSA-1", "rsa-sha256", "active"),
                    key("example.com", "ed-1", "ed25519-sha256", "active"),
                    key("example.com", "old", "rsa-sha256", "retired"),
                    key("other.test", "s", "rsa-sha256", "active"),
                ])
                .await
                .unwrap();
            let all = store.list_dkim_keys(None).await.unwrap();
            assert_eq!(all.len(), 4);
            let mine = store.list_dkim_keys(Some("EXAMPLE.com")).await.unwrap();
            assert_eq!(mine.len(), 3);
            assert!(mine.iter().all(|k| k.domain == "example.com"));
            assert!(mine.iter().any(|k| k.selector == "rsa-1"));
            let active = store.active_dkim_keys(Some("example.com")).await.unwrap();
            assert_eq!(
                selectors(&active),
                vec![("ed-1", "active"), ("rsa-1", "active")]
            );
            assert_eq!(store.active_dkim_keys(None).await.unwrap().len(), 3);
            // The private key never shows in Debug output.
            assert!(!format!("{:?}", active[0]).contains("private-"));
        }
    }

    store_test! {
        async fn refuses_duplicates_and_bad_values_atomically(store) {
            store
                .add_dkim_keys(&[key("example.com", "s1", "rsa-sha256", "active")])
                .await
                .unwrap();
            // The second batch fails on its duplicate, and its first key is not kept either.
            let err = store
                .add_dkim_keys(&[
                    key("example.com", "s2", "rsa-sha256", "active"),
                    key("example.com", "S1", "ed25519-sha256", "active"),
                ])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
            assert_eq!(store.list_dkim_keys(None).await.unwrap().len(), 1);
            for bad in [
                key("example.com", "s3", "rsa-sha1", "active"),
                key("example.com", "s3", "rsa-sha256", "revoked"),
                key("example.com", "bad selector", "rsa-sha256", "active"),
                key("", "s3", "rsa-sha256", "active"),
            ] {
                assert!(matches!(
                    store.add_dkim_keys(&[bad]).await,
                    Err(StoreError::Invalid { .. })
                ));
            }
        }
    }

    store_test! {
        async fn states_and_delete(store) {
            store
                .add_dkim_keys(&[key("example.com", "s1", "rsa-sha256", "active")])
                .await
                .unwrap();
            assert!(
                store
                    .set_dkim_key_state("example.com", "s1", "retiring", 50)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .set_dkim_key_state("example.com", "s1", "retired", 90)
                    .await
                    .unwrap()
            );
            let k = &store.list_dkim_keys(None).await.unwrap()[0];
            // It stopped signing at 50; retiring it fully does not move that time.
            assert_eq!((k.state.as_str(), k.retired_at), ("retired", Some(50)));
            assert!(store.active_dkim_keys(None).await.unwrap().is_empty());
            assert!(
                store
                    .set_dkim_key_state("example.com", "s1", "active", 99)
                    .await
                    .unwrap()
            );
            let k = &store.list_dkim_keys(None).await.unwrap()[0];
            assert_eq!((k.state.as_str(), k.retired_at), ("active", None));
            assert!(
                !store
                    .set_dkim_key_state("example.com", "nope", "retired", 1)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .set_dkim_key_state("example.com", "s1", "gone", 1)
                    .await
                    .is_err()
            );
            assert!(store.delete_dkim_key("EXAMPLE.com", "S1").await.unwrap());
            assert!(!store.delete_dkim_key("example.com", "s1").await.unwrap());
            assert!(store.list_dkim_keys(None).await.unwrap().is_empty());
        }
    }

    store_test! {
        async fn rotation_retires_only_the_same_algorithms(store) {
            store
                .add_dkim_keys(&[
                    key("example.com", "rsa-a", "rsa-sha256", "active"),
                    key("example.com", "ed-a", "ed25519-sha256", "active"),
                    key("other.test", "rsa-a", "rsa-sha256", "active"),
                ])
                .await
                .unwrap();
            let moved = store
                .rotate_dkim_keys(
                    "example.com",
                    &[key("example.com", "rsa-b", "rsa-sha256", "active")],
                    77,
                )
                .await
                .unwrap();
            assert_eq!(moved, vec!["rsa-a".to_string()]);
            let keys = store.list_dkim_keys(Some("example.com")).await.unwrap();
            let find = |s: &str| keys.iter().find(|k| k.selector == s).unwrap().clone();
            assert_eq!(find("rsa-a").state, "retiring");
            assert_eq!(find("rsa-a").retired_at, Some(77));
            assert_eq!(find("ed-a").state, "active");
            assert_eq!(find("rsa-b").state, "active");
            // Another domain's key of the same selector is untouched.
            assert_eq!(
                store.active_dkim_keys(Some("other.test")).await.unwrap()[0].selector,
                "rsa-a"
            );
            // A failed rotation (selector taken) changes nothing.
            assert!(
                store
                    .rotate_dkim_keys(
                        "example.com",
                        &[key("example.com", "ed-a", "ed25519-sha256", "active")],
                        80,
                    )
                    .await
                    .is_err()
            );
            assert_eq!(
                store
                    .active_dkim_keys(Some("example.com"))
                    .await
                    .unwrap()
                    .len(),
                2
            );
            // New keys must be active keys of the domain being rotated.
            assert!(
                store
                    .rotate_dkim_keys(
                        "example.com",
                        &[key("other.test", "x", "rsa-sha256", "active")],
                        80,
                    )
                    .await
                    .is_err()
            );
        }
    }

    store_test! {
        async fn staged_keys_activate_later(store) {
            store
                .add_dkim_keys(&[
                    key("example.com", "rsa-a", "rsa-sha256", "active"),
                    key("example.com", "ed-a", "ed25519-sha256", "active"),
                ])
                .await
                .unwrap();
            assert_eq!(
                store.activate_dkim_keys("example.com", 5).await.unwrap(),
                (vec![], vec![])
            );
            store
                .add_dkim_keys(&[key("example.com", "ed-b", "ed25519-sha256", "pending")])
                .await
                .unwrap();
            // Pending keys do not sign.
            assert_eq!(
                store
                    .active_dkim_keys(Some("example.com"))
                    .await
                    .unwrap()
                    .len(),
                2
            );
            let (activated, moved) = store.activate_dkim_keys("example.com", 9).await.unwrap();
            assert_eq!(activated, vec!["ed-b".to_string()]);
            assert_eq!(moved, vec!["ed-a".to_string()]);
            let active = store.active_dkim_keys(Some("example.com")).await.unwrap();
            let mut names: Vec<&str> = active.iter().map(|k| k.selector.as_str()).collect();
            names.sort();
            assert_eq!(names, vec!["ed-b", "rsa-a"]);
        }
    }
}
