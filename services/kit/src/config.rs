//! Configuration: every setting is a flag with an `OUTPOST_*` environment variable, and the
//! defaults are the embedded mode. Invalid settings fail at start with a message that names
//! the setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings shared by every service and the gateway.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Directory of the embedded mode's SQLite files and objects.
    #[arg(long, env = "OUTPOST_DATA_DIR", default_value = "./outpost-data")]
    pub data_dir: PathBuf,

    /// Where the HTTP/JSON gateway listens.
    #[arg(long, env = "OUTPOST_GATEWAY_ADDR", default_value = "127.0.0.1:8080")]
    pub gateway_addr: SocketAddr,

    /// Where the ingest service listens (gRPC, and `/metrics`).
    #[arg(long, env = "OUTPOST_INGEST_ADDR", default_value = "127.0.0.1:50051")]
    pub ingest_addr: SocketAddr,
    /// Where the media service listens.
    #[arg(long, env = "OUTPOST_MEDIA_ADDR", default_value = "127.0.0.1:50052")]
    pub media_addr: SocketAddr,
    /// Where the telemetry service listens.
    #[arg(long, env = "OUTPOST_TELEMETRY_ADDR", default_value = "127.0.0.1:50053")]
    pub telemetry_addr: SocketAddr,
    /// Where the plotting service listens.
    #[arg(long, env = "OUTPOST_PLOTTING_ADDR", default_value = "127.0.0.1:50054")]
    pub plotting_addr: SocketAddr,

    /// How other processes reach ingest (default: `http://` + its listen address).
    #[arg(long, env = "OUTPOST_INGEST_URL", value_parser = parse_url)]
    pub ingest_url: Option<String>,
    /// How other processes reach media.
    #[arg(long, env = "OUTPOST_MEDIA_URL", value_parser = parse_url)]
    pub media_url: Option<String>,
    /// How other processes reach telemetry.
    #[arg(long, env = "OUTPOST_TELEMETRY_URL", value_parser = parse_url)]
    pub telemetry_url: Option<String>,
    /// How other processes reach plotting.
    #[arg(long, env = "OUTPOST_PLOTTING_URL", value_parser = parse_url)]
    pub plotting_url: Option<String>,

    /// PostgreSQL URL (`postgres://…`); unset means SQLite files in the data directory.
    #[arg(long, env = "OUTPOST_DATABASE_URL", value_parser = parse_postgres_url)]
    pub database_url: Option<String>,

    /// Redis URL (`redis://…`); unset means in-process queues, cache and pub/sub.
    #[arg(long, env = "OUTPOST_REDIS_URL", value_parser = parse_redis_url)]
    pub redis_url: Option<String>,

    /// S3 endpoint such as MinIO (`http://minio:9000`); unset means a directory in the data directory.
    #[arg(long, env = "OUTPOST_S3_ENDPOINT", value_parser = parse_url)]
    pub s3_endpoint: Option<String>,
    /// S3 bucket, created when missing.
    #[arg(long, env = "OUTPOST_S3_BUCKET", default_value = "outpost")]
    pub s3_bucket: String,
    /// S3 access key.
    #[arg(long, env = "OUTPOST_S3_ACCESS_KEY", hide_env_values = true)]
    pub s3_access_key: Option<String>,
    /// S3 secret key.
    #[arg(long, env = "OUTPOST_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<String>,
    /// S3 region.
    #[arg(long, env = "OUTPOST_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// Bearer token every write needs, over HTTP and gRPC; unset means no token is required.
    #[arg(long, env = "OUTPOST_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Largest HTTP request body the gateway takes, in bytes.
    #[arg(long, env = "OUTPOST_MAX_BODY_BYTES", default_value = "16777216", value_parser = clap::value_parser!(u64).range(1024..=1_073_741_824))]
    pub max_body_bytes: u64,

    /// Deadline of calls between services, in milliseconds.
    #[arg(long, env = "OUTPOST_RPC_TIMEOUT_MS", default_value = "10000", value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub rpc_timeout_ms: u64,

    /// Prefix of schemas, Redis keys and object keys, so installations can share one PostgreSQL,
    /// Redis and bucket (`[a-z0-9_]`, empty by default).
    #[arg(long, env = "OUTPOST_NAMESPACE", default_value = "", value_parser = parse_namespace)]
    pub namespace: String,

    /// Log filter (`info`, `outpost=debug,info`, …).
    #[arg(long, env = "OUTPOST_LOG", default_value = "info")]
    pub log: String,
}

/// A setting that is wrong, with the setting's name.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    /// The environment variable of the setting.
    pub setting: &'static str,
    /// Why it is wrong.
    pub reason: String,
}

/// Where the S3 object store is, when one is configured.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// `http://host:port`.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Access key.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
    /// Region.
    pub region: String,
}

/// What a service's storage is opened from.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// The embedded mode's directory.
    pub data_dir: PathBuf,
    /// PostgreSQL, when set.
    pub database_url: Option<String>,
    /// Redis, when set.
    pub redis_url: Option<String>,
    /// S3, when set.
    pub s3: Option<S3Config>,
    /// Prefix that keeps test runs apart (schemas, Redis keys, object keys); empty in production.
    pub namespace: String,
    /// How long a request waits for a pooled SQL connection: well under the RPC deadline, so a
    /// request whose database is down is answered UNAVAILABLE within its deadline.
    pub acquire_timeout: Duration,
}

