//! Storage interfaces and adapters: the SQL database, the object store, work queues and a
//! cache, each with an embedded adapter (SQLite file, local directory, in-process) and a
//! cluster adapter (PostgreSQL, S3, Redis), chosen by [`StorageConfig`].

pub mod cache;
pub mod objects;
pub mod queue;
mod redis;
pub mod sql;

pub use cache::Cache;
pub use objects::Objects;
pub use queue::{Delivery, QueueError, QueueOptions, WorkQueue};
pub use sql::{Backend, Db, Migrations};

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::config::StorageConfig;

/// The storage dependencies a service reports in health, as `{service}/{name}`.
pub mod dependency {
    /// The SQL database.
    pub const SQL: &str = "sql";
    /// Redis.
    pub const REDIS: &str = "redis";
    /// The object store.
    pub const OBJECTS: &str = "objects";
    /// Every one of them.
    pub const ALL: [&str; 3] = [SQL, REDIS, OBJECTS];
}

/// How long a dependency check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFn = dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync;

/// A dependency a service reports in health (`sql`, `redis`, `objects`).
#[derive(Clone)]
pub struct Dependency {
    /// The dependency's name, as health reports show it.
    pub name: &'static str,
    check: Arc<CheckFn>,
}

impl Dependency {
    /// A dependency named `name` whose health is the result of `check`.
    pub fn new<F, Fut>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Dependency {
            name,
            check: Arc::new(move || Box::pin(check())),
        }
    }

    /// Checks the dependency; a check that takes longer than [`CHECK_TIMEOUT`] fails.
    pub async fn check(&self) -> anyhow::Result<()> {
        match tokio::time::timeout(CHECK_TIMEOUT, (self.check)()).await {
            Ok(result) => result,
            Err(_) => anyhow::bail!("{} check timed out after {:?}", self.name, CHECK_TIMEOUT),
        }
    }
}

impl fmt::Debug for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dependency")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What one service opens: its SQL database, and on demand objects, queues, cache.
#[derive(Clone)]
pub struct Storage {
    /// The service's SQL database (already migrated).
    pub db: Db,
    config: StorageConfig,
    service: &'static str,
    redis: Option<deadpool_redis::Pool>,
    objects: Arc<tokio::sync::OnceCell<Objects>>,
    local_queues: Arc<Mutex<HashMap<String, Arc<queue::MemoryQueue>>>>,
    local_cache: Arc<cache::MemoryCache>,
}

impl Storage {
    /// Opens (and migrates) the service's SQL database; connects lazily to Redis when
    /// configured. A PostgreSQL that is still starting is retried with backoff for about
    /// 30 s before this fails with a message naming the server.
    pub async fn open(
        config: &StorageConfig,
        service: &'static str,
        migrations: Migrations,
    ) -> anyhow::Result<Storage> {
        let redis = match &config.redis_url {
            Some(url) => Some(redis::pool(url)?),
            None => None,
        };
        let db = Db::connect(config, service, &migrations).await?;
        Ok(Storage {
            db,
            config: config.clone(),
            service,
            redis,
            objects: Arc::new(tokio::sync::OnceCell::new()),
            local_queues: Arc::new(Mutex::new(HashMap::new())),
            local_cache: Arc::new(cache::MemoryCache::default()),
        })
    }

    /// The service's object store: the directory `{data_dir}/objects/{namespace}{service}/`, or
    /// the S3 bucket with the key prefix `{namespace}{service}/` (the bucket is created when
    /// missing). Opened once; later calls return the same store.
    pub async fn objects(&self) -> anyhow::Result<Objects> {
        self.objects
            .get_or_try_init(|| Objects::open(&self.config, self.service))
            .await
            .cloned()
    }

    /// A work queue: the Redis stream `{namespace}outpost:{service}:{name}` when Redis is
    /// configured, else an in-process queue shared by every call with the same `name` on this
    /// `Storage` (the first call's options win).
    pub fn queue(&self, name: &str, opts: QueueOptions) -> Arc<dyn WorkQueue> {
        if let Some(pool) = &self.redis {
            let key = format!("{}outpost:{}:{name}", self.config.namespace, self.service);
            return Arc::new(redis::RedisQueue::new(pool.clone(), key, "outpost".into(), opts));
        }
        let mut queues = self.local_queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(queue::MemoryQueue::new(opts)))
            .clone()
    }

    /// A Redis stream with an exact external key (prefixed by the namespace only), read by the
    /// consumer group `group`, for producers outside Outpost; `None` without Redis.
    pub fn stream_queue(&self, key: &str, group: &str, opts: QueueOptions) -> Option<Arc<dyn WorkQueue>> {
        let pool = self.redis.as_ref()?;
        let key = format!("{}{key}", self.config.namespace);
        Some(Arc::new(redis::RedisQueue::new(
            pool.clone(),
            key,
            group.to_string(),
            opts,
        )))
    }

    /// The cache: Redis (keys `{namespace}outpost:{service}:cache:{key}`) or in-process.
    pub fn cache(&self) -> Arc<dyn Cache> {
        match &self.redis {
            Some(pool) => Arc::new(cache::RedisCache::new(
                pool.clone(),
                format!("{}outpost:{}:cache:", self.config.namespace, self.service),
            )),
            None => self.local_cache.clone(),
        }
    }

    /// The Redis pool, when Redis is configured.
    pub fn redis(&self) -> Option<deadpool_redis::Pool> {
        self.redis.clone()
    }

    /// The Redis URL, when Redis is configured (for pub/sub clients).
    pub fn redis_url(&self) -> Option<&str> {
        self.config.redis_url.as_deref()
    }

    /// The namespace that prefixes schemas, keys and objects (empty in production).
    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }

    /// The dependencies to report in health: `sql` always, `redis` when configured, `objects`
    /// once [`Storage::objects`] was opened.
    pub fn dependencies(&self) -> Vec<Dependency> {
        let db = self.db.clone();
        let mut deps = vec![Dependency::new(dependency::SQL, move || {
            let db = db.clone();
            async move { db.ping().await }
        })];
        if let Some(pool) = &self.redis {
            let pool = pool.clone();
            deps.push(Dependency::new(dependency::REDIS, move || {
                let pool = pool.clone();
                async move { redis::ping(&pool).await }
            }));
        }
        if let Some(objects) = self.objects.get() {
            deps.push(objects.dependency());
        }
        deps
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("service", &self.service)
            .field("backend", &self.db.backend())
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

/// A URL with its password replaced, for error messages and logs.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable url>".to_string(),
    }
}
