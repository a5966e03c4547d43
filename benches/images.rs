//! Image benchmarks.
//!
//! P5, image put: N JPEGs of about 200 KB (default 1,000) uploaded through `UploadImage` into
//! media on the S3 server (SQL on PostgreSQL), against raw PUTs of the same bytes to the same S3
//! server from the same client library and process, at the same concurrency, in the same run;
//! then the same uploads into media in the embedded mode (SQLite, a local directory).
//!
//! P7, review clicks: M clicks (default 50,000) over HTTP, `POST /api/v1/images/{id}:review`,
//! from 64 concurrent connections (one HTTP/1.1 connection each, one click in flight on each),
//! through the whole mesh on PostgreSQL: clicks/s, SQL statements per batch, mean batch size,
//! p50/p99 click latency; with the default `OUTPOST_REVIEW_BATCH_MS` (10) and with 0.
//!
//! `cargo bench --bench images`. Settings: OUTPOST_BENCH_POSTGRES_URL
//! (postgres://postgres@127.0.0.1:5432/test), OUTPOST_BENCH_S3_ENDPOINT (http://127.0.0.1:9200),
//! OUTPOST_BENCH_S3_ACCESS_KEY / _SECRET_KEY (outpost / outpost-secret), OUTPOST_BENCH_IMAGES
//! (1000), OUTPOST_BENCH_UPLOAD_CONCURRENCY (16), OUTPOST_BENCH_CLICKS (50000),
//! OUTPOST_BENCH_CONNECTIONS (64), OUTPOST_BENCH_ONLY (`p5` or `p7`: one of them).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures::StreamExt as _;
use outpost_api::media::v1::{self as pb, media_service_client::MediaServiceClient};
use outpost_kit::config::S3Config;
use outpost_kit::storage::Objects;
use tokio::net::TcpListener;

