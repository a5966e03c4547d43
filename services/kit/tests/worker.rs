//! Workers over the queue of every test backend: each entry settled as its handler says, long
//! work kept in hand by lease extension, failures retried and then dead-lettered, and a stop
//! that gives unfinished work back at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_kit::storage::{Delivery, Migrations, QueueOptions, Storage, WorkQueue};
use outpost_kit::testing::{self, TestBackend};
use outpost_kit::worker::{self, Handler, Outcome, WorkerOptions};
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_millis(300);

async fn storage(backend: &TestBackend) -> Storage {
    let migrations = Migrations {
        sqlite: sqlx::migrate!("tests/migrations/sqlite"),
        postgres: sqlx::migrate!("tests/migrations/postgres"),
    };
    Storage::open(&backend.storage, "kitworker", migrations).await.unwrap()
}

/// Handles entries by what their payload says, and records every delivery it saw.
#[derive(Default)]
struct Scripted {
    seen: Mutex<Vec<(String, u64)>>,
}

impl Scripted {
    fn deliveries(&self) -> HashMap<String, Vec<u64>> {
        let mut out: HashMap<String, Vec<u64>> = HashMap::new();
        for (payload, deliveries) in self.seen.lock().unwrap().iter() {
            out.entry(payload.clone()).or_default().push(*deliveries);
        }
        out
    }
}

#[async_trait::async_trait]
impl Handler for Scripted {
    async fn handle(&self, batch: &[Delivery], _stop: &CancellationToken) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for delivery in batch {
            let payload = String::from_utf8(delivery.payload.clone()).unwrap();
            self.seen.lock().unwrap().push((payload.clone(), delivery.deliveries));
            outcomes.push(match payload.as_str() {
                "flaky" if delivery.deliveries == 1 => Outcome::Retry(Duration::from_millis(50)),
                "bad" => Outcome::DeadLetter("bad input".into()),
                "slow" => {
                    tokio::time::sleep(LEASE * 4).await;
                    Outcome::Done
                }
                "poison" => Outcome::Retry(Duration::ZERO),
                "panic" => panic!("the handler panicked on purpose"),
                _ => Outcome::Done,
            });
        }
        outcomes
    }
}

async fn until_empty(queue: &Arc<dyn WorkQueue>, label: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while queue.len().await.unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{label}: the queue never drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_entry_is_settled_as_its_handler_says() {
    for backend in testing::backends() {
        let label = backend.label;
        let options = QueueOptions {
            lease: LEASE,
            max_deliveries: 3,
            ..QueueOptions::default()
        };
        let queue = storage(&backend).await.queue("scripted", options);
        let payloads = ["ok-1", "flaky", "bad", "slow", "poison", "panic", "ok-2", "ok-3"];
        queue
            .push_many(&payloads.iter().map(|p| p.as_bytes().to_vec()).collect::<Vec<_>>())
            .await
            .unwrap();
        let handler = Arc::new(Scripted::default());
        let stop = CancellationToken::new();
        let options = WorkerOptions {
            concurrency: 3,
            wait: Duration::from_millis(100),
            ..WorkerOptions::new(worker::consumer_name())
        };
        let pool = tokio::spawn(worker::run(queue.clone(), handler.clone(), options, stop.clone()));
        until_empty(&queue, label).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), pool)
            .await
            .expect("the pool stops")
            .unwrap();

        let seen = handler.deliveries();
        for once in ["ok-1", "ok-2", "ok-3", "bad"] {
            assert_eq!(seen[once], [1], "{label}: {once}");
        }
        assert_eq!(seen["flaky"], [1, 2], "{label}: retried once, then done");
        assert_eq!(
            seen["slow"],
            [1],
            "{label}: four leases of work, kept in hand by extension"
        );
        assert_eq!(seen["poison"], [1, 2, 3], "{label}: retried up to max_deliveries");
        assert_eq!(seen["panic"], [1, 2, 3], "{label}: a panic is a failure of its batch");

        let letters = queue.dead_letters(10).await.unwrap();
        let mut letters: Vec<(String, String, u64)> = letters
            .into_iter()
            .map(|l| (String::from_utf8(l.payload).unwrap(), l.error, l.deliveries))
            .collect();
        letters.sort();
        let expected = [
            ("bad", "bad input", 1),
            ("panic", "delivered 3 times without being acked", 3),
            ("poison", "delivered 3 times without being acked", 3),
        ]
        .map(|(p, e, n)| (p.to_string(), e.to_string(), n));
        assert_eq!(letters, expected, "{label}");
    }
}

/// Says when it has a batch, waits for `stop`, then gives its entries back.
#[derive(Default)]
struct UntilStopped {
    started: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl Handler for UntilStopped {
    async fn handle(&self, batch: &[Delivery], stop: &CancellationToken) -> Vec<Outcome> {
        self.started.notify_one();
        stop.cancelled().await;
        vec![Outcome::Retry(Duration::ZERO); batch.len()]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_worker_gives_its_work_back_at_once() {
    for backend in testing::backends() {
        let label = backend.label;
        let lease = Duration::from_secs(20);
        let options = QueueOptions {
            lease,
            ..QueueOptions::default()
        };
        let queue = storage(&backend).await.queue("handover", options);
        let id = queue.push(b"job").await.unwrap();
        let stop = CancellationToken::new();
        let options = WorkerOptions {
            wait: Duration::from_millis(100),
            ..WorkerOptions::new("leaving")
        };
        let handler = Arc::new(UntilStopped::default());
        let pool = tokio::spawn(worker::run(queue.clone(), handler.clone(), options, stop.clone()));
        tokio::time::timeout(Duration::from_secs(10), handler.started.notified())
            .await
            .expect("the worker takes the entry");
        assert!(
            queue.pull("other", 1, Duration::ZERO).await.unwrap().is_empty(),
            "{label}: in hand"
        );
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), pool)
            .await
            .expect("the worker stops")
            .unwrap();
        let started = tokio::time::Instant::now();
        let got = queue.pull("other", 1, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got.len(), 1, "{label}");
        assert_eq!((got[0].id.as_str(), got[0].deliveries), (id.as_str(), 2), "{label}");
        assert!(
            started.elapsed() < lease / 4,
            "{label}: given back, not left to its lease: {:?}",
            started.elapsed()
        );
        queue.ack(&[id]).await.unwrap();
    }
}
