//! Re-delivery after `kill -9`: how long the sensor-stream entries a consumer held are
//! undelivered when its process dies. Real processes of the `outpost` binary on PostgreSQL and
//! Redis: `outpost telemetry`, and `outpost ingest` (A) consuming the stream. Telemetry is
//! paused (SIGSTOP) and N entries are pushed; A starts and takes them all, and holds them
//! mid-write; A is killed with SIGKILL and telemetry resumed, another `outpost ingest` (B)
//! starts, and the bench times, from the kill, until B took every entry A held over
//! (re-delivered) and until the stream is drained (every entry committed and acked). Then it
//! checks that every reading is in telemetry.
//!
//! `cargo bench --bench redelivery`. Settings: OUTPOST_BENCH_POSTGRES_URL
//! (postgres://postgres@127.0.0.1:5432/test), OUTPOST_BENCH_REDIS_URL (redis://127.0.0.1:6379),
//! OUTPOST_BENCH_ENTRIES (15000), OUTPOST_BENCH_ROUNDS (3), OUTPOST_BENCH_BINARY (the `outpost`
//! binary to run, default this build's).

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, aio::MultiplexedConnection};

const STREAM: &str = "sensor_readings";
const GROUP: &str = "ingest";

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One round's processes and names.
struct Round {
    binary: String,
    namespace: String,
    postgres: String,
    redis_url: String,
    data_dir: tempfile::TempDir,
    telemetry_port: u16,
}

/// A child process, killed when dropped (a round that fails leaves nothing running).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Round {
    fn start(&self, role: &str, port: u16) -> anyhow::Result<Process> {
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(&self.binary)
            .arg(role)
            .env("OUTPOST_DATABASE_URL", &self.postgres)
            .env("OUTPOST_REDIS_URL", &self.redis_url)
            .env("OUTPOST_NAMESPACE", &self.namespace)
            .env("OUTPOST_DATA_DIR", self.data_dir.path())
            .env("OUTPOST_LOG", "warn")
            .env("OUTPOST_TELEMETRY_ADDR", format!("127.0.0.1:{}", self.telemetry_port))
            .env(
                "OUTPOST_TELEMETRY_URL",
                format!("http://127.0.0.1:{}", self.telemetry_port),
            )
            .env(format!("OUTPOST_{}_ADDR", role.to_uppercase()), &addr)
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Process(child))
    }
}

/// Waits until `http://127.0.0.1:{port}/metrics` answers.
async fn serving(port: u16) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("nothing serves on port {port}")
}

fn signal(process: &Process, name: &str) -> anyhow::Result<()> {
    let pid = process.0.id().to_string();
    let status = Command::new("kill").arg(format!("-{name}")).arg(&pid).status()?;
    anyhow::ensure!(status.success(), "kill -{name} {pid} failed");
    Ok(())
}

/// Pending entries per consumer of the group.
async fn pending(redis: &mut MultiplexedConnection, key: &str) -> anyhow::Result<HashMap<String, u64>> {
    let reply: Vec<Vec<(String, redis::Value)>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(key)
        .arg(GROUP)
        .query_async(redis)
        .await
        .unwrap_or_default();
    let mut out = HashMap::new();
    for consumer in reply {
        let fields: HashMap<String, redis::Value> = consumer.into_iter().collect();
        let name = match fields.get("name") {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => continue,
        };
        let count = match fields.get("pending") {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        };
        out.insert(name, count);
    }
    Ok(out)
}

/// Entries not yet acked: pending plus not yet delivered (the group's lag).
async fn unfinished(redis: &mut MultiplexedConnection, key: &str) -> anyhow::Result<u64> {
    let groups: Vec<Vec<(String, redis::Value)>> =
        redis::cmd("XINFO").arg("GROUPS").arg(key).query_async(redis).await?;
    for group in groups {
        let fields: HashMap<String, redis::Value> = group.into_iter().collect();
        if matches!(fields.get("name"), Some(redis::Value::BulkString(b)) if b == GROUP.as_bytes()) {
            let number = |name: &str| match fields.get(name) {
                Some(redis::Value::Int(n)) => *n as u64,
                _ => u64::MAX,
            };
            return Ok(number("pending").saturating_add(number("lag")));
        }
    }
    anyhow::bail!("no group {GROUP} on {key}")
}

fn message(i: u64) -> String {
    let time = chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0)
        .unwrap()
        .to_rfc3339();
    format!(
        r#"{{"device":"redelivery","sensor":"temperature","value":{},"timestamp":"{time}"}}"#,
        i % 40
    )
}

