//! Queued work survives an abrupt stop: a real child process pushes work, finishes part of it,
//! holds part in hand, and is killed with SIGKILL (nothing flushed, nothing shut down); after
//! a restart a worker does all the rest, on every test backend.
//!
//! The child is this test binary run again with `OUTPOST_QUEUE_CHILD_DIR` set.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_kit::config::StorageConfig;
use outpost_kit::storage::{Delivery, Migrations, QueueOptions, Storage};
use outpost_kit::worker::{self, Handler, Outcome, WorkerOptions};
use tokio_util::sync::CancellationToken;

const TEST: &str = "queued_work_survives_a_sigkill_of_its_process";
const CHILD_DIR: &str = "OUTPOST_QUEUE_CHILD_DIR";
const CHILD_NAMESPACE: &str = "OUTPOST_QUEUE_CHILD_NAMESPACE";
const CHILD_POSTGRES: &str = "OUTPOST_QUEUE_CHILD_POSTGRES";
const CHILD_REDIS: &str = "OUTPOST_QUEUE_CHILD_REDIS";
const LEASE: Duration = Duration::from_secs(1);
const JOBS: usize = 30;

fn options() -> QueueOptions {
    QueueOptions {
        lease: LEASE,
        ..QueueOptions::default()
    }
}

async fn storage(config: &StorageConfig) -> Storage {
    let migrations = Migrations {
        sqlite: sqlx::migrate!("tests/migrations/sqlite"),
        postgres: sqlx::migrate!("tests/migrations/postgres"),
    };
    Storage::open(config, "kitcrash", migrations).await.unwrap()
}

/// The child: pushes the jobs (each acknowledged by `push` before the next), does the first
/// five, takes five more in hand, says so on stdout, and waits to be killed.
async fn child(config: StorageConfig) {
    let queue = storage(&config).await.queue("jobs", options());
    for i in 0..JOBS {
        queue.push(format!("job-{i}").as_bytes()).await.unwrap();
    }
    let done = queue.pull("child", 5, Duration::from_secs(5)).await.unwrap();
    queue
        .ack(&done.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    let in_hand = queue.pull("child", 5, Duration::from_secs(5)).await.unwrap();
    let payloads = |ds: &[Delivery]| {
        ds.iter()
            .map(|d| String::from_utf8(d.payload.clone()).unwrap())
            .collect::<Vec<_>>()
            .join(",")
    };
    println!("DONE={}", payloads(&done));
    println!("IN_HAND={}", payloads(&in_hand));
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// Records what it handled, with the delivery number.
#[derive(Default)]
struct Recorder {
    seen: Mutex<BTreeMap<String, Vec<u64>>>,
}

#[async_trait::async_trait]
impl Handler for Recorder {
    async fn handle(&self, batch: &[Delivery], _stop: &CancellationToken) -> Vec<Outcome> {
        let mut seen = self.seen.lock().unwrap();
        for delivery in batch {
            let payload = String::from_utf8(delivery.payload.clone()).unwrap();
            seen.entry(payload).or_default().push(delivery.deliveries);
        }
        vec![Outcome::Done; batch.len()]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_survives_a_sigkill_of_its_process() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let config = StorageConfig {
            data_dir: PathBuf::from(dir),
            database_url: std::env::var(CHILD_POSTGRES).ok(),
            redis_url: std::env::var(CHILD_REDIS).ok(),
            s3: None,
            namespace: std::env::var(CHILD_NAMESPACE).unwrap(),
            acquire_timeout: outpost_kit::config::MAX_ACQUIRE_TIMEOUT,
        };
        return child(config).await;
    }
    for backend in outpost_kit::testing::backends() {
        let label = backend.label;
        let config = backend.storage.clone();
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", TEST, "--nocapture", "--test-threads", "1"])
            .env(CHILD_DIR, &config.data_dir)
            .env(CHILD_NAMESPACE, &config.namespace)
            .env_remove(CHILD_POSTGRES)
            .env_remove(CHILD_REDIS)
            .stdout(Stdio::piped());
        if let Some(url) = &config.database_url {
            command.env(CHILD_POSTGRES, url);
        }
        if let Some(url) = &config.redis_url {
            command.env(CHILD_REDIS, url);
        }
        let mut process = command.spawn().unwrap();
        let stdout = process.stdout.take().unwrap();
        let said = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut field = |prefix: &str| loop {
                let line = lines.next().expect("the child says what it did").unwrap();
                // The harness prints its own words before the child's on the same line.
                if let Some((_, rest)) = line.split_once(prefix) {
                    return rest.split(',').map(str::to_string).collect::<Vec<_>>();
                }
            };
            (field("DONE="), field("IN_HAND="))
        });
        let Ok(said) = tokio::time::timeout(Duration::from_secs(60), said).await else {
            process.kill().unwrap();
            panic!("{label}: the child said nothing within a minute");
        };
        let (done, in_hand) = said.unwrap();
        assert_eq!((done.len(), in_hand.len()), (5, 5), "{label}");
        // SIGKILL: no shutdown, no flush.
        process.kill().unwrap();
        process.wait().unwrap();

        let queue = storage(&config).await.queue("jobs", options());
        assert_eq!(
            queue.len().await.unwrap(),
            (JOBS - 5) as u64,
            "{label}: nothing pushed was lost"
        );
        let recorder = Arc::new(Recorder::default());
        let stop = CancellationToken::new();
        let options = WorkerOptions {
            batch: 10,
            wait: Duration::from_millis(100),
            ..WorkerOptions::new(worker::consumer_name())
        };
        let pool = tokio::spawn(worker::run(queue.clone(), recorder.clone(), options, stop.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !queue.is_empty().await.unwrap() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{label}: the work was never done"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        pool.await.unwrap();

        let seen = recorder.seen.lock().unwrap().clone();
        let expected: BTreeMap<String, Vec<u64>> = (0..JOBS)
            .map(|i| format!("job-{i}"))
            .filter(|job| !done.contains(job))
            .map(|job| {
                let deliveries = if in_hand.contains(&job) { 2 } else { 1 };
                (job, vec![deliveries])
            })
            .collect();
        assert_eq!(
            seen, expected,
            "{label}: every job not done is done once after the restart; the one in hand a second time"
        );
    }
}
