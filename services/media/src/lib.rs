//! The media service: images (metadata and review state in SQL, bytes in the object store),
//! and stored objects such as snapshots.

mod api;
mod objects;
mod store;

use std::future::Future;

use outpost_api::media::v1::media_service_server::MediaServiceServer;
use outpost_kit::config::Config;
use outpost_kit::server::GrpcServer;
use outpost_kit::storage::{Migrations, Storage};
use tokio::net::TcpListener;

pub use objects::{MAX_OBJECT_BYTES, ObjectStore};

/// The service's migrations (the same DDL on both backends).
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: sqlx::migrate!(),
        postgres: sqlx::migrate!(),
    }
}

/// Serves media on its configured address until `shutdown` resolves.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let listener = outpost_kit::server::bind("OUTPOST_MEDIA_ADDR", config.media_addr).await?;
    serve_on(config, listener, shutdown).await
}

/// Serves media on `listener` until `shutdown` resolves.
pub async fn serve_on(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let storage = Storage::start(&config.storage(), "media", migrations()).await?;
    let objects = storage.objects().await?;
    let dependencies = storage.dependencies();
    let (db, bucket) = (storage.db.clone(), objects.clone());
    let service = api::MediaApi::new(ObjectStore::new(storage.db.clone(), objects));
    let grpc = MediaServiceServer::new(service)
        .max_decoding_message_size(MAX_OBJECT_BYTES + 64 * 1024)
        .max_encoding_message_size(MAX_OBJECT_BYTES + 64 * 1024);
    GrpcServer::new(outpost_api::names::MEDIA)
        .token(config.token())
        .add_service(grpc)
        .dependencies(dependencies)
        .starting_until(move || db.state().and_then(|()| bucket.state()))
        .serve(listener, shutdown)
        .await
}
