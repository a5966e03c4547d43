//! Camera day benchmark (issue point 5): a full day, 1,440 frames of about 100 KB (the camera
//! takes one a minute), served by a local camera feed, loaded by one camera day run through
//! the whole mesh, timed from `CreateRun` until the run succeeded; on the embedded backend
//! (SQLite, a local directory) and on PostgreSQL + the S3 server. Then the same day again with
//! `refresh` (every frame unchanged: listed, compared, skipped), and, to tell where the time
//! goes, the same 1,440 downloads from the feed alone at the same concurrency.
//!
//! `cargo bench --bench camera`. Settings: OUTPOST_BENCH_POSTGRES_URL
//! (postgres://postgres@127.0.0.1:5432/test), OUTPOST_BENCH_S3_ENDPOINT (http://127.0.0.1:9200),
//! OUTPOST_BENCH_S3_ACCESS_KEY / _SECRET_KEY (outpost / outpost-secret), OUTPOST_BENCH_FRAMES
//! (1440), OUTPOST_CAMERA_CONCURRENCY (8), OUTPOST_BENCH_ONLY (`embedded` or `external`).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures::StreamExt as _;
use outpost_api::ingest::v1::ingest_service_client::IngestServiceClient;
use outpost_api::ingest::v1::{self as pb, RunState, Source};
use outpost_ingest::camera::testing::{FeedServer, Frame, frame_path, row};
use serde_json::{Value, json};

use common::setting;

/// The same allocator as the `outpost` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2025-02-05 00:00:00 UTC, ms.
const DAY_START_MS: i64 = 1_738_713_600_000;
const DAY: &str = "02-05-2025";

/// CPU time this process used so far (user + system), from `/proc/self/stat`; zero elsewhere.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// `n` distinct JPEGs of about 100 KB: 20 pictures of 960 × 720, each made distinct by a
/// comment segment naming its number.
fn jpegs(n: usize) -> Vec<Bytes> {
    let bases: Vec<Vec<u8>> = (0..20)
        .map(|seed| outpost_media::testing::jpeg(960, 720, seed, 40, None))
        .collect();
    (0..n)
        .map(|i| {
            let base = &bases[i % bases.len()];
            let comment = format!("outpost bench frame {i}");
            let mut out = Vec::with_capacity(base.len() + comment.len() + 4);
            out.extend_from_slice(&base[..2]);
            out.extend_from_slice(&[0xFF, 0xFE]);
            out.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(comment.as_bytes());
            out.extend_from_slice(&base[2..]);
            Bytes::from(out)
        })
        .collect()
}

/// Creates a camera day run and follows it until it ends; the run and how long it took.
async fn load(
    ingest: &IngestServiceClient<tonic::transport::Channel>,
    refresh: bool,
) -> anyhow::Result<(pb::Run, Duration)> {
    let mut parameters = std::collections::HashMap::from([("date".to_string(), DAY.to_string())]);
    if refresh {
        parameters.insert("refresh".into(), "true".into());
    }
    let request = pb::CreateRunRequest {
        run: Some(pb::Run {
            source: Source::CameraDay as i32,
            parameters,
            ..Default::default()
        }),
        min_create_time: None,
    };
    let started = Instant::now();
    let run = ingest
        .clone()
        .create_run(request)
        .await?
        .into_inner()
        .run
        .expect("a run");
    let mut changes = ingest
        .clone()
        .watch_run(pb::WatchRunRequest { name: run.name.clone() })
        .await?
        .into_inner();
    while let Some(change) = changes.message().await? {
        let run = change.run.expect("a run");
        if matches!(
            run.state(),
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        ) {
            return Ok((run, started.elapsed()));
        }
    }
    anyhow::bail!("the watch of {} ended before the run", run.name)
}

fn show(what: &str, run: &pb::Run, elapsed: Duration, cpu: Duration, bytes: usize) {
    let c = run.counts.unwrap_or_default();
    println!(
        "  {what}: {:.2} s ({} frames, {:.0} frames/s, {:.1} MB/s), state {:?}, created {} updated {} skipped {} failed {}, bench process CPU {:.2} s{}",
        elapsed.as_secs_f64(),
        run.progress.unwrap_or_default().total,
        run.progress.unwrap_or_default().total as f64 / elapsed.as_secs_f64(),
        bytes as f64 / 1e6 / elapsed.as_secs_f64(),
        run.state(),
        c.created,
        c.updated,
        c.skipped,
        c.failed,
        cpu.as_secs_f64(),
        if run.failure.is_empty() {
            String::new()
        } else {
            format!(", failure: {}", run.failure)
        },
    );
}

