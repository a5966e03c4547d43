//! What the benchmarks share: their settings, the PostgreSQL and Redis they run on, and the
//! whole mesh in this process, every part on a 127.0.0.1:0 port.

#![allow(dead_code)] // Each benchmark uses a part.

use std::time::{Duration, Instant};

use outpost_kit::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The setting `name` from the environment, or `default`.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `OUTPOST_BENCH_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test.
pub fn postgres_url() -> String {
    setting(
        "OUTPOST_BENCH_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test".to_string(),
    )
}

/// `OUTPOST_BENCH_REDIS_URL`, default redis://127.0.0.1:6379.
pub fn redis_url() -> String {
    setting("OUTPOST_BENCH_REDIS_URL", "redis://127.0.0.1:6379".to_string())
}

/// A running mesh.
pub struct Mesh {
    /// The configuration with the real addresses.
    pub config: Config,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Starts the mesh of `cli` with every part on a 127.0.0.1:0 port, and waits (at most 60 s)
/// until the gateway's `/readyz` answers 200.
pub async fn start_mesh(mut cli: outpost::Cli) -> anyhow::Result<Mesh> {
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    for addr in [
        &mut cli.config.gateway_addr,
        &mut cli.config.ingest_addr,
        &mut cli.config.media_addr,
        &mut cli.config.telemetry_addr,
        &mut cli.config.plotting_addr,
    ] {
        *addr = any;
    }
    let listeners = outpost::Listeners::bind(&cli.config).await?;
    let config = listeners.resolve(cli.config.clone())?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(outpost::run_all_on(cli, listeners, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let ready = Instant::now();
    while http
        .get(format!("http://{}/readyz", config.gateway_addr))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        anyhow::ensure!(ready.elapsed() < Duration::from_secs(60), "the mesh is not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Mesh { config, stop, task })
}

impl Mesh {
    /// Stops the mesh and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}
