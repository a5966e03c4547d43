//! The telemetry service: devices, sensors, readings, the current-value view and aggregates
//! with their cache; snapshots of the current values go to media; rover tracks with their
//! waypoints and traverse.

#![warn(missing_docs)]

pub mod aggregate;
mod api;
pub mod current_values;
pub mod devices;
mod metrics;
pub mod names;
pub mod readings;
pub mod sensor_keys;
pub mod series;
pub mod snapshot;
mod store;
mod track_messages;
pub mod tracks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use outpost_api::media::v1::media_service_client::MediaServiceClient;
use outpost_api::telemetry::v1::telemetry_service_server::TelemetryServiceServer;
use outpost_kit::config::Config;
use outpost_kit::server::GrpcServer;
use outpost_kit::storage::{Migrations, Storage, dependency};
use tokio::net::TcpListener;

pub use readings::{Reading, Readings};
pub use store::{BucketRow, CurrentFilter, SensorRow};

/// Largest gRPC message the service takes: a full batch of readings with long ids.
const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// The widest time span of a window or a bucket: about a hundred years, in seconds.
pub const MAX_SPAN_SECONDS: i64 = 100 * 365 * 86_400;

/// Settings of the telemetry service.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Seconds an aggregate stays cached (0: not cached).
    #[arg(long, env = "OUTPOST_AGGREGATE_CACHE_SECONDS", default_value = "300", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub aggregate_cache_seconds: u64,
    /// Default window of AggregateReadings, seconds: devices whose current value is older are left out.
    #[arg(long, env = "OUTPOST_AGGREGATE_WINDOW_SECONDS", default_value = "3600", value_parser = clap::value_parser!(u64).range(1..=MAX_SPAN_SECONDS as u64))]
    pub aggregate_window_seconds: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            aggregate_cache_seconds: 300,
            aggregate_window_seconds: 3600,
        }
    }
}

/// The service's migrations, per backend.
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: sqlx::migrate!("migrations/sqlite"),
        postgres: sqlx::migrate!("migrations/postgres"),
    }
}

/// Serves telemetry on its configured address until `shutdown` resolves.
pub async fn serve(
    config: Config,
    telemetry: TelemetryConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let listener = outpost_kit::server::bind("OUTPOST_TELEMETRY_ADDR", config.telemetry_addr).await?;
    serve_on(config, telemetry, listener, shutdown).await
}

/// Serves telemetry on `listener` until `shutdown` resolves.
pub async fn serve_on(
    config: Config,
    telemetry: TelemetryConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    metrics::init();
    let storage = Storage::start(&config.storage(), "telemetry", migrations()).await?;
    let media_channel = outpost_kit::client::channel(&config.media_endpoint(), config.rpc_timeout())?;
    let media = MediaServiceClient::new(outpost_kit::client::outbound(
        media_channel.clone(),
        "telemetry",
        &config.token(),
    ));
    let keys = Arc::new(sensor_keys::SensorKeys::default());
    let readings = Readings::with_keys(storage.db.clone(), keys.clone());
    let devices = devices::Devices::new(storage.db.clone(), keys);
    let aggregates = aggregate::Aggregates::new(
        storage.db.clone(),
        storage.cache(),
        Duration::from_secs(telemetry.aggregate_cache_seconds),
        telemetry.aggregate_window_seconds as i64 * 1_000_000,
    );
    let snapshots = snapshot::Snapshots::new(storage.db.clone(), media, config.rpc_timeout());
    let tracks = tracks::Tracks::new(storage.db.clone());
    let service = api::TelemetryApi::new(readings.clone(), devices, aggregates, snapshots, tracks);
    let grpc = TelemetryServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Redis is only the aggregate cache, and media only keeps snapshots: without either,
    // telemetry still serves (degraded).
    let mut dependencies = storage.dependencies_optional(&[dependency::REDIS]);
    dependencies
        .push(outpost_kit::client::peer_dependency("media", media_channel, outpost_api::names::MEDIA).optional());
    let db = storage.db.clone();
    let result = GrpcServer::new(outpost_api::names::TELEMETRY)
        .token(config.token())
        .add_service(grpc)
        .dependencies(dependencies)
        .starting_until(move || db.state())
        .serve(listener, shutdown)
        .await;
    // Calls have drained: whatever is still queued is committed before the process ends.
    readings.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        telemetry: TelemetryConfig,
    }

    #[test]
    fn defaults_match_and_ranges_name_the_setting() {
        let parsed = Args::try_parse_from(["outpost"]).unwrap().telemetry;
        assert_eq!(parsed, TelemetryConfig::default());
        let parsed = Args::try_parse_from(["outpost", "--aggregate-cache-seconds", "0"]).unwrap();
        assert_eq!(parsed.telemetry.aggregate_cache_seconds, 0);
        let err = Args::try_parse_from(["outpost", "--aggregate-cache-seconds", "86401"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("--aggregate-cache-seconds"), "{err}");
        let err = Args::try_parse_from(["outpost", "--aggregate-window-seconds", "0"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("--aggregate-window-seconds"), "{err}");
    }
}
