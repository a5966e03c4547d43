//! The object store suite, run on every test backend (local directory; S3).

use bytes::Bytes;
use outpost_kit::storage::Objects;
use outpost_kit::testing;

#[tokio::test]
async fn put_get_list_delete() {
    for backend in testing::backends() {
        let label = backend.label;
        let objects = Objects::open(&backend.storage, "kitobj").await.unwrap();
        objects.ping().await.unwrap();
        assert!(
            objects.list("").await.unwrap().is_empty(),
            "{label}: a fresh namespace is empty"
        );
        assert_eq!(objects.get("images/missing.jpg").await.unwrap(), None, "{label}");

        let big = Bytes::from(vec![7_u8; 256 * 1024]);
        objects
            .put("images/ab/abc.jpg", Bytes::from_static(b"jpeg"))
            .await
            .unwrap();
        objects
            .put("images/ab/abd.png", Bytes::from_static(b"png"))
            .await
            .unwrap();
        objects.put("images/cd/cde.jpg", big.clone()).await.unwrap();
        objects
            .put("snapshots/2024-12-01.json", Bytes::from_static(b"{}"))
            .await
            .unwrap();

        assert_eq!(
            objects.get("images/ab/abc.jpg").await.unwrap().as_deref(),
            Some(&b"jpeg"[..]),
            "{label}"
        );
        assert_eq!(objects.get("images/cd/cde.jpg").await.unwrap(), Some(big), "{label}");
        objects
            .put("images/ab/abc.jpg", Bytes::from_static(b"jpeg2"))
            .await
            .unwrap();
        assert_eq!(
            objects.get("images/ab/abc.jpg").await.unwrap().as_deref(),
            Some(&b"jpeg2"[..]),
            "{label}"
        );

        let all = objects.list("").await.unwrap();
        assert_eq!(
            all,
            [
                "images/ab/abc.jpg",
                "images/ab/abd.png",
                "images/cd/cde.jpg",
                "snapshots/2024-12-01.json"
            ],
            "{label}"
        );
        assert_eq!(
            objects.list("images/ab/").await.unwrap(),
            ["images/ab/abc.jpg", "images/ab/abd.png"],
            "{label}"
        );
        assert_eq!(
            objects.list("images/ab/abd").await.unwrap(),
            ["images/ab/abd.png"],
            "{label}"
        );
        assert_eq!(
            objects.list("snap").await.unwrap(),
            ["snapshots/2024-12-01.json"],
            "{label}"
        );
        assert!(objects.list("nothing/here").await.unwrap().is_empty(), "{label}");

        objects.delete("images/ab/abc.jpg").await.unwrap();
        objects.delete("images/ab/abc.jpg").await.unwrap();
        objects.delete("never/was.txt").await.unwrap();
        assert_eq!(objects.get("images/ab/abc.jpg").await.unwrap(), None, "{label}");
        assert_eq!(
            objects.list("images/").await.unwrap(),
            ["images/ab/abd.png", "images/cd/cde.jpg"],
            "{label}"
        );
    }
}

#[tokio::test]
async fn bad_keys_are_rejected() {
    for backend in testing::backends() {
        let objects = Objects::open(&backend.storage, "kitbad").await.unwrap();
        let long = "a".repeat(513);
        let long_segment = format!("x/{}", "b".repeat(201));
        for key in [
            "",
            "/abs",
            "../up",
            "a/../b",
            "Upper.jpg",
            "a b",
            "a//b",
            "a/",
            "ü",
            &long,
            &long_segment,
        ] {
            let err = objects.put(key, Bytes::from_static(b"x")).await.unwrap_err();
            assert!(
                err.to_string().contains(&format!("{key:?}")),
                "{}: {key:?}: {err}",
                backend.label
            );
            assert!(objects.get(key).await.is_err(), "{}: get {key:?}", backend.label);
            assert!(objects.delete(key).await.is_err(), "{}: delete {key:?}", backend.label);
        }
        assert!(objects.list("../").await.is_err());
        let longest = format!("{0}/{0}/{1}", "a".repeat(200), "c".repeat(110));
        assert_eq!(longest.len(), 512);
        objects.put(&longest, Bytes::from_static(b"x")).await.unwrap();
        objects.put("a.b_c-d/e.f", Bytes::from_static(b"x")).await.unwrap();
    }
}

#[tokio::test]
async fn services_and_reopens() {
    for backend in testing::backends() {
        let label = backend.label;
        let media = Objects::open(&backend.storage, "kitmedia").await.unwrap();
        media.put("a/one.bin", Bytes::from_static(b"1")).await.unwrap();
        drop(media);

        // Another service does not see the objects; a reopen of the same service does.
        let other = Objects::open(&backend.storage, "kitother").await.unwrap();
        assert!(other.list("").await.unwrap().is_empty(), "{label}");
        assert_eq!(other.get("a/one.bin").await.unwrap(), None, "{label}");
        let media = Objects::open(&backend.storage, "kitmedia").await.unwrap();
        assert_eq!(media.list("").await.unwrap(), ["a/one.bin"], "{label}");
        assert_eq!(
            media.get("a/one.bin").await.unwrap().as_deref(),
            Some(&b"1"[..]),
            "{label}"
        );
        media.dependency().check().await.unwrap();
        assert_eq!(media.dependency().name, "objects");

        if backend.storage.s3.is_none() {
            let dir = backend
                .storage
                .data_dir
                .join("objects")
                .join(format!("{}kitmedia", backend.storage.namespace));
            assert!(dir.join("a/one.bin").is_file(), "objects live in {}", dir.display());
        }
    }
}

#[tokio::test]
async fn a_missing_bucket_is_created() {
    for backend in testing::backends() {
        let Some(s3) = &backend.storage.s3 else { continue };
        let mut config = backend.storage.clone();
        let mut s3 = s3.clone();
        s3.bucket = format!("outpost-{}", backend.storage.namespace.trim_end_matches('_'));
        config.s3 = Some(s3);
        let objects = Objects::open(&config, "kitbucket").await.unwrap();
        objects.put("x", Bytes::from_static(b"x")).await.unwrap();
        // Opening again finds the bucket there.
        let again = Objects::open(&config, "kitbucket").await.unwrap();
        assert_eq!(again.list("").await.unwrap(), ["x"]);
    }
}
