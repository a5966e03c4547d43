//! Ingest benchmark: N readings (default 1,000,000) pushed through the Redis stream into
//! telemetry on PostgreSQL, by the real ingest and telemetry services, end to end; and in the
//! same run two baselines on the same table: one INSERT per message (the source system's
//! design) and a raw COPY of the same rows.
//!
//! `cargo bench --bench ingest`. Settings: OUTPOST_BENCH_POSTGRES_URL
//! (postgres://postgres@127.0.0.1:5432/test), OUTPOST_BENCH_REDIS_URL (redis://127.0.0.1:6379),
//! OUTPOST_BENCH_READINGS (1000000), OUTPOST_BENCH_SINGLE_INSERTS (20000), OUTPOST_BENCH_DEVICES (1000).

mod common;

use std::time::{Duration, Instant};

use clap::Parser;
use deadpool_redis::redis;
use sqlx::postgres::{PgPoolCopyExt, PgPoolOptions};
use tokio::net::TcpListener;

/// The same allocator as the `outpost` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The i-th reading: devices in turn, one reading per device per second from a fixed start.
fn reading(i: u64, devices: u64) -> (String, i64, f64) {
    let device = format!("bench-{}", i % devices);
    let ts = 1_700_000_000_000_000 + (i / devices) as i64 * 1_000_000;
    (device, ts, 15.0 + (i % 200) as f64 / 10.0)
}

