//! Operations routes: `/healthz` (the gateway is up), `/readyz` (every service and its
//! dependencies serve, by gRPC health), `/version`, `/metrics` (Prometheus).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
use outpost_kit::client::Traced;
use serde::Serialize;
use serde_json::json;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::Upstreams;
use crate::openapi::Route;

/// How long one health check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Dependencies a service may report on health as `{service}/{dependency}`: its stores and
/// the peer services it calls.
pub const DEPENDENCIES: [&str; 7] = [
    outpost_kit::storage::dependency::SQL,
    outpost_kit::storage::dependency::REDIS,
    outpost_kit::storage::dependency::OBJECTS,
    "ingest",
    "media",
    "telemetry",
    "plotting",
];

/// The ops routes.
pub fn routes(upstreams: &Upstreams) -> Router {
    let targets = targets(upstreams);
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(move || readyz(targets.clone())))
        .route("/version", get(|| async { Json(version()) }))
        .route("/metrics", get(metrics))
}

/// The ops routes, for the OpenAPI document.
pub fn openapi() -> Vec<Route> {
    let service = json!({
        "type": "object",
        "required": ["status", "dependencies"],
        "properties": {
            "status": { "type": "string", "example": "SERVING" },
            "error": { "type": "string" },
            "dependencies": { "type": "object", "additionalProperties": { "type": "string" } },
            "degraded": { "type": "array", "items": { "type": "string" } },
        },
    });
    let readiness = json!({
        "type": "object",
        "required": ["status", "services"],
        "properties": {
            "status": { "type": "string", "enum": ["ready", "degraded", "not_ready"] },
            "services": { "type": "object", "additionalProperties": service },
        },
    });
    vec![
        Route::get("/healthz", "Health", "Liveness of the gateway.")
            .tag("Gateway")
            .answers(
                200,
                "The gateway is up.",
                json!({ "type": "object", "required": ["status"], "properties": { "status": { "type": "string", "enum": ["ok"] } } }),
            ),
        Route::get("/readyz", "Readiness", "Readiness of every service and its dependencies.")
            .tag("Gateway")
            .answers(200, "Every service serves.", readiness.clone())
            .answers(503, "Some service or dependency is not serving.", readiness),
        Route::get("/version", "Version", "The version, in the senseBox service's shape.")
            .tag("Gateway")
            .answers(
                200,
                "The version.",
                json!({ "type": "object", "required": ["Version"], "properties": { "Version": { "type": "string" } }, "additionalProperties": false }),
            ),
        Route::get("/metrics", "Metrics", "Prometheus metrics.")
            .tag("Gateway")
            .answers_as(200, "The metrics, in Prometheus' text format.", "text/plain", json!({ "type": "string" })),
    ]
}

/// What `/version` answers: the senseBox service's shape, `{"Version": "…"}`, which its
/// clients read.
pub fn version() -> serde_json::Value {
    serde_json::json!({ "Version": env!("CARGO_PKG_VERSION") })
}

async fn metrics() -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        outpost_kit::metrics::render(),
    )
        .into_response()
}

#[derive(Clone)]
struct Target {
    short: &'static str,
    service: &'static str,
    channel: Traced,
}

fn targets(upstreams: &Upstreams) -> Vec<Target> {
    vec![
        Target {
            short: "ingest",
            service: outpost_api::names::INGEST,
            channel: upstreams.ingest.clone(),
        },
        Target {
            short: "media",
            service: outpost_api::names::MEDIA,
            channel: upstreams.media.clone(),
        },
        Target {
            short: "telemetry",
            service: outpost_api::names::TELEMETRY,
            channel: upstreams.telemetry.clone(),
        },
        Target {
            short: "plotting",
            service: outpost_api::names::PLOTTING,
            channel: upstreams.plotting.clone(),
        },
    ]
}

/// The readiness of one service.
#[derive(Debug, Serialize)]
pub struct ServiceReadiness {
    /// `SERVING`, `NOT_SERVING`, `UNREACHABLE`, …
    pub status: String,
    /// Why it is not serving, when a check failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Each dependency the service reports, with its status.
    pub dependencies: BTreeMap<&'static str, String>,
    /// Dependencies that are down while the service serves without them (a cache): the
    /// service is degraded, not unready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub degraded: Vec<&'static str>,
}

