//! P8, small writes: single-reading `POST /add_rawdata/` through the whole mesh (gateway →
//! ingest → telemetry's group commit) on PostgreSQL, with many connections and with one; and
//! in the same run the source system's design, one INSERT per message, behind the same HTTP
//! route and load. Targets: at least 5,000 writes/s and p99 at most 20 ms with 32 connections.
//!
//! `cargo bench --bench writes`. Settings: OUTPOST_BENCH_POSTGRES_URL
//! (postgres://postgres@127.0.0.1:5432/test), OUTPOST_BENCH_CONNECTIONS (32),
//! OUTPOST_BENCH_SECONDS (10 per measurement).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use clap::Parser;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;

/// The same allocator as the `outpost` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Distinct timestamps for every message of a run: a counter of seconds from a fixed start.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn message() -> String {
    let i = NEXT.fetch_add(1, Ordering::Relaxed);
    let time = chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S");
    format!(
        r#"{{"sensor": "temperature", "value": {}, "timestamp": "{time}"}}"#,
        15 + i % 20
    )
}

/// What one load run measured.
struct Measured {
    writes: u64,
    errors: u64,
    seconds: f64,
    latencies: Vec<Duration>,
}

impl Measured {
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let at = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[at]
    }

    fn report(&self, what: &str) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{what}: {:.0} writes/s ({} in {:.1} s, {} errors); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.writes as f64 / self.seconds,
            self.writes,
            self.seconds,
            self.errors,
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
            ms(self.latencies.last().copied().unwrap_or_default()),
        );
    }
}

/// `connections` clients, each on its own keep-alive connection, posting one reading at a
/// time to `url` for `seconds`.
async fn load(url: &str, connections: usize, seconds: u64) -> Measured {
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let clients = (0..connections).map(|_| {
        let url = url.to_string();
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < until {
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(message())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 201 => {
                        let _ = r.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        })
    });
    let mut measured = Measured {
        writes: 0,
        errors: 0,
        seconds: 0.0,
        latencies: Vec::new(),
    };
    for client in futures::future::join_all(clients).await {
        let (latencies, errors) = client.unwrap();
        measured.errors += errors;
        measured.latencies.extend(latencies);
    }
    measured.seconds = started.elapsed().as_secs_f64();
    measured.writes = measured.latencies.len() as u64;
    measured.latencies.sort();
    measured
}

/// The source system's design: each message parsed and written by its own INSERT (its own
/// transaction), from a pool of connections.
async fn one_insert_per_message(State(pool): State<PgPool>, body: String) -> (http::StatusCode, String) {
    let Ok(message) = serde_json::from_str::<serde_json::Value>(&body) else {
        return (http::StatusCode::BAD_REQUEST, "not JSON".into());
    };
    let time = message["timestamp"]
        .as_str()
        .and_then(outpost_kit::time::parse_utc)
        .unwrap_or_default();
    let inserted = sqlx::query("INSERT INTO raw_readings (sensor, value, ts) VALUES ($1, $2, $3)")
        .bind(message["sensor"].as_str().unwrap_or_default())
        .bind(message["value"].as_f64().unwrap_or_default())
        .bind(time)
        .execute(&pool)
        .await;
    match inserted {
        Ok(_) => (http::StatusCode::CREATED, body),
        Err(err) => (http::StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let postgres = common::postgres_url();
    let connections: usize = common::setting("OUTPOST_BENCH_CONNECTIONS", 32);
    let seconds: u64 = common::setting("OUTPOST_BENCH_SECONDS", 10);
    let namespace = format!("bench{:06x}_", rand::random::<u32>() & 0xff_ffff);
    println!("P8 small writes: {connections} connections, {seconds} s a measurement, namespace {namespace}");

    // The whole mesh on PostgreSQL (queues and cache in-process: this path needs no Redis).
    let mut cli = outpost::Cli::try_parse_from(["outpost", "--log", "warn"])?;
    cli.config.database_url = Some(postgres.clone());
    cli.config.namespace = namespace.clone();
    cli.config.data_dir = std::env::temp_dir().join(&namespace);
    let mesh = common::start_mesh(cli).await?;
    let gateway = mesh.config.gateway_addr;

    let url = format!("http://{gateway}/add_rawdata/");
    load(&url, connections, 2).await; // warm-up: connections, the sensor, the statement caches
    let single = load(&url, 1, seconds.min(5)).await;
    single.report("outpost, 1 connection");
    let many = load(&url, connections, seconds).await;
    many.report(&format!("outpost, {connections} connections"));

    // The baseline, same HTTP load, same database.
    let schema = format!("{namespace}baseline");
    let admin = PgPoolOptions::new().max_connections(1).connect(&postgres).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    let path = format!("SET search_path TO {schema}");
    let pool = PgPoolOptions::new()
        .max_connections(connections as u32)
        .after_connect(move |conn, _| {
            let path = path.clone();
            Box::pin(async move {
                sqlx::Executor::execute(conn, sqlx::AssertSqlSafe(path)).await?;
                Ok(())
            })
        })
        .connect(&postgres)
        .await?;
    sqlx::query("CREATE TABLE raw_readings (id BIGSERIAL PRIMARY KEY, sensor TEXT NOT NULL, value DOUBLE PRECISION NOT NULL, ts BIGINT NOT NULL)")
        .execute(&pool)
        .await?;
    let baseline = TcpListener::bind("127.0.0.1:0").await?;
    let baseline_url = format!("http://{}/add_rawdata/", baseline.local_addr()?);
    let app = axum::Router::new()
        .route("/add_rawdata/", post(one_insert_per_message))
        .with_state(pool.clone());
    let server = tokio::spawn(async move { axum::serve(baseline, app).await });
    load(&baseline_url, connections, 2).await;
    let base_single = load(&baseline_url, 1, seconds.min(5)).await;
    base_single.report("one INSERT per message, 1 connection");
    let base_many = load(&baseline_url, connections, seconds).await;
    base_many.report(&format!("one INSERT per message, {connections} connections"));
    server.abort();

    let throughput = many.writes as f64 / many.seconds;
    let p99 = many.percentile(0.99);
    println!(
        "P8 targets: >= 5000 writes/s: {} ({throughput:.0}); p99 <= 20 ms: {} ({:.2} ms); {:.1}x the one-INSERT design",
        if throughput >= 5000.0 { "met" } else { "MISSED" },
        if p99 <= Duration::from_millis(20) {
            "met"
        } else {
            "MISSED"
        },
        p99.as_secs_f64() * 1000.0,
        throughput / (base_many.writes as f64 / base_many.seconds),
    );

    let _ = mesh.stop().await;
    for schema in [
        schema,
        format!("{namespace}telemetry"),
        format!("{namespace}ingest"),
        format!("{namespace}media"),
        format!("{namespace}plotting"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
            .execute(&admin)
            .await?;
    }
    Ok(())
}
