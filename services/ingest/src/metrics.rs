//! Prometheus metrics of ingest: malformed messages and ingested readings per source, stream
//! batch sizes, runs by final state.

use std::sync::LazyLock;

use outpost_kit::metrics::register;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};

/// Where readings come from, as the `source` label shows it.
pub mod source {
    /// Redis pub/sub.
    pub const PUBSUB: &str = "pubsub";
    /// The Redis stream with a consumer group.
    pub const STREAM: &str = "stream";
    /// The `PushReadings` RPC.
    pub const PUSH: &str = "push";
    /// openSenseMap runs.
    pub const OPENSENSEMAP: &str = "opensensemap";
    /// Sensor-hub messages posted over HTTP (`IngestSensorMessages`).
    pub const POSTED: &str = "posted";
}

static MALFORMED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "outpost_ingest_malformed_messages_total",
                "messages that were not readings, by source",
            ),
            &["source"],
        )
        .expect("valid metric"),
    )
});

static READINGS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "outpost_ingest_readings_total",
                "readings committed to telemetry, by source",
            ),
            &["source"],
        )
        .expect("valid metric"),
    )
});

static STREAM_BATCH: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(
            HistogramOpts::new(
                "outpost_ingest_stream_batch_size",
                "entries per batch pulled from the Redis stream",
            )
            .buckets(vec![1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0]),
        )
        .expect("valid metric"),
    )
});

static RUNS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "outpost_ingest_runs_total",
                "ingest runs that ended, by source and final state",
            ),
            &["source", "state"],
        )
        .expect("valid metric"),
    )
});

/// Counts a malformed message from `source`.
pub fn malformed(source: &str, count: u64) {
    MALFORMED.with_label_values(&[source]).inc_by(count);
}

/// How many malformed messages came from `source` so far (for tests).
pub fn malformed_count(source: &str) -> u64 {
    MALFORMED.with_label_values(&[source]).get()
}

/// Counts readings committed from `source`.
pub fn readings(source: &str, count: u64) {
    READINGS.with_label_values(&[source]).inc_by(count);
}

/// Records the size of a batch pulled from the stream.
pub fn stream_batch(size: usize) {
    STREAM_BATCH.observe(size as f64);
}

/// Counts a run that ended.
pub fn run_ended(source: &str, state: &str) {
    RUNS.with_label_values(&[source, state]).inc();
}

/// Registers every metric, so they show on `/metrics` before their first event.
pub fn init() {
    for source in [source::PUBSUB, source::STREAM, source::PUSH] {
        MALFORMED.with_label_values(&[source]);
    }
    for source in [source::PUBSUB, source::STREAM, source::PUSH, source::OPENSENSEMAP] {
        READINGS.with_label_values(&[source]);
    }
    LazyLock::force(&STREAM_BATCH);
    LazyLock::force(&RUNS);
}
