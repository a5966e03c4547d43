//! Traces as an OTLP backend such as Jaeger receives them, from the whole mesh in one process
//! (`outpost all`): a receiver the test starts takes the OTLP export, and the test reads what a
//! person would see: one trace per request across services, each span under its own service's
//! `service.name` with `service.version`, route-template names, HTTP and RPC status attributes,
//! error statuses, a client span for every upstream call, and health checks named as such.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

/// A span as received, with the resource it came under.
#[derive(Clone, Debug)]
struct Received {
    resource: HashMap<String, String>,
    span: Span,
}

impl Received {
    fn service(&self) -> &str {
        self.resource.get("service.name").map(String::as_str).unwrap_or("")
    }

    fn attr(&self, key: &str) -> Option<String> {
        attribute(&self.span.attributes, key)
    }

    fn trace(&self) -> String {
        hex(&self.span.trace_id)
    }

    fn id(&self) -> String {
        hex(&self.span.span_id)
    }

    fn parent(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }

    fn status(&self) -> StatusCode {
        self.span
            .status
            .as_ref()
            .and_then(|s| StatusCode::try_from(s.code).ok())
            .unwrap_or(StatusCode::Unset)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource: HashMap<String, String> = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default()
                .iter()
                .filter_map(|kv| Some((kv.key.clone(), attribute(std::slice::from_ref(kv), &kv.key)?)))
                .collect();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        resource: resource.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The server span of the gateway named `name` (the first, when a route was asked for twice).
fn gateway_span<'a>(spans: &'a [Received], name: &str) -> &'a Received {
    spans
        .iter()
        .find(|s| s.service() == "outpost-gateway" && s.kind() == SpanKind::Server && s.span.name == name)
        .unwrap_or_else(|| {
            let names: Vec<_> = spans.iter().map(|s| (s.service(), &s.span.name)).collect();
            panic!("no gateway span {name:?} among {names:?}")
        })
}

/// The spans whose parent is `parent`.
fn children<'a>(spans: &'a [Received], parent: &Received) -> Vec<&'a Received> {
    spans
        .iter()
        .filter(|s| s.trace() == parent.trace() && s.parent() == parent.id())
        .collect()
}

