//! Helpers for tests of every crate: the storage backends a suite runs on.
//!
//! The embedded backend always runs; the external one (PostgreSQL + Redis + S3) runs when
//! these variables are set:
//!
//! | variable | |
//! |---|---|
//! | `OUTPOST_TEST_POSTGRES_URL` | `postgres://postgres@127.0.0.1:5432/test` |
//! | `OUTPOST_TEST_REDIS_URL` | `redis://127.0.0.1:6379` |
//! | `OUTPOST_TEST_S3_ENDPOINT` | `http://127.0.0.1:9200` |
//! | `OUTPOST_TEST_S3_ACCESS_KEY`, `OUTPOST_TEST_S3_SECRET_KEY` | credentials |
//! | `OUTPOST_TEST_S3_BUCKET` | optional, default `outpost-test` |
//! | `OUTPOST_TEST_S3_REGION` | optional, default `us-east-1` |
//! | `OUTPOST_TEST_REQUIRE_BACKENDS=1` | fail instead of skipping the external backend |

mod proxy;

pub use proxy::Proxy;

use std::io::Write as _;
use std::sync::{Arc, Once};

use crate::config::{S3Config, StorageConfig};

/// The variables the external backend needs.
pub const EXTERNAL_VARIABLES: [&str; 5] = [
    "OUTPOST_TEST_POSTGRES_URL",
    "OUTPOST_TEST_REDIS_URL",
    "OUTPOST_TEST_S3_ENDPOINT",
    "OUTPOST_TEST_S3_ACCESS_KEY",
    "OUTPOST_TEST_S3_SECRET_KEY",
];

/// One storage backend a suite runs on.
#[derive(Clone, Debug)]
pub struct TestBackend {
    /// `"embedded"` or `"external"`.
    pub label: &'static str,
    /// The storage to open; its namespace is fresh for every [`backends`] call.
    pub storage: StorageConfig,
    _dir: Arc<tempfile::TempDir>,
}

impl TestBackend {
    /// A configuration on this backend: its storage and namespace, every listen address on
    /// 127.0.0.1:0 (bind listeners yourself and point the `*_url` settings at them).
    pub fn config(&self) -> crate::config::Config {
        let mut config = crate::config::Config::from_args(["--data-dir", &self.storage.data_dir.display().to_string()])
            .expect("default configuration parses");
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.gateway_addr = any;
        config.ingest_addr = any;
        config.media_addr = any;
        config.telemetry_addr = any;
        config.plotting_addr = any;
        config.namespace = self.storage.namespace.clone();
        config.database_url = self.storage.database_url.clone();
        config.redis_url = self.storage.redis_url.clone();
        if let Some(s3) = &self.storage.s3 {
            config.s3_endpoint = Some(s3.endpoint.clone());
            config.s3_bucket = s3.bucket.clone();
            config.s3_access_key = Some(s3.access_key.clone());
            config.s3_secret_key = Some(s3.secret_key.clone());
            config.s3_region = s3.region.clone();
        }
        config
    }

    /// Whether this is the external backend (PostgreSQL, Redis, S3).
    pub fn is_external(&self) -> bool {
        self.label == "external"
    }
}

/// A fresh namespace such as `t3f9a2c01_`, so parallel tests never share schemas, keys or
/// objects.
pub fn namespace() -> String {
    format!("t{:08x}_", rand::random::<u32>())
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The embedded backend always (a fresh temporary data directory), plus the external one
/// when its variables are set (see the module documentation). With
/// `OUTPOST_TEST_REQUIRE_BACKENDS=1`, a missing variable panics with its name; without it,
/// a partial set prints a note to stderr and only the embedded backend runs.
pub fn backends() -> Vec<TestBackend> {
    let namespace = namespace();
    let mut out = vec![backend("embedded", namespace.clone(), None, None, None)];
    let missing: Vec<&str> = EXTERNAL_VARIABLES
        .into_iter()
        .filter(|name| variable(name).is_none())
        .collect();
    let required = variable("OUTPOST_TEST_REQUIRE_BACKENDS").is_some_and(|v| v != "0");
    if !missing.is_empty() {
        if required {
            panic!(
                "OUTPOST_TEST_REQUIRE_BACKENDS=1 but the external test backend is missing {}",
                missing.join(", ")
            );
        }
        if missing.len() < EXTERNAL_VARIABLES.len() {
            static NOTE: Once = Once::new();
            NOTE.call_once(|| {
                // Past the test harness's capture, so the skip is visible.
                let note = format!(
                    "note: the external test backend is skipped: {} not set\n",
                    missing.join(", ")
                );
                let _ = std::io::stderr().write_all(note.as_bytes());
            });
        }
        return out;
    }
    let value = |name: &str| variable(name).expect("checked above");
    let s3 = S3Config {
        endpoint: value("OUTPOST_TEST_S3_ENDPOINT").trim_end_matches('/').to_string(),
        bucket: variable("OUTPOST_TEST_S3_BUCKET").unwrap_or_else(|| "outpost-test".into()),
        access_key: value("OUTPOST_TEST_S3_ACCESS_KEY"),
        secret_key: value("OUTPOST_TEST_S3_SECRET_KEY"),
        region: variable("OUTPOST_TEST_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
    };
    out.push(backend(
        "external",
        namespace,
        Some(value("OUTPOST_TEST_POSTGRES_URL")),
        Some(value("OUTPOST_TEST_REDIS_URL")),
        Some(s3),
    ));
    out
}

fn backend(
    label: &'static str,
    namespace: String,
    database_url: Option<String>,
    redis_url: Option<String>,
    s3: Option<S3Config>,
) -> TestBackend {
    let dir = tempfile::Builder::new()
        .prefix("outpost-test-")
        .tempdir()
        .expect("creating a temporary data directory");
    TestBackend {
        label,
        storage: StorageConfig {
            data_dir: dir.path().to_path_buf(),
            database_url,
            redis_url,
            s3,
            namespace,
            acquire_timeout: crate::config::MAX_ACQUIRE_TIMEOUT,
        },
        _dir: Arc::new(dir),
    }
}
