//! What the benchmarks share: their settings, and the PostgreSQL and Redis they run on.

/// The setting `name` from the environment, or `default`.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `OUTPOST_BENCH_POSTGRES_URL` (postgres://postgres@127.0.0.1:5432/test) and
/// `OUTPOST_BENCH_REDIS_URL` (redis://127.0.0.1:6379).
pub fn backends() -> (String, String) {
    let postgres = setting(
        "OUTPOST_BENCH_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test".to_string(),
    );
    let redis = setting("OUTPOST_BENCH_REDIS_URL", "redis://127.0.0.1:6379".to_string());
    (postgres, redis)
}