/// One round; returns (re-delivered, drained) after the kill.
async fn round(round: &Round, entries: u64, pg: &sqlx::PgPool) -> anyhow::Result<(Duration, Duration)> {
    let key = format!("{}{STREAM}", round.namespace);
    let client = redis::Client::open(round.redis_url.as_str())?;
    let mut redis = client.get_multiplexed_async_connection().await?;

    let mut telemetry = round.start("telemetry", round.telemetry_port)?;
    serving(round.telemetry_port).await?;
    // Telemetry paused, the entries waiting: A takes them in full batches and holds them,
    // mid-write.
    signal(&telemetry, "STOP")?;
    let mut pipe = redis::pipe();
    for i in 0..entries {
        pipe.cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("payload")
            .arg(message(i))
            .ignore();
    }
    pipe.query_async::<()>(&mut redis).await?;
    let a_port = free_port()?;
    let mut a = round.start("ingest", a_port)?;
    let held_by_a = loop {
        let held = pending(&mut redis, &key).await?;
        if held.values().sum::<u64>() == entries && held.len() == 1 {
            break held.into_keys().next().expect("one consumer");
        }
        anyhow::ensure!(a.0.try_wait()?.is_none(), "ingest A exited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Mid-write for a moment (its leases extended once or twice).
    tokio::time::sleep(Duration::from_secs(2)).await;

    a.0.kill()?; // SIGKILL
    let killed = Instant::now();
    a.0.wait()?;
    signal(&telemetry, "CONT")?;
    let b_port = free_port()?;
    let mut b = round.start("ingest", b_port)?;

    let mut redelivered = None;
    let drained = loop {
        let held = pending(&mut redis, &key).await?;
        if redelivered.is_none() && held.get(&held_by_a).copied().unwrap_or(0) == 0 {
            redelivered = Some(killed.elapsed());
        }
        if unfinished(&mut redis, &key).await? == 0 {
            break killed.elapsed();
        }
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(180),
            "not drained within 3 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let redelivered = redelivered.unwrap_or(drained);

    let table = format!("{}telemetry.readings", round.namespace);
    let stored: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pg)
        .await?;
    anyhow::ensure!(stored as u64 == entries, "{stored} readings stored of {entries}");

    for process in [&mut b, &mut telemetry] {
        signal(process, "TERM")?;
        process.0.wait()?;
    }
    Ok((redelivered, drained))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (postgres, redis_url) = (common::postgres_url(), common::redis_url());
    let entries: u64 = common::setting("OUTPOST_BENCH_ENTRIES", 15_000);
    let rounds: u32 = common::setting("OUTPOST_BENCH_ROUNDS", 3);
    let binary = common::setting("OUTPOST_BENCH_BINARY", env!("CARGO_BIN_EXE_outpost").to_string());
    let pg = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&postgres)
        .await?;
    println!("re-delivery after kill -9: {entries} entries held by the killed consumer, {rounds} rounds ({binary})");

    let mut results = Vec::new();
    for n in 0..rounds {
        let namespace = format!("bench{:06x}_", rand::random::<u32>() & 0xff_ffff);
        let this = Round {
            binary: binary.clone(),
            namespace: namespace.clone(),
            postgres: postgres.clone(),
            redis_url: redis_url.clone(),
            data_dir: tempfile::tempdir()?,
            telemetry_port: free_port()?,
        };
        let result = round(&this, entries, &pg).await;
        // Leave nothing behind, whatever happened.
        for service in ["telemetry", "ingest"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {namespace}{service} CASCADE"
            )))
            .execute(&pg)
            .await?;
        }
        let client = redis::Client::open(redis_url.as_str())?;
        let mut redis = client.get_multiplexed_async_connection().await?;
        redis::cmd("DEL")
            .arg(format!("{namespace}{STREAM}"))
            .arg(format!("{namespace}{STREAM}:dead"))
            .query_async::<()>(&mut redis)
            .await?;
        let (redelivered, drained) = result?;
        println!(
            "round {}: re-delivered {:.1} s after the kill, drained {:.1} s after",
            n + 1,
            redelivered.as_secs_f64(),
            drained.as_secs_f64()
        );
        results.push((redelivered, drained));
    }
    let worst = results.iter().map(|(r, _)| *r).max().unwrap_or_default();
    let worst_drained = results.iter().map(|(_, d)| *d).max().unwrap_or_default();
    println!(
        "target: re-delivered within 15 s: worst {:.1} s ({}); drained at worst {:.1} s after the kill",
        worst.as_secs_f64(),
        if worst <= Duration::from_secs(15) {
            "met"
        } else {
            "not met"
        },
        worst_drained.as_secs_f64()
    );
    Ok(())
}
