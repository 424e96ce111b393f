//! Answers of a source kept in memory for a while, on this node only: found recipients
//! (and their groups) for `cache_ttl_secs`, unknown ones for `negative_cache_ttl_secs`,
//! at most `cache_max_entries` of each. Failures are never cached (the next question asks
//! again), nor are logins (a password check always reaches the source).

use crate::{Directory, DirectoryError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bounded map whose entries expire.
pub struct TtlMap<K, V> {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlMap<K, V> {
    pub fn new(ttl: Duration, max: usize) -> Self {
        TtlMap {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.max > 0
    }

    pub fn get(&self, key: &K) -> Option<V> {
        if !self.enabled() {
            return None;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key) {
            Some((at, v)) if at.elapsed() < self.ttl => Some(v.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: K, value: V) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.max && !entries.contains_key(&key) {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            // Still full of live entries: the oldest goes.
            if entries.len() >= self.max
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (Instant::now(), value));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A source with its answers cached.
pub struct Cached {
    inner: Box<dyn Directory>,
    found: TtlMap<String, ()>,
    unknown: TtlMap<String, ()>,
    groups: TtlMap<String, Vec<String>>,
}

impl Cached {
    pub fn new(
        inner: Box<dyn Directory>,
        positive: Duration,
        negative: Duration,
        max: usize,
    ) -> Self {
        Cached {
            inner,
            found: TtlMap::new(positive, max),
            unknown: TtlMap::new(negative, max),
            groups: TtlMap::new(positive, max),
        }
    }

    /// Whether the answer for this address is in the cache: Some(exists) when it is.
    pub fn cached_recipient(&self, address: &str) -> Option<bool> {
        let key = address.to_ascii_lowercase();
        if self.found.get(&key).is_some() {
            Some(true)
        } else if self.unknown.get(&key).is_some() {
            Some(false)
        } else {
            None
        }
    }

    pub fn inner(&self) -> &dyn Directory {
        self.inner.as_ref()
    }
}

#[async_trait]
impl Directory for Cached {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn recipient_exists(&self, address: &str) -> Result<bool, DirectoryError> {
        if let Some(known) = self.cached_recipient(address) {
            return Ok(known);
        }
        let exists = self.inner.recipient_exists(address).await?;
        let key = address.to_ascii_lowercase();
        if exists {
            self.found.insert(key, ());
        } else {
            self.unknown.insert(key, ());
        }
        Ok(exists)
    }

    async fn authenticate(&self, login: &str, password: &str) -> Result<bool, DirectoryError> {
        self.inner.authenticate(login, password).await
    }

    async fn groups(&self, address: &str) -> Result<Vec<String>, DirectoryError> {
        let key = address.to_ascii_lowercase();
        if let Some(groups) = self.groups.get(&key) {
            return Ok(groups);
        }
        let groups = self.inner.groups(address).await?;
        self.groups.insert(key, groups.clone());
        Ok(groups)
    }

    async fn display_name(&self, address: &str) -> Result<Option<String>, DirectoryError> {
        self.inner.display_name(address).await
    }

    fn can_authenticate(&self) -> bool {
        self.inner.can_authenticate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Knows `a@x`; counts the questions; fails while `down`.
    struct Counting {
        asked: Arc<AtomicUsize>,
        down: Arc<std::sync::atomic::AtomicBool>,
    }

    #[async_trait]
    impl Directory for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        async fn recipient_exists(&self, address: &str) -> Result<bool, DirectoryError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(DirectoryError::unavailable("counting", "down"));
            }
            Ok(address == "a@x")
        }
        async fn authenticate(&self, _: &str, _: &str) -> Result<bool, DirectoryError> {
            Ok(false)
        }
        async fn groups(&self, _: &str) -> Result<Vec<String>, DirectoryError> {
            Ok(vec!["g".into()])
        }
        async fn display_name(&self, _: &str) -> Result<Option<String>, DirectoryError> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn positive_and_negative_separately() {
        let asked = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cached = Cached::new(
            Box::new(Counting {
                asked: asked.clone(),
                down: down.clone(),
            }),
            Duration::from_secs(60),
            Duration::from_millis(50),
            10,
        );
        assert!(cached.recipient_exists("a@x").await.expect("answer"));
        assert!(!cached.recipient_exists("b@x").await.expect("answer"));
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        down.store(true, Ordering::SeqCst);
        // Both answers come from the cache while the source is down...
        assert!(cached.recipient_exists("A@x").await.expect("cached"));
        assert!(!cached.recipient_exists("b@x").await.expect("cached"));
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        // ...until the shorter negative TTL ends; the failure itself is not cached.
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(cached.recipient_exists("b@x").await.is_err());
        assert!(cached.recipient_exists("b@x").await.is_err());
        assert_eq!(asked.load(Ordering::SeqCst), 4);
        assert!(cached.recipient_exists("a@x").await.expect("still cached"));
    }

    #[test]
    fn bounded() {
        let map = TtlMap::new(Duration::from_secs(60), 3);
        for i in 0..10 {
            map.insert(i, i);
        }
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(&9), Some(9));
        assert_eq!(map.get(&0), None);
        let off: TtlMap<u8, u8> = TtlMap::new(Duration::ZERO, 3);
        off.insert(1, 1);
        assert!(off.is_empty());
    }
}
