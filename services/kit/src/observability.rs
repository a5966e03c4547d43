//! Logging and tracing: `tracing` to stderr (text on a terminal, else JSON lines), plus
//! OpenTelemetry export over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard
//! `OTEL_*` variables apply). The W3C trace-context propagator is always installed, so context
//! crosses every hop.

use std::io::IsTerminal;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::per_service::{InheritService, PerService, service_name};

/// Flushes and stops trace export when dropped.
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracingGuard {
    /// Exports every ended span now.
    pub fn flush(&self) -> anyhow::Result<()> {
        if let Some(provider) = &self.provider {
            provider.force_flush()?;
        }
        Ok(())
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("trace export not flushed: {err}");
        }
    }
}

/// Installs logging, and OTLP trace export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. `role`
/// is what the process runs (`all`, `media`, …): spans of no particular service get its
/// `service.name` (see [`crate::per_service::service_name`]).
pub fn init(role: &str, filter: &str) -> anyhow::Result<TracingGuard> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty());
    init_with_endpoint(role, filter, endpoint.as_deref())
}

/// [`init`] with the OTLP endpoint given (`None`: no export); the other `OTEL_*` variables
/// apply.
pub fn init_with_endpoint(role: &str, filter: &str, endpoint: Option<&str>) -> anyhow::Result<TracingGuard> {
    let provider = match endpoint {
        Some(endpoint) => {
            let exporters = PerService::new(|| {
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .build()
                    .map_err(|e| anyhow::anyhow!("invalid setting OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))
            })?;
            Some(provider_builder(role).with_batch_exporter(exporters).build())
        }
        None => None,
    };
    install(provider, filter)
}

/// Installs logging and exports every span to a clone of `exporter` as it ends (for tests).
pub fn init_with_exporter<E: SpanExporter + Clone + 'static>(
    role: &str,
    filter: &str,
    exporter: E,
) -> anyhow::Result<TracingGuard> {
    let exporters = PerService::new(|| Ok(exporter.clone()))?;
    install(
        Some(provider_builder(role).with_simple_exporter(exporters).build()),
        filter,
    )
}

fn provider_builder(role: &str) -> opentelemetry_sdk::trace::TracerProviderBuilder {
    let resource = Resource::builder()
        .with_service_name(service_name(role))
        .with_attribute(KeyValue::new("service.namespace", "outpost"))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(InheritService::default())
}

fn install(provider: Option<SdkTracerProvider>, filter: &str) -> anyhow::Result<TracingGuard> {
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let filter = EnvFilter::try_new(filter).map_err(|e| anyhow::anyhow!("invalid setting OUTPOST_LOG: {e}"))?;
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer().with_tracer(p.tracer("outpost")).boxed()
    });
    // People read a terminal; log collectors read everything else, one JSON object a line.
    let terminal = std::io::stderr().is_terminal();
    let text = terminal.then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let json = (!terminal).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("tracing already installed: {e}"))?;
    Ok(TracingGuard { provider })
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
