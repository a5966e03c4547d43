//! The plotting service: plot jobs (SQL), their queue and worker pool, and rendered plots in
//! the object store.

mod api;
mod jobs;

use std::future::Future;

use outpost_api::plotting::v1::plotting_service_server::PlottingServiceServer;
use outpost_kit::config::Config;
use outpost_kit::server::GrpcServer;
use outpost_kit::storage::{Migrations, Storage};
use tokio::net::TcpListener;

/// The service's migrations (the same DDL on both backends).
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: sqlx::migrate!(),
        postgres: sqlx::migrate!(),
    }
}

/// Serves plotting on its configured address until `shutdown` resolves.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let listener = outpost_kit::server::bind("OUTPOST_PLOTTING_ADDR", config.plotting_addr).await?;
    serve_on(config, listener, shutdown).await
}

/// Serves plotting on `listener` until `shutdown` resolves.
pub async fn serve_on(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let storage = Storage::start(&config.storage(), "plotting", migrations()).await?;
    let service = api::PlottingApi::new(jobs::Jobs::new(storage.db.clone()));
    let db = storage.db.clone();
    GrpcServer::new(outpost_api::names::PLOTTING)
        .token(config.token())
        .add_service(PlottingServiceServer::new(service))
        .dependencies(storage.dependencies())
        .starting_until(move || db.state())
        .serve(listener, shutdown)
        .await
}
