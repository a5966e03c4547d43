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
    let service = match cli.role {
        outpost::Role::All => "outpost".to_string(),
        role => format!("outpost-{}", format!("{role:?}").to_lowercase()),
    };
    let _guard = match outpost_kit::observability::init(&service, &cli.config.log) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("error: {err:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match outpost::run(cli, outpost_kit::observability::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
