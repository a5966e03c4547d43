//! Clients of other services: channels with a connect timeout and a deadline on every call,
//! trace context on every call, and bounded retry with backoff for idempotent calls.

use std::future::Future;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// A channel that injects trace context into every call.
pub type Traced = InterceptedService<Channel, fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>>;

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

/// A traced channel to `endpoint` (see [`channel`]).
pub fn traced(endpoint: &str, timeout: Duration) -> anyhow::Result<Traced> {
    Ok(with_trace(channel(endpoint, timeout)?))
}

/// `channel`, injecting the current trace context into every call.
pub fn with_trace(channel: Channel) -> Traced {
    let interceptor: fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> = crate::trace::interceptor;
    InterceptedService::new(channel, interceptor)
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

/// Attempts of an idempotent call, the first included.
pub const RETRY_ATTEMPTS: u32 = 4;

/// Runs an idempotent call, retrying while the peer is unavailable, with jittered exponential
/// backoff (50 ms, 100 ms, 200 ms …), at most [`RETRY_ATTEMPTS`] attempts.
pub async fn retry<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(status) if attempt < RETRY_ATTEMPTS && status.code() == tonic::Code::Unavailable => {
                let base = 50u64 << (attempt - 1);
                let jitter = rand::random_range(0..=base / 2);
                tracing::debug!(attempt, error = %status.message(), "retrying unavailable peer");
                tokio::time::sleep(Duration::from_millis(base + jitter)).await;
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

    #[tokio::test]
    async fn retries_unavailable_only_and_boundedly() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(tonic::Status::unavailable("down"))
        })
        .await;
        assert_eq!(result.unwrap_err().code(), tonic::Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), RETRY_ATTEMPTS);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(tonic::Status::invalid_argument("bad"))
        })
        .await;
        assert_eq!(result.unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let result = retry(|| async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(tonic::Status::unavailable("starting"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
    }
}
