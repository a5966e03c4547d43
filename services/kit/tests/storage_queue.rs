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
    QueueOptions {
        lease: LEASE,
        max_len,
        ..QueueOptions::default()
    }
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
        // The first consumer lost it: it can no longer extend or give it back.
        assert!(
            queue.extend("w1", std::slice::from_ref(&id)).await.unwrap().is_empty(),
            "{label}"
        );

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

#[tokio::test]
async fn an_extended_lease_keeps_the_entry_in_hand() {
    for backend in testing::backends() {
        let label = backend.label;
        let queue = storage(&backend).await.queue("extend", opts(100));
        let id = queue.push(b"long job").await.unwrap();
        let got = queue.pull("w1", 1, WAIT).await.unwrap();
        assert_eq!(got.len(), 1, "{label}");
        // Extended every third of the lease, for three leases: never delivered again.
        for _ in 0..9 {
            tokio::time::sleep(LEASE / 3).await;
            let held = queue.extend("w1", std::slice::from_ref(&id)).await.unwrap();
            assert_eq!(held, std::slice::from_ref(&id), "{label}");
            assert!(queue.pull("w2", 1, Duration::ZERO).await.unwrap().is_empty(), "{label}");
        }
        assert!(
            queue.extend("w2", std::slice::from_ref(&id)).await.unwrap().is_empty(),
            "{label}: another consumer cannot extend what it does not hold"
        );
        assert!(
            queue
                .extend("w1", &["0-1".into(), "nope".into()])
                .await
                .unwrap()
                .is_empty()
        );
        // No longer extended: delivered again after the lease.
        let again = queue.pull("w2", 1, LEASE * 4).await.unwrap();
        assert_eq!(again.len(), 1, "{label}");
        assert_eq!((again[0].id.as_str(), again[0].deliveries), (id.as_str(), 2), "{label}");
        queue.ack(&[id]).await.unwrap();
    }
}

#[tokio::test]
async fn a_nacked_entry_comes_back_after_its_delay() {
    for backend in testing::backends() {
        let label = backend.label;
        let lease = Duration::from_secs(2);
        let queue = storage(&backend)
            .await
            .queue("nack", QueueOptions { lease, ..opts(100) });
        queue.push_many(&[b"later".to_vec(), b"now".to_vec()]).await.unwrap();
        let got = queue.pull("w1", 2, WAIT).await.unwrap();
        assert_eq!(got.len(), 2, "{label}");
        let delay = lease / 2;
        queue.nack("w1", &[got[0].id.clone()], delay).await.unwrap();
        queue.nack("w1", &[got[1].id.clone()], Duration::ZERO).await.unwrap();
        // Another consumer cannot give back what it does not hold.
        queue.nack("w2", &[got[0].id.clone()], Duration::ZERO).await.unwrap();

        let now = queue.pull("w2", 2, WAIT).await.unwrap();
        assert_eq!(now.len(), 1, "{label}: only the undelayed entry at first");
        assert_eq!(
            (now[0].payload.as_slice(), now[0].deliveries),
            (&b"now"[..], 2),
            "{label}"
        );
        let started = tokio::time::Instant::now();
        let later = queue.pull("w2", 2, lease * 2).await.unwrap();
        assert_eq!(later.len(), 1, "{label}");
        assert_eq!(
            (later[0].payload.as_slice(), later[0].deliveries),
            (&b"later"[..], 2),
            "{label}"
        );
        assert!(
            started.elapsed() < lease * 7 / 8,
            "{label}: the delay, not a lease-long wait: {:?}",
            started.elapsed()
        );
        queue.ack(&[now[0].id.clone(), later[0].id.clone()]).await.unwrap();
        assert_eq!(queue.len().await.unwrap(), 0, "{label}");
    }
}

#[tokio::test]
async fn an_entry_delivered_too_often_is_dead_lettered() {
    for backend in testing::backends() {
        let label = backend.label;
        let options = QueueOptions {
            max_deliveries: 2,
            ..opts(100)
        };
        let queue = storage(&backend).await.queue("poison", options);
        let poison = queue.push(b"poison").await.unwrap();
        for delivery in 1..=2 {
            let got = queue.pull("w", 1, LEASE * 4).await.unwrap();
            assert_eq!(
                (got[0].id.as_str(), got[0].deliveries),
                (poison.as_str(), delivery),
                "{label}"
            );
            // The consumer dies with it: no ack.
        }
        let good = queue.push(b"good").await.unwrap();
        tokio::time::sleep(LEASE + Duration::from_millis(100)).await;
        let got = queue.pull("w", 10, WAIT).await.unwrap();
        assert_eq!(
            got.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            [good.as_str()],
            "{label}: the third delivery is not made"
        );
        queue.ack(&[good]).await.unwrap();
        assert_eq!(queue.len().await.unwrap(), 0, "{label}");
        let letters = queue.dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 1, "{label}");
        assert_eq!(letters[0].entry, poison, "{label}");
        assert_eq!(letters[0].payload, b"poison", "{label}");
        assert_eq!(letters[0].deliveries, 2, "{label}");
        assert_eq!(letters[0].error, "delivered 2 times without being acked", "{label}");
    }
}

