//! Prometheus metrics of the process: per-RPC rate, errors and latency of gRPC servers,
//! per-route HTTP metrics of the gateway, and whatever services register (queue depths,
//! batch sizes).

use std::sync::LazyLock;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static GRPC_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "outpost_grpc_server_handled_total",
                "gRPC calls handled, by service, method and status code",
            ),
            &["service", "method", "code"],
        )
        .expect("valid metric"),
    )
});

static GRPC_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "outpost_grpc_server_handling_seconds",
                "gRPC call latency until the response head",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["service", "method"],
        )
        .expect("valid metric"),
    )
});

static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "outpost_http_requests_total",
                "HTTP requests of the gateway, by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric"),
    )
});

static HTTP_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new("outpost_http_request_seconds", "HTTP request latency of the gateway")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric"),
    )
});

/// Registers a collector once and returns it (a second registration of the same metric is ignored).
pub fn register<C: prometheus::core::Collector + Clone + 'static>(collector: C) -> C {
    if let Err(err) = REGISTRY.register(Box::new(collector.clone()))
        && !matches!(err, prometheus::Error::AlreadyReg)
    {
        tracing::warn!(error = %err, "metric not registered");
    }
    collector
}

/// Records one gRPC call.
pub fn observe_grpc(service: &str, method: &str, code: &str, seconds: f64) {
    GRPC_REQUESTS.with_label_values(&[service, method, code]).inc();
    GRPC_LATENCY.with_label_values(&[service, method]).observe(seconds);
}

/// Records one HTTP request of the gateway (`route` is the route template, never the raw path).
pub fn observe_http(route: &str, method: &str, status: u16, seconds: f64) {
    HTTP_REQUESTS
        .with_label_values(&[route, method, &status.to_string()])
        .inc();
    HTTP_LATENCY.with_label_values(&[route, method]).observe(seconds);
}

/// The Prometheus text exposition of every registered metric.
pub fn render() -> String {
    LazyLock::force(&GRPC_REQUESTS);
    LazyLock::force(&HTTP_REQUESTS);
    let mut out = Vec::new();
    if let Err(err) = TextEncoder::new().encode(&REGISTRY.gather(), &mut out) {
        tracing::warn!(error = %err, "metrics not encoded");
    }
    String::from_utf8(out).unwrap_or_default()
}