async fn backend(label: &str, external: bool, feed: &FeedServer, total_bytes: usize) -> anyhow::Result<()> {
    let namespace = format!("bench{:06x}_", rand::random::<u32>() & 0xff_ffff);
    let mut cli = outpost::Cli::try_parse_from(["outpost", "--log", "warn"])?;
    cli.config.data_dir = std::env::temp_dir().join(&namespace);
    cli.config.namespace = namespace.clone();
    if external {
        cli.config.database_url = Some(common::postgres_url());
        cli.config.s3_endpoint = Some(setting(
            "OUTPOST_BENCH_S3_ENDPOINT",
            "http://127.0.0.1:9200".to_string(),
        ));
        cli.config.s3_bucket = "outpost-bench".into();
        cli.config.s3_access_key = Some(setting("OUTPOST_BENCH_S3_ACCESS_KEY", "outpost".to_string()));
        cli.config.s3_secret_key = Some(setting("OUTPOST_BENCH_S3_SECRET_KEY", "outpost-secret".to_string()));
    }
    cli.ingest.camera_feed_url = feed.base.clone();
    cli.ingest.camera_concurrency = setting("OUTPOST_CAMERA_CONCURRENCY", 8);
    let data_dir = cli.config.data_dir.clone();
    let concurrency = cli.ingest.camera_concurrency;
    let mesh = common::start_mesh(cli).await?;
    let ingest = IngestServiceClient::connect(format!("http://{}", mesh.config.ingest_addr)).await?;
    println!("{label} ({concurrency} frames at once):");
    let cpu = cpu_time();
    let (run, elapsed) = load(&ingest, false).await?;
    show("first load", &run, elapsed, cpu_time() - cpu, total_bytes);
    let cpu = cpu_time();
    let (run, elapsed) = load(&ingest, true).await?;
    show("refresh, nothing changed", &run, elapsed, cpu_time() - cpu, 0);
    mesh.stop().await?;
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// The frames downloaded from the feed alone, `concurrency` at once: the floor of a load.
async fn downloads_alone(feed: &FeedServer, n: usize, concurrency: usize) -> anyhow::Result<Duration> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut results = futures::stream::iter(0..n)
        .map(|i| {
            let at = DAY_START_MS + i as i64 * 60_000;
            let url = format!(
                "{}/hole-cam/static/{}",
                feed.base,
                &frame_path(at)["/mnt/nfs/hole-cam/".len()..]
            );
            let http = http.clone();
            async move { http.get(url).send().await?.bytes().await }
        })
        .buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = setting("OUTPOST_BENCH_FRAMES", 1440);
    let only: String = setting("OUTPOST_BENCH_ONLY", String::new());
    let made = Instant::now();
    let frames = jpegs(n);
    let total: usize = frames.iter().map(Bytes::len).sum();
    println!(
        "camera day: {n} JPEGs of 960 × 720, {} KB on average, {:.1} MB in all (made in {:.1?})",
        total / n.max(1) / 1000,
        total as f64 / 1e6,
        made.elapsed()
    );
    let feed = FeedServer::start().await;
    let mut rows = Vec::with_capacity(n);
    for (i, bytes) in frames.into_iter().enumerate() {
        let at = DAY_START_MS + i as i64 * 60_000;
        feed.set_frame(&frame_path(at), Frame::Bytes(bytes));
        rows.push(row(at, &frame_path(at), json!(i % 2), (i % 100) as f64 / 100.0));
    }
    feed.set_day(DAY, Value::Array(rows));
    let concurrency: usize = setting("OUTPOST_CAMERA_CONCURRENCY", 8);
    let alone = downloads_alone(&feed, n, concurrency).await?;
    println!(
        "feed alone: {n} downloads, {concurrency} at once: {:.2} s ({:.0} MB/s)",
        alone.as_secs_f64(),
        total as f64 / 1e6 / alone.as_secs_f64()
    );
    if only != "external" {
        backend("embedded (SQLite, local directory)", false, &feed, total).await?;
    }
    if only != "embedded" {
        backend("PostgreSQL + S3", true, &feed, total).await?;
    }
    Ok(())
}