/// The same allocator as the `outpost` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time this process used so far (user + system), from `/proc/self/stat`; zero elsewhere.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // After the command's closing parenthesis: state, then numbers; utime and stime are
            // the 14th and 15th fields of the line, the 11th and 12th after the state (the state is the 0th).
            let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn rate(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

/// `n` distinct JPEGs of about 200 KB: 20 camera-sized pictures (1280 × 960), each made
/// distinct by a comment segment naming its number (a different hash, the same decoding work).
fn jpegs(n: usize) -> Vec<Bytes> {
    let bases: Vec<Vec<u8>> = (0..20)
        .map(|seed| outpost_media::testing::jpeg(1280, 960, seed, 45, None))
        .collect();
    (0..n)
        .map(|i| {
            let base = &bases[i % bases.len()];
            let comment = format!("outpost bench image {i}");
            let mut out = Vec::with_capacity(base.len() + comment.len() + 4);
            out.extend_from_slice(&base[..2]); // SOI
            out.extend_from_slice(&[0xFF, 0xFE]);
            out.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(comment.as_bytes());
            out.extend_from_slice(&base[2..]);
            Bytes::from(out)
        })
        .collect()
}

struct Media {
    client: MediaServiceClient<tonic::transport::Channel>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_media(config: outpost_kit::config::Config) -> anyhow::Result<Media> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(outpost_media::serve_on(
        config,
        outpost_media::MediaConfig::default(),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    let client = MediaServiceClient::connect(url)
        .await?
        .max_decoding_message_size(4 << 20);
    // Ready once a list answers (migrations done).
    for _ in 0..300 {
        if client
            .clone()
            .list_images(pb::ListImagesRequest::default())
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Media { client, stop, task })
}

/// Uploads every image at `concurrency`; the time it took.
async fn upload_all(
    client: &MediaServiceClient<tonic::transport::Channel>,
    images: &[Bytes],
    concurrency: usize,
) -> Duration {
    let started = Instant::now();
    let mut uploads = futures::stream::iter(images.iter().enumerate().map(|(i, bytes)| {
        let mut client = client.clone();
        let metadata = outpost_media::testing::metadata("bench", Some(1_700_000_000 + i as i64));
        let messages = outpost_media::testing::upload_messages(metadata, bytes, 1 << 20);
        async move {
            let response = client.upload_image(futures::stream::iter(messages)).await;
            assert!(response.expect("an upload").into_inner().created);
        }
    }))
    .buffer_unordered(concurrency);
    while uploads.next().await.is_some() {}
    started.elapsed()
}

async fn put_all(objects: &Objects, images: &[Bytes], concurrency: usize) -> Duration {
    let started = Instant::now();
    let mut puts = futures::stream::iter(images.iter().enumerate().map(|(i, bytes)| {
        let objects = objects.clone();
        let bytes = bytes.clone();
        async move { objects.put(&format!("raw/{i:06}.jpg"), bytes).await.expect("a raw put") }
    }))
    .buffer_unordered(concurrency);
    while puts.next().await.is_some() {}
    started.elapsed()
}

async fn p5(postgres: &str) -> anyhow::Result<()> {
    let n: usize = setting("OUTPOST_BENCH_IMAGES", 1000);
    let concurrency: usize = setting("OUTPOST_BENCH_UPLOAD_CONCURRENCY", 16);
    let s3 = S3Config {
        endpoint: setting("OUTPOST_BENCH_S3_ENDPOINT", "http://127.0.0.1:9200".to_string()),
        bucket: "outpost-bench".into(),
        access_key: setting("OUTPOST_BENCH_S3_ACCESS_KEY", "outpost".to_string()),
        secret_key: setting("OUTPOST_BENCH_S3_SECRET_KEY", "outpost-secret".to_string()),
        region: "us-east-1".into(),
    };
    let made = Instant::now();
    let images = jpegs(n);
    let mean = images.iter().map(Bytes::len).sum::<usize>() / n.max(1);
    println!(
        "P5 image put: {n} JPEGs of 1280 × 960, {} KB on average (made in {:.1?}), {concurrency} in flight",
        mean / 1000,
        made.elapsed()
    );

    let namespace = format!("bench{:06x}_", rand::random::<u32>() & 0xff_ffff);
    let data_dir = std::env::temp_dir().join(&namespace);
    let mut config = outpost::Cli::try_parse_from(["outpost", "--log", "warn"])?.config;
    config.data_dir = data_dir.clone();
    config.namespace = namespace.clone();
    config.database_url = Some(postgres.to_string());
    config.s3_endpoint = Some(s3.endpoint.clone());
    config.s3_bucket = s3.bucket.clone();
    config.s3_access_key = Some(s3.access_key.clone());
    config.s3_secret_key = Some(s3.secret_key.clone());
    let raw = Objects::open(&config.storage(), "raw").await?;
    let media = start_media(config.clone()).await?;

    // Warm both paths (connections, the bucket), then measure raw, Outpost, raw again.
    put_all(&raw, &images[..8.min(n)], concurrency).await;
    let cpu = cpu_time();
    let raw_first = put_all(&raw, &images, concurrency).await;
    let raw_cpu = cpu_time() - cpu;
    let cpu = cpu_time();
    let outpost = upload_all(&media.client, &images, concurrency).await;
    let outpost_cpu = cpu_time() - cpu;
    let raw_again = put_all(&raw, &images, concurrency).await;
    // The thumbnail work alone, one image at a time.
    let sample: Vec<_> = images.iter().take(20).collect();
    let started = Instant::now();
    for bytes in &sample {
        let mut receiver = outpost_media::upload::Receiver::new(usize::MAX);
        receiver.push(bytes)?;
        let content = receiver.finish()?;
        let (width, height) = outpost_media::upload::dimensions(&content, u64::MAX)?;
        outpost_media::thumbnails::make(&content, width, height)?;
    }
    let thumbnail_time = started.elapsed() / sample.len().max(1) as u32;
    let raw_rate = rate(n, raw_first).max(rate(n, raw_again));
    let outpost_rate = rate(n, outpost);
    let mb = |r: f64| r * mean as f64 / 1e6;
    println!(
        "  raw S3 PUTs (same bytes, same server, object_store client): {:.0}/s then {:.0}/s ({:.1} MB/s at best)",
        rate(n, raw_first),
        rate(n, raw_again),
        mb(raw_rate)
    );
    println!(
        "  Outpost UploadImage (sniff, header, decode + 320 px thumbnail, 2 PUTs, SQL on PostgreSQL): {outpost_rate:.0}/s ({:.1} MB/s)",
        mb(outpost_rate)
    );
    println!(
        "  Outpost / raw: {:.0}% (target at least 80%)",
        100.0 * outpost_rate / raw_rate
    );
    println!(
        "  CPU of this process per image: raw PUT {:.1?}, Outpost upload {:.1?} (client and media), of which a thumbnail (header, decode, shrink, encode) {thumbnail_time:.1?}",
        raw_cpu / n as u32,
        outpost_cpu / n as u32
    );
    let _ = media.stop.send(());
    media.task.await??;

    // The embedded mode: SQLite and a local directory.
    let mut embedded = config;
    embedded.database_url = None;
    embedded.s3_endpoint = None;
    embedded.namespace = format!("{namespace}e_");
    let media = start_media(embedded).await?;
    let local = upload_all(&media.client, &images, concurrency).await;
    println!(
        "  embedded (SQLite, local directory): {:.0}/s ({:.1} MB/s)",
        rate(n, local),
        mb(rate(n, local))
    );
    let _ = media.stop.send(());
    media.task.await??;
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// The sum and count of a histogram in the process's metrics, for `writer="review_clicks"`.
fn batch_histogram(name: &str) -> (f64, f64) {
    let text = outpost_kit::metrics::render();
    let value = |suffix: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}_{suffix}{{")) && l.contains("writer=\"review_clicks\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (value("sum"), value("count"))
}

async fn p7(postgres: &str, batch_ms: u64) -> anyhow::Result<()> {
    let clicks: usize = setting("OUTPOST_BENCH_CLICKS", 50_000);
    let connections: usize = setting("OUTPOST_BENCH_CONNECTIONS", 64);
    let images = 1000usize;
    let namespace = format!("bench{:06x}_", rand::random::<u32>() & 0xff_ffff);
    let mut cli = outpost::Cli::try_parse_from(["outpost", "--log", "warn"])?;
    cli.config.database_url = Some(postgres.to_string());
    cli.config.namespace = namespace.clone();
    cli.config.data_dir = std::env::temp_dir().join(&namespace);
    cli.media.review_batch_ms = batch_ms;
    let data_dir = cli.config.data_dir.clone();
    let mesh = common::start_mesh(cli).await?;
    let config = mesh.config.clone();
    let base = format!("http://{}", config.gateway_addr);

    // The images to click on.
    let media = MediaServiceClient::connect(format!("http://{}", config.media_addr)).await?;
    let picture = Bytes::from(outpost_media::testing::jpeg(64, 48, 1, 80, None));
    let names: Vec<String> = futures::stream::iter(0..images)
        .map(|i| {
            let mut media = media.clone();
            let metadata = outpost_media::testing::metadata("bench", Some(1_700_000_000 + i as i64));
            let messages = outpost_media::testing::upload_messages(metadata, &picture, 1 << 20);
            async move {
                let image = media.upload_image(futures::stream::iter(messages)).await.unwrap();
                image.into_inner().image.unwrap().name
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    let statements_before = outpost_media::review::statements();
    let (weight_before, batches_before) = batch_histogram("outpost_group_commit_batch_weight");
    let per_connection = clicks / connections;
    let cpu = cpu_time();
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (base, names) = (base.clone(), names.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .http1_only()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                let mut latencies = Vec::with_capacity(per_connection);
                for k in 0..per_connection {
                    let name = &names[(c * per_connection + k) % names.len()];
                    let decision = if k % 2 == 0 {
                        "REVIEW_STATE_ACCEPTED"
                    } else {
                        "REVIEW_STATE_REJECTED"
                    };
                    let sent = Instant::now();
                    let response = client
                        .post(format!("{base}/api/v1/{name}:review"))
                        .header("content-type", "application/json")
                        .body(format!(r#"{{"decision":"{decision}"}}"#))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    response.bytes().await.unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(clicks);
    for task in tasks {
        latencies.extend(task.await?);
    }
    let elapsed = started.elapsed();
    let done = latencies.len();
    let statements = outpost_media::review::statements() - statements_before;
    let (weight, batches) = batch_histogram("outpost_group_commit_batch_weight");
    let (weight, batches) = (weight - weight_before, batches - batches_before);
    latencies.sort();
    let percentile = |p: f64| latencies[((done as f64 * p) as usize).min(done - 1)];
    let cpu = cpu_time() - cpu;
    println!(
        "P7 review clicks, OUTPOST_REVIEW_BATCH_MS={batch_ms}: {done} clicks over HTTP from {connections} connections on PostgreSQL in {elapsed:.2?}"
    );
    println!(
        "  {:.0} clicks/s acknowledged (target at least 20000); {batches:.0} batches, {statements} SQL statements ({:.2} per batch, target at most 1); mean batch {:.1} clicks",
        rate(done, elapsed),
        statements as f64 / batches.max(1.0),
        weight / batches.max(1.0)
    );
    println!(
        "  latency p50 {:.1?}, p99 {:.1?} (target under 50 ms), max {:.1?}",
        percentile(0.5),
        percentile(0.99),
        latencies[done - 1]
    );
    println!(
        "  CPU of this process (clients, gateway, media) per click: {:.0?}",
        cpu / done as u32
    );

    // The same clicks over gRPC straight to media (64 in flight on one channel): what media's
    // writer takes without the HTTP/JSON hop.
    let statements_before = outpost_media::review::statements();
    let cpu = cpu_time();
    let started = Instant::now();
    let mut answers = futures::stream::iter((0..clicks).map(|k| {
        let mut media = media.clone();
        let request = pb::ReviewImageRequest {
            name: names[k % names.len()].clone(),
            decision: if k % 2 == 0 {
                pb::ReviewState::Accepted
            } else {
                pb::ReviewState::Rejected
            } as i32,
            review_time: None,
        };
        async move {
            let sent = Instant::now();
            media.review_image(request).await.expect("a click");
            sent.elapsed()
        }
    }))
    .buffer_unordered(connections);
    let mut latencies = Vec::with_capacity(clicks);
    while let Some(latency) = answers.next().await {
        latencies.push(latency);
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time() - cpu;
    latencies.sort();
    let statements = outpost_media::review::statements() - statements_before;
    println!(
        "  the same over gRPC to media directly, {connections} in flight: {:.0} clicks/s, {statements} statements, p99 {:.1?}, CPU per click {:.0?}",
        rate(clicks, elapsed),
        latencies[(clicks * 99 / 100).min(clicks - 1)],
        cpu / clicks as u32
    );
    mesh.stop().await?;
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let postgres = setting(
        "OUTPOST_BENCH_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test".to_string(),
    );
    let only: String = setting("OUTPOST_BENCH_ONLY", String::new());
    if only != "p7" {
        p5(&postgres).await?;
    }
    if only != "p5" {
        p7(&postgres, outpost_media::MediaConfig::default().review_batch_ms).await?;
        p7(&postgres, 0).await?;
    }
    Ok(())
}
