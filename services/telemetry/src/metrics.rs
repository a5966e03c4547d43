//! The service's own Prometheus metrics: write batch sizes and readings written.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounter};

static BATCH_READINGS: LazyLock<Histogram> = LazyLock::new(|| {
    let opts = HistogramOpts::new("outpost_telemetry_write_batch_readings", "readings per write batch")
        .buckets(vec![1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0]);
    outpost_kit::metrics::register(Histogram::with_opts(opts).expect("valid metric"))
});

static READINGS_WRITTEN: LazyLock<IntCounter> = LazyLock::new(|| {
    let counter = IntCounter::new(
        "outpost_telemetry_readings_written_total",
        "readings committed (new or replacing)",
    );
    outpost_kit::metrics::register(counter.expect("valid metric"))
});

/// Registers the metrics, so they show before the first write.
pub fn init() {
    LazyLock::force(&BATCH_READINGS);
    LazyLock::force(&READINGS_WRITTEN);
}

/// Records one committed batch of `readings` readings.
pub fn record_batch(readings: usize) {
    BATCH_READINGS.observe(readings as f64);
    READINGS_WRITTEN.inc_by(readings as u64);
}
