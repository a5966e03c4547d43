//! Plot benchmarks.
//!
//! P3, render: a 10,000-point scatter drawn as a 1024×768 PNG by the plotting service's
//! renderer, against matplotlib (Agg) drawing the same points, title and labels to a PNG in the
//! same run. matplotlib is installed with pip when missing and timed inside its interpreter
//! (the interpreter's start and imports are left out). Median of the runs.
//!
//! P4, throughput: 1,000 distinct plot jobs (yaw against sol over different sol ranges) on
//! NASA's 586-waypoint track, submitted over gRPC to the whole mesh and timed until every job
//! has ended; on PostgreSQL + Redis, then on the embedded mode (SQLite, the SQL queue, a local
//! directory).
//!
//! `cargo bench --bench plots`. Settings: OUTPOST_BENCH_POSTGRES_URL, OUTPOST_BENCH_REDIS_URL,
//! OUTPOST_BENCH_RENDERS (50), OUTPOST_BENCH_JOBS (1000), OUTPOST_BENCH_SUBMITTERS (16),
//! OUTPOST_BENCH_PYTHON (python3), OUTPOST_BENCH_ONLY (`p3` or `p4`).

mod common;

use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt as _;
use outpost_api::plotting::v1::{self as pb, plotting_service_client::PlottingServiceClient};
use outpost_api::telemetry::v1::{self as telemetry, telemetry_service_client::TelemetryServiceClient};
use outpost_plotting::render::{Chart, XScale, render};
use outpost_plotting::spec::Format;

/// The same allocator as the `outpost` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use common::setting;

const POINTS: usize = 10_000;
const WAYPOINTS: &str = include_str!("../fixtures/rover/M20_waypoints.json");

/// The scatter's points: the same formula as the Python side.
fn points() -> Vec<(f64, f64)> {
    (0..POINTS)
        .map(|i| {
            let x = i as f64;
            let y = ((i * 7919) % 1000) as f64 / 10.0 + (x / 500.0).sin() * 20.0;
            (x, y)
        })
        .collect()
}

const MATPLOTLIB: &str = r##"
import io, json, math, sys, time
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
runs = int(sys.argv[1])
xs = [float(i) for i in range(10000)]
ys = [((i * 7919) % 1000) / 10.0 + math.sin(i / 500.0) * 20.0 for i in range(10000)]
times = []
size = 0
for _ in range(runs + 1):
    start = time.perf_counter()
    fig = plt.figure(figsize=(10.24, 7.68), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(xs, ys, s=9, c="#1f77b4")
    ax.set_title("10,000 points")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (deg)")
    ax.grid(True, color="#ebebeb")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    times.append(time.perf_counter() - start)
    size = len(buf.getvalue())
times = sorted(times[1:])
print(json.dumps({"median_ms": times[len(times) // 2] * 1000, "bytes": size, "version": matplotlib.__version__}))
"##;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn p3() -> anyhow::Result<()> {
    let runs: usize = setting("OUTPOST_BENCH_RENDERS", 50);
    let chart = Chart {
        title: "10,000 points".into(),
        x_label: "x (m)".into(),
        y_label: "y (deg)".into(),
        x_scale: XScale::Number,
        lines: Vec::new(),
        points: points(),
    };
    // One warm-up (the font is loaded once).
    let png = render(&chart, Format::Png, 1024, 768)?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        std::hint::black_box(render(&chart, Format::Png, 1024, 768)?);
        times.push(started.elapsed());
    }
    let ours = median(times);
    println!(
        "P3 render, 10,000-point scatter, PNG 1024x768: median {:.2} ms over {runs} ({} bytes)",
        ours.as_secs_f64() * 1000.0,
        png.len()
    );
    // Where the time goes: drawing the pixels, and encoding them.
    let (mut draws, mut encodes) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        let rgb = outpost_plotting::render::pixels(&chart, 1024, 768)?;
        draws.push(started.elapsed());
        let started = Instant::now();
        std::hint::black_box(outpost_plotting::render::png(&rgb, 1024, 768)?);
        encodes.push(started.elapsed());
    }
    println!(
        "P3 of which: drawing median {:.2} ms, PNG encoding median {:.2} ms",
        median(draws).as_secs_f64() * 1000.0,
        median(encodes).as_secs_f64() * 1000.0
    );

    let python: String = setting("OUTPOST_BENCH_PYTHON", "python3".to_string());
    let has = std::process::Command::new(&python)
        .args(["-c", "import matplotlib"])
        .status()?;
    if !has.success() {
        println!("P3 installing matplotlib with pip");
        let installed = std::process::Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "matplotlib"])
            .status()?;
        anyhow::ensure!(installed.success(), "pip could not install matplotlib");
    }
    let output = std::process::Command::new(&python)
        .args(["-c", MATPLOTLIB, &runs.to_string()])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "matplotlib failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let theirs_ms = theirs["median_ms"].as_f64().unwrap_or(f64::NAN);
    let ours_ms = ours.as_secs_f64() * 1000.0;
    println!(
        "P3 matplotlib {} (Agg), same plot: median {theirs_ms:.2} ms over {runs} ({} bytes)",
        theirs["version"].as_str().unwrap_or("?"),
        theirs["bytes"]
    );
    println!(
        "P3 result: {ours_ms:.2} ms (target at most 15 ms: {}), {:.1}x faster than matplotlib (target at least 10x: {})",
        if ours_ms <= 15.0 { "met" } else { "missed" },
        theirs_ms / ours_ms,
        if theirs_ms / ours_ms >= 10.0 { "met" } else { "missed" }
    );
    Ok(())
}