/// The only child of `parent` of `kind` (panics showing the children otherwise).
fn child<'a>(spans: &'a [Received], parent: &Received, kind: SpanKind) -> &'a Received {
    let found: Vec<_> = children(spans, parent)
        .into_iter()
        .filter(|s| s.kind() == kind)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {kind:?} child of {} expected: {found:#?}",
        parent.span.name
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn traces_read_well_in_an_otlp_backend() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let guard = outpost_kit::observability::init_with_endpoint("all", "info", Some(&endpoint)).unwrap();

    let backend = outpost_kit::testing::backends().into_iter().next().unwrap();
    let mesh = common::start_with(&backend, |cli| {
        // openSenseMap is never reached: its loads fail at once.
        cli.ingest.opensensemap_url = "http://127.0.0.1:9".into();
    })
    .await;
    let http = reqwest::Client::new();
    let base = &mesh.base;
    let incoming = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (status, _) = common::get(&http, format!("{base}/get_current_value/nosuch")).await;
    assert_eq!(status, 404);
    let reading = serde_json::json!({"sensor": "trace_probe", "value": 1.5, "timestamp": "2024-12-01 12:00:00"});
    let (status, _) = common::post(&http, format!("{base}/add_rawdata/"), &reading).await;
    assert_eq!(status, 201);
    let response = http
        .post(format!("{base}/api/v1/snapshots:export"))
        .header("traceparent", format!("00-{incoming}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, _) = common::post(&http, format!("{base}/store"), &serde_json::json!({})).await;
    assert_eq!(status, 201);
    let (status, _) = common::get(&http, format!("{base}/temperature")).await;
    assert_eq!(status, 503, "no reading is fresh and openSenseMap is unreachable");
    let (status, _) = common::get(&http, format!("{base}/no/such/route")).await;
    assert_eq!(status, 404);
    let (status, _) = common::get(&http, format!("{base}/readyz")).await;
    assert_eq!(status, 200);

    // Every span has ended once the answer is read, but for a client span's last trailer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    guard.flush().unwrap();
    let spans = receiver.spans.lock().unwrap().clone();
    mesh.stop().await;

    // Resources: each service its own name, with the version; the routing attribute is gone.
    for span in &spans {
        assert_eq!(
            span.resource.get("service.version").map(String::as_str),
            Some(env!("CARGO_PKG_VERSION")),
            "{span:?}"
        );
        assert!(span.attr(outpost_kit::trace::SERVICE).is_none(), "{span:?}");
    }

    // A miss: the gateway's span is named by its route template and answers 404 (not an error
    // of the server); the client span to telemetry ends NOT_FOUND, an error for the client.
    let miss = gateway_span(&spans, "GET /get_current_value/{sensor}");
    assert_eq!(miss.attr("http.route").as_deref(), Some("/get_current_value/{sensor}"));
    assert_eq!(miss.attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(miss.attr("http.response.status_code").as_deref(), Some("404"));
    assert_eq!(miss.status(), StatusCode::Unset);
    let client = child(&spans, miss, SpanKind::Client);
    assert_eq!(client.service(), "outpost-gateway");
    assert_eq!(
        client.span.name,
        "outpost.telemetry.v1.TelemetryService/GetCurrentValue"
    );
    assert_eq!(client.attr("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(client.attr("rpc.grpc.status_code").as_deref(), Some("5"));
    assert_eq!(client.status(), StatusCode::Error);
    let server = child(&spans, client, SpanKind::Server);
    assert_eq!(server.service(), "outpost-telemetry");
    assert_eq!(
        server.attr("rpc.service").as_deref(),
        Some("outpost.telemetry.v1.TelemetryService")
    );
    assert_eq!(server.attr("rpc.method").as_deref(), Some("GetCurrentValue"));
    assert_eq!(server.attr("rpc.grpc.status_code").as_deref(), Some("5"));
    assert_eq!(
        server.status(),
        StatusCode::Unset,
        "NOT_FOUND is no failure of the server"
    );

    // A hand-written route records its upstream call, which ends OK: gateway → ingest.
    let write = gateway_span(&spans, "POST /add_rawdata/");
    assert_eq!(write.attr("http.response.status_code").as_deref(), Some("201"));
    let client = child(&spans, write, SpanKind::Client);
    assert_eq!(
        client.attr("rpc.service").as_deref(),
        Some("outpost.ingest.v1.IngestService")
    );
    assert_eq!(client.attr("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(client.status(), StatusCode::Unset);
    assert_eq!(child(&spans, client, SpanKind::Server).service(), "outpost-ingest");
    // Ingest group-commits posted readings: its call to telemetry, made for every post that
    // arrived together, is a client span of ingest's own, and telemetry's answer its child.
    let to_telemetry = spans
        .iter()
        .find(|s| s.kind() == SpanKind::Client && s.attr("rpc.method").as_deref() == Some("WriteReadings"))
        .expect("ingest's call to telemetry is a span");
    assert_eq!(to_telemetry.service(), "outpost-ingest");
    assert_eq!(
        child(&spans, to_telemetry, SpanKind::Server).service(),
        "outpost-telemetry"
    );

    // The incoming trace continues across gateway → telemetry → media, each hop a client span
    // under its caller's service and a server span under the callee's.
    let export = gateway_span(&spans, "POST /api/v1/snapshots:export");
    assert_eq!(export.trace(), incoming);
    assert_eq!(export.parent(), "00f067aa0ba902b7");
    assert_eq!(export.attr("http.route").as_deref(), Some("/api/v1/snapshots:export"));
    let to_telemetry = child(&spans, export, SpanKind::Client);
    assert_eq!(to_telemetry.attr("rpc.method").as_deref(), Some("ExportSnapshot"));
    let in_telemetry = child(&spans, to_telemetry, SpanKind::Server);
    assert_eq!(in_telemetry.service(), "outpost-telemetry");
    let to_media = children(&spans, in_telemetry)
        .into_iter()
        .find(|s| s.kind() == SpanKind::Client)
        .expect("telemetry calls media");
    assert_eq!(to_media.service(), "outpost-telemetry");
    assert_eq!(
        to_media.attr("rpc.service").as_deref(),
        Some("outpost.media.v1.MediaService")
    );
    let in_media = child(&spans, to_media, SpanKind::Server);
    assert_eq!(in_media.service(), "outpost-media");
    assert!(
        spans
            .iter()
            .filter(|s| s.trace() != incoming)
            .all(|s| s.attr("rpc.method").as_deref() != Some("ExportSnapshot") || s.parent() != export.id()),
        "nothing of that request left its trace"
    );

    // The other hand-written write records its call too.
    let store = gateway_span(&spans, "POST /store");
    let client = child(&spans, store, SpanKind::Client);
    assert_eq!(client.attr("rpc.method").as_deref(), Some("ExportSnapshot"));

    // A 5xx is an error of the gateway's span; a route that does not exist has no route.
    let failed = gateway_span(&spans, "GET /temperature");
    assert_eq!(failed.attr("http.response.status_code").as_deref(), Some("503"));
    assert_eq!(failed.status(), StatusCode::Error);
    let unmatched = gateway_span(&spans, "GET");
    assert_eq!(unmatched.attr("url.path").as_deref(), Some("/no/such/route"));
    assert_eq!(unmatched.attr("http.route"), None);

    // Health checks are named as such, under the service that answers them.
    let ready = gateway_span(&spans, "GET /readyz");
    let checks: Vec<_> = children(&spans, ready)
        .into_iter()
        .filter(|s| s.kind() == SpanKind::Client)
        .collect();
    assert!(!checks.is_empty(), "/readyz asks every service");
    for check in checks {
        assert_eq!(check.span.name, "grpc.health.v1.Health/Check");
        let answer = child(&spans, check, SpanKind::Server);
        assert_eq!(answer.attr("rpc.service").as_deref(), Some("grpc.health.v1.Health"));
        assert_eq!(answer.attr("rpc.method").as_deref(), Some("Check"));
        assert!(
            [
                "outpost-ingest",
                "outpost-media",
                "outpost-telemetry",
                "outpost-plotting"
            ]
            .contains(&answer.service()),
            "{answer:?}"
        );
    }
}
