//! Fuzz harnesses for Kindred's three untrusted inputs, each a function of a byte string
//! that panics when a property breaks:
//!
//! - [`predict_request`]: an HTTP request (method, path, headers, body) through the
//!   function's real router with a loaded model: never a 5xx, never a panic, and every
//!   JSON response is valid JSON.
//! - [`artifact`]: a manifest or a model artifact through the checks and decoders the
//!   loader uses: an error or a value, never a panic or an unbounded allocation; an
//!   index or projection the loader would accept is then searched or folded into.
//! - [`csv_rows`]: four CSV files through ingestion: never a panic; every data row is
//!   counted as used or skipped.
//!
//! The libFuzzer targets in `fuzz/libfuzzer` call these (`./dev fuzz`, nightly); the
//! replay test (`fuzz/tests/corpora.rs`, stable) runs every committed corpus and
//! regression input through them in the ordinary test suite.

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use kindred_core::store::LocalStore;
use tower::ServiceExt;

/// A harness: panics when a property breaks for this input.
pub type Harness = fn(&[u8]);

/// The fuzz targets, by name (also the corpus folder names).
pub const TARGETS: [(&str, Harness); 3] = [
    ("predict_request", predict_request),
    ("artifact", artifact),
    ("csv_rows", csv_rows),
];

struct Serving {
    runtime: tokio::runtime::Runtime,
    router: Router,
    _store: tempfile::TempDir,
}

/// A 300-user model trained once, published to a temporary folder and loaded to answer
/// from its HNSW index.
fn serving() -> &'static Serving {
    static SERVING: OnceLock<Serving> = OnceLock::new();
    SERVING.get_or_init(|| {
        let data = tempfile::tempdir().expect("temp dir");
        let config = kindred_datagen::GenConfig {
            users: 300,
            seed: 3,
            ..Default::default()
        };
        kindred_datagen::generate(&config, data.path()).expect("generate");
        let mut cfg = kindred_batch::config::default_config(data.path().to_owned());
        cfg.rank = 8;
        cfg.recall_sample = 50;
        cfg.evaluate = kindred_batch::config::Evaluate::Never;
        let trained = kindred_batch::train::train(&cfg, "20260101T000000000Z-f0220000")
            .expect("train the fuzzing model");
        let store = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let router = runtime.block_on(async {
            let local = LocalStore::new(store.path());
            kindred_core::registry::publish(&local, trained.manifest, trained.artifacts)
                .await
                .expect("publish");
            // Index only: at 300 users the model would answer by an exact scan, and the
            // HNSW path is the one a crafted request could break.
            let options = kindred_core::registry::LoadOptions {
                index_only: true,
                ..Default::default()
            };
            let cache = kindred_predict::cache::ModelCache::with_options(
                local,
                std::time::Duration::from_secs(1 << 30),
                options,
            );
            let router = kindred_predict::api::router(cache.clone());
            // Load the model now, so every input meets a serving function.
            let warm = Request::post("/predict")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"user_handle": 1}"#))
                .expect("request");
            let Ok(resp) = router.clone().oneshot(warm).await;
            assert!(
                resp.status().as_u16() < 500,
                "the fuzzing model does not load"
            );
            let model = cache.peek().expect("loaded");
            assert!(
                !model.shards.is_exact(),
                "the fuzzing model answers by a scan"
            );
            router
        });
        Serving {
            runtime,
            router,
            _store: store,
        }
    })
}

