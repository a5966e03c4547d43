//! What the benchmarks share: their settings, and the PostgreSQL and Redis they run on.

/// The setting `name` from the environment, or `default`.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `OUTPOST_BENCH_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test.
pub fn postgres_url() -> String {
    setting(
        "OUTPOST_BENCH_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test".to_string(),
    )
}

/// `OUTPOST_BENCH_REDIS_URL`, default redis://127.0.0.1:6379.
#[allow(dead_code)] // Not every benchmark uses Redis.
pub fn redis_url() -> String {
    setting("OUTPOST_BENCH_REDIS_URL", "redis://127.0.0.1:6379".to_string())
}
