//! The plotting service: plot jobs (SQL), their queue and worker pool, and rendered plots in
//! the object store. Plots are drawn from telemetry's data, read over gRPC.

mod api;
mod charts;
pub mod fields;
pub mod jobs;
pub mod render;
pub mod spec;
pub mod store;
mod telemetry;
pub mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use outpost_api::plotting::v1::plotting_service_server::PlottingServiceServer;
use outpost_kit::config::Config;
use outpost_kit::server::GrpcServer;
use outpost_kit::storage::{Migrations, QueueOptions, Storage};
use outpost_kit::worker::WorkerOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The plotting service's own settings.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct PlottingConfig {
    /// Plot jobs rendered at once by this process (default: the number of cores).
    #[arg(long, env = "OUTPOST_PLOT_WORKERS", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub plot_workers: Option<u64>,
    /// Seconds a worker holds a job before another may take it over, unless it renews the
    /// hold (it does while it renders): how soon a stopped worker's job is rendered again.
    #[arg(long, env = "OUTPOST_PLOT_LEASE_SECONDS", default_value = "10", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub plot_lease_seconds: u64,
}

impl Default for PlottingConfig {
    /// The defaults, as when no flag or variable is set.
    fn default() -> Self {
        Self {
            plot_workers: None,
            plot_lease_seconds: 10,
        }
    }
}

impl PlottingConfig {
    /// Workers to run.
    pub fn workers(&self) -> usize {
        self.plot_workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n as usize,
        )
    }

    /// The options of the job queue.
    pub fn queue_options(&self) -> QueueOptions {
        QueueOptions {
            lease: Duration::from_secs(self.plot_lease_seconds),
            // The job row counts attempts and fails the job; this only catches what never
            // reaches it.
            max_deliveries: 20,
            ..QueueOptions::default()
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

/// The plot jobs of `config`'s storage and telemetry, without workers (for tools and tests).
pub async fn open_jobs(config: &Config, plotting: &PlottingConfig, storage: &Storage) -> anyhow::Result<jobs::Jobs> {
    let telemetry = telemetry::Telemetry::connect(&config.telemetry_endpoint(), config.rpc_timeout(), &config.token())?;
    let objects = storage.objects().await?;
    Ok(jobs::Jobs::new(
        store::Store::new(storage.db.clone()),
        storage.queue(jobs::QUEUE, plotting.queue_options()),
        objects,
        telemetry,
    ))
}

/// Serves plotting on its configured address until `shutdown` resolves.
pub async fn serve(
    config: Config,
    plotting: PlottingConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let listener = outpost_kit::server::bind("OUTPOST_PLOTTING_ADDR", config.plotting_addr).await?;
    serve_on(config, plotting, listener, shutdown).await
}

/// Serves plotting on `listener`, with its workers, until `shutdown` resolves; then lets the
/// workers finish the jobs in hand.
pub async fn serve_on(
    config: Config,
    plotting: PlottingConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let storage = Storage::start(&config.storage(), "plotting", migrations()).await?;
    let jobs = open_jobs(&config, &plotting, &storage).await?;
    // Redis carries the job queue: without it, new jobs cannot be queued, but jobs,
    // their states and their plots are still served, so plotting is degraded, not unready.
    let mut dependencies = storage.dependencies_optional(&[outpost_kit::storage::dependency::REDIS]);
    dependencies.push(jobs.telemetry.dependency().optional());
    let stop = CancellationToken::new();
    let mut options = WorkerOptions::new(outpost_kit::worker::consumer_name());
    options.concurrency = plotting.workers();
    let workers = tokio::spawn(outpost_kit::worker::run(
        jobs.queue.clone(),
        Arc::new(worker::Renderer { jobs: jobs.clone() }),
        options,
        stop.clone(),
    ));
    let (db, bucket) = (storage.db.clone(), jobs.objects.clone());
    let served = GrpcServer::new(outpost_api::names::PLOTTING)
        .token(config.token())
        .add_service(PlottingServiceServer::new(api::PlottingApi::new(jobs)))
        .dependencies(dependencies)
        .starting_until(move || db.state().and_then(|()| bucket.state()))
        .serve(listener, shutdown)
        .await;
    stop.cancel();
    let _ = workers.await;
    served
}
