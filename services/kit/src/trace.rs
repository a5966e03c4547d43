//! Spans after the OpenTelemetry HTTP and RPC semantic conventions, and W3C trace context
//! across processes: extracted from every incoming gRPC or HTTP request, injected into every
//! outgoing gRPC call by its client span (see [`crate::client::Traced`]), so one browser request
//! is one trace across services.
//!
//! - HTTP server spans are named `{method} {route}` by route template (`GET /sensordata/{sensor}`,
//!   just `{method}` when no route matched) and carry `http.request.method`, `url.path`,
//!   `http.route` and `http.response.status_code`; a 5xx is an error.
//! - gRPC spans are named `{rpc.service}/{rpc.method}` of the call itself (a health check is
//!   `grpc.health.v1.Health/Check`, whoever hosts it) and carry `rpc.grpc.status_code`; a
//!   client span is an error for every status but OK, a server span for the codes that mean the
//!   server failed (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS).
//! - Every span names the Outpost service it belongs to in [`SERVICE`]; export turns that into
//!   the span's `service.name` (see [`crate::observability`]).

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{Status, TraceContextExt};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The span attribute naming the Outpost service a span belongs to (`gateway`, `media`, …).
/// It never leaves the process: export makes it the span's resource `service.name`.
pub const SERVICE: &str = "outpost.service";

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::try_from(value),
        ) {
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

/// The trace context carried by incoming headers (empty when there is none).
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// Injects `span`'s trace context into outgoing headers (gRPC metadata are headers).
pub fn inject(span: &Span, headers: &mut http::HeaderMap) {
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
}

/// A server span for an incoming HTTP request to `service`, parented on its `traceparent`
/// header. Named by the method until [`record_http_response`] knows the route.
pub fn http_span<B>(service: &'static str, request: &http::Request<B>) -> Span {
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        otel.name = %request.method(),
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        outpost.service = service,
    );
    let _ = span.set_parent(extract(request.headers()));
    span
}

/// Records how an HTTP request was answered: the span is renamed `{method} {route}` and gets
/// `http.route` when a route matched, `http.response.status_code`, and an error status for a 5xx.
pub fn record_http_response(span: &Span, method: &http::Method, route: Option<&str>, status: http::StatusCode) {
    if let Some(route) = route {
        span.context().span().update_name(format!("{method} {route}"));
        span.set_attribute("http.route", route.to_string());
    }
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_attribute("error.type", status.as_str().to_string());
        span.set_status(Status::error(status.canonical_reason().unwrap_or("server error")));
    }
}

/// `(rpc.service, rpc.method)` of a gRPC path (`/pkg.Service/Method`).
fn rpc_names(path: &str) -> (&str, &str) {
    path.trim_start_matches('/').split_once('/').unwrap_or((path, ""))
}

/// A server span for an incoming gRPC call to a server of `service` (its short name, such as
/// `media`), parented on the caller's `traceparent` metadata.
pub fn grpc_server_span<B>(service: &'static str, request: &http::Request<B>) -> Span {
    let span = grpc_span("server", service, request);
    let _ = span.set_parent(extract(request.headers()));
    span
}

/// A client span for an outgoing gRPC call made by `caller` (a short service name), a child of
/// the current span.
pub fn grpc_client_span<B>(caller: &'static str, request: &http::Request<B>) -> Span {
    let span = grpc_span("client", caller, request);
    // Present when the request names its server (a channel adds it further down otherwise).
    if let Some(host) = request.uri().host() {
        span.set_attribute("server.address", host.to_string());
    }
    if let Some(port) = request.uri().port_u16() {
        span.set_attribute("server.port", i64::from(port));
    }
    span
}

fn grpc_span<B>(kind: &'static str, service: &'static str, request: &http::Request<B>) -> Span {
    let (rpc_service, rpc_method) = rpc_names(request.uri().path());
    tracing::info_span!(
        "grpc",
        otel.kind = kind,
        otel.name = %request.uri().path().trim_start_matches('/'),
        rpc.system = "grpc",
        rpc.service = rpc_service,
        rpc.method = rpc_method,
        outpost.service = service,
    )
}

/// Whether `code` on a server span means the server failed (semantic conventions for RPC).
fn server_error(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    )
}

/// Records the gRPC status a call ended with: `rpc.grpc.status_code`, and an error status on a
/// client span for every code but OK, on a server span for the codes of a failed server.
pub fn record_grpc_status(span: &Span, code: tonic::Code, client: bool) {
    span.set_attribute("rpc.grpc.status_code", code as i64);
    if code != tonic::Code::Ok && (client || server_error(code)) {
        span.set_status(Status::error(format!("{code:?}")));
    }
}

/// The gRPC status of a response whose headers carry it (a trailers-only answer, as errors are).
pub fn grpc_status_of(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}
