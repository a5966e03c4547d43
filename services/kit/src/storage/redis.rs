//! Redis helpers: a pool whose every call has a deadline. The work queue on a Redis stream is
//! in [`super::redis_queue`].

use std::time::Duration;

use anyhow::Context as _;
use deadpool_redis::redis::{self, AsyncConnectionConfig, FromRedisValue, RedisError};
use deadpool_redis::{Connection, Manager, Pool, Runtime};

/// The deadline of one Redis call (a blocking read gets its wait on top).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A pool that connects lazily: nothing is dialled until the first call.
pub(crate) fn pool(url: &str) -> anyhow::Result<Pool> {
    let shown = super::redact(url);
    // No response timeout on the connection (blocking reads take longer): every call gets
    // its own deadline in `query`.
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CALL_TIMEOUT))
        .set_response_timeout(None);
    let manager = Manager::new_with_config(url, config).with_context(|| format!("invalid redis url {shown}"))?;
    Pool::builder(manager)
        .max_size(32)
        .wait_timeout(Some(CALL_TIMEOUT))
        .create_timeout(Some(CALL_TIMEOUT))
        .recycle_timeout(Some(CALL_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .with_context(|| format!("building the redis pool for {shown}"))
}

async fn connection(pool: &Pool) -> anyhow::Result<Connection> {
    match tokio::time::timeout(CALL_TIMEOUT * 2, pool.get()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(anyhow::anyhow!("redis is unavailable: {e}")),
        Err(_) => Err(anyhow::anyhow!(
            "redis is unavailable: no connection within {:?}",
            CALL_TIMEOUT * 2
        )),
    }
}

/// Runs one command with a deadline; a connection whose call timed out is not reused.
pub(crate) async fn query<T: FromRedisValue>(pool: &Pool, cmd: &redis::Cmd, deadline: Duration) -> anyhow::Result<T> {
    let mut conn = connection(pool).await?;
    match tokio::time::timeout(deadline, cmd.query_async::<T>(&mut conn)).await {
        Ok(result) => result.map_err(|e| anyhow::Error::new(e).context("redis call failed")),
        Err(_) => {
            drop(Connection::take(conn));
            anyhow::bail!("redis call timed out after {deadline:?}")
        }
    }
}

/// Runs a pipeline with a deadline; a connection whose call timed out is not reused.
pub(crate) async fn query_pipe<T: FromRedisValue>(pool: &Pool, pipe: &redis::Pipeline) -> anyhow::Result<T> {
    let mut conn = connection(pool).await?;
    match tokio::time::timeout(CALL_TIMEOUT, pipe.query_async::<T>(&mut conn)).await {
        Ok(result) => result.map_err(|e| anyhow::Error::new(e).context("redis call failed")),
        Err(_) => {
            drop(Connection::take(conn));
            anyhow::bail!("redis call timed out after {CALL_TIMEOUT:?}")
        }
    }
}

/// `PING`.
pub(crate) async fn ping(pool: &Pool) -> anyhow::Result<()> {
    query::<String>(pool, &redis::cmd("PING"), CALL_TIMEOUT)
        .await
        .map(|_| ())
}

/// Whether `error` is the Redis error `code` (`NOGROUP`, `BUSYGROUP`, …).
pub(crate) fn is_code(error: &anyhow::Error, code: &str) -> bool {
    error
        .downcast_ref::<RedisError>()
        .is_some_and(|e| e.code() == Some(code) || e.to_string().contains(code))
}
