//! The object store of one service: a directory in the embedded mode, an S3 bucket (MinIO)
//! with a key prefix in the cluster, both through `object_store`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt as _, RetryConfig};

use super::Dependency;
use super::startup::{Failure, Startup};
use crate::config::{S3Config, StorageConfig};

/// The longest object key.
pub const MAX_KEY_LEN: usize = 512;
/// The longest segment (between `/`) of an object key: a file name in the embedded mode.
pub const MAX_SEGMENT_LEN: usize = 200;

/// A service's object store; keys are `[a-z0-9._/-]` paths such as `images/ab/abcdef.jpg`.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// Prepended to every key: `{namespace}{service}/` on S3, empty for the local directory
    /// (which is the service's own directory).
    prefix: String,
    /// The bucket's creation, retried in the background while the S3 server is not up.
    bucket: Startup,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Objects {
    /// Opens the directory `{data_dir}/objects/{namespace}{service}/` (created when missing;
    /// writes are fsynced), or the configured S3 bucket with the key prefix
    /// `{namespace}{service}/`. The bucket is created when missing, in the background and
    /// retried with backoff while the S3 server is not up (health names it meanwhile). Every
    /// S3 call has connect and request timeouts and a bounded retry.
    pub async fn start(config: &StorageConfig, service: &str) -> anyhow::Result<Objects> {
        let name = format!("{}{service}", config.namespace);
        validate_key(&name)?;
        match &config.s3 {
            None => {
                let dir = config.data_dir.join("objects").join(&name);
                tokio::fs::create_dir_all(&dir)
                    .await
                    .with_context(|| format!("creating the object directory {}", dir.display()))?;
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .with_context(|| format!("opening the object directory {}", dir.display()))?
                    .with_automatic_cleanup(true)
                    .with_fsync(true);
                Ok(Objects {
                    store: Arc::new(store),
                    prefix: String::new(),
                    bucket: Startup::done(),
                })
            }
            Some(s3) => {
                // `allow_http` lives in the client options: set it there, not only on the builder.
                let client = ClientOptions::new()
                    .with_allow_http(true)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(30));
                let retry = RetryConfig {
                    backoff: BackoffConfig::default(),
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(20),
                };
                let store = AmazonS3Builder::new()
                    .with_endpoint(&s3.endpoint)
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_access_key_id(&s3.access_key)
                    .with_secret_access_key(&s3.secret_key)
                    .with_virtual_hosted_style_request(false)
                    .with_client_options(client)
                    .with_allow_http(true)
                    .with_retry(retry)
                    .build()
                    .with_context(|| format!("configuring the s3 bucket {} at {}", s3.bucket, s3.endpoint))?;
                let bucket = {
                    let s3 = s3.clone();
                    Startup::spawn(
                        format!("s3 bucket {} at {}", s3.bucket, s3.endpoint),
                        format!("s3 bucket {} at {}: connecting", s3.bucket, s3.endpoint),
                        move || {
                            let s3 = s3.clone();
                            async move { ensure_bucket(&s3).await }
                        },
                    )
                };
                Ok(Objects {
                    store: Arc::new(store),
                    prefix: format!("{name}/"),
                    bucket,
                })
            }
        }
    }

    fn path(&self, key: &str) -> anyhow::Result<Path> {
        validate_key(key)?;
        Path::parse(format!("{}{key}", self.prefix)).with_context(|| format!("invalid object key {key:?}"))
    }

    /// Stores `bytes` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        let path = self.path(key)?;
        self.store
            .put(&path, bytes.into())
            .await
            .with_context(|| format!("storing object {key}"))?;
        Ok(())
    }

    /// The bytes under `key`; `None` when there is no such object.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        let path = self.path(key)?;
        let result = match self.store.get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading object {key}")),
        };
        let bytes = result.bytes().await.with_context(|| format!("reading object {key}"))?;
        Ok(Some(bytes))
    }

    /// Removes the object under `key`; a missing object is fine.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting object {key}")),
        }
    }

    /// The keys that start with `prefix` (a plain string prefix; empty for all), sorted.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        if !prefix.is_empty() {
            check_chars(prefix)?;
        }
        // `object_store` lists whole path segments: list the directory part of the prefix and
        // filter the rest.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let full = format!("{}{dir}", self.prefix);
        let root = (!full.is_empty()).then(|| Path::from(full.trim_end_matches('/')));
        let listed: Vec<_> = match self.store.list(root.as_ref()).try_collect().await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("listing objects under {prefix:?}")),
        };
        let mut keys: Vec<String> = listed
            .into_iter()
            .filter_map(|meta| meta.location.as_ref().strip_prefix(&self.prefix).map(str::to_string))
            .filter(|key| key.starts_with(prefix))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// [`Objects::start`], then waits until the bucket exists; fails after about 30 s of an
    /// unreachable S3 server, or at once when it refuses. For tests and tools.
    pub async fn open(config: &StorageConfig, service: &str) -> anyhow::Result<Objects> {
        let objects = Self::start(config, service).await?;
        objects
            .bucket
            .wait(std::time::Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(objects)
    }

    /// Ok once the bucket exists; else what is missing, for people.
    pub fn state(&self) -> Result<(), String> {
        self.bucket.check()
    }

    /// Resolves once the bucket exists (at once for the local directory).
    pub async fn ready(&self) {
        self.bucket.finished().await
    }

    /// Checks that the bucket exists and the store answers (lists the service's prefix).
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.bucket.check().map_err(|e| anyhow::anyhow!(e))?;
        let root = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.trim_end_matches('/')));
        self.store
            .list_with_delimiter(root.as_ref())
            .await
            .context("the object store is unavailable")?;
        Ok(())
    }

    /// The dependency `objects` for health reports.
    pub fn dependency(&self) -> Dependency {
        let objects = self.clone();
        Dependency::new(super::dependency::OBJECTS, move || {
            let objects = objects.clone();
            async move { objects.ping().await }
        })
    }
}

