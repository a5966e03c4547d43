//! The media service: images (metadata and review state in SQL, bytes and thumbnails in the
//! object store once per content hash), the review-click group-commit writer, and stored
//! objects such as snapshots.

mod api;
pub mod images;
mod names;
mod objects;
pub mod review;
mod store;
pub mod testing;
pub mod thumbnails;
pub mod upload;

use std::future::Future;
use std::time::Duration;

use outpost_api::media::v1::media_service_server::MediaServiceServer;
use outpost_kit::config::Config;
use outpost_kit::server::GrpcServer;
use outpost_kit::storage::{Migrations, Storage};
use tokio::net::TcpListener;

pub use objects::{MAX_OBJECT_BYTES, ObjectStore};

/// The media service's own settings.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct MediaConfig {
    /// Largest image an upload may carry, in bytes (enforced while the upload arrives).
    #[arg(long, env = "OUTPOST_MAX_IMAGE_BYTES", default_value = "33554432", value_parser = clap::value_parser!(u64).range(1024..=1_073_741_824))]
    pub max_image_bytes: u64,
    /// Most pixels (width × height, read from the header) an image may have; more is refused
    /// before decoding.
    #[arg(long, env = "OUTPOST_MAX_IMAGE_PIXELS", default_value = "50000000", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub max_image_pixels: u64,
    /// Most review clicks written in one batch (one SQL statement).
    #[arg(long, env = "OUTPOST_REVIEW_BATCH_MAX", default_value = "1000", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub review_batch_max: u64,
    /// How long a batch of review clicks waits for more after its first, at most, in milliseconds
    /// (it closes sooner once clicks stop arriving).
    #[arg(long, env = "OUTPOST_REVIEW_BATCH_MS", default_value = "10", value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub review_batch_ms: u64,
}

impl Default for MediaConfig {
    /// The defaults, as when no flag or variable is set.
    fn default() -> Self {
        Self {
            max_image_bytes: 32 << 20,
            max_image_pixels: 50_000_000,
            review_batch_max: 1000,
            review_batch_ms: 10,
        }
    }
}

/// The service's migrations (the same DDL on both backends).
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: sqlx::migrate!(),
        postgres: sqlx::migrate!(),
    }
}

/// Serves media on its configured address until `shutdown` resolves.
pub async fn serve(
    config: Config,
    media: MediaConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let listener = outpost_kit::server::bind("OUTPOST_MEDIA_ADDR", config.media_addr).await?;
    serve_on(config, media, listener, shutdown).await
}

/// Serves media on `listener` until `shutdown` resolves; then writes the review clicks still
/// queued.
pub async fn serve_on(
    config: Config,
    media: MediaConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let storage = Storage::start(&config.storage(), "media", migrations()).await?;
    let objects = storage.objects().await?;
    let dependencies = storage.dependencies();
    let (db, bucket) = (storage.db.clone(), objects.clone());
    let images = images::Images::new(
        storage.db.clone(),
        objects.clone(),
        thumbnails::Thumbnailer::per_cpu(),
        usize::try_from(media.max_image_bytes).unwrap_or(usize::MAX),
        media.max_image_pixels,
    );
    let reviews = review::Reviews::new(
        storage.db.clone(),
        usize::try_from(media.review_batch_max).unwrap_or(usize::MAX),
        Duration::from_millis(media.review_batch_ms),
    );
    let service = api::MediaApi::new(ObjectStore::new(storage.db.clone(), objects), images, reviews.clone());
    let grpc = MediaServiceServer::new(service)
        .max_decoding_message_size(MAX_OBJECT_BYTES + 64 * 1024)
        .max_encoding_message_size(MAX_OBJECT_BYTES + 64 * 1024);
    let served = GrpcServer::new(outpost_api::names::MEDIA)
        .token(config.token())
        .add_service(grpc)
        .dependencies(dependencies)
        .starting_until(move || db.state().and_then(|()| bucket.state()))
        .serve(listener, shutdown)
        .await;
    // In-flight calls are answered; clicks still queued are written before the process ends.
    reviews.close().await;
    served
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        media: MediaConfig,
    }

    #[test]
    fn defaults_match_and_ranges_name_the_setting() {
        assert_eq!(Args::try_parse_from(["outpost"]).unwrap().media, MediaConfig::default());
        for (flag, value) in [
            ("--max-image-bytes", "10"),
            ("--max-image-pixels", "0"),
            ("--review-batch-max", "0"),
            ("--review-batch-ms", "5000"),
        ] {
            let err = Args::try_parse_from(["outpost", flag, value]).err().unwrap();
            assert!(err.to_string().contains(flag), "{err}");
        }
    }
}