#[tokio::test]
async fn dead_letters_are_bounded_and_free_the_queue() {
    for backend in testing::backends() {
        let label = backend.label;
        let storage = storage(&backend).await;
        let options = QueueOptions {
            dead_letters: 3,
            ..opts(100)
        };
        let queue = storage.queue("refused", options);
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'0' + i]).collect();
        queue.push_many(&payloads).await.unwrap();
        let got = queue.pull("w", 5, WAIT).await.unwrap();
        let letters: Vec<(&_, &str)> = got.iter().map(|d| (d, "refused by the handler")).collect();
        queue.dead_letter(&letters[..2]).await.unwrap();
        queue.dead_letter(&letters[2..]).await.unwrap();
        assert_eq!(queue.len().await.unwrap(), 0, "{label}: dead letters leave the queue");

        let kept = queue.dead_letters(100).await.unwrap();
        assert_eq!(
            kept.iter().map(|l| l.payload.clone()).collect::<Vec<_>>(),
            [b"2".to_vec(), b"3".to_vec(), b"4".to_vec()],
            "{label}: the newest three, oldest first"
        );
        assert!(
            kept.iter()
                .all(|l| l.error == "refused by the handler" && l.deliveries == 1)
        );
        assert_eq!(kept[0].entry, got[2].id, "{label}");

        // More dead letters than the bound never fail, and never hold the queue back.
        for i in 0..10u8 {
            let id = queue.push(&[i]).await.unwrap();
            let got = queue.pull("w", 1, WAIT).await.unwrap();
            assert_eq!(got[0].id, id, "{label}");
            queue.dead_letter(&[(&got[0], "refused")]).await.unwrap();
        }
        assert_eq!(queue.dead_letters(100).await.unwrap().len(), 3, "{label}");
        assert_eq!(queue.len().await.unwrap(), 0, "{label}");
        if let Some(pool) = storage.redis() {
            let key = format!("{}outpost:kitqueue:refused", storage.namespace());
            let mut conn = pool.get().await.unwrap();
            let lengths: (u64, u64) = deadpool_redis::redis::pipe()
                .cmd("XLEN")
                .arg(&key)
                .cmd("XLEN")
                .arg(format!("{key}:dead"))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(lengths, (0, 3), "the stream is trimmed; the dead letters are capped");
        }
    }
}

#[tokio::test]
async fn dead_consumers_are_removed_from_the_group() {
    for backend in testing::backends() {
        let storage = storage(&backend).await;
        let Some(pool) = storage.redis() else { continue };
        let queue = storage.queue("consumers", opts(100));
        let key = format!("{}outpost:kitqueue:consumers", storage.namespace());
        queue.push_many(&[b"a".to_vec(), b"b".to_vec()]).await.unwrap();
        // "dead" takes an entry and dies; "idle" takes and acks one, then goes quiet.
        let dead = queue.pull("dead", 1, WAIT).await.unwrap();
        assert_eq!(dead.len(), 1);
        let idle = queue.pull("idle", 1, WAIT).await.unwrap();
        queue.ack(&[idle[0].id.clone()]).await.unwrap();

        let consumers = || async {
            let mut conn = pool.get().await.unwrap();
            let info: Vec<std::collections::HashMap<String, deadpool_redis::redis::Value>> =
                deadpool_redis::redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(&key)
                    .arg("outpost")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            let mut names: Vec<String> = info
                .iter()
                .map(|c| match &c["name"] {
                    deadpool_redis::redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
                    other => panic!("{other:?}"),
                })
                .collect();
            names.sort();
            names
        };
        assert_eq!(consumers().await, ["dead", "idle"]);

        // "live" keeps pulling: it takes over the dead consumer's entry after the lease, and
        // removes consumers idle for six leases that hold nothing.
        let forget_after = LEASE * 6;
        let started = tokio::time::Instant::now();
        let mut taken = Vec::new();
        while started.elapsed() < forget_after + LEASE * 3 {
            for delivery in queue.pull("live", 10, SHORT).await.unwrap() {
                queue.ack(std::slice::from_ref(&delivery.id)).await.unwrap();
                taken.push(delivery);
            }
            if started.elapsed() < forget_after - LEASE {
                let names = consumers().await;
                assert!(
                    names.contains(&"idle".to_string()),
                    "not yet idle long enough: {names:?}"
                );
            }
        }
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].id.as_str(), taken[0].deliveries), (dead[0].id.as_str(), 2));
        // ("live" itself may be gone too: it holds nothing, and a pull that gets nothing does
        // not count as activity on every Redis version. It comes back with its next entry.)
        let left = consumers().await;
        assert!(
            !left.contains(&"dead".to_string()) && !left.contains(&"idle".to_string()),
            "dead and idle consumers are gone: {left:?}"
        );
        queue.push(b"c").await.unwrap();
        let got = queue.pull("live", 1, WAIT).await.unwrap();
        queue.ack(&[got[0].id.clone()]).await.unwrap();
        assert_eq!(consumers().await, ["live"]);
    }
}
