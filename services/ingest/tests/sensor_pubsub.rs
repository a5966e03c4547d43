//! The Redis pub/sub channel `sensor_stream` (external backend only: the embedded mode has no
//! Redis): the source system's messages land in telemetry, malformed ones are counted and
//! skipped, and the consumer keeps going.

mod common;

use std::time::Duration;

use deadpool_redis::redis;
use outpost_ingest::IngestConfig;

use common::{eventually, metric, micros, readings, start};

const MALFORMED: &str = "outpost_ingest_malformed_messages_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn good_messages_land_and_malformed_ones_are_counted_and_skipped() {
    for backend in common::external_backends() {
        let mesh = start(&backend, IngestConfig::default()).await;
        let url = backend.storage.redis_url.clone().unwrap();
        let mut redis = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let channel = format!("{}sensor_stream", backend.storage.namespace);
        eventually(Duration::from_secs(30), "ingest to subscribe", || {
            let mut redis = redis.clone();
            let channel = channel.clone();
            async move {
                let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&channel)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                (counts.first().is_some_and(|(_, n)| *n >= 1)).then_some(())
            }
        })
        .await;
        let malformed_before = metric(mesh.ingest_addr, MALFORMED, "source=\"pubsub\"").await;

        let mut messages = Vec::new();
        for minute in 0..50 {
            messages.push(format!(
                r#"{{"sensor": "temperature", "value": {minute}, "timestamp": "2024-12-01 12:{minute:02}:00", "device": "pubsub-dev"}}"#
            ));
            if minute % 10 == 3 {
                messages
                    .push(r#"{"sensor": "temperature", "value": "hot", "timestamp": "2024-12-01 12:00:00"}"#.into());
            }
        }
        messages.push("definitely not json".into());
        messages.push(r#"{"sensor": "temperature", "value": "21.5", "timestamp": "2024-12-01T14:00:00+01:00", "device": "pubsub-dev", "unit": "°C"}"#.into());
        for message in &messages {
            let _: u64 = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(message)
                .query_async(&mut redis)
                .await
                .unwrap();
        }

        let stored = eventually(Duration::from_secs(30), "published readings in telemetry", || async {
            let stored = readings(&mesh.telemetry, "pubsub-dev", "temperature").await;
            (stored.len() >= 51).then_some(stored)
        })
        .await;
        assert_eq!(stored.len(), 51, "every good message once");
        assert_eq!(stored[0].value, 0.0);
        let last = stored.last().unwrap();
        assert_eq!(
            (last.value, micros(last)),
            (21.5, 1_733_058_000_000_000),
            "the last message after bad ones"
        );
        let malformed = metric(mesh.ingest_addr, MALFORMED, "source=\"pubsub\"").await;
        assert!(
            malformed >= malformed_before + 6.0,
            "malformed counter {malformed_before} -> {malformed}"
        );
    }
}

async fn subscribers(redis: &mut redis::aio::MultiplexedConnection, channel: &str) -> u64 {
    let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(redis)
        .await
        .unwrap();
    counts.first().map_or(0, |(_, n)| *n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_consumer_reconnects_when_redis_drops_it() {
    for backend in common::external_backends() {
        let url = backend.storage.redis_url.clone().unwrap();
        let upstream = reqwest::Url::parse(&url).unwrap();
        let upstream = format!("{}:{}", upstream.host_str().unwrap(), upstream.port().unwrap_or(6379));
        let proxy = outpost_kit::testing::Proxy::start(upstream.parse().unwrap()).await;
        let proxied = format!("redis://{}", proxy.addr);
        let mesh = common::start_with(&backend, IngestConfig::default(), |config| {
            config.redis_url = Some(proxied)
        })
        .await;
        let redis = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let channel = format!("{}sensor_stream", backend.storage.namespace);
        let publish = |minute: u32| {
            let mut redis = redis.clone();
            let channel = channel.clone();
            async move {
                let message = format!(
                    r#"{{"sensor": "temperature", "value": {minute}, "timestamp": "2024-12-01 12:{minute:02}:00", "device": "reconnect-dev"}}"#
                );
                let _: u64 = redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(message)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
            }
        };
        let landed = |count: usize| {
            let telemetry = mesh.telemetry.clone();
            move || {
                let telemetry = telemetry.clone();
                async move { (readings(&telemetry, "reconnect-dev", "temperature").await.len() == count).then_some(()) }
            }
        };

        let conn = redis.clone();
        eventually(Duration::from_secs(30), "ingest to subscribe", || {
            let mut conn = conn.clone();
            let channel = channel.clone();
            async move { (subscribers(&mut conn, &channel).await >= 1).then_some(()) }
        })
        .await;
        publish(0).await;
        eventually(Duration::from_secs(30), "the first reading", landed(1)).await;

        let accepted = proxy.accepted();
        proxy.cut();
        eventually(Duration::from_secs(30), "ingest to subscribe again", || {
            let mut conn = conn.clone();
            let channel = channel.clone();
            let proxy = &proxy;
            async move { (proxy.accepted() > accepted && subscribers(&mut conn, &channel).await >= 1).then_some(()) }
        })
        .await;
        // Published again until it lands: the same reading is stored once however often it comes.
        eventually(Duration::from_secs(30), "a reading after the reconnect", || async {
            publish(1).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            landed(2)().await
        })
        .await;
        assert!(subscribers(&mut conn.clone(), &channel).await >= 1);
    }
}
