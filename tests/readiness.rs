//! Readiness means "can serve": a service whose PostgreSQL comes up late starts anyway, says
//! what it waits for, and serves by itself once it appears; a cache outage degrades a service
//! without making it unready; every dependency that can make a service unready is listed.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{get, post};
use outpost_kit::testing::{self, Proxy, TestBackend};
use reqwest::Client;
use serde_json::{Value, json};

/// The external backend, when its variables are set.
fn external() -> Option<TestBackend> {
    testing::backends().into_iter().find(TestBackend::is_external)
}

/// `host:port` of a URL, resolved.
fn address(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).unwrap();
    let host = url.host_str().unwrap();
    let port = url.port_or_known_default().unwrap_or(6379);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .unwrap()
        .next()
        .unwrap()
}

/// `url` pointing at `addr` instead of its own host and port.
fn via(url: &str, addr: SocketAddr) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_host(Some(&addr.ip().to_string())).unwrap();
    url.set_port(Some(addr.port())).unwrap();
    url.to_string()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_postgres_is_waited_for_and_then_served() {
    let Some(backend) = external() else { return };
    let postgres = backend.storage.database_url.clone().unwrap();
    let proxy = Proxy::stopped(address(&postgres)).await;
    let late = via(&postgres, proxy.addr);
    let mesh = common::spawn_with(&backend, |cli| cli.config.database_url = Some(late)).await;
    let http = Client::new();

    // Up, listening, and saying what it waits for.
    let body = mesh
        .wait_for("/readyz", |status, body| {
            status == 503 && body["services"]["telemetry"]["dependencies"]["sql"] == "NOT_SERVING"
        })
        .await;
    assert_eq!(body["status"], "not_ready", "{body}");
    let started = Instant::now();
    let (status, body) = get(&http, format!("{}/api/v1/devices", mesh.base)).await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("starting") && message.contains("postgres"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        started.elapsed()
    );

    // PostgreSQL appears: every service migrates and serves by itself.
    proxy.resume().await;
    mesh.wait_ready().await;
    let (status, body) = post(
        &http,
        format!("{}/add_rawdata/", mesh.base),
        &json!({"sensor": "temperature", "value": 3, "timestamp": "2024-12-01 12:00:00"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cache_outage_degrades_without_making_unready() {
    let Some(backend) = external() else { return };
    let redis = backend.storage.redis_url.clone().unwrap();
    let proxy = Proxy::start(address(&redis)).await;
    let proxied = via(&redis, proxy.addr);
    let mesh = common::start_with(&backend, |cli| cli.config.redis_url = Some(proxied)).await;
    let http = Client::new();

    proxy.stop();
    let body = mesh
        .wait_for("/readyz", |status, body| {
            status == 200 && names(&body["services"]["telemetry"]["degraded"]).contains(&"redis")
        })
        .await;
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["services"]["telemetry"]["status"], "SERVING", "{body}");
    assert_eq!(
        body["services"]["telemetry"]["dependencies"]["redis"], "NOT_SERVING",
        "{body}"
    );

    // Telemetry's writes and reads do not need its cache.
    let (status, body) = post(
        &http,
        format!("{}/add_rawdata/", mesh.base),
        &json!({"sensor": "temperature", "value": 5, "timestamp": "2024-12-01 12:00:00"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = get(&http, format!("{}/get_current_value/temperature", mesh.base)).await;
    assert_eq!((status.as_u16(), body["value"].as_f64()), (200, Some(5.0)), "{body}");

    proxy.resume().await;
    mesh.wait_for("/readyz", |status, body| status == 200 && body["status"] == "ready")
        .await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_lists_peer_services_as_dependencies() {
    let backend = testing::backends().remove(0);
    let mesh = common::start(&backend).await;
    let http = Client::new();
    let (status, body) = get(&http, format!("{}/readyz", mesh.base)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    // Ingest writes every reading to telemetry: it is listed, so an unready ingest is explained.
    assert_eq!(
        body["services"]["ingest"]["dependencies"]["telemetry"], "SERVING",
        "{body}"
    );
    assert_eq!(
        body["services"]["telemetry"]["dependencies"]["sql"], "SERVING",
        "{body}"
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_is_answered_within_the_deadline_naming_it() {
    let Some(backend) = external() else { return };
    let postgres = backend.storage.database_url.clone().unwrap();
    let proxy = Proxy::start(address(&postgres)).await;
    let proxied = via(&postgres, proxy.addr);
    let deadline = Duration::from_secs(3);
    let mesh = common::start_with(&backend, |cli| {
        cli.config.database_url = Some(proxied);
        cli.config.rpc_timeout_ms = deadline.as_millis() as u64;
    })
    .await;
    let http = Client::new();
    let reading = json!({"sensor": "temperature", "value": 7, "timestamp": "2024-12-01 12:00:00"});
    let (status, body) = post(&http, format!("{}/add_rawdata/", mesh.base), &reading).await;
    assert_eq!(status, 201, "{body}");

    proxy.stop();
    for path in ["/add_rawdata/", "/api/v1/readings:write"] {
        let body = if path == "/add_rawdata/" {
            reading.clone()
        } else {
            json!({"readings": [{"device": "d", "sensor": "t", "value": 1, "time": "2024-12-01T12:00:00Z"}]})
        };
        let started = Instant::now();
        let (status, body) = post(&http, format!("{}{path}", mesh.base), &body).await;
        let took = started.elapsed();
        assert_eq!(status, 503, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("telemetry") && message.contains("SQL database"),
            "{path}: {message}"
        );
        assert!(
            took < deadline,
            "{path}: answered after {took:?}, past the {deadline:?} deadline"
        );
    }
    proxy.resume().await;
    mesh.wait_ready().await;
    mesh.stop().await;
}