impl ServiceReadiness {
    /// Whether the service serves (its required dependencies answer; optional ones may not).
    pub fn ready(&self) -> bool {
        self.status == "SERVING"
    }

    /// What is wrong, for people: the service's status and the dependencies that do not serve
    /// (`not_serving: sql not_serving`); `None` when it is ready.
    pub fn problem(&self) -> Option<String> {
        if self.ready() {
            return None;
        }
        let down: Vec<String> = self
            .dependencies
            .iter()
            .filter(|(_, status)| *status != "SERVING")
            .map(|(dependency, status)| format!("{dependency} {}", status.to_ascii_lowercase()))
            .collect();
        let status = self.status.to_ascii_lowercase();
        Some(if down.is_empty() {
            status
        } else {
            format!("{status}: {}", down.join(", "))
        })
    }
}

/// The answer of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// `ready`, `degraded` (every service serves, some without an optional dependency) or
    /// `not_ready`.
    pub status: &'static str,
    /// By short service name.
    pub services: BTreeMap<&'static str, ServiceReadiness>,
}

async fn readyz(targets: Vec<Target>) -> Response {
    let readiness = check_all(&targets).await;
    let status = if readiness.status == "not_ready" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(readiness)).into_response()
}

/// The readiness of the named services (short names: `ingest`, `media`, `telemetry`,
/// `plotting`; unknown names are left out), checked concurrently and each within a second.
pub async fn check_services(upstreams: &Upstreams, services: &[&str]) -> Readiness {
    let targets: Vec<Target> = targets(upstreams)
        .into_iter()
        .filter(|t| services.contains(&t.short))
        .collect();
    check_all(&targets).await
}

async fn check_all(targets: &[Target]) -> Readiness {
    let reports = futures::future::join_all(targets.iter().map(check_service)).await;
    let services: BTreeMap<_, _> = targets.iter().map(|t| t.short).zip(reports).collect();
    let status = if !services.values().all(ServiceReadiness::ready) {
        "not_ready"
    } else if services.values().any(|s| !s.degraded.is_empty()) {
        "degraded"
    } else {
        "ready"
    };
    Readiness { status, services }
}

enum Check {
    Status(ServingStatus),
    Unused,
    Failed(&'static str, String),
}

async fn check_service(target: &Target) -> ServiceReadiness {
    let names = std::iter::once(target.service.to_string())
        .chain(DEPENDENCIES.iter().map(|d| format!("{}/{d}", target.service)));
    let mut results = futures::future::join_all(names.map(|name| check(target.channel.clone(), name))).await;
    let main = results.remove(0);
    let (status, error) = match main {
        Check::Status(s) => (s.as_str_name().to_string(), None),
        Check::Unused => (
            "SERVICE_UNKNOWN".to_string(),
            Some(format!("{} is not registered with health", target.service)),
        ),
        Check::Failed(status, error) => (status.to_string(), Some(error)),
    };
    let mut dependencies = BTreeMap::new();
    if error.is_none() {
        for (dependency, result) in DEPENDENCIES.iter().zip(results) {
            match result {
                Check::Status(s) => {
                    dependencies.insert(*dependency, s.as_str_name().to_string());
                }
                Check::Unused => {}
                Check::Failed(status, _) => {
                    dependencies.insert(*dependency, status.to_string());
                }
            }
        }
    }
    // A dependency down while the service serves is one it can do without.
    let degraded = if status == "SERVING" {
        dependencies
            .iter()
            .filter(|(_, s)| *s != "SERVING")
            .map(|(name, _)| *name)
            .collect()
    } else {
        Vec::new()
    };
    ServiceReadiness {
        status,
        error,
        dependencies,
        degraded,
    }
}

async fn check(channel: Traced, service: String) -> Check {
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest { service });
    request.set_timeout(CHECK_TIMEOUT);
    match tokio::time::timeout(CHECK_TIMEOUT, client.check(request)).await {
        Ok(Ok(response)) => Check::Status(response.into_inner().status()),
        Ok(Err(status)) if status.code() == tonic::Code::NotFound => Check::Unused,
        Ok(Err(status)) if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => {
            Check::Failed("UNREACHABLE", status.message().to_string())
        }
        Ok(Err(status)) => Check::Failed("UNKNOWN", format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Check::Failed("UNREACHABLE", format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}
