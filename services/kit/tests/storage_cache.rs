//! The cache suite, run on every test backend (in-process; Redis).

use std::time::Duration;

use outpost_kit::storage::{Migrations, Storage};
use outpost_kit::testing::{self, TestBackend};

async fn storage(backend: &TestBackend, service: &'static str) -> Storage {
    let migrations = Migrations {
        sqlite: sqlx::migrate!("tests/migrations/sqlite"),
        postgres: sqlx::migrate!("tests/migrations/postgres"),
    };
    Storage::open(&backend.storage, service, migrations).await.unwrap()
}

#[tokio::test]
async fn set_get_expire_delete() {
    for backend in testing::backends() {
        let label = backend.label;
        let cache = storage(&backend, "kitcache").await.cache();
        assert_eq!(cache.get("temperature").await.unwrap(), None, "{label}");

        cache
            .set("temperature", b"21.5", Duration::from_secs(60))
            .await
            .unwrap();
        cache.set("bytes", &[0, 255, 1], Duration::from_secs(60)).await.unwrap();
        cache
            .set("short", b"soon gone", Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(
            cache.get("temperature").await.unwrap().as_deref(),
            Some(&b"21.5"[..]),
            "{label}"
        );
        assert_eq!(cache.get("bytes").await.unwrap(), Some(vec![0, 255, 1]), "{label}");
        assert_eq!(
            cache.get("short").await.unwrap().as_deref(),
            Some(&b"soon gone"[..]),
            "{label}"
        );

        cache.set("temperature", b"22", Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            cache.get("temperature").await.unwrap().as_deref(),
            Some(&b"22"[..]),
            "{label}"
        );

        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            cache.get("short").await.unwrap(),
            None,
            "{label}: expired after its ttl"
        );
        assert!(cache.get("temperature").await.unwrap().is_some(), "{label}");

        cache.delete("temperature").await.unwrap();
        cache.delete("never-set").await.unwrap();
        assert_eq!(cache.get("temperature").await.unwrap(), None, "{label}");

        cache.set("bytes", b"x", Duration::ZERO).await.unwrap();
        assert_eq!(cache.get("bytes").await.unwrap(), None, "{label}: a zero ttl removes");
    }
}

#[tokio::test]
async fn each_storage_and_service_has_its_own_cache() {
    for backend in testing::backends() {
        let label = backend.label;
        let a = storage(&backend, "kitcachea").await;
        let b = storage(&backend, "kitcacheb").await;
        a.cache().set("k", b"a", Duration::from_secs(60)).await.unwrap();
        // The same storage shares one cache between calls.
        assert_eq!(a.cache().get("k").await.unwrap().as_deref(), Some(&b"a"[..]), "{label}");
        assert_eq!(b.cache().get("k").await.unwrap(), None, "{label}");
    }
}

#[tokio::test]
async fn the_embedded_cache_stays_bounded() {
    let backend = testing::backends().remove(0);
    let cache = storage(&backend, "kitcachebound").await.cache();
    let total = outpost_kit::storage::cache::MEMORY_CACHE_CAPACITY + 50;
    for i in 0..total {
        cache
            .set(&format!("k{i}"), b"v", Duration::from_secs(60))
            .await
            .unwrap();
    }
    // The oldest entries went first; the newest are all there.
    assert_eq!(cache.get("k0").await.unwrap(), None);
    assert_eq!(cache.get("k49").await.unwrap(), None);
    assert!(cache.get("k50").await.unwrap().is_some());
    assert!(cache.get(&format!("k{}", total - 1)).await.unwrap().is_some());
}
