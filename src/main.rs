//! `outpost`: runs the whole mesh (default) or one service. See `outpost --help`.

use clap::Parser;

/// mimalloc: the mesh allocates many small buffers across threads, where glibc's allocator
/// spent a fifth of the CPU of the ingest benchmark. Built without transparent huge pages,
/// which otherwise doubled the idle memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = outpost::Cli::parse();
    if let Err(err) = cli.config.validate() {
        eprintln!("error: {err}");
        return std::process::ExitCode::from(2);
    }
    // Spans are exported as their service's (`outpost-media`, …); the role names the rest.
    let role = format!("{:?}", cli.role).to_lowercase();
    let _guard = match outpost_kit::observability::init(&role, &cli.config.log) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("error: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    // Draining is bounded: a client that keeps a stream or a slow upload open does not hold
    // the process past its drain time (and the pod past its grace period).
    let drain = std::time::Duration::from_secs(cli.drain_seconds);
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        outpost_kit::observability::shutdown_signal().await;
        let _ = signalled.send(());
    };
    let deadline = async move {
        match on_signal.await {
            Ok(()) => tokio::time::sleep(drain).await,
            Err(_) => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = outpost::run(cli, shutdown) => result,
        () = deadline => Err(anyhow::anyhow!(
            "in-flight work did not finish within {drain:?} of the stop signal (OUTPOST_DRAIN_SECONDS); exiting anyway"
        )),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
