//! Test helpers: real telemetry and ingest on 127.0.0.1:0 over a test backend, a local HTTP
//! server for openSenseMap fixtures, and polling.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use outpost_api::ingest::v1::ingest_service_client::IngestServiceClient;
use outpost_api::telemetry::v1::{self as tpb, telemetry_service_client::TelemetryServiceClient};
use outpost_ingest::IngestConfig;
use outpost_kit::config::Config;
use outpost_kit::testing::{TestBackend, backends};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Telemetry and ingest serving one test backend; both stop when this is dropped.
pub struct Mesh {
    pub ingest: IngestServiceClient<Channel>,
    pub telemetry: TelemetryServiceClient<Channel>,
    pub ingest_addr: SocketAddr,
    pub telemetry_url: String,
    /// The configuration ingest runs with.
    pub config: Config,
    ingest_config: IngestConfig,
    ingest_stop: watch::Sender<bool>,
    ingest_task: JoinHandle<anyhow::Result<()>>,
    telemetry_stop: watch::Sender<bool>,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let _ = self.ingest_stop.send(true);
        let _ = self.telemetry_stop.send(true);
    }
}

fn until(stop: &watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = stop.subscribe();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Starts telemetry, then ingest (with `ingest` settings) pointing at it.
pub async fn start(backend: &TestBackend, ingest: IngestConfig) -> Mesh {
    start_with(backend, ingest, |_| {}).await
}

/// Like [`start`], with ingest's configuration changed by `tweak`.
pub async fn start_with(backend: &TestBackend, ingest: IngestConfig, tweak: impl FnOnce(&mut Config)) -> Mesh {
    let telemetry_stop = watch::Sender::new(false);
    let telemetry_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let telemetry_addr = telemetry_listener.local_addr().unwrap();
    let telemetry_url = format!("http://{telemetry_addr}");
    let mut config = backend.config();
    config.telemetry_addr = telemetry_addr;
    config.telemetry_url = Some(telemetry_url.clone());
    let telemetry_config = outpost_telemetry::TelemetryConfig::default();
    let telemetry_future = outpost_telemetry::serve_on(
        config.clone(),
        telemetry_config,
        telemetry_listener,
        until(&telemetry_stop),
    );
    tokio::spawn(async move { telemetry_future.await.expect("telemetry serves") });
    let telemetry = TelemetryServiceClient::new(connect(&telemetry_url, outpost_api::names::TELEMETRY).await);

    tweak(&mut config);
    let (ingest_stop, ingest_task, ingest_addr) = spawn_ingest(&config, &ingest).await;
    let ingest_client = serving_ingest(ingest_addr).await;
    Mesh {
        ingest: ingest_client,
        telemetry,
        ingest_addr,
        telemetry_url,
        config,
        ingest_config: ingest,
        ingest_stop,
        ingest_task,
        telemetry_stop,
    }
}

async fn spawn_ingest(
    config: &Config,
    ingest: &IngestConfig,
) -> (watch::Sender<bool>, JoinHandle<anyhow::Result<()>>, SocketAddr) {
    let stop = watch::Sender::new(false);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = config.clone();
    config.ingest_addr = addr;
    let task = tokio::spawn(outpost_ingest::serve_on(config, ingest.clone(), listener, until(&stop)));
    (stop, task, addr)
}

impl Mesh {
    /// Shuts ingest down gracefully and waits until it stopped.
    pub async fn stop_ingest(&mut self) {
        let _ = self.ingest_stop.send(true);
        (&mut self.ingest_task)
            .await
            .expect("ingest ran")
            .expect("ingest stopped cleanly");
    }

    /// Stops ingest as a crash would: mid-flight, with no shutdown.
    pub async fn crash_ingest(&mut self) {
        self.ingest_task.abort();
        let _ = (&mut self.ingest_task).await;
    }

    /// Starts ingest again (on a new port) over the same storage.
    pub async fn restart_ingest(&mut self) {
        let (stop, task, addr) = spawn_ingest(&self.config, &self.ingest_config).await;
        (self.ingest_stop, self.ingest_task, self.ingest_addr) = (stop, task, addr);
        self.ingest = serving_ingest(addr).await;
    }
}

/// Another ingest replica over the same storage and telemetry; stops when dropped.
pub struct Replica {
    pub ingest: IngestServiceClient<Channel>,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Replica {
    /// Stops the replica as a crash would.
    pub async fn crash(self) {
        self.task.abort();
    }
}

impl Mesh {
    /// Starts another ingest replica with the same settings.
    pub async fn start_replica(&self) -> Replica {
        let (stop, task, addr) = spawn_ingest(&self.config, &self.ingest_config).await;
        let ingest = serving_ingest(addr).await;
        Replica { ingest, stop, task }
    }
}

/// The external backends (Redis-only tests); with none configured, says that the test is
/// skipped (`OUTPOST_TEST_REQUIRE_BACKENDS=1` makes [`backends`] fail instead).
pub fn external_backends() -> Vec<TestBackend> {
    let external: Vec<TestBackend> = backends().into_iter().filter(TestBackend::is_external).collect();
    if external.is_empty() {
        eprintln!("note: skipped: this test needs Redis, the external backend (OUTPOST_TEST_* variables)");
    }
    external
}

/// A client of the ingest at `addr`, once it serves (its storage open and migrated: replicas
/// started one after the other never migrate an SQLite file at the same time).
async fn serving_ingest(addr: SocketAddr) -> IngestServiceClient<Channel> {
    IngestServiceClient::new(connect(&format!("http://{addr}"), outpost_api::names::INGEST).await)
}

/// A channel to `service` at `url`, once it serves (servers take a moment to open their storage).
async fn connect(url: &str, service: &str) -> Channel {
    outpost_kit::client::wait_serving(url, service, Duration::from_secs(30))
        .await
        .unwrap();
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string()).unwrap();
    for _ in 0..300 {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} does not answer");
}

/// The repository's fixtures directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A fixture file as JSON.
pub fn fixture_json(path: &str) -> serde_json::Value {
    let bytes = std::fs::read(fixtures().join(path)).unwrap_or_else(|e| panic!("reading fixture {path}: {e}"));
    serde_json::from_slice(&bytes).unwrap()
}

/// Serves `GET /boxes` with the fixture `sensebox/{file}` on 127.0.0.1; returns the base URL.
pub async fn serve_boxes(file: &str) -> String {
    let body = std::fs::read(fixtures().join("sensebox").join(file)).expect("reading the fixture");
    serve_boxes_with(move || {
        let body = body.clone();
        async move { body }
    })
    .await
}

/// Serves `GET /boxes` with whatever `answer` produces (it may wait); returns the base URL.
pub async fn serve_boxes_with<F, Fut>(answer: F) -> String
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Vec<u8>> + Send + 'static,
{
    let app = axum::Router::new().route(
        "/boxes",
        axum::routing::get(move || {
            let answer = answer.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], answer().await) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A URL where nothing listens.
pub async fn unreachable_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every reading of `device`'s `sensor`, oldest first.
pub async fn readings(telemetry: &TelemetryServiceClient<Channel>, device: &str, sensor: &str) -> Vec<tpb::Reading> {
    let mut client = telemetry.clone();
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = tpb::ListReadingsRequest {
            parent: format!("devices/{device}/sensors/{sensor}"),
            page_size: 10_000,
            page_token: page_token.clone(),
            ..Default::default()
        };
        let page = match client.list_readings(request).await {
            Ok(page) => page.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return out,
            Err(status) => panic!("listing readings of {device}/{sensor}: {status}"),
        };
        out.extend(page.readings);
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

/// Microseconds of a reading's time.
pub fn micros(reading: &tpb::Reading) -> i64 {
    let time = reading.time.expect("reading time");
    time.seconds * 1_000_000 + i64::from(time.nanos) / 1000
}

/// A value of ingest's `/metrics` (summed over series whose labels contain `labels`).
pub async fn metric(addr: SocketAddr, name: &str, labels: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with(name) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Makes telemetry's database fail on readings of `value` (a trigger that raises an error), as
/// a poison message would: telemetry answers INTERNAL for every write that holds one.
pub async fn poison_value(mesh: &Mesh, backend: &TestBackend, value: f64) {
    use outpost_kit::storage::{Backend, Db};
    // Telemetry answers once it has migrated its database.
    let request = tpb::ListDevicesRequest::default();
    eventually(Duration::from_secs(30), "telemetry to serve", || {
        let mut telemetry = mesh.telemetry.clone();
        let request = request.clone();
        async move { telemetry.list_devices(request).await.ok().map(|_| ()) }
    })
    .await;
    let db = Db::connect(&backend.storage, "telemetry", outpost_telemetry::migrations())
        .await
        .unwrap();
    let statements = match db.backend() {
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER poison BEFORE INSERT ON readings WHEN NEW.value = {value} \
             BEGIN SELECT RAISE(ABORT, 'poison reading'); END"
        )],
        Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.value = {value} THEN RAISE EXCEPTION 'poison reading'; END IF; RETURN NEW; END $$"
            ),
            "CREATE TRIGGER poison BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION poison()".to_string(),
        ],
    };
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(db.pool())
            .await
            .unwrap();
    }
}
