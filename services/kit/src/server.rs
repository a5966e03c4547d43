//! The gRPC server bootstrap every service uses: its services, tonic-health reflecting the
//! state of its dependencies, reflection v1 and v1alpha, Prometheus `/metrics` on the same port,
//! per-RPC metrics and trace context, and graceful shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::storage::Dependency;

/// Listens on `addr`; a failure names the setting it came from (`OUTPOST_MEDIA_ADDR`, …).
pub async fn bind(setting: &str, addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("invalid setting {setting}: cannot listen on {addr}: {e}"))
}

/// How often dependencies are checked.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(3);

/// The health name that is SERVING while the process serves, whatever its dependencies do: for
/// liveness and startup probes, which must not restart a pod because a database is down.
pub const LIVENESS: &str = "liveness";

/// A service's gRPC server, assembled before it serves.
pub struct GrpcServer {
    service: &'static str,
    routes: RoutesBuilder,
    health: HealthReporter,
    dependencies: Vec<Dependency>,
    gate: Option<Gate>,
    token: crate::auth::Token,
}

/// Whether a service can take calls yet: Ok, or what it still waits for.
pub type Gate = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

impl GrpcServer {
    /// A server for the gRPC service `service` (its full name, as health reports it).
    pub fn new(service: &'static str) -> Self {
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service);
        Self {
            service,
            routes,
            health,
            dependencies: Vec::new(),
            gate: None,
            token: crate::auth::Token::default(),
        }
    }

    /// Requires `authorization: Bearer <token>` on every call that writes (anything but `Get*`,
    /// `List*`, `Watch*`, `Download*`, health and reflection) when `token` is set: the
    /// `OUTPOST_API_TOKEN` the gateway asks of HTTP writes holds for gRPC clients too.
    pub fn token(mut self, token: crate::auth::Token) -> Self {
        self.token = token;
        self
    }

    /// Answers the service's calls `UNAVAILABLE`, naming what is missing, while `gate` says it
    /// is still starting (its database not migrated yet, say); health, reflection and
    /// `/metrics` answer meanwhile.
    pub fn starting_until(mut self, gate: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Self {
        self.gate = Some(Arc::new(gate));
        self
    }

    /// Adds a gRPC service.
    pub fn add_service<S>(mut self, svc: S) -> Self
    where
        S: Service<http::Request<tonic::body::Body>, Error = Infallible> + NamedService + Clone + Send + Sync + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.routes.add_service(svc);
        self
    }

    /// Adds dependencies whose state health reports (`{service}/{name}`), and that the service's
    /// own status follows.
    pub fn dependencies(mut self, dependencies: impl IntoIterator<Item = Dependency>) -> Self {
        self.dependencies.extend(dependencies);
        self
    }

    /// Serves on `listener` until `shutdown` resolves, then drains in-flight calls.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        // Reflection lists what this server serves: its service, health and reflection.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(outpost_api::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name(self.service)
                .with_service_name("grpc.health.v1.Health")
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let mut routes: Routes = self
            .routes
            .routes()
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        *routes.axum_router_mut() = std::mem::take(routes.axum_router_mut())
            .route("/metrics", axum::routing::get(|| async { crate::metrics::render() }));

        self.health.set_service_status(LIVENESS, ServingStatus::Serving).await;
        let watcher = tokio::spawn(watch_dependencies(self.service, self.health.clone(), self.dependencies));
        let addr = listener.local_addr()?;
        tracing::info!(service = self.service, %addr, "serving gRPC");
        let result = tonic::transport::Server::builder()
            .accept_http1(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(ObserveLayer {
                service: self.service,
                gate: self.gate.clone(),
                token: self.token.clone(),
            })
            .add_routes(routes)
            // TCP_NODELAY on every accepted connection: a response's headers, data and trailers
            // leave in separate writes, which Nagle's algorithm would hold for the peer's
            // delayed ACK (about 40 ms). The server sets it only on listeners it binds itself.
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                async {
                    shutdown.await;
                    watcher.abort();
                    self.health
                        .set_service_status(self.service, ServingStatus::NotServing)
                        .await;
                    self.health.set_service_status("", ServingStatus::NotServing).await;
                },
            )
            .await;
        tracing::info!(service = self.service, "stopped");
        result.map_err(Into::into)
    }
}

