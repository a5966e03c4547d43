//! The SQL database of one service: a SQLite file in the embedded mode, a schema of its own
//! in PostgreSQL in the cluster, both behind one [`sqlx::AnyPool`].

use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;

use super::startup::{Failure, Startup};

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyPool, AssertSqlSafe, ConnectOptions, Connection, Executor, PgPool};

use crate::config::StorageConfig;

/// How long a PostgreSQL that is still starting is waited for by [`Db::connect`] (services
/// use [`Db::start`] and never give up).
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// How long one attempt to reach PostgreSQL (connect, create the schema, migrate) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which SQL backend a [`Db`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the data directory (embedded mode).
    Sqlite,
    /// A schema in PostgreSQL (cluster mode).
    Postgres,
}

/// A service's migrations for both backends, built with
/// `sqlx::migrate!("migrations/sqlite")` and `sqlx::migrate!("migrations/postgres")`.
#[derive(Debug)]
pub struct Migrations {
    /// The SQLite migrations.
    pub sqlite: sqlx::migrate::Migrator,
    /// The PostgreSQL migrations.
    pub postgres: sqlx::migrate::Migrator,
}

/// A service's SQL database: one pool that works on both backends (`$1` placeholders,
/// `RETURNING`), plus a native PostgreSQL pool for fast paths.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    pg: Option<PgPool>,
    schema: Arc<str>,
    startup: Startup,
}

impl Db {
    /// Starts the database of `service` without waiting for PostgreSQL: the file
    /// `{data_dir}/{namespace}{service}.sqlite` is opened and migrated now; the PostgreSQL
    /// schema `{namespace}{service}` is created and migrated by a background task that retries
    /// with backoff (200 ms doubling to 10 s) until it succeeds, however late PostgreSQL comes
    /// up. Until then [`Db::state`] names what is missing, [`Db::ping`] fails, and
    /// [`Db::ready`] waits. Pools wait at most `config.acquire_timeout` for a connection.
    pub async fn start(config: &StorageConfig, service: &str, migrations: Migrations) -> anyhow::Result<Db> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let schema = format!("{}{service}", config.namespace);
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        anyhow::ensure!(
            valid,
            "invalid database name {schema:?}: namespace and service must be 1 to 63 of a-z, 0-9, '_'"
        );
        match &config.database_url {
            None => {
                let db = open_sqlite(config, schema).await?;
                migrations
                    .sqlite
                    .run(&db.pool)
                    .await
                    .with_context(|| format!("running the migrations of {service}"))?;
                Ok(db)
            }
            Some(url) => start_postgres(url, schema, config.acquire_timeout, migrations),
        }
    }

    /// [`Db::start`], then waits until the database is migrated; fails after about 30 s of an
    /// unreachable PostgreSQL, or at once on an error that will not go away by itself (bad
    /// credentials, a missing database), naming the server. For tests and tools.
    pub async fn connect(config: &StorageConfig, service: &str, migrations: Migrations) -> anyhow::Result<Db> {
        let db = Db::start(config, service, migrations).await?;
        db.startup
            .wait(CONNECT_DEADLINE)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(db)
    }

    /// Ok once the database is migrated and serving; else what is missing, for people.
    pub fn state(&self) -> Result<(), String> {
        self.startup.check()
    }

    /// Resolves once the database is migrated.
    pub async fn ready(&self) {
        self.startup.finished().await
    }

    /// The pool every query goes through, on both backends.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A native PostgreSQL pool with the same `search_path` (for `COPY` fast paths); connects
    /// lazily, so it costs nothing unless used. `None` on SQLite.
    pub fn pg(&self) -> Option<&PgPool> {
        self.pg.as_ref()
    }

    /// The schema (PostgreSQL) or file stem (SQLite): `{namespace}{service}`.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Fails while the database is not migrated yet, else runs `SELECT 1`.
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.state().map_err(|error| anyhow::anyhow!(error))?;
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .with_context(|| format!("{:?} database {} is unavailable", self.backend, self.schema))?;
        Ok(())
    }
}

async fn open_sqlite(config: &StorageConfig, schema: String) -> anyhow::Result<Db> {
    let dir = &config.data_dir;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let path = dir.join(format!("{schema}.sqlite"));
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    // One native connection creates the file and switches it to WAL (which is persistent).
    let conn = options
        .connect()
        .await
        .with_context(|| format!("opening the sqlite database {}", path.display()))?;
    conn.close().await?;
    let any = AnyConnectOptions::from_url(&options.to_url_lossy())?;
    let pool = AnyPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(config.acquire_timeout)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA busy_timeout = 5000").await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                Ok(())
            })
        })
        .connect_with(any)
        .await
        .with_context(|| format!("opening the sqlite database {}", path.display()))?;
    Ok(Db {
        pool,
        backend: Backend::Sqlite,
        pg: None,
        schema: schema.into(),
        startup: Startup::done(),
    })
}

/// Lazily connecting pools on `schema`, and the task that creates and migrates it.
fn start_postgres(url: &str, schema: String, acquire_timeout: Duration, migrations: Migrations) -> anyhow::Result<Db> {
    let shown = super::redact(url);
    let options = PgConnectOptions::from_str(url).with_context(|| format!("invalid database url {shown}"))?;
    let set_path: Arc<str> = format!("SET search_path TO \"{schema}\"").into();
    let port = options.get_port();
    let path = set_path.clone();
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _| {
            let path = path.clone();
            Box::pin(async move {
                super::nodelay::set_for_peer_port(port);
                conn.execute(AssertSqlSafe(path.to_string())).await?;
                Ok(())
            })
        })
        .connect_lazy(url)
        .with_context(|| format!("invalid database url {shown}"))?;
    let path = set_path;
    let pg = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _| {
            let path = path.clone();
            Box::pin(async move {
                super::nodelay::set_for_peer_port(port);
                conn.execute(AssertSqlSafe(path.to_string())).await?;
                Ok(())
            })
        })
        .connect_lazy_with(options.clone());
    let schema: Arc<str> = schema.into();
    let migrations = Arc::new(migrations);
    let startup = {
        let (pool, schema, shown) = (pool.clone(), schema.clone(), shown.clone());
        Startup::spawn(
            format!("postgres schema {schema}"),
            format!("postgres at {shown}: connecting"),
            move || {
                let (pool, schema, options, migrations) =
                    (pool.clone(), schema.clone(), options.clone(), migrations.clone());
                let shown = shown.clone();
                async move {
                    let attempt = async {
                        let mut conn = options.connect().await?;
                        conn.execute(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
                            .await?;
                        conn.close().await?;
                        migrations.postgres.run(&pool).await.map_err(sqlx::Error::from)
                    };
                    let (message, retryable) = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
                        Ok(Ok(())) => return Ok(()),
                        Ok(Err(error)) => (error.to_string(), retryable(&error)),
                        Err(_) => (format!("no answer within {ATTEMPT_TIMEOUT:?}"), true),
                    };
                    Err(Failure {
                        message: format!("postgres at {shown} is not ready: {message}"),
                        retryable,
                    })
                }
            },
        )
    };
    Ok(Db {
        pool,
        backend: Backend::Postgres,
        pg: Some(pg),
        schema,
        startup,
    })
}

/// Whether a connection error may go away by itself (the server is starting, the network is
/// not there yet, two processes create the schema at once), as opposed to bad credentials.
fn retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => !matches!(db.code().as_deref(), Some("28000" | "28P01" | "3D000" | "42501")),
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => false,
        _ => true,
    }
}
