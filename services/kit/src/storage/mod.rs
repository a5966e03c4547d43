//! Storage interfaces and adapters: the SQL database, the object store, work queues and a
//! cache, each with an embedded adapter (SQLite file, local directory, a queue table in the
//! SQLite file, in-process cache) and a cluster adapter (PostgreSQL, S3, Redis), chosen by
//! [`StorageConfig`].

pub mod cache;
mod nodelay;
pub mod objects;
pub mod queue;
mod redis;
mod redis_queue;
pub mod sql;
mod sql_queue;
mod startup;

pub use cache::Cache;
pub use objects::Objects;
pub use queue::{DeadLetter, Delivery, QueueError, QueueOptions, WorkQueue};
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

/// A dependency a service reports in health (`sql`, `redis`, `objects`, a peer service).
/// A required one makes the service NOT_SERVING while it fails; an optional one (such as a
/// cache) only makes it degraded: reported by name, while the service keeps serving.
#[derive(Clone)]
pub struct Dependency {
    /// The dependency's name, as health reports show it.
    pub name: &'static str,
    /// Whether the service cannot serve without it.
    pub required: bool,
    check: Arc<CheckFn>,
}

impl Dependency {
    /// A required dependency named `name` whose health is the result of `check`.
    pub fn new<F, Fut>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Dependency {
            name,
            required: true,
            check: Arc::new(move || Box::pin(check())),
        }
    }

    /// The same dependency, optional: while it fails the service is degraded, not unready.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
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
            .field("required", &self.required)
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
    /// Whether the service took a queue, cache or stream (so Redis is one of its dependencies).
    redis_used: Arc<std::sync::atomic::AtomicBool>,
    /// Whether opening waits for a dependency (tests and tools) or starts at once (services).
    waits: bool,
    objects: Arc<tokio::sync::OnceCell<Objects>>,
    local_queues: Arc<Mutex<HashMap<String, Arc<sql_queue::SqlQueue>>>>,
    local_cache: Arc<cache::MemoryCache>,
}

impl Storage {
    /// What a service opens: its SQL database ([`Db::start`]: PostgreSQL is created and
    /// migrated in the background, however late it comes up, while health names what is
    /// missing), and lazily connecting Redis when configured. Fails only on a setting that
    /// cannot work (an invalid URL or name, an unwritable data directory).
    pub async fn start(
        config: &StorageConfig,
        service: &'static str,
        migrations: Migrations,
    ) -> anyhow::Result<Storage> {
        let db = Db::start(config, service, migrations).await?;
        Self::with_db(config, service, db, false)
    }

    /// [`Storage::start`], waiting until the database is migrated (see [`Db::connect`]); for
    /// tests and tools.
    pub async fn open(
        config: &StorageConfig,
        service: &'static str,
        migrations: Migrations,
    ) -> anyhow::Result<Storage> {
        let db = Db::connect(config, service, migrations).await?;
        Self::with_db(config, service, db, true)
    }

    fn with_db(config: &StorageConfig, service: &'static str, db: Db, waits: bool) -> anyhow::Result<Storage> {
        let redis = match &config.redis_url {
            Some(url) => Some(redis::pool(url)?),
            None => None,
        };
        Ok(Storage {
            db,
            config: config.clone(),
            service,
            redis,
            redis_used: Arc::default(),
            waits,
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
            .get_or_try_init(|| async {
                if self.waits {
                    Objects::open(&self.config, self.service).await
                } else {
                    Objects::start(&self.config, self.service).await
                }
            })
            .await
            .cloned()
    }

    /// A work queue (see [`queue`]): the Redis stream `{namespace}outpost:{service}:{name}`
    /// (dead letters in `…:{name}:dead`) when Redis is configured, else a table in the
    /// service's SQL database, so queued work survives an abrupt stop. Handles with the same
    /// `name` on this `Storage` share one queue (the first call's options win); a consumer in
    /// this process wakes as soon as another handle pushes.
    pub fn queue(&self, name: &str, opts: QueueOptions) -> Arc<dyn WorkQueue> {
        if let Some(pool) = self.redis_pool() {
            let key = format!("{}outpost:{}:{name}", self.config.namespace, self.service);
            return Arc::new(redis_queue::RedisQueue::new(pool.clone(), key, "outpost".into(), opts));
        }
        let mut queues = self.local_queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(sql_queue::SqlQueue::new(self.db.clone(), name.to_string(), opts)))
            .clone()
    }

    /// A Redis stream with an exact external key (prefixed by the namespace only), read by the
    /// consumer group `group`, for producers outside Outpost; its dead letters go to
    /// `{key}:dead`. `None` without Redis.
    pub fn stream_queue(&self, key: &str, group: &str, opts: QueueOptions) -> Option<Arc<dyn WorkQueue>> {
        let pool = self.redis_pool()?;
        let key = format!("{}{key}", self.config.namespace);
        Some(Arc::new(redis_queue::RedisQueue::new(
            pool.clone(),
            key,
            group.to_string(),
            opts,
        )))
    }

    /// The cache: Redis (keys `{namespace}outpost:{service}:cache:{key}`) or in-process.
    pub fn cache(&self) -> Arc<dyn Cache> {
        match self.redis_pool() {
            Some(pool) => Arc::new(cache::RedisCache::new(
                pool.clone(),
                format!("{}outpost:{}:cache:", self.config.namespace, self.service),
            )),
            None => self.local_cache.clone(),
        }
    }

    /// The Redis pool, when Redis is configured.
    pub fn redis(&self) -> Option<deadpool_redis::Pool> {
        self.redis_pool().cloned()
    }

    /// The Redis pool, noting that the service uses Redis.
    fn redis_pool(&self) -> Option<&deadpool_redis::Pool> {
        let pool = self.redis.as_ref()?;
        self.redis_used.store(true, std::sync::atomic::Ordering::Relaxed);
        Some(pool)
    }

    /// The Redis URL, when Redis is configured (for pub/sub clients).
    pub fn redis_url(&self) -> Option<&str> {
        self.redis_pool()?;
        self.config.redis_url.as_deref()
    }

    /// The namespace that prefixes schemas, keys and objects (empty in production).
    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }

    /// [`Storage::dependencies`], with those named in `optional` optional (the service serves
    /// without them, degraded).
    pub fn dependencies_optional(&self, optional: &[&str]) -> Vec<Dependency> {
        self.dependencies()
            .into_iter()
            .map(|d| if optional.contains(&d.name) { d.optional() } else { d })
            .collect()
    }

    /// The dependencies to report in health, all required: `sql` always, `redis` once the
    /// service took a queue, cache or stream of it, `objects` once [`Storage::objects`] was
    /// opened.
    pub fn dependencies(&self) -> Vec<Dependency> {
        let db = self.db.clone();
        let mut deps = vec![Dependency::new(dependency::SQL, move || {
            let db = db.clone();
            async move { db.ping().await }
        })];
        if let Some(pool) = self
            .redis
            .as_ref()
            .filter(|_| self.redis_used.load(std::sync::atomic::Ordering::Relaxed))
        {
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
