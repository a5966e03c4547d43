//! Clients of other services: channels with a connect timeout and a deadline on every call,
//! a client span and trace context on every call, and bounded retry with backoff for
//! idempotent calls.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tracing::{Instrument, Span};

/// A channel whose every call is a client span (named by the RPC, ended with its gRPC status)
/// that carries the trace context to the server, and the API token when one is configured
/// (services check it on writes like the gateway does).
#[derive(Clone, Debug)]
pub struct Traced {
    channel: Channel,
    caller: &'static str,
    authorization: Option<http::HeaderValue>,
}

impl tower::Service<http::Request<Body>> for Traced {
    type Response = http::Response<TracedBody>;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let span = crate::trace::grpc_client_span(self.caller, &request);
        crate::trace::inject(&span, request.headers_mut());
        if let Some(authorization) = &self.authorization {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, authorization.clone());
        }
        let call = self.channel.call(request);
        let in_span = span.clone();
        Box::pin(
            async move {
                match call.await {
                    Ok(response) => {
                        // An error comes as a trailers-only answer; a success ends in trailers,
                        // so the span ends with the body.
                        let status = crate::trace::grpc_status_of(response.headers());
                        if let Some(code) = status {
                            crate::trace::record_grpc_status(&span, code, true);
                        }
                        let span = status.is_none().then_some(span);
                        Ok(response.map(|body| TracedBody { body, span }))
                    }
                    Err(err) => {
                        crate::trace::record_grpc_status(&span, tonic::Code::Unavailable, true);
                        Err(err)
                    }
                }
            }
            .instrument(in_span),
        )
    }
}

/// A response body that records the call's gRPC status on its client span from the trailers,
/// and ends the span when the body is done with.
pub struct TracedBody {
    body: Body,
    span: Option<Span>,
}

