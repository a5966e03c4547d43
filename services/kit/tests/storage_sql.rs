//! The SQL suite, run on every test backend (SQLite file; PostgreSQL schema).

use outpost_kit::storage::{Backend, Db, Migrations, Storage};
use outpost_kit::testing::{self, TestBackend};

fn migrations() -> Migrations {
    Migrations {
        sqlite: sqlx::migrate!("tests/migrations/sqlite"),
        postgres: sqlx::migrate!("tests/migrations/postgres"),
    }
}

async fn count(db: &Db, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql).fetch_one(db.pool()).await.unwrap()
}

fn expected_backend(backend: &TestBackend) -> Backend {
    if backend.is_external() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

#[tokio::test]
async fn migrations_run_and_data_survives_reopening() {
    for backend in testing::backends() {
        let label = backend.label;
        let db = Db::connect(&backend.storage, "kitsql", migrations()).await.unwrap();
        assert_eq!(db.backend(), expected_backend(&backend), "{label}");
        assert_eq!(db.schema(), format!("{}kitsql", backend.storage.namespace), "{label}");
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM _sqlx_migrations WHERE success").await,
            2,
            "{label}"
        );

        // `$1` placeholders and RETURNING through the one Any code path.
        let id: i64 = sqlx::query_scalar("INSERT INTO items (name, size, body) VALUES ($1, $2, $3) RETURNING id")
            .bind("first")
            .bind(42_i64)
            .bind(vec![1_u8, 2, 3])
            .fetch_one(db.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO tags (item_id, tag) VALUES ($1, $2)")
            .bind(id)
            .bind("red")
            .execute(db.pool())
            .await
            .unwrap();
        let dangling = sqlx::query("INSERT INTO tags (item_id, tag) VALUES ($1, $2)")
            .bind(id + 1000)
            .bind("nobody")
            .execute(db.pool())
            .await;
        assert!(dangling.is_err(), "{label}: foreign keys must be enforced");
        let duplicate = sqlx::query("INSERT INTO items (name, size) VALUES ($1, $2)")
            .bind("first")
            .bind(1_i64)
            .execute(db.pool())
            .await;
        assert!(duplicate.is_err(), "{label}: unique constraint");
        db.ping().await.unwrap();
        db.pool().close().await;
        drop(db);

        let db = Db::connect(&backend.storage, "kitsql", migrations()).await.unwrap();
        assert_eq!(count(&db, "SELECT COUNT(*) FROM _sqlx_migrations").await, 2, "{label}");
        let (name, size, body): (String, i64, Vec<u8>) =
            sqlx::query_as("SELECT name, size, body FROM items WHERE id = $1")
                .bind(id)
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!((name.as_str(), size, body), ("first", 42, vec![1, 2, 3]), "{label}");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM tags").await, 1, "{label}");
    }
}

#[tokio::test]
async fn each_service_has_its_own_tables() {
    for backend in testing::backends() {
        let label = backend.label;
        let alpha = Db::connect(&backend.storage, "alpha", migrations()).await.unwrap();
        let beta = Db::connect(&backend.storage, "beta", migrations()).await.unwrap();
        sqlx::query("INSERT INTO items (name, size) VALUES ($1, $2)")
            .bind("only-in-alpha")
            .bind(1_i64)
            .execute(alpha.pool())
            .await
            .unwrap();
        assert_eq!(count(&alpha, "SELECT COUNT(*) FROM items").await, 1, "{label}");
        assert_eq!(count(&beta, "SELECT COUNT(*) FROM items").await, 0, "{label}");
        assert_ne!(alpha.schema(), beta.schema());
    }
}

#[tokio::test]
async fn backend_specifics() {
    for backend in testing::backends() {
        let db = Db::connect(&backend.storage, "kitspec", migrations()).await.unwrap();
        match db.backend() {
            Backend::Sqlite => {
                assert!(db.pg().is_none());
                let file = backend.storage.data_dir.join(format!("{}.sqlite", db.schema()));
                assert!(file.is_file(), "{} is missing", file.display());
                let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
                assert_eq!(mode, "wal");
                let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
                assert_eq!(fk, 1);
            }
            Backend::Postgres => {
                // The migrations table lands in the service's schema, and the native pool
                // sees the same schema.
                let tables: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = $1 \
                     AND table_name IN ('_sqlx_migrations', 'items', 'tags')",
                )
                .bind(db.schema().to_string())
                .fetch_one(db.pool())
                .await
                .unwrap();
                assert_eq!(tables, 3);
                let pg = db.pg().expect("a native pool on postgres");
                let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
                    .fetch_one(pg)
                    .await
                    .unwrap();
                assert_eq!(schema, db.schema());
            }
        }
    }
}

#[tokio::test]
async fn bad_names_and_unknown_databases_are_clear_errors() {
    for backend in testing::backends() {
        let err = Db::connect(&backend.storage, "Bad-Name", migrations())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Bad-Name"), "{err:#}");
        if let Some(url) = &backend.storage.database_url {
            let mut url = url::Url::parse(url).unwrap();
            url.set_path("outpost_no_such_database");
            let mut config = backend.storage.clone();
            config.database_url = Some(url.to_string());
            let err = Db::connect(&config, "kitsql", migrations()).await.unwrap_err();
            assert!(format!("{err:#}").contains("outpost_no_such_database"), "{err:#}");
        }
    }
}

#[tokio::test]
async fn storage_reports_its_dependencies() {
    for backend in testing::backends() {
        let storage = Storage::open(&backend.storage, "kitdeps", migrations()).await.unwrap();
        let names = |deps: &[outpost_kit::storage::Dependency]| deps.iter().map(|d| d.name).collect::<Vec<_>>();
        // Redis is a dependency once the service uses it (a cache, a queue, a stream).
        assert_eq!(names(&storage.dependencies()), ["sql"], "{}", backend.label);
        let _cache = storage.cache();
        let deps = storage.dependencies();
        let expected: &[&str] = if backend.is_external() {
            &["sql", "redis"]
        } else {
            &["sql"]
        };
        assert_eq!(names(&deps), expected, "{}", backend.label);
        assert_eq!(storage.redis().is_some(), backend.is_external());
        assert_eq!(storage.redis_url(), backend.storage.redis_url.as_deref());
        storage.objects().await.unwrap();
        let deps = storage.dependencies();
        assert_eq!(names(&deps).last(), Some(&"objects"), "{}", backend.label);
        for dep in deps {
            dep.check()
                .await
                .unwrap_or_else(|e| panic!("{}: {} failed: {e:#}", backend.label, dep.name));
        }
    }
}

#[tokio::test]
async fn an_unreachable_redis_fails_its_check_without_failing_open() {
    let backend = testing::backends().remove(0);
    let mut config = backend.storage.clone();
    config.redis_url = Some("redis://127.0.0.1:1".into());
    let storage = Storage::open(&config, "kitredis", migrations()).await.unwrap();
    let _cache = storage.cache();
    let redis = storage.dependencies().into_iter().find(|d| d.name == "redis").unwrap();
    assert!(redis.check().await.is_err());
}
