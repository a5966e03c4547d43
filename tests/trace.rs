//! One gateway request is one trace across services: gateway → telemetry → media.

mod common;

use std::time::Duration;

use opentelemetry::Value as OtelValue;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a OtelValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_gateway_request_is_one_trace_across_services() {
    let exporter = InMemorySpanExporter::default();
    let _guard = outpost_kit::observability::init_with_exporter("outpost-test", "info", exporter.clone()).unwrap();
    let backend = outpost_kit::testing::backends().into_iter().next().unwrap();
    let mesh = common::start(&backend).await;

    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/api/v1/snapshots:export", mesh.base))
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let services = ["outpost.telemetry.v1.TelemetryService", "outpost.media.v1.MediaService"];
    // Spans are exported as they end; the last ones may trail the response by a moment.
    let in_trace = || -> (Vec<String>, bool) {
        let spans = exporter.get_finished_spans().unwrap();
        let in_trace: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.span_context.trace_id().to_string() == trace_id)
            .collect();
        let seen = services
            .iter()
            .filter(|service| {
                in_trace
                    .iter()
                    .any(|s| attribute(s, "rpc.service").map(|v| v.as_str()) == Some((**service).into()))
            })
            .map(|s| s.to_string())
            .collect::<Vec<_>>();
        (
            seen,
            in_trace.iter().any(|s| s.name.contains("/api/v1/snapshots:export")),
        )
    };
    for _ in 0..50 {
        let (seen, gateway) = in_trace();
        if seen.len() == services.len() && gateway {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (seen, gateway) = in_trace();
    assert_eq!(
        seen.len(),
        services.len(),
        "services seen in trace {trace_id}: {seen:?}"
    );
    assert!(gateway, "the gateway's span is in trace {trace_id}");

    // Spans of other requests are not in that trace.
    let spans = exporter.get_finished_spans().unwrap();
    let other = spans.iter().filter(|s| attribute(s, "rpc.service").is_some()).any(|s| {
        s.span_context.trace_id().to_string() != trace_id
            && attribute(s, "rpc.method").map(|v| v.as_str().to_string()) == Some("ExportSnapshot".into())
    });
    assert!(!other, "ExportSnapshot ran outside the request's trace");
    mesh.stop().await;
}
