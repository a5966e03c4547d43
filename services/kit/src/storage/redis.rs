//! Redis helpers (a pool whose every call has a deadline) and the Redis work queue: a stream
//! with a consumer group.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use deadpool_redis::redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply};
use deadpool_redis::redis::{self, AsyncConnectionConfig, FromRedisValue, RedisError, Value};
use deadpool_redis::{Connection, Manager, Pool, Runtime};

use super::queue::{Delivery, QueueError, QueueOptions, WorkQueue};

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
fn is_code(error: &anyhow::Error, code: &str) -> bool {
    error
        .downcast_ref::<RedisError>()
        .is_some_and(|e| e.code() == Some(code) || e.to_string().contains(code))
}

/// Acks entries (`KEYS[1]` stream, `ARGV[1]` group, the rest ids), then trims the stream below
/// the oldest entry still pending, or, with none pending, below the first one not delivered.
/// Trimming drops whole stream nodes, where deleting each acked id would seek it one by one.
/// The stream has one consumer group: the queue's.
const ACK_AND_TRIM: &str = r"
local key, group = KEYS[1], ARGV[1]
if redis.call('EXISTS', key) == 0 then return 0 end
for i = 2, #ARGV, 500 do
  redis.call('XACK', key, group, unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
local pending = redis.call('XPENDING', key, group)
local floor
if pending[1] > 0 then
  floor = pending[2]
else
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local fields = {}
    for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
    if fields['name'] == group then
      local ms, seq = string.match(fields['last-delivered-id'], '(%d+)-(%d+)')
      floor = ms .. '-' .. (tonumber(seq) + 1)
    end
  end
end
if floor then redis.call('XTRIM', key, 'MINID', floor) end
return 0
";

/// The queue's length (`KEYS[1]` stream, `ARGV[1]` group): pending plus not yet delivered
/// (the group's lag), or the stream's length when Redis cannot tell the lag; 0 when the
/// stream does not exist.
const LENGTH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, info in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local fields = {}
  for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
  if fields['name'] == ARGV[1] and type(fields['lag']) == 'number' then
    return fields['pending'] + fields['lag']
  end
end
return redis.call('XLEN', KEYS[1])
";

/// A work queue on a Redis stream with a consumer group; acked entries are trimmed away.
pub(crate) struct RedisQueue {
    pool: Pool,
    key: String,
    group: String,
    opts: QueueOptions,
    group_ready: AtomicBool,
    /// When expired leases were last looked for.
    last_claim: std::sync::Mutex<Option<std::time::Instant>>,
}

impl RedisQueue {
    pub(crate) fn new(pool: Pool, key: String, group: String, opts: QueueOptions) -> Self {
        RedisQueue {
            pool,
            key,
            group,
            opts,
            group_ready: AtomicBool::new(false),
            last_claim: std::sync::Mutex::new(None),
        }
    }

    /// Whether to look for expired leases now: at most every quarter lease, because
    /// `XAUTOCLAIM` scans the pending entries and most pulls would find none expired.
    fn claim_due(&self) -> bool {
        let every = (self.opts.lease / 4).max(Duration::from_millis(10));
        let mut last = self.last_claim.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < every) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Creates the group (and the stream) unless done already. The group starts at the
    /// beginning of the stream, so entries added before it existed are delivered too.
    async fn ensure_group(&self) -> anyhow::Result<()> {
        if self.group_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.key)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM");
        match query::<()>(&self.pool, &cmd, CALL_TIMEOUT).await {
            Ok(()) => {}
            Err(e) if is_code(&e, "BUSYGROUP") => {}
            Err(e) => return Err(e.context(format!("creating the consumer group of {}", self.key))),
        }
        self.group_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Entries waiting or in flight: the group's pending entries plus those not delivered yet
    /// (acked entries newer than the oldest pending one are still in the stream until trimmed).
    async fn length(&self) -> anyhow::Result<u64> {
        self.ensure_group().await?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(LENGTH).arg(1).arg(&self.key).arg(&self.group);
        query(&self.pool, &cmd, CALL_TIMEOUT).await
    }

    async fn pull_once(&self, consumer: &str, max: usize, wait: Duration) -> anyhow::Result<Vec<Delivery>> {
        self.ensure_group().await?;
        let lease_ms = u64::try_from(self.opts.lease.as_millis()).unwrap_or(u64::MAX);
        let mut claimed: Vec<StreamId> = Vec::new();
        let mut cursor = "0-0".to_string();
        let rounds = if self.claim_due() { 4 } else { 0 };
        for _ in 0..rounds {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&self.key)
                .arg(&self.group)
                .arg(consumer)
                .arg(lease_ms)
                .arg(&cursor);
            cmd.arg("COUNT").arg(max - claimed.len());
            let reply: StreamAutoClaimReply = query(&self.pool, &cmd, CALL_TIMEOUT).await?;
            claimed.extend(reply.claimed.into_iter().filter(|entry| !entry.map.is_empty()));
            cursor = reply.next_stream_id;
            if cursor == "0-0" || claimed.len() >= max {
                break;
            }
        }
        let mut out = Vec::with_capacity(max);
        if !claimed.is_empty() {
            let counts = self.delivery_counts(&claimed).await?;
            for entry in claimed {
                let deliveries = counts.get(&entry.id).copied().unwrap_or(2);
                out.push(to_delivery(entry, deliveries));
            }
        }
        if out.len() < max {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.group)
                .arg(consumer)
                .arg("COUNT")
                .arg(max - out.len());
            let mut deadline = CALL_TIMEOUT;
            if out.is_empty() && !wait.is_zero() {
                let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
                cmd.arg("BLOCK").arg(ms);
                deadline += wait;
            }
            cmd.arg("STREAMS").arg(&self.key).arg(">");
            let reply: Value = query(&self.pool, &cmd, deadline).await?;
            for (id, fields) in read_entries(reply)? {
                out.push(Delivery {
                    id,
                    payload: payload(fields),
                    deliveries: 1,
                });
            }
        }
        Ok(out)
    }

    /// How often each claimed entry was delivered (`XPENDING key group id id 1` each).
    async fn delivery_counts(&self, entries: &[StreamId]) -> anyhow::Result<HashMap<String, u64>> {
        let mut pipe = redis::pipe();
        for entry in entries {
            pipe.cmd("XPENDING")
                .arg(&self.key)
                .arg(&self.group)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let replies: Vec<StreamPendingCountReply> = query_pipe(&self.pool, &pipe).await?;
        Ok(replies
            .into_iter()
            .flat_map(|reply| reply.ids)
            .map(|pending| (pending.id, pending.times_delivered as u64))
            .collect())
    }
}

