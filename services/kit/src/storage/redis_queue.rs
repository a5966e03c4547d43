//! The work queue on a Redis stream with one consumer group. Entries are acked with `XACK`
//! and trimmed from the stream (`XTRIM MINID` below the oldest pending entry), leases are the
//! entries' idle time (`XAUTOCLAIM` takes over those idle longer than the lease, `XCLAIM … IDLE`
//! renews or shortens one), and dead letters go to the capped stream `{key}:dead`. Each
//! multi-step change is one Lua script, so it is atomic.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::Pool;
use deadpool_redis::redis::{self, Value};

use super::queue::{DeadLetter, Delivery, QueueError, QueueOptions, WorkQueue};
use super::redis::{CALL_TIMEOUT, is_code, ping, query};

/// Consumers idle this many leases with nothing pending are removed from the group.
pub const FORGET_AFTER_LEASES: u32 = 6;

/// A Lua function that trims the stream `key` below the oldest entry pending in `group`, or,
/// with none pending, below the first one not delivered. Trimming drops whole stream nodes,
/// where deleting each acked id would seek it one by one. The stream has one consumer group.
macro_rules! trim_function {
    () => {
        r"
local function trim(key, group)
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
end
"
    };
}

/// Acks entries (`KEYS[1]` stream, `ARGV[1]` group, the rest ids), then trims the stream.
const ACK: &str = concat!(
    trim_function!(),
    r"
local key, group = KEYS[1], ARGV[1]
if redis.call('EXISTS', key) == 0 then return 0 end
for i = 2, #ARGV, 500 do
  redis.call('XACK', key, group, unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
trim(key, group)
return 0
"
);

/// Adds dead letters to `KEYS[2]` (capped at `ARGV[2]` entries) and acks their entries in
/// `KEYS[1]` (group `ARGV[1]`); the rest of `ARGV` are (id, error, deliveries, payload) each.
const BURY: &str = concat!(
    trim_function!(),
    r"
local key, dead, group, keep = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local exists = redis.call('EXISTS', key) == 1
for i = 3, #ARGV, 4 do
  redis.call('XADD', dead, 'MAXLEN', keep, '*',
    'entry', ARGV[i], 'error', ARGV[i + 1], 'deliveries', ARGV[i + 2], 'payload', ARGV[i + 3])
  if exists then redis.call('XACK', key, group, ARGV[i]) end
end
if exists then trim(key, group) end
return 0
"
);

/// Takes over up to `ARGV[4]` entries of `KEYS[1]` idle at least `ARGV[3]` ms for consumer
/// `ARGV[2]` of group `ARGV[1]`; those delivered `ARGV[5]` times already go to the dead
/// letters `KEYS[2]` (capped at `ARGV[6]`) instead. Answers `{cursor, {{id, deliveries,
/// fields}, …}, buried}`.
const CLAIM: &str = concat!(
    trim_function!(),
    r"
local key, dead, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local max_deliveries = tonumber(ARGV[5])
local reply = redis.call('XAUTOCLAIM', key, group, consumer, ARGV[3], '0-0', 'COUNT', ARGV[4])
local out, buried = {}, 0
for _, entry in ipairs(reply[2]) do
  local id, fields = entry[1], entry[2]
  if type(fields) ~= 'table' then
    redis.call('XACK', key, group, id)
  else
    local pending = redis.call('XPENDING', key, group, id, id, 1)
    local n = 1
    if pending[1] then n = pending[1][4] end
    if n > max_deliveries then
      -- The claim counted a delivery that is not made.
      n = n - 1
      local payload
      local object = {}
      for j = 1, #fields, 2 do
        if fields[j] == 'payload' then payload = fields[j + 1] end
        object[fields[j]] = fields[j + 1]
      end
      redis.call('XADD', dead, 'MAXLEN', ARGV[6], '*', 'entry', id,
        'error', 'delivered ' .. n .. ' times without being acked', 'deliveries', n,
        'payload', payload or cjson.encode(object))
      redis.call('XACK', key, group, id)
      buried = buried + 1
    else
      out[#out + 1] = {id, n, fields}
    end
  end
end
if buried > 0 then trim(key, group) end
return {reply[1], out, buried}
"
);

/// Sets the idle time of the entries of `KEYS[1]` (group `ARGV[1]`) that consumer `ARGV[2]`
/// holds, among the ids `ARGV[4..]`, to `ARGV[3]` ms (0 renews their lease; more shortens it);
/// answers the ids it held.
const IDLE: &str = r"
local key, group, consumer, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', key) == 0 then return {} end
local held = {}
for i = 4, #ARGV do
  local pending = redis.call('XPENDING', key, group, ARGV[i], ARGV[i], 1)
  if pending[1] and pending[1][2] == consumer then held[#held + 1] = ARGV[i] end
end
for i = 1, #held, 500 do
  local args = {'XCLAIM', key, group, consumer, 0}
  for j = i, math.min(i + 499, #held) do args[#args + 1] = held[j] end
  args[#args + 1] = 'IDLE'
  args[#args + 1] = idle
  args[#args + 1] = 'JUSTID'
  redis.call(unpack(args))
end
return held
";

/// Removes the consumers of group `ARGV[1]` of `KEYS[1]` that hold nothing and were idle at
/// least `ARGV[2]` ms; answers how many.
const FORGET: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local removed = 0
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for j = 1, #info, 2 do fields[info[j]] = info[j + 1] end
  if fields['pending'] == 0 and fields['idle'] >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    removed = removed + 1
  end
end
return removed
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

/// The ids among `ids` that are stream ids (`ms-seq`): others cannot be this queue's, and
/// Redis refuses them.
fn stream_ids(ids: &[String]) -> Vec<&str> {
    let valid = |id: &&String| {
        id.split_once('-').is_some_and(|(ms, seq)| {
            [ms, seq]
                .iter()
                .all(|part| !part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    ids.iter().filter(valid).map(String::as_str).collect()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// When to look for expired leases, and when to remove dead consumers.
#[derive(Default)]
struct Chores {
    last_claim: Option<Instant>,
    last_forget: Option<Instant>,
}

/// A work queue on a Redis stream with a consumer group; see the module documentation.
pub(crate) struct RedisQueue {
    pool: Pool,
    key: String,
    dead_key: String,
    group: String,
    opts: QueueOptions,
    group_ready: AtomicBool,
    chores: Mutex<Chores>,
}

impl RedisQueue {
    /// The queue on the stream `key` read by `group`; its dead letters go to `{key}:dead`.
    pub(crate) fn new(pool: Pool, key: String, group: String, opts: QueueOptions) -> Self {
        RedisQueue {
            pool,
            dead_key: format!("{key}:dead"),
            key,
            group,
            opts,
            group_ready: AtomicBool::new(false),
            chores: Mutex::new(Chores::default()),
        }
    }

    fn chores(&self) -> std::sync::MutexGuard<'_, Chores> {
        self.chores.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How often to look for expired leases: every quarter lease, at most every second (a
    /// dead consumer's work is delivered again soon after its lease), not on every pull,
    /// because `XAUTOCLAIM` scans the pending entries and most pulls find none expired.
    fn claim_every(&self) -> Duration {
        (self.opts.lease / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Whether to look for expired leases now (see [`RedisQueue::claim_every`]).
    fn claim_due(&self) -> bool {
        let every = self.claim_every();
        let mut chores = self.chores();
        let now = Instant::now();
        if chores.last_claim.is_some_and(|at| now.duration_since(at) < every) {
            return false;
        }
        chores.last_claim = Some(now);
        true
    }

    /// Whether to look for dead consumers now: once a lease.
    fn forget_due(&self) -> bool {
        let mut chores = self.chores();
        let now = Instant::now();
        if chores
            .last_forget
            .is_some_and(|at| now.duration_since(at) < self.opts.lease)
        {
            return false;
        }
        chores.last_forget = Some(now);
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

    /// Takes over up to `max` entries whose lease ran out (dead-lettering those delivered too
    /// often); when it found `max`, the next pull looks again at once.
    async fn claim(&self, consumer: &str, max: usize) -> anyhow::Result<Vec<Delivery>> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CLAIM)
            .arg(2)
            .arg(&self.key)
            .arg(&self.dead_key)
            .arg(&self.group)
            .arg(consumer)
            .arg(millis(self.opts.lease))
            .arg(max)
            .arg(self.opts.max_deliveries)
            .arg(self.opts.dead_letters);
        let reply: Value = query(&self.pool, &cmd, CALL_TIMEOUT).await?;
        let mut parts = items(reply)?.into_iter();
        let (Some(cursor), Some(entries), Some(buried)) = (parts.next(), parts.next(), parts.next()) else {
            anyhow::bail!("unexpected reply to the claim script");
        };
        let mut out = Vec::new();
        for entry in items(entries)? {
            let mut entry = items(entry)?.into_iter();
            let (Some(id), Some(deliveries), Some(fields)) = (entry.next(), entry.next(), entry.next()) else {
                anyhow::bail!("unexpected entry in the claim script's reply");
            };
            out.push(Delivery {
                id: String::from_utf8(bytes(id))?,
                payload: payload(pairs(fields)?),
                deliveries: integer(&deliveries).unwrap_or(2),
            });
        }
        if let Some(buried) = integer(&buried).filter(|n| *n > 0) {
            tracing::warn!(queue = %self.key, entries = buried, "entries delivered too often were dead-lettered");
        }
        if out.len() >= max || bytes(cursor) != b"0-0" {
            self.chores().last_claim = None;
        }
        Ok(out)
    }

    /// Removes consumers that hold nothing and were idle [`FORGET_AFTER_LEASES`] leases.
    async fn forget_dead_consumers(&self) -> anyhow::Result<u64> {
        let idle = self.opts.lease * FORGET_AFTER_LEASES;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(FORGET).arg(1).arg(&self.key).arg(&self.group).arg(millis(idle));
        query(&self.pool, &cmd, CALL_TIMEOUT).await
    }

    /// Takes entries whose lease ran out (when a claim is due) and new ones; while there are
    /// none, blocks on the stream for new ones at most until the next claim is due, up to
    /// `wait` in all.
    async fn pull_once(&self, consumer: &str, max: usize, wait: Duration) -> anyhow::Result<Vec<Delivery>> {
        self.ensure_group().await?;
        let deadline = Instant::now() + wait;
        loop {
            let mut out = Vec::with_capacity(max);
            if self.claim_due() {
                out = self.claim(consumer, max).await?;
                if self.forget_due() {
                    match self.forget_dead_consumers().await {
                        Ok(0) => {}
                        Ok(removed) => tracing::info!(queue = %self.key, consumers = removed, "dead consumers removed"),
                        Err(err) => tracing::warn!(queue = %self.key, error = %err, "cannot remove dead consumers"),
                    }
                }
            }
            if out.len() >= max {
                return Ok(out);
            }
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.group)
                .arg(consumer)
                .arg("COUNT")
                .arg(max - out.len());
            let mut call_deadline = CALL_TIMEOUT;
            let block = deadline
                .saturating_duration_since(Instant::now())
                .min(self.claim_every());
            if out.is_empty() && !block.is_zero() {
                cmd.arg("BLOCK").arg(millis(block).max(1));
                call_deadline += block;
            }
            cmd.arg("STREAMS").arg(&self.key).arg(">");
            let reply: Value = query(&self.pool, &cmd, call_deadline).await?;
            for (id, fields) in read_entries(reply)? {
                out.push(Delivery {
                    id,
                    payload: payload(fields),
                    deliveries: 1,
                });
            }
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
        }
    }

    /// Sets the idle time of the entries `consumer` holds among `ids`; returns those.
    async fn set_idle(&self, consumer: &str, ids: &[String], idle: Duration) -> anyhow::Result<Vec<String>> {
        let ids = stream_ids(ids);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(IDLE)
            .arg(1)
            .arg(&self.key)
            .arg(&self.group)
            .arg(consumer)
            .arg(millis(idle))
            .arg(ids);
        query(&self.pool, &cmd, CALL_TIMEOUT).await
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

/// The items of an array reply (RESP2 arrays, RESP3 sets and maps flattened), none for nil.
fn items(value: Value) -> anyhow::Result<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Map(pairs) => Ok(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        Value::Nil => Ok(Vec::new()),
        other => anyhow::bail!("unexpected stream reply {other:?}"),
    }
}

/// A reply's bytes, moved out where it is a bulk string.
fn bytes(value: Value) -> Vec<u8> {
    match value {
        Value::BulkString(bytes) => bytes,
        other => value_bytes(&other),
    }
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

fn integer(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => std::str::from_utf8(&value_bytes(other)).ok()?.parse().ok(),
    }
}

/// A flat `[name, value, …]` reply as pairs.
fn pairs(fields: Value) -> anyhow::Result<Fields> {
    let mut flat = items(fields)?.into_iter();
    let mut pairs = Vec::with_capacity(1);
    while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
        pairs.push((bytes(name), bytes(value)));
    }
    Ok(pairs)
}

/// The entries of an `XREADGROUP` reply (`[[key, [[id, [field, value, …]], …]], …]`, or nil),
/// with their bytes moved out of the reply rather than copied into maps.
fn read_entries(reply: Value) -> anyhow::Result<Vec<(String, Fields)>> {
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
    let mut entries = Vec::new();
    for key_entries in per_key {
        entries.extend(range_entries(key_entries)?);
    }
    Ok(entries)
}

/// The entries of an `XRANGE`-shaped reply (`[[id, [field, value, …]], …]`).
fn range_entries(reply: Value) -> anyhow::Result<Vec<(String, Fields)>> {
    let mut entries = Vec::new();
    for entry in items(reply)? {
        let mut parts = items(entry)?.into_iter();
        let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
            anyhow::bail!("stream entry without id or fields");
        };
        entries.push((String::from_utf8(bytes(id))?, pairs(fields)?));
    }
    Ok(entries)
}

#[async_trait::async_trait]
impl WorkQueue for RedisQueue {
    fn name(&self) -> &str {
        &self.key
    }

    fn options(&self) -> &QueueOptions {
        &self.opts
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
        Ok(super::redis::query_pipe(&self.pool, &pipe).await?)
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
        let ids = stream_ids(ids);
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ACK).arg(1).arg(&self.key).arg(&self.group).arg(ids);
        query::<()>(&self.pool, &cmd, CALL_TIMEOUT).await?;
        Ok(())
    }

    async fn extend(&self, consumer: &str, ids: &[String]) -> Result<Vec<String>, QueueError> {
        Ok(self.set_idle(consumer, ids, Duration::ZERO).await?)
    }

    async fn nack(&self, consumer: &str, ids: &[String], delay: Duration) -> Result<(), QueueError> {
        // Idle for the lease less the delay: taken over (by any consumer) once the delay passed.
        let idle = self.opts.lease.saturating_sub(delay);
        self.set_idle(consumer, ids, idle).await?;
        if delay.is_zero() {
            self.chores().last_claim = None;
        }
        Ok(())
    }

    async fn dead_letter(&self, letters: &[(&Delivery, &str)]) -> Result<(), QueueError> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(BURY)
            .arg(2)
            .arg(&self.key)
            .arg(&self.dead_key)
            .arg(&self.group)
            .arg(self.opts.dead_letters);
        for (delivery, error) in letters {
            cmd.arg(&delivery.id)
                .arg(*error)
                .arg(delivery.deliveries)
                .arg(delivery.payload.as_slice());
        }
        query::<()>(&self.pool, &cmd, CALL_TIMEOUT).await?;
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&self.dead_key).arg("-").arg("+").arg("COUNT").arg(max);
        let reply: Value = query(&self.pool, &cmd, CALL_TIMEOUT).await?;
        let letters = range_entries(reply)?
            .into_iter()
            .map(|(_, fields)| {
                let mut letter = DeadLetter {
                    entry: String::new(),
                    error: String::new(),
                    deliveries: 0,
                    payload: Vec::new(),
                };
                for (name, value) in fields {
                    match name.as_slice() {
                        b"entry" => letter.entry = String::from_utf8_lossy(&value).into_owned(),
                        b"error" => letter.error = String::from_utf8_lossy(&value).into_owned(),
                        b"deliveries" => letter.deliveries = String::from_utf8_lossy(&value).parse().unwrap_or(0),
                        b"payload" => letter.payload = value,
                        _ => {}
                    }
                }
                letter
            })
            .collect();
        Ok(letters)
    }

    async fn len(&self) -> Result<u64, QueueError> {
        Ok(self.length().await?)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(ping(&self.pool).await?)
    }
}
