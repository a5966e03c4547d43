//! The work queue suite, run on every test backend (in-process; Redis stream).

use std::time::Duration;

use outpost_kit::storage::{Migrations, QueueError, QueueOptions, Storage};
use outpost_kit::testing::{self, TestBackend};

const LEASE: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_millis(1500);
const SHORT: Duration = Duration::from_millis(100);

async fn storage(backend: &TestBackend) -> Storage {
    let migrations = Migrations {
        sqlite: sqlx::migrate!("tests/migrations/sqlite"),
        postgres: sqlx::migrate!("tests/migrations/postgres"),
    };
    Storage::open(&backend.storage, "kitqueue", migrations).await.unwrap()
}

fn opts(max_len: u64) -> QueueOptions {
    QueueOptions { lease: LEASE, max_len }
}

#[tokio::test]
async fn push_pull_ack() {
    for backend in testing::backends() {
        let label = backend.label;
        let queue = storage(&backend).await.queue("jobs", opts(100));
        queue.ping().await.unwrap();
        assert_eq!(queue.len().await.unwrap(), 0, "{label}");
        let a = queue.push(b"a").await.unwrap();
        let more = queue.push_many(&[b"b".to_vec(), vec![0, 159, 146, 150]]).await.unwrap();
        assert_eq!(more.len(), 2);
        assert_eq!(queue.len().await.unwrap(), 3, "{label}");

        let first = queue.pull("w1", 2, WAIT).await.unwrap();
        let payloads: Vec<_> = first.iter().map(|d| d.payload.clone()).collect();
        assert_eq!(payloads, [b"a".to_vec(), b"b".to_vec()], "{label}: oldest first");
        assert_eq!(first[0].id, a, "{label}");
        assert!(first.iter().all(|d| d.deliveries == 1), "{label}: {first:?}");
        let second = queue.pull("w2", 10, WAIT).await.unwrap();
        assert_eq!(second.len(), 1, "{label}");
        assert_eq!(second[0].payload, [0, 159, 146, 150], "{label}: bytes pass unchanged");
        assert_eq!(queue.len().await.unwrap(), 3, "{label}: in flight still counts");

        let ids: Vec<String> = first.iter().chain(&second).map(|d| d.id.clone()).collect();
        queue.ack(&ids).await.unwrap();
        queue.ack(&[]).await.unwrap();
        assert_eq!(queue.len().await.unwrap(), 0, "{label}");
        tokio::time::sleep(LEASE * 2).await;
        assert!(
            queue.pull("w1", 10, SHORT).await.unwrap().is_empty(),
            "{label}: acked never returns"
        );
    }
}

#[tokio::test]
async fn an_unacked_entry_is_delivered_again_after_its_lease() {
    for backend in testing::backends() {
        let label = backend.label;
        let queue = storage(&backend).await.queue("lease", opts(100));
        let id = queue.push(b"work").await.unwrap();
        let got = queue.pull("w1", 1, WAIT).await.unwrap();
        assert_eq!((got[0].id.as_str(), got[0].deliveries), (id.as_str(), 1), "{label}");

        // In flight: another consumer does not get it while the lease runs.
        assert!(queue.pull("w2", 1, SHORT).await.unwrap().is_empty(), "{label}");

        tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
        let again = queue.pull("w2", 1, WAIT).await.unwrap();
        assert_eq!(again.len(), 1, "{label}");
        assert_eq!(again[0].id, id, "{label}");
        assert_eq!(again[0].payload, b"work", "{label}");
        assert_eq!(again[0].deliveries, 2, "{label}");

        queue.ack(&[id]).await.unwrap();
        tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
        assert!(queue.pull("w1", 1, SHORT).await.unwrap().is_empty(), "{label}");
        assert_eq!(queue.len().await.unwrap(), 0, "{label}");
    }
}

#[tokio::test]
async fn a_full_queue_pushes_back() {
    for backend in testing::backends() {
        let label = backend.label;
        let queue = storage(&backend).await.queue("bounded", opts(3));
        queue.push_many(&[b"1".to_vec(), b"2".to_vec()]).await.unwrap();
        queue.push(b"3").await.unwrap();
        assert!(matches!(queue.push(b"4").await, Err(QueueError::Full(3))), "{label}");
        assert!(
            matches!(queue.push_many(&[b"4".to_vec()]).await, Err(QueueError::Full(3))),
            "{label}"
        );
        assert_eq!(queue.len().await.unwrap(), 3, "{label}: nothing was dropped or added");

        let got = queue.pull("w", 2, WAIT).await.unwrap();
        assert!(
            matches!(queue.push(b"4").await, Err(QueueError::Full(3))),
            "{label}: in flight counts"
        );
        queue
            .ack(&got.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
            .await
            .unwrap();
        assert!(
            matches!(
                queue.push_many(&[b"4".to_vec(), b"5".to_vec(), b"6".to_vec()]).await,
                Err(QueueError::Full(1))
            ),
            "{label}: all or nothing"
        );
        queue.push_many(&[b"4".to_vec(), b"5".to_vec()]).await.unwrap();
        let rest: Vec<_> = queue
            .pull("w", 10, WAIT)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.payload)
            .collect();
        assert_eq!(rest, [b"3".to_vec(), b"4".to_vec(), b"5".to_vec()], "{label}");
    }
}

