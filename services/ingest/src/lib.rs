//! The ingest service: ingest runs (one load of one source, with progress, counts and errors),
//! the openSenseMap and NASA MMGIS sources (fetched, or uploaded), and readings taken from Redis pub/sub, a Redis stream with a
//! consumer group, and clients (`PushReadings`), all written to telemetry.

mod api;
pub mod boxes;
pub mod camera;
pub mod fetch;
pub mod leases;
pub mod messages;
pub mod metrics;
pub mod mmgis;
pub mod mmgis_features;
pub mod model;
pub mod opensensemap;
pub mod progress;
pub mod pubsub;
pub mod push;
pub mod reading;
pub mod runs;
mod store;
pub mod stream;
pub mod telemetry;
pub mod uploads;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use outpost_api::ingest::v1::ingest_service_server::IngestServiceServer;
use outpost_kit::config::Config;
use outpost_kit::server::GrpcServer;
use outpost_kit::storage::{Migrations, Storage};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use reading::{ParseError, Reading, parse_sensor_message};

/// Largest gRPC message ingest takes.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// How long in-flight runs and consumers get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Settings of the ingest service.
#[derive(clap::Args, Clone, Debug)]
pub struct IngestConfig {
    /// Base URL of openSenseMap (ingest fetches `{url}/boxes?full=true`, nothing else).
    #[arg(long, env = "OUTPOST_OPENSENSEMAP_URL", default_value = "https://api.opensensemap.org", value_parser = outpost_kit::config::parse_url)]
    pub opensensemap_url: String,
    /// Seconds between scheduled openSenseMap loads (the first at start), 0 = only on demand.
    #[arg(long, env = "OUTPOST_OPENSENSEMAP_INTERVAL_SECONDS", default_value = "0")]
    pub opensensemap_interval_seconds: u64,
    /// Redis pub/sub channel of sensor messages (prefixed by the namespace).
    #[arg(long, env = "OUTPOST_SENSOR_CHANNEL", default_value = "sensor_stream", value_parser = parse_redis_key)]
    pub sensor_channel: String,
    /// Redis stream of sensor messages, read by the consumer group `ingest` (prefixed by the
    /// namespace; entries that cannot be written go to `{stream}:dead`).
    #[arg(long, env = "OUTPOST_SENSOR_STREAM", default_value = "sensor_readings", value_parser = parse_redis_key)]
    pub sensor_stream: String,
    /// Seconds after a failed load before the same load (source and parameters) is started
    /// again; meanwhile CreateRun answers UNAVAILABLE naming the failed run. 0 = no spacing.
    #[arg(long, env = "OUTPOST_LOAD_RETRY_SECONDS", default_value = "30", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub load_retry_seconds: u64,
    /// Seconds a run belongs to the replica running it without a renewal (renewed every third
    /// of it); a run of a replica that stopped is taken over by another after this.
    #[arg(long, env = "OUTPOST_RUN_LEASE_SECONDS", default_value = "30", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub run_lease_seconds: u64,
    /// Base URL of the burrow camera's feed (ingest fetches `{url}/db/...` and frames under
    /// `{url}/hole-cam/static/`, nothing else).
    #[arg(long, env = "OUTPOST_CAMERA_FEED_URL", default_value = camera::DEFAULT_FEED_URL, value_parser = outpost_kit::config::parse_url)]
    pub camera_feed_url: String,
    /// The camera's time zone (an IANA name): a camera day is a calendar day there.
    #[arg(long, env = "OUTPOST_CAMERA_TIMEZONE", default_value = "UTC", value_parser = camera::day::parse_time_zone)]
    pub camera_timezone: String,
    /// Camera frames downloaded (and stored) at once, per day load.
    #[arg(long, env = "OUTPOST_CAMERA_CONCURRENCY", default_value = "8", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub camera_concurrency: u16,
    /// Base URL of NASA MMGIS layers (ingest fetches `{url}/M20_waypoints.json` and
    /// `{url}/M20_traverse.json`, nothing else).
    #[arg(long, env = "OUTPOST_MMGIS_URL", default_value = MMGIS_URL, value_parser = outpost_kit::config::parse_url)]
    pub mmgis_url: String,
}

/// The default MMGIS URL: NASA's Mars 2020 layers.
pub const MMGIS_URL: &str = "https://mars.nasa.gov/mmgis-maps/M20/Layers/json";

impl Default for IngestConfig {
    /// The defaults, as when no flag or variable is set.
    fn default() -> Self {
        IngestConfig {
            opensensemap_url: "https://api.opensensemap.org".into(),
            opensensemap_interval_seconds: 0,
            sensor_channel: "sensor_stream".into(),
            sensor_stream: "sensor_readings".into(),
            load_retry_seconds: 30,
            run_lease_seconds: 30,
            camera_feed_url: camera::DEFAULT_FEED_URL.into(),
            camera_timezone: "UTC".into(),
            camera_concurrency: 8,
            mmgis_url: MMGIS_URL.into(),
        }
    }
}