fn check_chars(key: &str) -> anyhow::Result<()> {
    let ok_chars = key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'/' | b'-'));
    anyhow::ensure!(
        ok_chars && key.len() <= MAX_KEY_LEN && !key.contains("..") && !key.starts_with('/') && !key.contains("//"),
        "invalid object key {key:?}: use 1 to {MAX_KEY_LEN} of a-z, 0-9, '.', '_', '/', '-', without '..', '//' or a leading '/'"
    );
    Ok(())
}

/// Checks a key: 1 to 512 of `[a-z0-9._/-]`, no `..`, no leading `/`, no empty or `.`
/// segment, and segments of at most [`MAX_SEGMENT_LEN`] (file names have limits).
fn validate_key(key: &str) -> anyhow::Result<()> {
    check_chars(key)?;
    let segments_ok = !key.is_empty()
        && key
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment.len() <= MAX_SEGMENT_LEN);
    anyhow::ensure!(
        segments_ok,
        "invalid object key {key:?}: path segments must be 1 to {MAX_SEGMENT_LEN} characters and not '.'"
    );
    Ok(())
}

/// Creates the bucket unless it exists (HEAD first, then a signed `CreateBucket`). A refusal
/// (403, a bad bucket name) will not go away by itself; an unreachable server may.
async fn ensure_bucket(s3: &S3Config) -> Result<(), Failure> {
    match try_ensure_bucket(s3).await {
        Ok(()) => Ok(()),
        Err((error, retryable)) => Err(Failure {
            message: format!("{error:#}"),
            retryable,
        }),
    }
}

async fn try_ensure_bucket(s3: &S3Config) -> Result<(), (anyhow::Error, bool)> {
    let context = || format!("creating the s3 bucket {} at {}", s3.bucket, s3.endpoint);
    // Settings that cannot work stay wrong; a server that does not answer may come up.
    let wrong = |e: anyhow::Error| (e, false);
    let unreachable = |e: reqwest::Error| (anyhow::Error::new(e).context(context()), true);
    let endpoint = url::Url::parse(&s3.endpoint).with_context(context).map_err(wrong)?;
    let bucket = rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, s3.bucket.clone(), s3.region.clone())
        .with_context(context)
        .map_err(wrong)?;
    let credentials = rusty_s3::Credentials::new(&s3.access_key, &s3.secret_key);
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
        .with_context(context)
        .map_err(wrong)?;
    let sign_for = Duration::from_secs(60);
    use rusty_s3::S3Action as _;

    let head = bucket.head_bucket(Some(&credentials)).sign(sign_for);
    let status = client.head(head).send().await.map_err(unreachable)?.status();
    if status.is_success() {
        return Ok(());
    }
    let create = bucket.create_bucket(&credentials).sign(sign_for);
    // us-east-1 takes no location; an explicit empty body sends `Content-Length: 0`.
    let body = match s3.region.as_str() {
        "us-east-1" | "" => String::new(),
        region => format!(
            "<CreateBucketConfiguration><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
        ),
    };
    let response = client
        .put(create)
        .header(reqwest::header::CONTENT_LENGTH, body.len())
        .body(body)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if status.is_success() {
        tracing::info!(bucket = %s3.bucket, "created the s3 bucket");
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::CONFLICT
        && (body.contains("BucketAlreadyOwnedByYou") || body.contains("BucketAlreadyExists"))
    {
        return Ok(());
    }
    let body: String = body.chars().take(300).collect();
    // A server still starting answers 5xx; 4xx (bad keys, a bad name) is a wrong setting.
    Err((
        anyhow::anyhow!("{}: status {status}: {body}", context()),
        status.is_server_error(),
    ))
}