impl http_body::Body for TracedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
            && let Some(span) = self.span.take()
        {
            let code = crate::trace::grpc_status_of(trailers).unwrap_or(tonic::Code::Unknown);
            crate::trace::record_grpc_status(&span, code, true);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A lazily connecting channel to `endpoint` whose calls fail after `timeout`.
pub fn channel(endpoint: &str, timeout: Duration) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| anyhow::anyhow!("invalid endpoint {endpoint:?}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    Ok(endpoint.connect_lazy())
}

/// A channel to `endpoint` (see [`channel`]) for calls made by `caller`, carrying `token` (see
/// [`outbound`]).
pub fn traced(
    endpoint: &str,
    timeout: Duration,
    caller: &'static str,
    token: &crate::auth::Token,
) -> anyhow::Result<Traced> {
    Ok(outbound(channel(endpoint, timeout)?, caller, token))
}

/// `channel`, each call a client span of `caller` (the short name of the calling service, such
/// as `gateway`) carrying its trace context and `token` (none when it is not set).
pub fn outbound(channel: Channel, caller: &'static str, token: &crate::auth::Token) -> Traced {
    Traced {
        channel,
        caller,
        authorization: token.header().and_then(|h| h.parse().ok()),
    }
}

/// A peer service as a dependency in health: healthy while its gRPC health check answers
/// SERVING for `service` (its full name) on `channel`; `name` is how health reports show it
/// (`telemetry`, `media`, …).
pub fn peer_dependency(name: &'static str, channel: Channel, service: &'static str) -> crate::storage::Dependency {
    use tonic_health::pb::health_check_response::ServingStatus;
    let health = tonic_health::pb::health_client::HealthClient::new(channel);
    crate::storage::Dependency::new(name, move || {
        let mut health = health.clone();
        async move {
            let request = tonic_health::pb::HealthCheckRequest {
                service: service.to_string(),
            };
            let status = health
                .check(request)
                .await
                .map_err(|s| anyhow::anyhow!("{name}: {}", s.message()))?;
            match status.into_inner().status() {
                ServingStatus::Serving => Ok(()),
                other => anyhow::bail!("{name} is {}", other.as_str_name().to_lowercase()),
            }
        }
    })
}

/// Waits until the server at `endpoint` answers a gRPC health check for `service` (serving
/// or not: it listens and reports); fails only on an invalid endpoint.
pub async fn wait_answering(endpoint: &str, service: &str) -> anyhow::Result<()> {
    let channel = channel(endpoint, Duration::from_secs(1))?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    loop {
        let request = tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        };
        if health.check(request).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the server at `endpoint` reports `service` SERVING (its storage is migrated and
/// its required dependencies answer), at most `within`; the last answer otherwise.
pub async fn wait_serving(endpoint: &str, service: &str, within: Duration) -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel = channel(endpoint, Duration::from_secs(1))?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let request = tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        };
        let last = match health.check(request).await {
            Ok(answer) if answer.get_ref().status() == ServingStatus::Serving => return Ok(()),
            Ok(answer) => format!("{:?}", answer.get_ref().status()),
            Err(status) => status.message().to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{service} at {endpoint} is not serving after {within:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Attempts of an idempotent call, the first included, at most.
pub const RETRY_ATTEMPTS: u32 = 4;

/// The metadata key a server adds to the UNAVAILABLE it answers itself (a dependency of its
/// own is down, or it is starting), naming the service. Such an answer is final: trying the
/// same server again a few milliseconds later would only make the caller wait longer.
pub const ANSWERED_UNAVAILABLE: &str = "outpost-unavailable";

/// When a call, retries included, must be answered: one deadline for every attempt.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(tokio::time::Instant);

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Deadline {
        Deadline(tokio::time::Instant::now() + timeout)
    }

    /// The time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(tokio::time::Instant::now())
    }

    /// A request of `message` whose gRPC timeout is the time left, so the server stops
    /// working on it when the caller stops waiting.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.remaining().max(Duration::from_millis(1)));
        request
    }
}

/// Whether a failed call may succeed if tried again at once: the peer did not answer
/// (connection refused or reset while it restarts), as opposed to a peer that answered
/// UNAVAILABLE itself, naming what it waits for.
pub fn peer_unreachable(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && !status.metadata().contains_key(ANSWERED_UNAVAILABLE)
}

/// Runs an idempotent call until `deadline`, retrying while the peer is unreachable (see
/// [`peer_unreachable`]), with jittered exponential backoff (50 ms, 100 ms, 200 ms …), at most
/// [`RETRY_ATTEMPTS`] attempts. Every attempt shares the one deadline: build each request with
/// [`Deadline::request`]. No attempt starts once the deadline has passed.
pub async fn retry<T, F, Fut>(deadline: Deadline, mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status) if attempt < RETRY_ATTEMPTS && peer_unreachable(&status) => {
                let base = 50u64 << (attempt - 1);
                let wait = Duration::from_millis(base + rand::random_range(0..=base / 2));
                // Only when an attempt still fits after the wait.
                if deadline.remaining() <= wait + Duration::from_millis(10) {
                    return Err(status);
                }
                tracing::debug!(attempt, error = %status.message(), "retrying unreachable peer");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn forever() -> Deadline {
        Deadline::after(Duration::from_secs(60))
    }

    #[tokio::test]
    async fn retries_an_unreachable_peer_only_and_boundedly() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(forever(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(tonic::Status::unavailable("down"))
        })
        .await;
        assert_eq!(result.unwrap_err().code(), tonic::Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), RETRY_ATTEMPTS);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(forever(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(tonic::Status::invalid_argument("bad"))
        })
        .await;
        assert_eq!(result.unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // A server that answered UNAVAILABLE itself (its database is down) is not asked again.
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(forever(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut status = tonic::Status::unavailable("the SQL database is unavailable");
            status
                .metadata_mut()
                .insert(ANSWERED_UNAVAILABLE, "telemetry".parse().unwrap());
            Err(status)
        })
        .await;
        assert_eq!(result.unwrap_err().code(), tonic::Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let result = retry(forever(), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(tonic::Status::unavailable("starting"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
    }

    #[tokio::test]
    async fn retries_share_one_deadline() {
        let started = tokio::time::Instant::now();
        let deadline = Deadline::after(Duration::from_millis(120));
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(deadline, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(40)).await;
            Err(tonic::Status::unavailable("down"))
        })
        .await;
        assert!(result.is_err());
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        assert!(
            calls.load(Ordering::SeqCst) < RETRY_ATTEMPTS,
            "no attempt past the deadline"
        );
        let request = deadline.request(());
        assert!(
            request.metadata().get("grpc-timeout").is_some(),
            "the time left travels"
        );
    }
}
