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
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::Upstreams;

/// How long one health check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Dependencies a service may report on health as `{service}/{dependency}`.
pub const DEPENDENCIES: [&str; 3] = outpost_kit::storage::dependency::ALL;

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

/// What `/version` answers.
pub fn version() -> serde_json::Value {
    let mut body = serde_json::json!({ "name": "outpost", "version": env!("CARGO_PKG_VERSION") });
    if let Some(sha) = option_env!("OUTPOST_GIT_SHA").filter(|s| !s.is_empty()) {
        body["git_sha"] = serde_json::Value::String(sha.to_string());
    }
    body
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
}

impl ServiceReadiness {
    /// Whether the service and every dependency it reports serve.
    pub fn ready(&self) -> bool {
        self.status == "SERVING" && self.dependencies.values().all(|s| s == "SERVING")
    }

    /// What is wrong, for people: the service's status, or its dependencies that do not serve
    /// (`sql NOT_SERVING`); `None` when it is ready.
    pub fn problem(&self) -> Option<String> {
        if self.status != "SERVING" {
            return Some(self.status.to_ascii_lowercase());
        }
        let down: Vec<String> = self
            .dependencies
            .iter()
            .filter(|(_, status)| *status != "SERVING")
            .map(|(dependency, status)| format!("{dependency} {}", status.to_ascii_lowercase()))
            .collect();
        (!down.is_empty()).then(|| down.join(", "))
    }
}

/// The answer of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// By short service name.
    pub services: BTreeMap<&'static str, ServiceReadiness>,
}

async fn readyz(targets: Vec<Target>) -> Response {
    let readiness = check_all(&targets).await;
    let status = if readiness.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
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
    let ready = services.values().all(ServiceReadiness::ready);
    Readiness {
        status: if ready { "ready" } else { "not_ready" },
        services,
    }
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
    ServiceReadiness {
        status,
        error,
        dependencies,
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
