//! The sensor stream consumer: acks only after telemetry committed, loses nothing when a
//! consumer dies mid-stream, dead-letters malformed entries, and isolates a poison reading
//! (one telemetry fails on) by bisection instead of retrying its batch forever. Driven
//! directly on the backend's work queue (a table in SQLite when embedded, a Redis stream when
//! external), and through the served consumer on Redis.

mod common;

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis;
use outpost_ingest::IngestConfig;
use outpost_ingest::stream;
use outpost_ingest::telemetry::Telemetry;
use outpost_kit::storage::{QueueOptions, Storage, WorkQueue};
use outpost_kit::testing::{TestBackend, backends};
use outpost_kit::worker::WorkerOptions;
use tokio_util::sync::CancellationToken;

use common::{Mesh, eventually, micros, readings, start};

const BASE: i64 = 1_733_054_400; // 2024-12-01 12:00:00 UTC
const LEASE: Duration = Duration::from_secs(1);

/// A queue of `name` with a short lease (its dead letters with it).
async fn queue(backend: &TestBackend, name: &str, max_deliveries: u64) -> Arc<dyn WorkQueue> {
    let storage = Storage::open(&backend.storage, "streamtest", outpost_ingest::migrations())
        .await
        .unwrap();
    let opts = QueueOptions {
        lease: LEASE,
        max_deliveries,
        ..QueueOptions::default()
    };
    match storage.redis() {
        Some(_) => storage.stream_queue(name, "ingest", opts).unwrap(),
        None => storage.queue(name, opts),
    }
}

fn message(device: &str, second: i64, value: f64) -> Vec<u8> {
    let time = chrono::DateTime::from_timestamp(BASE + second, 0).unwrap().naive_utc();
    serde_json::json!({"device": device, "sensor": "temperature", "value": value, "timestamp": time.to_string()})
        .to_string()
        .into_bytes()
}

/// Runs a consumer until the returned token is cancelled.
fn spawn_consumer(
    queue: &Arc<dyn WorkQueue>,
    telemetry: Telemetry,
    name: &str,
    batch: usize,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let options = WorkerOptions {
        batch,
        wait: Duration::from_millis(100),
        ..stream::worker_options(name)
    };
    let task = tokio::spawn(stream::consume(queue.clone(), telemetry, options, stop.clone()));
    (stop, task)
}

fn telemetry_of(mesh: &Mesh) -> Telemetry {
    Telemetry::connect(&mesh.telemetry_url, Duration::from_secs(5), &Default::default()).unwrap()
}