fn parse_redis_key(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 200 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be 1 to 200 characters without spaces".into());
    }
    Ok(value.to_string())
}

/// The service's migrations (the same DDL on both backends).
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: sqlx::migrate!(),
        postgres: sqlx::migrate!(),
    }
}

/// Serves ingest on its configured address until `shutdown` resolves.
pub async fn serve(
    config: Config,
    ingest: IngestConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let listener = outpost_kit::server::bind("OUTPOST_INGEST_ADDR", config.ingest_addr).await?;
    serve_on(config, ingest, listener, shutdown).await
}

/// Serves ingest on `listener` until `shutdown` resolves; then stops its consumers (flushing
/// what they hold) and gives its runs back for another replica.
pub async fn serve_on(
    config: Config,
    ingest: IngestConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    metrics::init();
    let storage = Storage::start(&config.storage(), "ingest", migrations()).await?;
    let telemetry = telemetry::Telemetry::connect(&config.telemetry_endpoint(), config.rpc_timeout(), &config.token())?;
    let osem = opensensemap::OpenSenseMap::new(&ingest.opensensemap_url, telemetry.clone())?;
    // This replica's name: the owner of its runs, its consumer name in the sensor stream.
    let replica = outpost_kit::worker::consumer_name();
    let options = runs::RunsOptions {
        owner: replica.clone(),
        lease: Duration::from_secs(ingest.run_lease_seconds),
        retry_spacing: Duration::from_secs(ingest.load_retry_seconds),
    };
    let media = camera::media::Media::connect(&config.media_endpoint(), config.rpc_timeout(), &config.token())?;
    let media_dependency = media.dependency();
    let camera = camera::Camera::new(&ingest, media)?;
    let objects = storage.objects().await?;
    let mmgis = mmgis::Mmgis::new(&ingest.mmgis_url, telemetry.clone(), objects.clone())?;
    let mut loaders = HashMap::from([opensensemap::loader(osem), camera::loader(camera)]);
    loaders.extend(mmgis.loaders());
    let runs = runs::Runs::new(storage.db.clone(), loaders, options);
    tracing::info!(replica = %replica, "ingest replica starting");

    let stop = CancellationToken::new();
    let mut background = JoinSet::new();
    // Once the database is there, and then every third of the run lease: renews this
    // replica's runs, and takes over those a stopped replica left (never failing them all).
    background.spawn(runs.clone().maintain(stop.clone()));
    if let Some(url) = storage.redis_url() {
        let channel = format!("{}{}", storage.namespace(), ingest.sensor_channel);
        background.spawn(pubsub::consume_channel(
            url.to_string(),
            channel,
            telemetry.clone(),
            stop.clone().cancelled_owned(),
        ));
    }
    if let Some(queue) = storage.stream_queue(&ingest.sensor_stream, stream::GROUP, stream::queue_options()) {
        let options = stream::worker_options(replica.clone());
        background.spawn(stream::consume(queue, telemetry.clone(), options, stop.clone()));
    }
    if ingest.opensensemap_interval_seconds > 0 {
        let every = Duration::from_secs(ingest.opensensemap_interval_seconds);
        background.spawn(opensensemap::schedule(
            runs.clone(),
            every,
            stop.clone().cancelled_owned(),
        ));
    }

    // Redis feeds the sensor consumers in the background: without it, ingest still serves
    // its calls (degraded). Telemetry is where every reading goes: required.
    // The object store only keeps uploaded files, and media only camera frames: without them,
    // ingest serves the rest.
    let mut dependencies = storage.dependencies_optional(&[
        outpost_kit::storage::dependency::REDIS,
        outpost_kit::storage::dependency::OBJECTS,
    ]);
    dependencies.push(telemetry.dependency());
    dependencies.push(media_dependency);
    // A pushed batch of 10000 readings with long names is more than tonic's default 4 MiB.
    let posts = messages::writer(telemetry.clone());
    let uploads = uploads::Uploads::new(runs.clone(), objects);
    let service =
        IngestServiceServer::new(api::IngestApi::new(runs.clone(), telemetry, posts.clone()).with_uploads(uploads))
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
    // Runs and consumers stop when the signal comes, so that watch streams end and the
    // server's drain of in-flight calls does not wait for them.
    let stopping = async {
        shutdown.await;
        stop.cancel();
        runs.stop_all();
    };
    let db = storage.db.clone();
    let result = GrpcServer::new(outpost_api::names::INGEST)
        .token(config.token())
        .add_service(service)
        .dependencies(dependencies)
        .starting_until(move || db.state())
        .serve(listener, stopping)
        .await;
    stop.cancel();
    // Calls have drained: posted messages still queued are written before the process ends.
    posts.close().await;
    runs.shutdown(SHUTDOWN_GRACE).await;
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while background.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!("ingest consumers did not stop in time");
    }
    result
}