/// The `payload` field's bytes, or all fields as a JSON object for foreign producers.
fn to_delivery(entry: StreamId, deliveries: u64) -> Delivery {
    let fields = entry
        .map
        .iter()
        .map(|(name, value)| (name.clone().into_bytes(), value_bytes(value)))
        .collect();
    Delivery {
        id: entry.id,
        payload: payload(fields),
        deliveries,
    }
}

/// An entry's fields: names and values.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// An entry's payload: its `payload` field, or else all its fields as a JSON object (entries
/// that producers outside Outpost added field by field).
fn payload(fields: Fields) -> Vec<u8> {
    if let Some(at) = fields.iter().position(|(name, _)| name == b"payload") {
        return fields.into_iter().nth(at).map(|(_, value)| value).unwrap_or_default();
    }
    let object: serde_json::Map<String, serde_json::Value> = fields
        .into_iter()
        .map(|(name, value)| {
            let name = String::from_utf8_lossy(&name).into_owned();
            (name, String::from_utf8_lossy(&value).into_owned().into())
        })
        .collect();
    serde_json::to_vec(&object).unwrap_or_default()
}

/// The entries of an `XREADGROUP` reply (`[[key, [[id, [field, value, …]], …]], …]`, or nil),
/// with their bytes moved out of the reply rather than copied into maps.
fn read_entries(reply: Value) -> anyhow::Result<Vec<(String, Fields)>> {
    fn items(value: Value) -> anyhow::Result<Vec<Value>> {
        match value {
            Value::Array(items) | Value::Set(items) => Ok(items),
            Value::Map(pairs) => Ok(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
            Value::Nil => Ok(Vec::new()),
            other => anyhow::bail!("unexpected stream reply {other:?}"),
        }
    }
    fn bytes(value: Value) -> Vec<u8> {
        match value {
            Value::BulkString(bytes) => bytes,
            other => value_bytes(&other),
        }
    }
    let mut entries = Vec::new();
    let keys = items(reply)?;
    // RESP2: [[key, entries], …]; RESP3: a map of key to entries, flattened to key, entries, ….
    let per_key: Vec<Value> = if keys.first().is_some_and(|k| matches!(k, Value::Array(_))) {
        keys.into_iter()
            .map(items)
            .collect::<anyhow::Result<Vec<_>>>()?
            .into_iter()
            .filter_map(|kv| kv.into_iter().nth(1))
            .collect()
    } else {
        keys.into_iter().skip(1).step_by(2).collect()
    };
    for key_entries in per_key {
        for entry in items(key_entries)? {
            let mut parts = items(entry)?.into_iter();
            let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
                anyhow::bail!("stream entry without id or fields");
            };
            let id = String::from_utf8(bytes(id))?;
            let mut flat = items(fields)?.into_iter();
            let mut pairs = Vec::with_capacity(1);
            while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                pairs.push((bytes(name), bytes(value)));
            }
            entries.push((id, pairs));
        }
    }
    Ok(entries)
}

fn value_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::BulkString(bytes) => bytes.clone(),
        Value::SimpleString(s) => s.as_bytes().to_vec(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Double(d) => d.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

#[async_trait::async_trait]
impl WorkQueue for RedisQueue {
    async fn push(&self, payload: &[u8]) -> Result<String, QueueError> {
        Ok(self.push_many(&[payload.to_vec()]).await?.remove(0))
    }

    async fn push_many(&self, payloads: &[Vec<u8>]) -> Result<Vec<String>, QueueError> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_group().await?;
        let len = self.length().await?;
        if len + payloads.len() as u64 > self.opts.max_len {
            return Err(QueueError::Full(len));
        }
        let mut pipe = redis::pipe();
        for payload in payloads {
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("*")
                .arg("payload")
                .arg(payload.as_slice());
        }
        Ok(query_pipe(&self.pool, &pipe).await?)
    }

    async fn pull(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        match self.pull_once(consumer, max, wait).await {
            Err(e) if is_code(&e, "NOGROUP") => {
                // The key vanished (flushed, deleted): create the group again and retry once.
                self.group_ready.store(false, Ordering::Release);
                Ok(self.pull_once(consumer, max, wait).await?)
            }
            result => Ok(result?),
        }
    }

    async fn ack(&self, ids: &[String]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ACK_AND_TRIM).arg(1).arg(&self.key).arg(&self.group).arg(ids);
        query::<()>(&self.pool, &cmd, CALL_TIMEOUT).await?;
        Ok(())
    }

    async fn len(&self) -> Result<u64, QueueError> {
        Ok(self.length().await?)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(ping(&self.pool).await?)
    }
}
