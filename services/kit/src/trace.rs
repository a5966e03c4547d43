//! W3C trace context across processes: injected into every outgoing gRPC call, extracted from
//! every incoming gRPC or HTTP request, so one browser request is one trace across services.

use opentelemetry::propagation::{Extractor, Injector};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(&value)) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Injects the current span's trace context into outgoing gRPC metadata.
pub fn inject(metadata: &mut MetadataMap) {
    let cx = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut MetadataInjector(metadata)));
}

/// The trace context carried by incoming headers (empty when there is none).
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// A span for an incoming HTTP request, parented on its `traceparent` header.
pub fn http_span<B>(request: &http::Request<B>) -> Span {
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        otel.name = %format!("{} {}", request.method(), request.uri().path()),
        http.method = %request.method(),
        http.path = %request.uri().path(),
    );
    let _ = span.set_parent(extract(request.headers()));
    span
}

/// A span for an incoming gRPC call, parented on its `traceparent` metadata.
pub fn grpc_server_span<B>(service: &'static str, request: &http::Request<B>) -> Span {
    let path = request.uri().path();
    let span = tracing::info_span!(
        "grpc.request",
        otel.kind = "server",
        otel.name = %path.trim_start_matches('/'),
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = %path.rsplit('/').next().unwrap_or_default(),
    );
    let _ = span.set_parent(extract(request.headers()));
    span
}
