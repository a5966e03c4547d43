//! Outpost's HTTP/JSON gateway. It owns nothing: at start it reads the services' descriptor
//! set and builds its `/api/v1/...` routes from their `google.api.http` rules (generic
//! transcoding, as Envoy's gRPC-JSON transcoder and grpc-gateway do), serves the OpenAPI
//! document generated from the same descriptors, the ops routes `/healthz`, `/readyz`,
//! `/version`, `/metrics`, and the source systems' routes ([`sources`]).
//!
//! Composition: [`routes`] gives the routes (transcoding as the fallback, so more routes can be
//! merged in with [`axum::Router::merge`], as long as they bring no fallback of their own);
//! [`layer`] wraps a router in the gateway's middleware (trace span and metrics per request,
//! bearer token on writes, body limit, JSON errors). [`router`] is
//! `layer(routes(..).merge(sources::routes(..)))`.
//!
//! ```no_run
//! # fn example(config: outpost_kit::config::Config, more: axum::Router) -> anyhow::Result<axum::Router> {
//! let upstreams = outpost_gateway::Upstreams::connect(&config)?;
//! let app = outpost_gateway::layer(&config, outpost_gateway::routes(&config, upstreams)?.merge(more));
//! # Ok(app) }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use outpost_kit::client::Traced;
use outpost_kit::config::Config;
use prost_reflect::DescriptorPool;

mod codec;
pub mod content;
pub mod download;
pub mod error;
mod middleware;
pub mod openapi;
mod ops;
mod request;
pub mod rules;
pub mod sources;
pub mod sse;
pub mod template;
mod transcode;
pub mod ui;

pub use error::ApiError;

/// Channels to the four services.
#[derive(Clone, Debug)]
pub struct Upstreams {
    /// The ingest service.
    pub ingest: Traced,
    /// The media service.
    pub media: Traced,
    /// The telemetry service.
    pub telemetry: Traced,
    /// The plotting service.
    pub plotting: Traced,
    /// The deadline of a request's calls, retries included.
    pub timeout: std::time::Duration,
}

impl Upstreams {
    /// Lazily connecting channels to the configured endpoints, each call with the configured
    /// deadline and the current trace context.
    pub fn connect(config: &Config) -> anyhow::Result<Self> {
        let timeout = config.rpc_timeout();
        let token = config.token();
        let channel = |endpoint: String, setting: &str| {
            outpost_kit::client::traced(&endpoint, timeout, "gateway", &token)
                .with_context(|| format!("gateway upstream {setting}"))
        };
        Ok(Self {
            ingest: channel(config.ingest_endpoint(), "OUTPOST_INGEST_URL")?,
            media: channel(config.media_endpoint(), "OUTPOST_MEDIA_URL")?,
            telemetry: channel(config.telemetry_endpoint(), "OUTPOST_TELEMETRY_URL")?,
            plotting: channel(config.plotting_endpoint(), "OUTPOST_PLOTTING_URL")?,
            timeout,
        })
    }

    /// The deadline of a request's upstream calls, from now: every call and retry of one
    /// request shares it.
    pub fn deadline(&self) -> outpost_kit::client::Deadline {
        outpost_kit::client::Deadline::after(self.timeout)
    }

    fn by_service(&self) -> HashMap<String, Traced> {
        HashMap::from([
            (outpost_api::names::INGEST.to_string(), self.ingest.clone()),
            (outpost_api::names::MEDIA.to_string(), self.media.clone()),
            (outpost_api::names::TELEMETRY.to_string(), self.telemetry.clone()),
            (outpost_api::names::PLOTTING.to_string(), self.plotting.clone()),
        ])
    }
}

/// The descriptor pool of every Outpost service.
pub fn descriptor_pool() -> anyhow::Result<DescriptorPool> {
    DescriptorPool::decode(outpost_api::FILE_DESCRIPTOR_SET).context("decoding the services' descriptor set")
}

/// The gateway's routes without its middleware: the ops routes, `/api/openapi.json`, and the
/// transcoded API as the fallback (which answers 404 JSON for anything it does not know).
pub fn routes(config: &Config, upstreams: Upstreams) -> anyhow::Result<Router> {
    let pool = descriptor_pool()?;
    let table = rules::RouteTable::from_pool(&pool)?;
    // The document covers the source systems' routes too: [`router`] serves them.
    let hand_written: Vec<openapi::Route> = ops::openapi().into_iter().chain(sources::openapi()).collect();
    let openapi = Bytes::from(serde_json::to_vec(&openapi::document(&pool, &table, &hand_written))?);
    let count = table.bindings().len();
    let transcoder = Arc::new(transcode::Transcoder::new(
        table,
        upstreams.by_service(),
        config.rpc_timeout(),
        config.max_body_bytes,
    )?);
    tracing::info!(routes = count, "gateway routes built from google.api.http rules");
    Ok(Router::new()
        .route(
            "/api/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { ([(CONTENT_TYPE, HeaderValue::from_static("application/json"))], openapi).into_response() }
            }),
        )
        .merge(ops::routes(&upstreams))
        .fallback(move |request| transcoder.clone().handle(request)))
}

/// Wraps `router` (the gateway's routes and any merged in) in the gateway's middleware.
pub fn layer(config: &Config, router: Router) -> Router {
    let limit = config.max_body_bytes;
    router
        .layer(DefaultBodyLimit::max(usize::try_from(limit).unwrap_or(usize::MAX)))
        .layer(axum::middleware::from_fn_with_state(
            limit,
            middleware::limit_and_json_errors,
        ))
        .layer(axum::middleware::from_fn(middleware::json_bodies))
        .layer(axum::middleware::from_fn_with_state(
            config.token(),
            middleware::require_token,
        ))
        .layer(axum::middleware::from_fn(middleware::cross_origin))
        .layer(axum::middleware::from_fn(middleware::observe))
}

/// Everything: `layer(config, routes(config, upstreams)?.merge(sources::routes(&upstreams)))`,
/// with the web UI ([`ui`]) merged in.
pub fn router(config: &Config, upstreams: Upstreams) -> anyhow::Result<Router> {
    let sources = sources::routes(&upstreams).merge(ui::routes());
    Ok(layer(config, routes(config, upstreams)?.merge(sources)))
}

/// Serves the gateway on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(&config, Upstreams::connect(&config)?)?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    // TCP_NODELAY on every connection: a response must not wait for the client's delayed ACK.
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    tracing::info!("gateway stopped");
    Ok(())
}