/// An HTTP request as text-ish bytes: `METHOD PATH\n`, then `name: value` lines, then an
/// empty line, then the body (any bytes). Inputs that are not a well-formed request
/// line are ignored; header lines that are not valid HTTP are dropped.
pub fn predict_request(data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let Some(first) = lines.next() else { return };
    let Ok(first) = std::str::from_utf8(first) else {
        return;
    };
    let Some((method, path)) = first.split_once(' ') else {
        return;
    };
    let (Ok(method), true) = (Method::from_bytes(method.as_bytes()), path.starts_with('/')) else {
        return;
    };
    let mut req = Request::builder().method(method).uri(path);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        req = req.header(name, value);
    }
    let Ok(req) = req.body(Body::from(body.to_vec())) else {
        return; // e.g. a path that is not a valid URI
    };
    let s = serving();
    let (status, content_type, bytes) = s.runtime.block_on(async {
        let Ok(resp) = s.router.clone().oneshot(req).await;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .expect("response body");
        (status, ct, bytes)
    });
    assert!(
        (200..500).contains(&status),
        "status {status} for {:?}: {}",
        String::from_utf8_lossy(head),
        String::from_utf8_lossy(&bytes)
    );
    if content_type.starts_with("application/json") {
        assert!(
            serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
            "invalid JSON: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// The first byte chooses a decoder (manifest, users table in format 1 or 2, index,
/// projection); the rest is its input.
pub fn artifact(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => drop(kindred_core::Manifest::parse(bytes)),
        1 => drop(kindred_core::users::decode_users(1, bytes)),
        2 => drop(kindred_core::users::decode_users(2, bytes)),
        3 => index(usize::from(which / 5) % 16 + 1, bytes),
        _ => projection(usize::from(which / 5) % 16 + 1, bytes),
    }
}

/// An index the loader would accept (it passes [`kindred_core::graph::check_index`] for
/// `dims` dimensions and decodes) is searched, by the index and by a scan: neither may
/// panic.
fn index(dims: usize, bytes: &[u8]) {
    use kindred_core::{codec, graph, manifest, search};
    if graph::check_index(manifest::INDEX, bytes, dims).is_err() {
        return;
    }
    let Ok(index) = codec::decode::<search::Index>(manifest::INDEX, bytes) else {
        return;
    };
    let query = kindred_core::Embedding::normalized((0..dims).map(|i| i as f32 + 1.0).collect());
    for k in [1, 10, 100] {
        drop(search::approximate(&index, &query.0, k, None));
        drop(search::exact(&index, &query.0, k, Some(0)));
    }
}

/// A projection the loader would accept (it validates for 64 tags and `dims` dimensions)
/// folds a profile without panicking.
fn projection(dims: usize, bytes: &[u8]) {
    use kindred_core::projection::{Profile, Projection, key_index};
    let Ok(p) =
        kindred_core::codec::decode::<Projection>(kindred_core::manifest::PROJECTION, bytes)
    else {
        return;
    };
    let tags: Vec<String> = (0..64).map(|i| format!("t{i}")).collect();
    if p.validate(tags.len(), dims).is_err() {
        return;
    }
    let profile = Profile {
        views: vec![("t1".into(), 600.0), ("t7".into(), 60.0)],
        interests: vec!["t2".into()],
        assessments: vec![("t3".into(), 150.0)],
        ages: vec![("t7".into(), 400.0)],
    };
    let recency = kindred_core::projection::Recency {
        half_life_days: 90.0,
        floor: 0.4,
    };
    drop(p.fold(&profile, &key_index(&tags), Some(recency)));
}

/// The data rows of the four CSVs, in the order views, course tags, interests,
/// assessments, separated by NUL bytes; each file gets its real header line.
pub fn csv_rows(data: &[u8]) {
    use kindred_batch::ingest;
    const FILES: [(&str, &str); 4] = [
        (
            ingest::VIEWS,
            "user_handle,view_date,course_id,author_handle,level,view_time_seconds\n",
        ),
        (ingest::COURSE_TAGS, "course_id,course_tags\n"),
        (
            ingest::INTERESTS,
            "user_handle,interest_tag,date_followed\n",
        ),
        (
            ingest::ASSESSMENTS,
            "user_handle,assessment_tag,user_assessment_date,user_assessment_score\n",
        ),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let mut parts = data.split(|&b| b == 0);
    for (file, header) in FILES {
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(parts.next().unwrap_or_default());
        std::fs::write(dir.path().join(file), bytes).expect("write CSV");
    }
    if let Ok(ds) = ingest::read_dir(dir.path()) {
        for r in &ds.reports {
            assert_eq!(r.used + r.skipped_total(), r.rows, "{r:?}");
        }
    }
}
