//! `/healthz`, `/readyz`, `/version`, `/metrics` against real gRPC health servers.

mod support;

use outpost_api::names;
use serde_json::json;
use support::*;
use tonic_health::ServingStatus;

#[tokio::test]
async fn readyz_names_unreachable_services_and_reports_the_reachable_one() {
    let upstream = start_upstream(&[names::PLOTTING]).await;
    for dependency in ["sql", "objects"] {
        upstream
            .health
            .set_service_status(format!("{}/{dependency}", names::PLOTTING), ServingStatus::Serving)
            .await;
    }
    let gateway = start_gateway(&format!("http://{}", upstream.addr), None).await;

    let started = std::time::Instant::now();
    let (status, body) = gateway.get("/readyz").await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "checks are concurrent and bounded"
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    // Dependencies the service does not report (redis) are left out.
    assert_eq!(
        body["services"]["plotting"],
        json!({"status": "SERVING", "dependencies": {"objects": "SERVING", "sql": "SERVING"}})
    );
    for service in ["ingest", "media", "telemetry"] {
        assert_eq!(body["services"][service]["status"], "UNREACHABLE", "{service}: {body}");
        assert!(body["services"][service]["error"].is_string(), "{service}: {body}");
    }
}

#[tokio::test]
async fn readyz_is_200_when_everything_serves_degraded_without_an_optional_dependency_and_503_when_a_service_does_not()
{
    // One server answers health for all four services.
    let all = [names::INGEST, names::MEDIA, names::TELEMETRY, names::PLOTTING];
    let upstream = start_upstream(&all).await;
    let sql = format!("{}/sql", names::MEDIA);
    upstream
        .health
        .set_service_status(sql.as_str(), ServingStatus::Serving)
        .await;
    let endpoint = format!("http://{}", upstream.addr);
    let gateway = start_gateway(&endpoint, Some(&endpoint)).await;

    let (status, body) = gateway.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["services"]["media"]["dependencies"], json!({"sql": "SERVING"}));
    assert_eq!(body["services"]["ingest"]["dependencies"], json!({}));

    // A dependency down while its service serves is one the service does without.
    upstream
        .health
        .set_service_status(sql.as_str(), ServingStatus::NotServing)
        .await;
    let (status, body) = gateway.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["services"]["media"]["status"], "SERVING");
    assert_eq!(body["services"]["media"]["dependencies"]["sql"], "NOT_SERVING");
    assert_eq!(body["services"]["media"]["degraded"], json!(["sql"]));

    // The service itself not serving: not ready, and why.
    upstream
        .health
        .set_service_status(names::MEDIA, ServingStatus::NotServing)
        .await;
    let (status, body) = gateway.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["services"]["media"]["status"], "NOT_SERVING");
    assert!(body["services"]["media"].get("degraded").is_none(), "{body}");
    assert_eq!(body["services"]["plotting"]["status"], "SERVING");
}

#[tokio::test]
async fn healthz_version_and_metrics() {
    let (upstream, gateway) = spawn().await;
    assert_eq!(gateway.get("/healthz").await, (200, json!({"status": "ok"})));

    // The senseBox service's shape, whole: its clients read `Version`.
    assert_eq!(
        gateway.get("/version").await,
        (200, json!({"Version": env!("CARGO_PKG_VERSION")}))
    );

    // A transcoded request is counted under its template, not its path.
    upstream
        .fake
        .jobs
        .lock()
        .unwrap()
        .insert("plotJobs/m1".into(), Default::default());
    assert_eq!(gateway.get("/api/v1/plotJobs/m1").await.0, 200);
    let response = gateway.client.get(gateway.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("outpost_http_requests_total{") && l.contains("route=\"/api/v1/{name=plotJobs/*}\""))
        .unwrap_or_else(|| panic!("no request counter by template in:\n{text}"));
    assert!(
        line.contains("status=\"200\"") && line.contains("method=\"GET\""),
        "{line}"
    );
    assert!(!text.contains("plotJobs/m1"), "raw paths never become labels");
    assert!(
        text.contains("route=\"/healthz\""),
        "the gateway's own routes are counted by their route"
    );
}
