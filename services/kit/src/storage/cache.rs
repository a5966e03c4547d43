//! A cache of bytes with a time to live: Redis in the cluster, a bounded in-process map in
//! the embedded mode.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_redis::redis;

use super::redis::{CALL_TIMEOUT, query};

/// A cache of bytes with a time to live.
#[async_trait::async_trait]
pub trait Cache: Send + Sync {
    /// The value under `key`, unless it is missing or expired.
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Stores `value` under `key` for `ttl` (a zero `ttl` removes the key).
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()>;
    /// Removes `key`; a missing key is fine.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
}

/// How many entries the in-process cache holds at most.
pub const MEMORY_CACHE_CAPACITY: usize = 10_000;

struct Slot {
    value: Vec<u8>,
    expires: Instant,
    written: u64,
}

#[derive(Default)]
struct Slots {
    map: HashMap<String, Slot>,
    writes: u64,
}

/// The in-process cache: at most [`MEMORY_CACHE_CAPACITY`] entries; when full, expired entries
/// go first, then the oldest written.
#[derive(Default)]
pub(crate) struct MemoryCache {
    slots: Mutex<Slots>,
}

impl MemoryCache {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut slots = self.slots();
        match slots.map.get(key) {
            Some(slot) if slot.expires > Instant::now() => Ok(Some(slot.value.clone())),
            Some(_) => {
                slots.map.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()> {
        let mut slots = self.slots();
        if ttl.is_zero() {
            slots.map.remove(key);
            return Ok(());
        }
        let now = Instant::now();
        if slots.map.len() >= MEMORY_CACHE_CAPACITY && !slots.map.contains_key(key) {
            slots.map.retain(|_, slot| slot.expires > now);
            if slots.map.len() >= MEMORY_CACHE_CAPACITY {
                let oldest = slots
                    .map
                    .iter()
                    .min_by_key(|(_, slot)| slot.written)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    slots.map.remove(&oldest);
                }
            }
        }
        slots.writes += 1;
        let slot = Slot {
            value: value.to_vec(),
            expires: now + ttl,
            written: slots.writes,
        };
        slots.map.insert(key.to_string(), slot);
        Ok(())
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.slots().map.remove(key);
        Ok(())
    }
}

/// The Redis cache: `SET key value PX ttl`, keys under a prefix.
pub(crate) struct RedisCache {
    pool: deadpool_redis::Pool,
    prefix: String,
}

impl RedisCache {
    pub(crate) fn new(pool: deadpool_redis::Pool, prefix: String) -> Self {
        RedisCache { pool, prefix }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait::async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let cmd = redis::cmd("GET").arg(self.key(key)).to_owned();
        query(&self.pool, &cmd, CALL_TIMEOUT).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> anyhow::Result<()> {
        if ttl.is_zero() {
            return self.delete(key).await;
        }
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let cmd = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(ms)
            .to_owned();
        query::<()>(&self.pool, &cmd, CALL_TIMEOUT).await
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let cmd = redis::cmd("DEL").arg(self.key(key)).to_owned();
        query::<()>(&self.pool, &cmd, CALL_TIMEOUT).await
    }
}