/// The longest wait for a pooled SQL connection.
pub const MAX_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

impl Config {
    /// Parses a configuration from arguments and the environment (for tests and tools).
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        use clap::Parser;
        Wrapper::try_parse_from(
            std::iter::once(std::ffi::OsString::from("outpost")).chain(args.into_iter().map(Into::into)),
        )
        .map(|w| w.config)
    }

    /// Checks the settings that depend on each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.s3_endpoint.is_some() {
            if self.s3_access_key.as_deref().unwrap_or("").is_empty() {
                return Err(ConfigError {
                    setting: "OUTPOST_S3_ACCESS_KEY",
                    reason: "required when OUTPOST_S3_ENDPOINT is set".into(),
                });
            }
            if self.s3_secret_key.as_deref().unwrap_or("").is_empty() {
                return Err(ConfigError {
                    setting: "OUTPOST_S3_SECRET_KEY",
                    reason: "required when OUTPOST_S3_ENDPOINT is set".into(),
                });
            }
            let bucket = &self.s3_bucket;
            let valid = (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
            if !valid {
                return Err(ConfigError {
                    setting: "OUTPOST_S3_BUCKET",
                    reason: format!("{bucket:?} is not a valid bucket name (3 to 63 of a-z, 0-9, '-', '.')"),
                });
            }
        }
        if matches!(self.api_token.as_deref(), Some(t) if t.trim().is_empty()) {
            return Err(ConfigError {
                setting: "OUTPOST_API_TOKEN",
                reason: "must not be blank when set".into(),
            });
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log).is_err() {
            return Err(ConfigError {
                setting: "OUTPOST_LOG",
                reason: format!("{:?} is not a log filter", self.log),
            });
        }
        Ok(())
    }

    /// The storage settings, for a service's `Storage::open`.
    pub fn storage(&self) -> StorageConfig {
        StorageConfig {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            redis_url: self.redis_url.clone(),
            s3: self.s3_endpoint.as_ref().map(|endpoint| S3Config {
                endpoint: endpoint.clone(),
                bucket: self.s3_bucket.clone(),
                access_key: self.s3_access_key.clone().unwrap_or_default(),
                secret_key: self.s3_secret_key.clone().unwrap_or_default(),
                region: self.s3_region.clone(),
            }),
            namespace: self.namespace.clone(),
            acquire_timeout: (self.rpc_timeout() / 4).clamp(Duration::from_millis(5), MAX_ACQUIRE_TIMEOUT),
        }
    }

    /// The API token writes need (over HTTP and gRPC), and that calls between services carry.
    pub fn token(&self) -> crate::auth::Token {
        crate::auth::Token::new(self.api_token.as_deref())
    }

    /// The deadline of calls between services.
    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms)
    }

    /// How to reach ingest.
    pub fn ingest_endpoint(&self) -> String {
        endpoint(&self.ingest_url, self.ingest_addr)
    }
    /// How to reach media.
    pub fn media_endpoint(&self) -> String {
        endpoint(&self.media_url, self.media_addr)
    }
    /// How to reach telemetry.
    pub fn telemetry_endpoint(&self) -> String {
        endpoint(&self.telemetry_url, self.telemetry_addr)
    }
    /// How to reach plotting.
    pub fn plotting_endpoint(&self) -> String {
        endpoint(&self.plotting_url, self.plotting_addr)
    }
}

fn endpoint(url: &Option<String>, addr: SocketAddr) -> String {
    match url {
        Some(url) => url.clone(),
        None if addr.ip().is_unspecified() => format!("http://127.0.0.1:{}", addr.port()),
        None => format!("http://{addr}"),
    }
}

fn parse_namespace(value: &str) -> Result<String, String> {
    if value.len() > 32
        || !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err("must be at most 32 of a-z, 0-9 and '_'".into());
    }
    Ok(value.to_string())
}

/// An `http://` or `https://` URL with a host, without a trailing `/` (a clap value parser).
pub fn parse_url(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn parse_postgres_url(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err("must start with postgres:// (unset it for embedded SQLite)".into());
    }
    Ok(value.to_string())
}

fn parse_redis_url(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err("must start with redis:// (unset it for in-process queues)".into());
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_mode() {
        let config = Config::from_args(Vec::<String>::new()).unwrap();
        assert_eq!(config.gateway_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.media_endpoint(), "http://127.0.0.1:50052");
        assert!(config.storage().database_url.is_none() && config.storage().s3.is_none());
        config.validate().unwrap();
    }

    #[test]
    fn a_bad_setting_is_named() {
        let err = Config::from_args(["--database-url", "mysql://x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--database-url"), "{err}");
        let config = Config::from_args(["--s3-endpoint", "http://127.0.0.1:9000"]).unwrap();
        assert_eq!(config.validate().unwrap_err().setting, "OUTPOST_S3_ACCESS_KEY");
    }
}
