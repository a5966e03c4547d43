//! The SQL database of one service: a SQLite file in the embedded mode, a schema of its own
//! in PostgreSQL in the cluster, both behind one [`sqlx::AnyPool`].

use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyPool, AssertSqlSafe, ConnectOptions, Connection, Executor, PgPool};

use crate::config::StorageConfig;

/// How long a connection may be waited for from a pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a PostgreSQL that is still starting is waited for.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

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
}

impl Db {
    /// Opens and migrates the database of `service`: the file
    /// `{data_dir}/{namespace}{service}.sqlite`, or the PostgreSQL schema
    /// `{namespace}{service}` (created when missing). PostgreSQL is retried with backoff for
    /// about 30 s while it is unreachable.
    pub async fn connect(config: &StorageConfig, service: &str, migrations: &Migrations) -> anyhow::Result<Db> {
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
        let db = match &config.database_url {
            None => open_sqlite(config, schema).await?,
            Some(url) => open_postgres(url, schema).await?,
        };
        let migrator = match db.backend {
            Backend::Sqlite => &migrations.sqlite,
            Backend::Postgres => &migrations.postgres,
        };
        migrator
            .run(&db.pool)
            .await
            .with_context(|| format!("running the migrations of {service}"))?;
        Ok(db)
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

    /// Runs `SELECT 1`.
    pub async fn ping(&self) -> anyhow::Result<()> {
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
        .acquire_timeout(ACQUIRE_TIMEOUT)
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
    })
}

async fn open_postgres(url: &str, schema: String) -> anyhow::Result<Db> {
    let shown = super::redact(url);
    let options = PgConnectOptions::from_str(url).with_context(|| format!("invalid database url {shown}"))?;
    let set_path: Arc<str> = format!("SET search_path TO \"{schema}\"").into();
    create_schema(&options, &schema, &shown).await?;

    let path = set_path.clone();
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _| {
            let path = path.clone();
            Box::pin(async move {
                conn.execute(AssertSqlSafe(path.to_string())).await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .with_context(|| format!("connecting to postgres at {shown}"))?;
    let path = set_path;
    let pg = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _| {
            let path = path.clone();
            Box::pin(async move {
                conn.execute(AssertSqlSafe(path.to_string())).await?;
                Ok(())
            })
        })
        .connect_lazy_with(options);
    Ok(Db {
        pool,
        backend: Backend::Postgres,
        pg: Some(pg),
        schema: schema.into(),
    })
}

/// Creates the schema, retrying with backoff while PostgreSQL is unreachable or starting.
async fn create_schema(options: &PgConnectOptions, schema: &str, shown: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(200);
    loop {
        let attempt = async {
            let mut conn = options.connect().await?;
            conn.execute(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
                .await?;
            conn.close().await
        };
        let error = match tokio::time::timeout(ACQUIRE_TIMEOUT, attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) if !retryable(&error) => {
                return Err(error).with_context(|| format!("connecting to postgres at {shown}"));
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {ACQUIRE_TIMEOUT:?}"),
        };
        let Some(left) = CONNECT_DEADLINE
            .checked_sub(started.elapsed())
            .filter(|left| !left.is_zero())
        else {
            anyhow::bail!(
                "postgres at {shown} is not reachable after {}s: {error}",
                started.elapsed().as_secs()
            );
        };
        tracing::warn!(url = %shown, %error, retry_in = ?backoff, "postgres is not ready yet");
        tokio::time::sleep(backoff.min(left)).await;
        backoff = (backoff * 2).min(Duration::from_secs(4));
    }
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
