//! Property tests of the function's two trust boundaries, with seeded random inputs:
//! whatever bytes arrive as a `/predict` body, the answer is a JSON 2xx or 4xx (never a
//! 5xx or a panic), and whatever byte of a published version's files that the function
//! reads (pointer-named manifest, users, index, projection) is changed or cut off, the
//! version is refused before use. (`report.html` is for people and never loaded; its
//! SHA-256 is in the manifest for anyone who wants to check it.)

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use common::known_handle;
use http_body_util::BodyExt;
use kindred_core::registry;
use kindred_core::store::{LocalStore, ObjectStore, Precondition};
use kindred_predict::api;
use kindred_predict::cache::ModelCache;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use tower::ServiceExt;

/// A runner with a fixed seed, so a failure reproduces.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    )
}

/// JSON values that look like requests: the real field names with values of every kind,
/// nested a little, plus unknown fields.
fn request_like() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        (0u64..3000).prop_map(serde_json::Value::from),
        "[a-zA-Z0-9#+. -]{0,12}".prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z#+.]{1,8}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    let key = prop_oneof![
        Just("user_handle"),
        Just("user_handles"),
        Just("profile"),
        Just("k"),
        Just("exclude"),
        Just("min_similarity"),
        Just("tags"),
        Just("interests"),
        Just("nonsense"),
    ];
    let random = prop::collection::btree_map(key, value, 0..5).prop_map(|m| {
        let map: serde_json::Map<String, serde_json::Value> =
            m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        serde_json::Value::Object(map).to_string()
    });
    // Mostly well-formed requests with values near and beyond their limits.
    let handle = prop_oneof![
        (0u64..600).prop_map(|h| h.to_string()),
        Just(format!("\"{}\"", known_handle(1)))
    ];
    let shaped = (
        handle,
        prop::option::of(-2i64..120),
        prop::option::of(prop::collection::vec(0u64..600, 0..4)),
        prop::option::of(-1.5f64..1.5),
        any::<bool>(),
    )
        .prop_map(|(h, k, exclude, min, profile)| {
            let mut m = serde_json::Map::new();
            if profile {
                m.insert(
                    "profile".into(),
                    serde_json::json!({"tags": {"python": 3600, "c#": 10}, "interests": ["JavaScript", "no-such-tag"]}),
                );
            } else {
                m.insert("user_handle".into(), serde_json::from_str(&h).unwrap());
            }
            if let Some(k) = k {
                m.insert("k".into(), k.into());
            }
            if let Some(e) = exclude {
                m.insert("exclude".into(), e.into());
            }
            if let Some(min) = min {
                m.insert("min_similarity".into(), min.into());
            }
            serde_json::Value::Object(m).to_string()
        });
    prop_oneof![random, shaped]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json")),
        Just(Some("application/json; charset=utf-8")),
        Just(Some("text/plain")),
        Just(Some("application/x-www-form-urlencoded")),
        Just(Some("\u{7f}")),
    ]
}

async fn serving() -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    common::publish(&LocalStore::new(dir.path()), &common::version(1)).await;
    let cache = ModelCache::new(LocalStore::new(dir.path()), Duration::from_secs(3600));
    (api::router(cache), dir)
}

/// Sends one body; returns (status, content type, body).
async fn send(router: &Router, body: Vec<u8>, ct: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut req = Request::post("/predict");
    if let Some(ct) = ct
        && let Ok(v) = header::HeaderValue::from_str(ct)
    {
        req = req.header(header::CONTENT_TYPE, v);
    }
    let Ok(resp) = router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, ct, bytes)
}

fn check(status: u16, ct: &str, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        (200..500).contains(&status),
        "status {status}: {}",
        String::from_utf8_lossy(body)
    );
    prop_assert_eq!(ct, "application/json");
    prop_assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok());
    Ok(())
}

#[test]
fn any_body_gets_a_json_2xx_or_4xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (router, _dir) = rt.block_on(serving());
    // Given a known handle is answered (so the model is loaded),
    let (status, _, _) = rt.block_on(send(
        &router,
        format!(r#"{{"user_handle": {}}}"#, known_handle(0)).into_bytes(),
        Some("application/json"),
    ));
    assert_eq!(status, 200);
    // when arbitrary bytes arrive, then every answer is JSON with a 2xx or 4xx status;
    runner(300)
        .run(
            &(prop::collection::vec(any::<u8>(), 0..600), content_type()),
            |(body, ct)| {
                let (status, ct, bytes) = rt.block_on(send(&router, body, ct));
                check(status, &ct, &bytes)
            },
        )
        .unwrap();
    // and so is every request-like JSON body (which reaches the deeper validation).
    let ok = std::cell::Cell::new(0usize);
    runner(600)
        .run(&(request_like(), content_type()), |(body, ct)| {
            let (status, ct, bytes) = rt.block_on(send(&router, body.into_bytes(), ct));
            ok.set(ok.get() + usize::from(status == 200));
            check(status, &ct, &bytes)
        })
        .unwrap();
    // (Some of them are valid requests: the generator reaches the answering code too.)
    assert!(ok.get() > 0, "no generated body was a valid request");
}

#[test]
fn any_changed_or_cut_byte_of_a_version_is_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = common::trained();
    let names: Vec<&str> = t
        .artifacts
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "report.html")
        .chain(["manifest.json"])
        .collect();
    assert_eq!(
        names,
        [
            "users.bin",
            "index.bin",
            "projection.bin",
            "courses.bin",
            "manifest.json"
        ]
    );
    let strategy = (
        0..names.len(),
        any::<prop::sample::Index>(),
        1u8..=255,
        any::<bool>(),
    );
    runner(64)
        .run(&strategy, |(which, at, xor, cut)| {
            rt.block_on(async {
                // Given a good version in a fresh store,
                let dir = tempfile::tempdir().unwrap();
                let store = LocalStore::new(dir.path());
                let v = common::version(1);
                common::publish(&store, &v).await;
                // when one byte of one of its files is changed, or the file cut there,
                let key = registry::version_key(&v, names[which]);
                let mut bytes = store.get(&key).await.unwrap().unwrap().bytes.to_vec();
                let i = at.index(bytes.len());
                if cut {
                    bytes.truncate(i);
                } else {
                    bytes[i] ^= xor;
                }
                store.put(&key, bytes, Precondition::None).await.unwrap();
                // then loading the current version fails.
                let loaded = registry::load_current(&store).await;
                prop_assert!(
                    loaded.is_err(),
                    "{} with byte {i} {} was accepted",
                    names[which],
                    if cut { "cut" } else { "changed" }
                );
                Ok(())
            })
        })
        .unwrap();
}