async fn drained(queue: &Arc<dyn WorkQueue>, what: &str) {
    eventually(Duration::from_secs(30), what, || async {
        (queue.len().await.unwrap() == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_are_acked_only_after_telemetry_committed() {
    for backend in backends() {
        let mesh = start(&backend, IngestConfig::default()).await;
        let queue = queue(&backend, "acktest", 10).await;
        let payloads: Vec<Vec<u8>> = (0..20).map(|i| message("ack-dev", i, i as f64)).collect();
        queue.push_many(&payloads).await.unwrap();

        let down = Telemetry::connect(
            &common::unreachable_url().await,
            Duration::from_secs(1),
            &Default::default(),
        )
        .unwrap();
        let (stop, task) = spawn_consumer(&queue, down, "down", 100);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            queue.len().await.unwrap(),
            20,
            "{}: nothing acked while telemetry is down",
            backend.label
        );
        stop.cancel();
        task.await.unwrap();
        assert!(readings(&mesh.telemetry, "ack-dev", "temperature").await.is_empty());

        let (stop, task) = spawn_consumer(&queue, telemetry_of(&mesh), "up", 100);
        drained(&queue, "the entries to be acked").await;
        assert_eq!(
            readings(&mesh.telemetry, "ack-dev", "temperature").await.len(),
            20,
            "{}",
            backend.label
        );
        stop.cancel();
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_restarted_mid_stream_loses_nothing_and_duplicates_nothing() {
    for backend in backends() {
        let mesh = start(&backend, IngestConfig::default()).await;
        let queue = queue(&backend, "restarttest", 10).await;
        let malformed_before = outpost_ingest::metrics::malformed_count("stream");
        let mut payloads: Vec<Vec<u8>> = (0..600).map(|i| message("restart-dev", i, i as f64)).collect();
        payloads.extend((0..40).map(|i| message("restart-dev", i * 7, (i * 7) as f64)));
        payloads.insert(100, b"{\"sensor\": \"temperature\", \"value\": \"warm\"}".to_vec());
        payloads.insert(300, b"not json".to_vec());
        payloads.insert(500, b"{\"value\": 1, \"timestamp\": \"2024-12-01 12:00:00\"}".to_vec());
        // A consumer takes the first part of the stream and stops; the rest arrives, and
        // another consumer pulls a batch of it and dies without acking.
        let rest = payloads.split_off(200);
        queue.push_many(&payloads).await.unwrap();
        let (stop, task) = spawn_consumer(&queue, telemetry_of(&mesh), "first", 50);
        drained(&queue, "the first part to be consumed").await;
        stop.cancel();
        task.await.unwrap();
        queue.push_many(&rest).await.unwrap();
        let crashed = queue.pull("crashed", 80, Duration::from_millis(100)).await.unwrap();
        assert_eq!(crashed.len(), 80, "{}", backend.label);
        drop(crashed);

        let (stop, task) = spawn_consumer(&queue, telemetry_of(&mesh), "second", 200);
        drained(&queue, "every entry to be acked").await;
        stop.cancel();
        task.await.unwrap();

        let stored = readings(&mesh.telemetry, "restart-dev", "temperature").await;
        let mut seconds: Vec<i64> = stored.iter().map(|r| micros(r) / 1_000_000 - BASE).collect();
        seconds.dedup();
        assert_eq!(
            seconds,
            (0..600).collect::<Vec<_>>(),
            "{}: every reading once, in time order",
            backend.label
        );
        assert!(stored.iter().all(|r| r.value == (micros(r) / 1_000_000 - BASE) as f64));
        assert_eq!(stored.len(), 600, "{}: no duplicates", backend.label);
        let mut letters: Vec<(String, String)> = queue
            .dead_letters(10)
            .await
            .unwrap()
            .into_iter()
            .map(|l| (String::from_utf8(l.payload).unwrap(), l.error))
            .collect();
        letters.sort();
        let fields: Vec<(&str, &str)> = letters
            .iter()
            .map(|(payload, error)| (payload.as_str(), error.split(':').next().unwrap()))
            .collect();
        assert_eq!(
            fields,
            [
                ("not json", "message"),
                ("{\"sensor\": \"temperature\", \"value\": \"warm\"}", "value"),
                ("{\"value\": 1, \"timestamp\": \"2024-12-01 12:00:00\"}", "sensor"),
            ],
            "{}: malformed entries dead-lettered with the field at fault",
            backend.label
        );
        assert!(outpost_ingest::metrics::malformed_count("stream") >= malformed_before + 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_served_consumer_takes_entries_of_foreign_producers() {
    for backend in common::external_backends() {
        let mesh = start(&backend, IngestConfig::default()).await;
        let url = backend.storage.redis_url.clone().unwrap();
        let mut redis = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let key = format!("{}sensor_readings", backend.storage.namespace);
        for (second, value) in [(0, "14"), (60, "15.5")] {
            let time = chrono::DateTime::from_timestamp(BASE + second, 0)
                .unwrap()
                .naive_utc()
                .to_string();
            let fields = [
                ("sensor", "temperature"),
                ("value", value),
                ("timestamp", time.as_str()),
                ("device", "xadd-dev"),
            ];
            let _: String = redis::cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg(&fields[..])
                .query_async(&mut redis)
                .await
                .unwrap();
        }
        let _: String = redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("sensor")
            .arg("temperature")
            .query_async(&mut redis)
            .await
            .unwrap();

        let stored = eventually(Duration::from_secs(30), "XADDed readings in telemetry", || async {
            let stored = readings(&mesh.telemetry, "xadd-dev", "temperature").await;
            (stored.len() == 2).then_some(stored)
        })
        .await;
        assert_eq!(stored.iter().map(|r| r.value).collect::<Vec<_>>(), vec![14.0, 15.5]);
        let dead_key = format!("{key}:dead");
        eventually(Duration::from_secs(30), "the malformed entry dead-lettered", || {
            let mut redis = redis.clone();
            let dead_key = dead_key.clone();
            async move {
                let len: u64 = redis::cmd("XLEN").arg(&dead_key).query_async(&mut redis).await.unwrap();
                (len == 1).then_some(())
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_reading_is_isolated_and_dead_lettered_while_its_batch_is_written() {
    for backend in backends() {
        let label = backend.label;
        let mesh = start(&backend, IngestConfig::default()).await;
        common::poison_value(&mesh, &backend, 666.0).await;
        let queue = queue(&backend, "poisontest", 3).await;
        let mut payloads: Vec<Vec<u8>> = (0..300).map(|i| message("poison-dev", i, i as f64)).collect();
        for at in [77, 201] {
            payloads[at] = message("poison-dev", at as i64, 666.0);
        }
        queue.push_many(&payloads).await.unwrap();
        let (stop, task) = spawn_consumer(&queue, telemetry_of(&mesh), "poison", 1000);
        drained(&queue, "every entry settled").await;
        stop.cancel();
        task.await.unwrap();

        let stored = readings(&mesh.telemetry, "poison-dev", "temperature").await;
        let seconds: Vec<i64> = stored.iter().map(|r| micros(r) / 1_000_000 - BASE).collect();
        let expected: Vec<i64> = (0..300).filter(|s| ![77, 201].contains(s)).collect();
        assert_eq!(seconds, expected, "{label}: the rest of the batch is written");
        let letters = queue.dead_letters(10).await.unwrap();
        let payloads: Vec<&[u8]> = letters.iter().map(|l| l.payload.as_slice()).collect();
        assert_eq!(
            payloads,
            [
                message("poison-dev", 77, 666.0).as_slice(),
                message("poison-dev", 201, 666.0).as_slice()
            ],
            "{label}"
        );
        assert!(
            letters
                .iter()
                .all(|l| l.error == "delivered 3 times without being acked" && l.deliveries == 3),
            "{label}: tried again a bounded number of times, then dead-lettered: {letters:?}"
        );
    }
}