#[tokio::test]
async fn a_waiting_pull_gets_a_later_push_and_queues_are_shared_by_name() {
    for backend in testing::backends() {
        let label = backend.label;
        let storage = storage(&backend).await;
        let queue = storage.queue("wake", opts(100));
        let puller = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.pull("w", 5, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A second handle on the same name is the same queue.
        storage.queue("wake", opts(100)).push(b"late").await.unwrap();
        let got = puller.await.unwrap().unwrap();
        assert_eq!(got.len(), 1, "{label}");
        assert_eq!(got[0].payload, b"late", "{label}");
        assert_eq!(storage.queue("other", opts(100)).len().await.unwrap(), 0, "{label}");
    }
}

#[tokio::test]
async fn a_foreign_stream_entry_arrives_as_json_fields() {
    for backend in testing::backends() {
        let storage = storage(&backend).await;
        let Some(pool) = storage.redis() else {
            assert!(storage.stream_queue("ext:sensors", "ingest", opts(100)).is_none());
            continue;
        };
        let key = format!("{}ext:sensors", storage.namespace());
        let mut conn = pool.get().await.unwrap();
        // Added before the group exists, by a producer that knows nothing of Outpost.
        let _: String = deadpool_redis::redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("sensor")
            .arg("temperature")
            .arg("value")
            .arg("14")
            .query_async(&mut conn)
            .await
            .unwrap();
        let queue = storage.stream_queue("ext:sensors", "ingest", opts(100)).unwrap();
        let got = queue.pull("c1", 10, WAIT).await.unwrap();
        assert_eq!(got.len(), 1);
        let fields: serde_json::Value = serde_json::from_slice(&got[0].payload).unwrap();
        assert_eq!(fields, serde_json::json!({"sensor": "temperature", "value": "14"}));
        queue.ack(&[got[0].id.clone()]).await.unwrap();
        assert_eq!(queue.len().await.unwrap(), 0);
    }
}

#[tokio::test]
async fn a_vanished_stream_is_recreated() {
    for backend in testing::backends() {
        let storage = storage(&backend).await;
        let Some(pool) = storage.redis() else { continue };
        let queue = storage.queue("vanish", opts(100));
        queue.push(b"before").await.unwrap();
        let key = format!("{}outpost:kitqueue:vanish", storage.namespace());
        let mut conn = pool.get().await.unwrap();
        let deleted: i64 = deadpool_redis::redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(deleted, 1, "the queue lives at {key}");
        queue.push(b"after").await.unwrap();
        let got = queue.pull("w", 10, WAIT).await.unwrap();
        assert_eq!(
            got.iter().map(|d| d.payload.clone()).collect::<Vec<_>>(),
            [b"after".to_vec()]
        );
    }
}

#[tokio::test]
async fn acked_entries_are_trimmed_from_the_stream() {
    for backend in testing::backends() {
        let storage = storage(&backend).await;
        let Some(pool) = storage.redis() else { continue };
        let queue = storage.queue("trim", opts(100));
        for i in 0..5u8 {
            queue.push(&[i]).await.unwrap();
        }
        let got = queue.pull("w", 5, WAIT).await.unwrap();
        assert_eq!(got.len(), 5);
        let key = format!("{}outpost:kitqueue:trim", storage.namespace());
        let xlen = || async {
            let mut conn = pool.get().await.unwrap();
            deadpool_redis::redis::cmd("XLEN")
                .arg(&key)
                .query_async::<u64>(&mut conn)
                .await
                .unwrap()
        };

        // The oldest entry is still in flight: nothing at or after it may go.
        let later: Vec<String> = got[1..].iter().map(|d| d.id.clone()).collect();
        queue.ack(&later).await.unwrap();
        assert_eq!(xlen().await, 5, "kept from the oldest pending entry on");
        assert_eq!(queue.len().await.unwrap(), 1, "only the pending entry is queue work");

        queue.push(b"new").await.unwrap();
        queue.ack(std::slice::from_ref(&got[0].id)).await.unwrap();
        assert_eq!(
            xlen().await,
            1,
            "everything delivered and acked is trimmed; the new entry stays"
        );
        assert_eq!(queue.len().await.unwrap(), 1);
        let next = queue.pull("w", 5, WAIT).await.unwrap();
        assert_eq!(
            next.iter().map(|d| d.payload.clone()).collect::<Vec<_>>(),
            [b"new".to_vec()]
        );
        queue.ack(&[next[0].id.clone()]).await.unwrap();
        assert_eq!((xlen().await, queue.len().await.unwrap()), (0, 0));
    }
}
