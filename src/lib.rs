//! The `outpost` binary's library: runs one service, the gateway, or the whole mesh in one
//! process (`all`, the default) with every service on its own loopback port, talking real gRPC.

use std::future::Future;

use clap::{Parser, ValueEnum};
use outpost_ingest::IngestConfig;
use outpost_kit::config::Config;
use outpost_kit::server::bind;
use outpost_media::MediaConfig;
use outpost_plotting::PlottingConfig;
use outpost_telemetry::TelemetryConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The four services and the gateway, in one process.
    All,
    /// The ingest service.
    Ingest,
    /// The media service.
    Media,
    /// The telemetry service.
    Telemetry,
    /// The plotting service.
    Plotting,
    /// The HTTP/JSON gateway and web UI.
    Gateway,
}

/// Outpost: field observations (camera, sensors, rover) collected, kept and shown.
#[derive(Parser, Clone, Debug)]
#[command(name = "outpost", version, about)]
pub struct Cli {
    /// What to run.
    #[arg(value_enum, env = "OUTPOST_ROLE", default_value = "all")]
    pub role: Role,
    #[command(flatten)]
    pub config: Config,
    #[command(flatten)]
    pub ingest: IngestConfig,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    #[command(flatten)]
    pub media: MediaConfig,
    #[command(flatten)]
    pub plotting: PlottingConfig,
    /// Seconds in-flight work may take to finish after SIGTERM or ctrl-c; then the process
    /// exits anyway (keep it below Kubernetes' terminationGracePeriodSeconds minus the preStop
    /// pause).
    #[arg(long, env = "OUTPOST_DRAIN_SECONDS", default_value = "20", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub drain_seconds: u64,
}

/// Listeners of the whole mesh, bound before anything starts.
pub struct Listeners {
    /// The gateway's.
    pub gateway: TcpListener,
    /// Ingest's.
    pub ingest: TcpListener,
    /// Media's.
    pub media: TcpListener,
    /// Telemetry's.
    pub telemetry: TcpListener,
    /// Plotting's.
    pub plotting: TcpListener,
}

impl Listeners {
    /// Binds every configured address (a taken port fails here, naming its setting).
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            gateway: bind("OUTPOST_GATEWAY_ADDR", config.gateway_addr).await?,
            ingest: bind("OUTPOST_INGEST_ADDR", config.ingest_addr).await?,
            media: bind("OUTPOST_MEDIA_ADDR", config.media_addr).await?,
            telemetry: bind("OUTPOST_TELEMETRY_ADDR", config.telemetry_addr).await?,
            plotting: bind("OUTPOST_PLOTTING_ADDR", config.plotting_addr).await?,
        })
    }

    /// The configuration with every address set to where its listener really is (for port 0).
    pub fn resolve(&self, mut config: Config) -> anyhow::Result<Config> {
        config.gateway_addr = self.gateway.local_addr()?;
        config.ingest_addr = self.ingest.local_addr()?;
        config.media_addr = self.media.local_addr()?;
        config.telemetry_addr = self.telemetry.local_addr()?;
        config.plotting_addr = self.plotting.local_addr()?;
        Ok(config)
    }
}

/// Runs `role` until `shutdown` resolves.
pub async fn run(cli: Cli, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    cli.config.validate()?;
    match cli.role {
        Role::All => {
            let listeners = Listeners::bind(&cli.config).await?;
            run_all_on(cli, listeners, shutdown).await
        }
        Role::Ingest => outpost_ingest::serve(cli.config, cli.ingest, shutdown).await,
        Role::Media => outpost_media::serve(cli.config, cli.media, shutdown).await,
        Role::Telemetry => outpost_telemetry::serve(cli.config, cli.telemetry, shutdown).await,
        Role::Plotting => outpost_plotting::serve(cli.config, cli.plotting, shutdown).await,
        Role::Gateway => {
            let listener = bind("OUTPOST_GATEWAY_ADDR", cli.config.gateway_addr).await?;
            outpost_gateway::serve(cli.config, listener, shutdown).await
        }
    }
}

/// Runs the whole mesh of `cli`'s settings on `listeners` until `shutdown` resolves or a part
/// fails (then the rest is shut down too).
pub async fn run_all_on(
    cli: Cli,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Cli {
        config,
        ingest,
        telemetry,
        media: media_config,
        plotting: plotting_config,
        ..
    } = cli;
    let config = listeners.resolve(config)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let Listeners {
        gateway,
        ingest: ingest_listener,
        media,
        telemetry: telemetry_listener,
        plotting,
    } = listeners;
    let mut parts = tokio::task::JoinSet::new();
    parts.spawn(named(
        "media",
        outpost_media::serve_on(config.clone(), media_config, media, stopped()),
    ));
    parts.spawn(named(
        "telemetry",
        outpost_telemetry::serve_on(config.clone(), telemetry, telemetry_listener, stopped()),
    ));
    parts.spawn(named(
        "ingest",
        outpost_ingest::serve_on(config.clone(), ingest, ingest_listener, stopped()),
    ));
    parts.spawn(named(
        "plotting",
        outpost_plotting::serve_on(config.clone(), plotting_config, plotting, stopped()),
    ));
    parts.spawn(named(
        "gateway",
        outpost_gateway::serve(config.clone(), gateway, stopped()),
    ));
    let announce = tokio::spawn(announce_when_listening(config.clone()));

    let stop_on_signal = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_on_signal.send(true);
    });
    let mut first_error = None;
    while let Some(joined) = parts.join_next().await {
        announce.abort();
        let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(err) = result {
            tracing::error!(error = format!("{err:#}"), "part of the mesh failed; stopping the rest");
            first_error.get_or_insert(err);
        }
        let _ = stop_tx.send(true);
    }
    first_error.map_or(Ok(()), Err)
}

/// Says "outpost is up" once every service answers gRPC health (serving or not: it listens
/// and reports what it waits for) and the gateway takes connections.
async fn announce_when_listening(config: Config) {
    let services = [
        (config.ingest_endpoint(), outpost_api::names::INGEST),
        (config.media_endpoint(), outpost_api::names::MEDIA),
        (config.telemetry_endpoint(), outpost_api::names::TELEMETRY),
        (config.plotting_endpoint(), outpost_api::names::PLOTTING),
    ];
    for (endpoint, service) in services {
        if outpost_kit::client::wait_answering(&endpoint, service).await.is_err() {
            return;
        }
    }
    while tokio::net::TcpStream::connect(config.gateway_addr).await.is_err() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tracing::info!("outpost is up: http://{}", config.gateway_addr);
    eprintln!("Outpost is up: http://{}/", config.gateway_addr);
}

async fn named(part: &'static str, future: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    future.await.map_err(|e| e.context(format!("{part} failed")))
}