/// The fixture's waypoints, with the fields the bench's plots read.
fn waypoints() -> Vec<telemetry::Waypoint> {
    let doc: serde_json::Value = serde_json::from_str(WAYPOINTS).expect("the fixture parses");
    doc["features"]
        .as_array()
        .expect("features")
        .iter()
        .map(|f| {
            let p = &f["properties"];
            telemetry::Waypoint {
                sol: p["sol"].as_i64().unwrap_or_default() as i32,
                site: p["site"].as_i64().unwrap_or_default() as i32,
                drive: p["drive"].as_i64().unwrap_or_default() as i32,
                orientation: Some(telemetry::Orientation {
                    yaw: p["yaw"].as_f64().unwrap_or_default(),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect()
}

async fn p4(label: &str, postgres_redis: Option<(String, String)>) -> anyhow::Result<()> {
    let jobs: usize = setting("OUTPOST_BENCH_JOBS", 1000);
    let submitters: usize = setting("OUTPOST_BENCH_SUBMITTERS", 16);
    let namespace = format!("bench{:06x}_", rand::random::<u32>() & 0xff_ffff);
    let mut cli = outpost::Cli::try_parse_from(["outpost", "--log", "warn"])?;
    if let Some((postgres, redis)) = &postgres_redis {
        cli.config.database_url = Some(postgres.clone());
        cli.config.redis_url = Some(redis.clone());
    }
    cli.config.namespace = namespace.clone();
    cli.config.data_dir = std::env::temp_dir().join(&namespace);
    let data_dir = cli.config.data_dir.clone();
    let workers = cli.plotting.workers();
    let mesh = common::start_mesh(cli).await?;
    let config = mesh.config.clone();
    TelemetryServiceClient::connect(config.telemetry_endpoint())
        .await?
        .upsert_waypoints(telemetry::UpsertWaypointsRequest {
            parent: "tracks/perseverance".into(),
            waypoints: waypoints(),
        })
        .await?;
    let client = PlottingServiceClient::connect(config.plotting_endpoint()).await?;

    let started = Instant::now();
    let mut submits = futures::stream::iter((0..jobs).map(|i| {
        let mut client = client.clone();
        // Distinct ranges, every one with waypoints.
        let (start, end) = ((i % 1400) as i32, (i % 1400 + 200 + i / 1400) as i32);
        async move {
            let job = pb::PlotJob {
                spec: Some(pb::PlotSpec {
                    kind: Some(pb::plot_spec::Kind::Track(pb::TrackPlot {
                        track: "tracks/perseverance".into(),
                        x_field: "sol".into(),
                        y_field: "yaw".into(),
                        start_sol: start,
                        end_sol: end,
                    })),
                    title: String::new(),
                }),
                ..Default::default()
            };
            client
                .create_plot_job(pb::CreatePlotJobRequest { plot_job: Some(job) })
                .await
                .map(|r| r.into_inner().plot_job.unwrap_or_default().name)
        }
    }))
    .buffer_unordered(submitters);
    let mut names = std::collections::HashSet::new();
    while let Some(name) = submits.next().await {
        names.insert(name?);
    }
    let submitted = started.elapsed();
    anyhow::ensure!(names.len() == jobs, "{} distinct jobs of {jobs}", names.len());
    // Until nothing is queued or running.
    let count = |state: pb::PlotJobState| {
        let mut client = client.clone();
        async move {
            let mut n = 0;
            let mut token = String::new();
            loop {
                let page = client
                    .list_plot_jobs(pb::ListPlotJobsRequest {
                        page_size: 1000,
                        page_token: token,
                        state: state as i32,
                    })
                    .await?
                    .into_inner();
                n += page.plot_jobs.len();
                if page.next_page_token.is_empty() {
                    return anyhow::Ok(n);
                }
                token = page.next_page_token;
            }
        }
    };
    loop {
        let open = count(pb::PlotJobState::Queued).await? + count(pb::PlotJobState::Running).await?;
        if open == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "{open} jobs still open after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let succeeded = count(pb::PlotJobState::Succeeded).await?;
    let failed = count(pb::PlotJobState::Failed).await?;
    let rate = succeeded as f64 / elapsed.as_secs_f64();
    println!(
        "P4 {label}: {jobs} jobs ({workers} workers) submitted in {:.2} s, all ended in {:.2} s: {succeeded} succeeded, {failed} failed; {rate:.1} jobs/s (target at least 100: {})",
        submitted.as_secs_f64(),
        elapsed.as_secs_f64(),
        if rate >= 100.0 && succeeded == jobs {
            "met"
        } else {
            "missed"
        }
    );
    mesh.stop().await?;
    let _ = std::fs::remove_dir_all(data_dir);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let only: String = setting("OUTPOST_BENCH_ONLY", String::new());
    if only != "p4" {
        p3()?;
    }
    if only != "p3" {
        p4(
            "PostgreSQL + Redis",
            Some((common::postgres_url(), common::redis_url())),
        )
        .await?;
        p4("embedded", None).await?;
    }
    Ok(())
}