fn message(i: u64, devices: u64) -> String {
    let (device, ts, value) = reading(i, devices);
    let time = chrono::DateTime::from_timestamp_micros(ts).unwrap().to_rfc3339();
    format!(r#"{{"device":"{device}","sensor":"temperature","value":{value},"timestamp":"{time}","unit":"°C"}}"#)
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (postgres, redis_url) = (common::postgres_url(), common::redis_url());
    let n: u64 = common::setting("OUTPOST_BENCH_READINGS", 1_000_000);
    let singles: u64 = common::setting("OUTPOST_BENCH_SINGLE_INSERTS", 20_000);
    let devices: u64 = common::setting("OUTPOST_BENCH_DEVICES", 1000);
    let namespace = format!("bench{:06x}_", rand::random::<u32>() & 0xff_ffff);
    println!("ingest benchmark: {n} readings over {devices} devices, namespace {namespace}");

    // The real services, on PostgreSQL and Redis.
    let mut cli = outpost::Cli::try_parse_from(["outpost", "--log", "warn"])?;
    cli.config.database_url = Some(postgres.clone());
    cli.config.redis_url = Some(redis_url.clone());
    cli.config.namespace = namespace.clone();
    cli.config.data_dir = std::env::temp_dir().join(&namespace);
    let telemetry_listener = TcpListener::bind("127.0.0.1:0").await?;
    cli.config.telemetry_url = Some(format!("http://{}", telemetry_listener.local_addr()?));
    let ingest_listener = TcpListener::bind("127.0.0.1:0").await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let telemetry = tokio::spawn(outpost_telemetry::serve_on(
        cli.config.clone(),
        cli.telemetry.clone(),
        telemetry_listener,
        stopped(),
    ));
    let ingest = tokio::spawn(outpost_ingest::serve_on(
        cli.config.clone(),
        cli.ingest.clone(),
        ingest_listener,
        stopped(),
    ));

    let pg = PgPoolOptions::new().max_connections(4).connect(&postgres).await?;
    let schema = format!("{namespace}telemetry");
    let redis_client = redis::Client::open(redis_url.as_str())?;
    let mut redis = redis_client.get_multiplexed_async_connection().await?;
    let stream = format!("{namespace}{}", cli.ingest.sensor_stream);
    // Wait for telemetry's migrations.
    let readings_table = format!("{schema}.readings");
    for _ in 0..100 {
        if sqlx::query(sqlx::AssertSqlSafe(format!("SELECT 1 FROM {readings_table} LIMIT 1")))
            .fetch_optional(&pg)
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 1. End to end: XADD every message (pipelined), until the stream is drained and every
    // reading is committed.
    let started = Instant::now();
    let mut produced = 0u64;
    while produced < n {
        let end = (produced + 10_000).min(n);
        let mut pipe = redis::pipe();
        for i in produced..end {
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("payload")
                .arg(message(i, devices))
                .ignore();
        }
        pipe.query_async::<()>(&mut redis).await?;
        produced = end;
    }
    let produce_time = started.elapsed();
    let count_sql = format!("SELECT count(*) FROM {readings_table}");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let left: u64 = redis::cmd("XLEN").arg(&stream).query_async(&mut redis).await?;
        if left == 0 {
            let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(count_sql.clone()))
                .fetch_one(&pg)
                .await?;
            if count as u64 >= n {
                break;
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the stream did not drain within 10 minutes ({left} left)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let end_to_end = started.elapsed();
    let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(count_sql.clone()))
        .fetch_one(&pg)
        .await?;
    anyhow::ensure!(count as u64 == n, "expected {n} readings, found {count}");
    let e2e_rate = rate(n, end_to_end);
    println!(
        "end to end:   {n} readings in {:.2} s = {e2e_rate:.0} readings/s (XADD alone took {:.2} s)",
        end_to_end.as_secs_f64(),
        produce_time.as_secs_f64()
    );

    // The same rows, as (sensor_key, ts, value), for the baselines.
    let keys: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT device, sensor_key FROM {schema}.sensors"
    )))
    .fetch_all(&pg)
    .await?;
    let keys: std::collections::HashMap<String, i64> = keys.into_iter().collect();
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        let _ = ingest.await;
        let _ = telemetry.await;
    })
    .await;

    // Where the time goes: the stream alone (pull and ack through the same queue, nothing
    // written), and telemetry's batch write alone (no Redis, no gRPC).
    let stage_n = n.min(200_000);
    let storage_config = outpost_kit::config::StorageConfig {
        data_dir: cli.config.data_dir.clone(),
        database_url: Some(postgres.clone()),
        redis_url: Some(redis_url.clone()),
        s3: None,
        namespace: format!("{namespace}stage_"),
        acquire_timeout: outpost_kit::config::MAX_ACQUIRE_TIMEOUT,
    };
    let stage =
        outpost_kit::storage::Storage::open(&storage_config, "telemetry", outpost_telemetry::migrations()).await?;
    let queue = stage
        .stream_queue(
            "stage_readings",
            "stage",
            outpost_kit::storage::QueueOptions {
                max_len: stage_n + 1,
                ..Default::default()
            },
        )
        .expect("redis is configured");
    let payloads: Vec<Vec<u8>> = (0..stage_n).map(|i| message(i, devices).into_bytes()).collect();
    for chunk in payloads.chunks(10_000) {
        queue.push_many(chunk).await?;
    }
    let started = Instant::now();
    let mut drained = 0u64;
    while drained < stage_n {
        let batch = queue.pull("stage", 10_000, Duration::from_millis(100)).await?;
        let parsed: Vec<_> = batch
            .iter()
            .map(|d| outpost_ingest::parse_sensor_message(&d.payload))
            .collect();
        anyhow::ensure!(parsed.iter().all(Result::is_ok), "stage payloads parse");
        queue
            .ack(&batch.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
            .await?;
        drained += batch.len() as u64;
    }
    let stream_rate = rate(stage_n, started.elapsed());
    println!("stage, stream alone (pull, parse, ack; 10000 a batch): {stream_rate:.0} readings/s");
    let writer = outpost_telemetry::Readings::new(stage.db.clone());
    let rows: Vec<outpost_telemetry::Reading> = (0..stage_n)
        .map(|i| {
            let (device, time, value) = reading(i, devices);
            outpost_telemetry::Reading {
                device,
                sensor: "temperature".into(),
                value,
                time,
                unit: "°C".into(),
                kind: String::new(),
            }
        })
        .collect();
    let started = Instant::now();
    for chunk in rows.chunks(10_000) {
        writer.write_readings(chunk.to_vec()).await?;
    }
    let write_rate = rate(stage_n, started.elapsed());
    println!("stage, telemetry write alone (10000 a batch, one at a time): {write_rate:.0} readings/s");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {namespace}stage_telemetry CASCADE"
    )))
    .execute(&pg)
    .await?;
    redis::cmd("DEL")
        .arg(format!("{namespace}stage_stage_readings"))
        .query_async::<()>(&mut redis)
        .await?;

    // 2. One INSERT per message, parsed from its JSON, into an empty copy of the table.
    let single_table = format!("{schema}.readings_single");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {single_table} (LIKE {readings_table} INCLUDING ALL)"
    )))
    .execute(&pg)
    .await?;
    let insert = format!("INSERT INTO {single_table} (sensor_key, ts, value) VALUES ($1, $2, $3)");
    let started = Instant::now();
    for i in 0..singles.min(n) {
        let parsed = outpost_ingest::parse_sensor_message(message(i, devices).as_bytes())?;
        let key = keys[&parsed.device];
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(key)
            .bind(parsed.time)
            .bind(parsed.value)
            .execute(&pg)
            .await?;
    }
    let single_rate = rate(singles.min(n), started.elapsed());
    println!(
        "one INSERT per message: {} readings in {:.2} s = {single_rate:.0} readings/s",
        singles.min(n),
        started.elapsed().as_secs_f64()
    );

    // 3. Raw COPY of the same N rows into an empty copy of the table.
    let copy_table = format!("{schema}.readings_copy");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {copy_table} (LIKE {readings_table} INCLUDING ALL)"
    )))
    .execute(&pg)
    .await?;
    let mut rows = Vec::with_capacity(n as usize * 32);
    for i in 0..n {
        use std::io::Write;
        let (device, ts, value) = reading(i, devices);
        writeln!(rows, "{}\t{ts}\t{value}", keys[&device])?;
    }
    let started = Instant::now();
    let copy_sql = format!("COPY {copy_table} (sensor_key, ts, value) FROM STDIN");
    let mut copy = pg.copy_in_raw(&copy_sql).await?;
    for chunk in rows.chunks(1 << 20) {
        copy.send(chunk.to_vec()).await?;
    }
    let copied = copy.finish().await?;
    let copy_rate = rate(copied, started.elapsed());
    println!(
        "raw COPY:     {copied} readings in {:.2} s = {copy_rate:.0} readings/s",
        started.elapsed().as_secs_f64()
    );

    println!();
    println!(
        "target ≥ 100000 readings/s end to end: {:.0} ({})",
        e2e_rate,
        if e2e_rate >= 100_000.0 { "met" } else { "not met" }
    );
    let x = e2e_rate / single_rate;
    println!(
        "target ≥ 50× one-INSERT baseline: {x:.1}× ({})",
        if x >= 50.0 { "met" } else { "not met" }
    );
    let share = 100.0 * e2e_rate / copy_rate;
    println!(
        "target ≥ 40% of raw COPY: {share:.1}% ({})",
        if share >= 40.0 { "met" } else { "not met" }
    );

    // Leave nothing behind.
    for service in ["telemetry", "ingest"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {namespace}{service} CASCADE"
        )))
        .execute(&pg)
        .await?;
    }
    redis::cmd("DEL")
        .arg(&stream)
        .arg(format!("{stream}:dead"))
        .query_async::<()>(&mut redis)
        .await?;
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&namespace));
    Ok(())
}