/// Checks every dependency now and then. The service is SERVING while every required one
/// answers; an optional one that fails is reported NOT_SERVING under its own name while the
/// service keeps serving (degraded). Each change of a dependency is logged once.
async fn watch_dependencies(service: &'static str, health: HealthReporter, dependencies: Vec<Dependency>) {
    let mut last: HashMap<&'static str, bool> = HashMap::new();
    let mut last_serving: Option<bool> = None;
    loop {
        let results = futures::future::join_all(dependencies.iter().map(|d| async move { (d, d.check().await) })).await;
        let mut serving = true;
        for (dependency, result) in results {
            let name = dependency.name;
            let ok = result.is_ok();
            if !ok && dependency.required {
                serving = false;
            }
            match (&result, last.insert(name, ok)) {
                // At start, peers and stores come up together: waiting for one is no warning.
                (Err(err), None) => {
                    tracing::info!(service, dependency = name, error = %err, "waiting for a dependency");
                }
                (Err(err), Some(true)) if dependency.required => {
                    tracing::warn!(service, dependency = name, error = %err, "dependency down: not serving");
                }
                (Err(err), Some(true)) => {
                    tracing::warn!(service, dependency = name, error = %err, "optional dependency down: degraded");
                }
                (Ok(()), Some(false)) => tracing::info!(service, dependency = name, "dependency back"),
                _ => {}
            }
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status(format!("{service}/{name}"), status).await;
        }
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status(service, status).await;
        health.set_service_status("", status).await;
        if last_serving == Some(false) && serving {
            tracing::info!(service, "serving again");
        }
        last_serving = Some(serving);
        // While something is down, look again sooner, so a recovery shows quickly.
        let all_up = last.values().all(|ok| *ok);
        tokio::time::sleep(if all_up { HEALTH_INTERVAL } else { HEALTH_INTERVAL / 6 }).await;
    }
}

/// Tower layer: a span parented on the caller's trace context, per-RPC metrics, and the
/// start-up gate.
#[derive(Clone)]
struct ObserveLayer {
    service: &'static str,
    gate: Option<Gate>,
    token: crate::auth::Token,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            service: self.service,
            gate: self.gate.clone(),
            token: self.token.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
struct Observe<S> {
    service: &'static str,
    gate: Option<Gate>,
    token: crate::auth::Token,
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        if !is_grpc(&request) {
            return Box::pin(self.inner.call(request));
        }
        let own = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(self.service))
            .is_some_and(|rest| rest.starts_with('/'));
        let short = short_name(self.service);
        if own && self.token.is_set() && !crate::auth::reads_only(&path) {
            let given = request.headers().get("authorization").and_then(|v| v.to_str().ok());
            if let Err(why) = self.token.admits(given) {
                let status = tonic::Status::unauthenticated(why);
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        }
        if own && let Some(Err(missing)) = self.gate.as_ref().map(|gate| gate()) {
            let status = tonic::Status::unavailable(format!("starting: {missing}"));
            let mut response = status.into_http();
            mark_unavailable(short, response.headers_mut());
            return Box::pin(std::future::ready(Ok(response)));
        }
        let span = crate::trace::grpc_server_span(short, &request);
        let future = { span.in_scope(|| self.inner.call(request)) };
        let in_span = span.clone();
        Box::pin(
            async move {
                let started = Instant::now();
                let mut result = future.await;
                if let Ok(response) = &mut result {
                    mark_unavailable(short, response.headers_mut());
                }
                // Errors are trailers-only answers, with the status in the headers; a success
                // carries it in the trailers.
                let code = match &result {
                    Ok(response) => crate::trace::grpc_status_of(response.headers()).unwrap_or(tonic::Code::Ok),
                    Err(_) => tonic::Code::Internal,
                };
                crate::trace::record_grpc_status(&span, code, false);
                let (grpc_service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("", &path));
                crate::metrics::observe_grpc(
                    grpc_service,
                    method,
                    &format!("{code:?}"),
                    started.elapsed().as_secs_f64(),
                );
                result
            }
            .instrument(in_span),
        )
    }
}

/// `telemetry` of `outpost.telemetry.v1.TelemetryService`.
fn short_name(service: &str) -> &str {
    service
        .strip_prefix("outpost.")
        .and_then(|rest| rest.split('.').next())
        .unwrap_or(service)
}

/// An UNAVAILABLE this server answers itself (a dependency of its own is down, or it is
/// starting) names the service, and is marked as an answer, so clients do not retry it at
/// once (see [`crate::client::peer_unreachable`]).
fn mark_unavailable(short: &str, headers: &mut http::HeaderMap) {
    let unavailable = headers.get("grpc-status").is_some_and(|v| v.as_bytes() == b"14");
    if !unavailable {
        return;
    }
    if let Some(status) = tonic::Status::from_header_map(headers) {
        let message = status.message();
        if !message.starts_with(short) {
            let named = tonic::Status::unavailable(format!("{short}: {message}"));
            let _ = named.add_header(headers);
        }
    }
    if let Ok(value) = http::HeaderValue::from_str(short) {
        headers.insert(crate::client::ANSWERED_UNAVAILABLE, value);
    }
}

fn is_grpc<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}
