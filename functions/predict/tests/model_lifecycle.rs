//! The model's life in the function: lazy loading, hot swap, refusal of corrupted
//! versions, and an unreachable or empty store followed by recovery.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::{SECRET_DETAIL, TestStore, eventually, known_handle, version_for};
use kindred_core::manifest::FORMAT_VERSION;
use kindred_core::registry;
use kindred_core::store::LocalStore;
use kindred_predict::api;
use kindred_predict::cache::{LoadState, ModelCache, Unavailable};
use serde_json::Value;
use tower::ServiceExt;

const LONG: Duration = Duration::from_secs(3600);

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let Ok(resp) = router.clone().oneshot(req).await;
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).expect("JSON body"),
    )
}

async fn predict(router: &Router, handle: u64) -> (StatusCode, HeaderMap, Value) {
    let req = Request::post("/predict")
        .header("content-type", "application/json")
        .body(Body::from(format!(r#"{{"user_handle": {handle}}}"#)))
        .unwrap();
    send(router, req).await
}

async fn health(router: &Router) -> Value {
    let (status, _, body) =
        send(router, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    body
}

/// Log events (JSON) whose message is `message`.
fn events(message: &str) -> impl Iterator<Item = Value> {
    common::logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["fields"]["message"] == message)
        .collect::<Vec<_>>()
        .into_iter()
}

/// Log events whose message is `message` and whose `version` field is `version`.
fn logged(message: &str, version: &str) -> Vec<Value> {
    events(message)
        .filter(|e| e["fields"]["version"] == version)
        .collect()
}

fn assert_unavailable(status: StatusCode, headers: &HeaderMap, body: &Value, reason: Unavailable) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], api::RETRY_AFTER_SECONDS.to_string());
    assert_eq!(body["error"], "model unavailable");
    assert_eq!(body["detail"]["reason"], reason.reason, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_is_loaded_on_first_use_once_for_concurrent_requests() {
    common::capture_logs();
    // Given a published model and a fresh function over its store,
    let dir = tempfile::tempdir().unwrap();
    let v1 = version_for(1, 1);
    common::publish(&LocalStore::new(dir.path()), &v1).await;
    let store = TestStore::new(dir.path());
    let cache = ModelCache::new(store.clone(), LONG);
    let router = api::router(Arc::clone(&cache));
    // nothing is read before a request needs the model, not even by /health;
    assert_eq!(health(&router).await["state"], "not_loaded");
    assert_eq!(store.gets(), 0);
    // when sixteen requests arrive together while the store is slow,
    store.set_delay(Duration::from_millis(100));
    let requests: Vec<_> = (0..16)
        .map(|i| {
            let router = router.clone();
            tokio::spawn(async move { predict(&router, known_handle(i)).await })
        })
        .collect();
    // then all are answered by the model,
    for (i, r) in requests.into_iter().enumerate() {
        let (status, _, body) = r.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        common::assert_prediction(&body, known_handle(i), 10, &v1);
    }
    // which was read once: pointer, manifest, users.bin, index.bin, projection.bin and
    // courses.bin.
    assert_eq!(store.gets(), 6);
    assert_eq!(cache.state(), LoadState::Loaded);
    let h = health(&router).await;
    assert_eq!(
        (h["state"].as_str(), h["model_version"].as_str()),
        (Some("loaded"), Some(v1.as_str()))
    );
    assert_eq!(
        events("model loaded")
            .filter(|e| e["fields"]["to"] == v1.as_str())
            .count(),
        1
    );
    // Later requests within the refresh interval do not touch the store.
    predict(&router, known_handle(0)).await;
    assert_eq!(store.gets(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_version_is_swapped_in_while_requests_keep_being_answered() {
    common::capture_logs();
    // Given v1 serving with a refresh interval of zero (check on every request),
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (version_for(2, 1), version_for(2, 2));
    let store = TestStore::new(dir.path());
    common::publish(store.inner(), &v1).await;
    let router = api::router(ModelCache::new(store.clone(), Duration::ZERO));
    let (status, _, body) = predict(&router, known_handle(0)).await;
    assert_eq!(
        (status, body["model_version"].as_str()),
        (StatusCode::OK, Some(v1.as_str()))
    );
    // and clients asking continuously, while the store has become slow,
    store.set_delay(Duration::from_millis(400));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let (router, stop) = (router.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut i = c;
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let (status, _, body) = predict(&router, known_handle(i % 50)).await;
                    let took = started.elapsed();
                    seen.push((
                        status,
                        body["model_version"].as_str().unwrap_or("").to_owned(),
                        took,
                    ));
                    i += 3;
                    tokio::task::yield_now().await;
                }
                seen
            })
        })
        .collect();
    // when v2 is published,
    common::publish(store.inner(), &v2).await;
    // then answers move to v2,
    eventually(Duration::from_secs(30), "v2 to serve", || {
        let router = router.clone();
        let v2 = v2.clone();
        async move { (health(&router).await["model_version"] == v2.as_str()).then_some(()) }
    })
    .await;
    let (_, _, body) = predict(&router, known_handle(1)).await;
    assert_eq!(body["model_version"], v2.as_str());
    stop.store(true, Ordering::SeqCst);
    // and no request failed or waited for the (slow) store meanwhile, and no client
    // saw v1 again after v2.
    let mut total = 0;
    for client in clients {
        let seen = client.await.unwrap();
        total += seen.len();
        for (status, _, took) in &seen {
            assert_eq!(*status, StatusCode::OK);
            assert!(
                *took < Duration::from_millis(200),
                "a request took {took:?} during the swap"
            );
        }
        let versions: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
        assert!(
            versions.iter().all(|v| *v == v1 || *v == v2),
            "{versions:?}"
        );
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]),
            "a client went back to v1: {versions:?}"
        );
    }
    assert!(total > 10, "only {total} requests ran during the swap");
}

/// Ways to corrupt a published version.
#[derive(Clone, Copy, Debug)]
enum Corruption {
    /// One bit of users.bin flipped.
    FlippedByte,
    /// index.bin cut short.
    Truncated,
    /// The manifest declares a format version newer than this build reads (and the pointer
    /// matches the edited manifest).
    FutureFormat,
    /// The manifest lists a 3 GiB users.bin, over the cache's 1 GiB memory limit (the
    /// pointer matches): refused before any artifact is downloaded.
    OverMemoryLimit,
    /// The manifest counts one user more than the user table holds (pointer matches).
    InconsistentCounts,
    /// An update's delta, its size and digest listed, retires an index point the shard
    /// does not have (a format-4 version whose bytes verify but whose content does not).
    InconsistentDelta,
}

/// The memory limit the corruption tests give the cache.
const MEMORY_LIMIT: u64 = 1 << 30;

/// Rewrites a version's manifest with `edit` and points the pointer at the result.
fn edit_manifest(root: &std::path::Path, version: &str, edit: impl FnOnce(&mut Value)) {
    let path = root.join(registry::version_key(version, "manifest.json"));
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    common::repoint(root, version);
}

impl Corruption {
    fn apply(self, root: &std::path::Path, version: &str) {
        match self {
            Corruption::FlippedByte => {
                let path = root.join(registry::version_key(version, "users.bin"));
                let mut bytes = std::fs::read(&path).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x10;
                std::fs::write(&path, bytes).unwrap();
            }
            Corruption::Truncated => {
                let path = root.join(registry::version_key(version, "index.bin"));
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
            }
            Corruption::FutureFormat => edit_manifest(root, version, |m| {
                m["format_version"] = (FORMAT_VERSION + 1).into();
            }),
            Corruption::OverMemoryLimit => edit_manifest(root, version, |m| {
                let artifacts = m["artifacts"].as_array_mut().unwrap();
                let users = artifacts.iter_mut().find(|a| a["name"] == "users.bin");
                users.unwrap()["bytes"] = (3u64 << 30).into();
            }),
            Corruption::InconsistentCounts => edit_manifest(root, version, |m| {
                m["users"] = (m["users"].as_u64().unwrap() + 1).into();
            }),
            Corruption::InconsistentDelta => {
                let delta = kindred_core::delta::Delta {
                    retired: vec![u32::MAX - 1],
                    ..Default::default()
                };
                let bytes = kindred_core::codec::encode("delta.bin", &delta).unwrap();
                let entry = kindred_core::manifest::ArtifactEntry::describe("delta.bin", &bytes);
                std::fs::write(
                    root.join(registry::version_key(version, "delta.bin")),
                    bytes,
                )
                .unwrap();
                edit_manifest(root, version, |m| {
                    m["format_version"] = FORMAT_VERSION.into();
                    let artifacts = m["artifacts"].as_array_mut().unwrap();
                    artifacts.push(serde_json::to_value(&entry).unwrap());
                    // The retired point would make the users one fewer.
                    m["users"] = (m["users"].as_u64().unwrap() - 1).into();
                });
            }
        }
    }

    /// What the refusal's log line says.
    fn logged_error(self) -> &'static str {
        match self {
            Corruption::FlippedByte => "artifact users.bin has SHA-256",
            Corruption::Truncated => "artifact index.bin has",
            Corruption::FutureFormat => "unsupported model format version",
            Corruption::OverMemoryLimit => "over the memory limit of 1073741824 bytes",
            Corruption::InconsistentCounts => "inconsistent model: manifest says",
            Corruption::InconsistentDelta => "delta retires points",
        }
    }
}

async fn a_corrupted_new_version_is_refused(corruption: Corruption, tag: u32) {
    common::capture_logs();
    // Given v1 serving,
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2, v3) = (
        version_for(tag, 1),
        version_for(tag, 2),
        version_for(tag, 3),
    );
    let store = TestStore::new(dir.path());
    common::publish(store.inner(), &v1).await;
    let cache = ModelCache::with_memory_limit(store.clone(), LONG, Some(MEMORY_LIMIT));
    let router = api::router(Arc::clone(&cache));
    assert_eq!(predict(&router, known_handle(0)).await.0, StatusCode::OK);
    // when a v2 is published and then corrupted in the store,
    common::publish(store.inner(), &v2).await;
    corruption.apply(dir.path(), &v2);
    // then the next check refuses it and keeps v1,
    let before = store.gets();
    assert_eq!(
        cache.refresh_once().await.as_deref(),
        Some(v1.as_str()),
        "{corruption:?}"
    );
    if let Corruption::OverMemoryLimit = corruption {
        // (read: the pointer and the manifest, no artifact)
        assert_eq!(
            store.gets(),
            before + 2,
            "fetched artifacts of a model over the limit"
        );
    }
    let (status, _, body) = predict(&router, known_handle(2)).await;
    assert_eq!(status, StatusCode::OK);
    common::assert_prediction(&body, known_handle(2), 10, &v1);
    let h = health(&router).await;
    assert_eq!(
        (h["state"].as_str(), h["model_version"].as_str()),
        (Some("loaded"), Some(v1.as_str()))
    );
    // the refusal is logged with the reason,
    let refusals = logged("refusing model version that failed verification", &v2);
    assert_eq!(refusals.len(), 1, "{corruption:?}: {}", common::logs());
    assert_eq!(refusals[0]["level"], "ERROR");
    assert_eq!(refusals[0]["fields"]["keeping"], v1.as_str());
    let error = refusals[0]["fields"]["error"].as_str().unwrap();
    assert!(
        error.contains(corruption.logged_error()),
        "{corruption:?}: {error}"
    );
    // and the refused version is not fetched again: a check reads only the pointer.
    let before = store.gets();
    assert_eq!(cache.refresh_once().await.as_deref(), Some(v1.as_str()));
    assert_eq!(store.gets(), before + 1);
    // A good v3 published afterwards is taken.
    common::publish(store.inner(), &v3).await;
    assert_eq!(cache.refresh_once().await.as_deref(), Some(v3.as_str()));
    assert_eq!(
        predict(&router, known_handle(2)).await.2["model_version"],
        v3.as_str()
    );
}

#[tokio::test]
async fn a_new_version_with_a_flipped_byte_is_refused_and_the_previous_keeps_serving() {
    a_corrupted_new_version_is_refused(Corruption::FlippedByte, 3).await;
}

#[tokio::test]
async fn a_truncated_new_version_is_refused_and_the_previous_keeps_serving() {
    a_corrupted_new_version_is_refused(Corruption::Truncated, 4).await;
}

#[tokio::test]
async fn a_new_version_of_another_format_is_refused_and_the_previous_keeps_serving() {
    a_corrupted_new_version_is_refused(Corruption::FutureFormat, 5).await;
}

#[tokio::test]
async fn a_new_version_over_the_memory_limit_is_refused_unread_and_the_previous_keeps_serving() {
    a_corrupted_new_version_is_refused(Corruption::OverMemoryLimit, 11).await;
}

#[tokio::test]
async fn a_new_version_with_inconsistent_counts_is_refused_and_the_previous_keeps_serving() {
    a_corrupted_new_version_is_refused(Corruption::InconsistentCounts, 12).await;
}

#[tokio::test]
async fn an_update_whose_delta_does_not_fit_its_shard_is_refused_and_the_previous_keeps_serving() {
    a_corrupted_new_version_is_refused(Corruption::InconsistentDelta, 14).await;
}

#[tokio::test]
async fn a_version_over_the_memory_limit_at_cold_start_gives_503_saying_so() {
    common::capture_logs();
    // Given a store whose only version lists 3 GiB of artifacts, and a 1 GiB limit,
    let dir = tempfile::tempdir().unwrap();
    let v1 = version_for(13, 1);
    let store = TestStore::new(dir.path());
    common::publish(store.inner(), &v1).await;
    Corruption::OverMemoryLimit.apply(dir.path(), &v1);
    let cache = ModelCache::with_memory_limit(store.clone(), LONG, Some(MEMORY_LIMIT));
    let router = api::router(cache);
    // when requests arrive, then each is a 503 that names the memory limit, not a
    // verification failure, and the version is not downloaded again.
    for _ in 0..2 {
        let (status, headers, body) = predict(&router, known_handle(0)).await;
        assert_unavailable(status, &headers, &body, Unavailable::TOO_LARGE);
    }
    assert_eq!(
        logged("refusing model version that failed verification", &v1).len(),
        1
    );
}

#[tokio::test]
async fn a_corrupted_version_at_cold_start_gives_503_until_a_good_one_is_published() {
    common::capture_logs();
    // Given a store whose only version has a flipped byte,
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (version_for(6, 1), version_for(6, 2));
    let store = TestStore::new(dir.path());
    common::publish(store.inner(), &v1).await;
    Corruption::FlippedByte.apply(dir.path(), &v1);
    let router = api::router(ModelCache::new(store.clone(), LONG));
    // when a request arrives, then it is 503 without internal details,
    let (status, headers, body) = predict(&router, known_handle(0)).await;
    assert_unavailable(status, &headers, &body, Unavailable::REFUSED);
    assert!(
        !body.to_string().contains("SHA-256") && !body.to_string().contains(&v1),
        "{body}"
    );
    assert_eq!(
        logged("refusing model version that failed verification", &v1).len(),
        1
    );
    let h = health(&router).await;
    assert_eq!(
        (h["state"].as_str(), h["reason"].as_str()),
        (Some("unavailable"), Some(Unavailable::REFUSED.reason))
    );
    // the refused version is not downloaded again by the next request,
    let before = store.gets();
    let (status, ..) = predict(&router, known_handle(0)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(store.gets(), before + 1);
    // and once a good version is published, the next request is answered by it.
    common::publish(store.inner(), &v2).await;
    let (status, _, body) = predict(&router, known_handle(0)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model_version"], v2.as_str());
}

#[tokio::test]
async fn a_missing_store_folder_gives_503_no_model_then_publishing_makes_the_next_request_succeed()
{
    common::capture_logs();
    // Given a store folder that does not exist yet,
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("not-yet");
    let router = api::router(ModelCache::new(LocalStore::new(&root), LONG));
    // when a request arrives, then it is 503 "no model" with a retry hint;
    let (status, headers, body) = predict(&router, known_handle(0)).await;
    assert_unavailable(status, &headers, &body, Unavailable::NO_MODEL);
    // when a model is published there, then the very next request is answered.
    let v1 = version_for(7, 1);
    common::publish(&LocalStore::new(&root), &v1).await;
    let (status, _, body) = predict(&router, known_handle(0)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    common::assert_prediction(&body, known_handle(0), 10, &v1);
}

#[tokio::test]
async fn an_unreachable_store_gives_503_and_recovery_serves_then_outages_are_ridden_out() {
    common::capture_logs();
    // Given a published model behind a store that is down,
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (version_for(8, 1), version_for(8, 2));
    let store = TestStore::new(dir.path());
    common::publish(store.inner(), &v1).await;
    store.set_down(true);
    let router = api::router(ModelCache::new(store.clone(), Duration::ZERO));
    // when a request arrives, then it is 503 "unreachable", and the backend's message
    // reaches the logs but not the client;
    let (status, headers, body) = predict(&router, known_handle(0)).await;
    assert_unavailable(status, &headers, &body, Unavailable::STORE_UNREACHABLE);
    assert!(!body.to_string().contains("10.1.2.3"), "{body}");
    assert!(common::logs().contains(SECRET_DETAIL));
    assert_eq!(
        health(&router).await["reason"],
        Unavailable::STORE_UNREACHABLE.reason
    );
    // when the store is back, then the next request loads and answers;
    store.set_down(false);
    let (status, _, body) = predict(&router, known_handle(0)).await;
    assert_eq!(
        (status, body["model_version"].as_str()),
        (StatusCode::OK, Some(v1.as_str()))
    );
    // when it goes down again, requests are still answered from memory,
    store.set_down(true);
    common::publish(store.inner(), &v2).await;
    for i in 0..20 {
        let (status, _, body) = predict(&router, known_handle(i)).await;
        assert_eq!(
            (status, body["model_version"].as_str()),
            (StatusCode::OK, Some(v1.as_str()))
        );
    }
    // and once it is back, the version published meanwhile is picked up.
    store.set_down(false);
    eventually(Duration::from_secs(30), "v2 after the outage", || {
        let router = router.clone();
        let v2 = v2.clone();
        async move {
            let (status, _, body) = predict(&router, known_handle(3)).await;
            assert_eq!(status, StatusCode::OK);
            (body["model_version"] == v2.as_str()).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_against_a_down_store_share_one_attempt() {
    common::capture_logs();
    // Given a slow store that is down,
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new(dir.path());
    store.set_down(true);
    store.set_delay(Duration::from_millis(300));
    let router = api::router(ModelCache::new(store.clone(), LONG));
    // when eight requests arrive together,
    let requests: Vec<_> = (0..8)
        .map(|i| {
            let router = router.clone();
            tokio::spawn(async move { predict(&router, known_handle(i)).await })
        })
        .collect();
    // then all get 503 from a single attempt (one pointer read), not one attempt each.
    for r in requests {
        let (status, headers, body) = r.await.unwrap();
        assert_unavailable(status, &headers, &body, Unavailable::STORE_UNREACHABLE);
    }
    assert_eq!(store.gets(), 1);
    // A request arriving after that attempt tries again.
    let (status, ..) = predict(&router, known_handle(0)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(store.gets(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_load_completes_even_if_the_request_that_started_it_gives_up() {
    common::capture_logs();
    // Given a published model behind a slow store,
    let dir = tempfile::tempdir().unwrap();
    let v1 = version_for(9, 1);
    let store = TestStore::new(dir.path());
    common::publish(store.inner(), &v1).await;
    store.set_delay(Duration::from_millis(150));
    let cache = ModelCache::new(store.clone(), LONG);
    let router = api::router(Arc::clone(&cache));
    // when the first request is abandoned before the load finishes (a client timeout),
    let abandoned =
        tokio::time::timeout(Duration::from_millis(50), predict(&router, known_handle(0))).await;
    assert!(
        abandoned.is_err(),
        "the load should take longer than the client waits"
    );
    // then the load still completes, once, and the next request is answered from memory.
    eventually(
        Duration::from_secs(30),
        "the abandoned load to finish",
        || {
            let cache = Arc::clone(&cache);
            async move { cache.state().is_loaded().then_some(()) }
        },
    )
    .await;
    assert_eq!(store.gets(), 6);
    let (status, _, body) = predict(&router, known_handle(0)).await;
    assert_eq!(
        (status, body["model_version"].as_str()),
        (StatusCode::OK, Some(v1.as_str()))
    );
    assert_eq!(store.gets(), 6);
}

#[tokio::test]
async fn a_publish_interleaved_between_another_publishs_pointer_read_and_write_never_rolls_back() {
    for (first, second) in [
        // Given a publish whose pointer write is preceded by a newer version's publish,
        // then the newer stays current and the older is refused as stale;
        (common::version(1), common::version(2)),
        // given one preceded by an older version's, then it retries over it and wins.
        (common::version(4), common::version(3)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        common::check_interleaved_publish(LocalStore::new(dir.path()), &first, &second).await;
    }
}

#[tokio::test]
async fn an_artifact_larger_than_its_manifest_says_is_refused_before_it_is_read() {
    // Given a published version whose users.bin has been replaced by a 64 GiB (sparse)
    // file, far more than this machine could hold,
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    common::publish(&store, &common::version(1)).await;
    let path = dir
        .path()
        .join(registry::version_key(&common::version(1), "users.bin"));
    let listed = std::fs::metadata(&path).unwrap().len();
    let huge = 64u64 << 30;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(huge)
        .unwrap();
    // when the current version is loaded, then it is refused by its size, unread.
    match registry::load_current(&store).await {
        Err(kindred_core::Error::SizeMismatch {
            expected, received, ..
        }) => assert_eq!((expected, received), (listed, huge)),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a 64 GiB users.bin was accepted"),
    }
}

#[tokio::test]
async fn a_rollback_moves_the_function_back_to_the_older_version_without_a_restart() {
    // Given v2 serving after v1,
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (version_for(41, 1), version_for(41, 2));
    let store = LocalStore::new(dir.path());
    common::publish(&store, &v1).await;
    common::publish(&store, &v2).await;
    let cache = ModelCache::new(store.clone(), LONG);
    let router = api::router(Arc::clone(&cache));
    assert_eq!(
        predict(&router, known_handle(1)).await.2["model_version"],
        v2.as_str()
    );
    // when an operator rolls back to v1 (a pointer move to an older version, which a
    // publish would refuse),
    let done = kindred_core::versions::rollback(&store, &v1, "v2 answers badly")
        .await
        .unwrap();
    assert_eq!(
        (done.from.as_str(), done.to.as_str()),
        (v2.as_str(), v1.as_str())
    );
    // the next check swaps v1 in and answers come from it.
    assert_eq!(cache.refresh_once().await.as_deref(), Some(v1.as_str()));
    let (status, _, body) = predict(&router, known_handle(1)).await;
    assert_eq!(status, StatusCode::OK);
    common::assert_prediction(&body, known_handle(1), 10, &v1);
}

/// The body of a `/predict` (or `/recommend`) answer as sent, byte for byte, with
/// `Authorization: Bearer KEY` when a key is given. Every answer is JSON.
async fn ask_keyed(
    router: &Router,
    route: &str,
    body: &str,
    key: Option<&str>,
) -> (StatusCode, axum::body::Bytes) {
    let mut req = Request::post(route).header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let Ok(resp) = router
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await;
    assert_eq!(resp.headers()["content-type"], "application/json");
    let status = resp.status();
    (
        status,
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
}

async fn ask_raw(router: &Router, route: &str, body: &str) -> (StatusCode, axum::body::Bytes) {
    ask_keyed(router, route, body, None).await
}

/// The value of the Prometheus sample `name` at `/metrics`.
async fn metric(router: &Router, name: &str) -> f64 {
    let req = Request::get("/metrics").body(Body::empty()).unwrap();
    let Ok(resp) = router.clone().oneshot(req).await;
    let text = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(text.to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn a_question_asked_again_gets_the_same_bytes_from_the_answer_cache_until_the_version_changes()
 {
    // Given v1 serving with the answer cache on (the default), checking for new versions
    // on every request, and a router over the same store with the cache off,
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (version_for(14, 1), version_for(14, 2));
    let store = LocalStore::new(dir.path());
    common::publish(&store, &v1).await;
    let router = api::router(ModelCache::new(store.clone(), Duration::ZERO));
    let uncached = api::router_with(
        ModelCache::new(store.clone(), LONG),
        api::Settings {
            answers: Arc::new(api::AnswerCache::with_budget(0)),
            ..api::Settings::default()
        },
    );
    let one = format!(r#"{{"user_handle": {}, "k": 7}}"#, known_handle(3));
    // when the same questions are asked twice of each route,
    let mut v1_answers = Vec::new();
    for route in ["/predict", "/recommend"] {
        let first = ask_raw(&router, route, &one).await;
        v1_answers.push(first.clone());
        let again = ask_raw(&router, route, &one).await;
        // then the second answer is the first one's bytes, the bytes the uncached
        // router sends,
        assert_eq!(first.0, StatusCode::OK, "{route}");
        assert_eq!(again, first, "{route}");
        assert_eq!(ask_raw(&uncached, route, &one).await, first, "{route}");
    }
    // and each route's second answer was a hit, the uncached router's counted nowhere.
    let counts = |router: Router| async move {
        (
            metric(&router, "kindred_answer_cache_hits_total").await,
            metric(&router, "kindred_answer_cache_misses_total").await,
        )
    };
    assert_eq!(counts(router.clone()).await, (2.0, 2.0));
    assert_eq!(counts(uncached.clone()).await, (0.0, 0.0));
    assert!(metric(&router, "kindred_answer_cache_bytes").await > 0.0);
    // Questions with filters or several handles are not looked up; an unknown user is
    // looked up (two misses) and its 404 never stored.
    let handle = known_handle(3);
    for body in [
        format!(r#"{{"user_handle": {handle}, "k": 7, "min_similarity": -1}}"#),
        format!(r#"{{"user_handles": [{handle}], "k": 7}}"#),
        r#"{"user_handle": 999999999}"#.to_owned(),
    ] {
        ask_raw(&router, "/predict", &body).await;
        ask_raw(&router, "/predict", &body).await;
    }
    assert_eq!(counts(router.clone()).await, (2.0, 4.0));
    // When v2 is published, the same question is answered by v2, not from v1's entries.
    common::publish(&store, &v2).await;
    let answered_by = |router: Router, body: String| async move {
        let (status, bytes) = ask_raw(&router, "/predict", &body).await;
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        v["model_version"].as_str().unwrap().to_owned()
    };
    eventually(Duration::from_secs(30), "v2 to serve", || {
        let (router, one, v2) = (router.clone(), one.clone(), v2.clone());
        async move { (answered_by(router, one).await == v2).then_some(()) }
    })
    .await;
    assert_eq!(answered_by(router.clone(), one.clone()).await, v2);
    // When the pointer is rolled back to v1, the answer is v1's again, byte for byte.
    common::repoint(dir.path(), &v1);
    eventually(Duration::from_secs(30), "v1 to serve again", || {
        let (router, one, v1) = (router.clone(), one.clone(), v1.clone());
        async move { (answered_by(router, one).await == v1).then_some(()) }
    })
    .await;
    assert_eq!(ask_raw(&router, "/predict", &one).await, v1_answers[0]);
}

#[tokio::test]
async fn a_cached_answer_still_needs_the_key_and_counts_against_the_callers_rate() {
    // Given a router that needs a key and lets a caller make 3 requests, then 1 a minute,
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    common::publish(&store, &version_for(15, 1)).await;
    let key = "a-key-of-sixteen-chars";
    let router = api::router_with(
        ModelCache::new(store, LONG),
        api::Settings {
            keys: api::ApiKeys::parse(key).unwrap(),
            caller_rate: Some(api::CallerRate {
                per_second: 1.0 / 60.0,
                burst: 3,
            }),
            ..api::Settings::default()
        },
    );
    let one = format!(r#"{{"user_handle": {}}}"#, known_handle(2));
    // when a question is answered with the key and is then in the cache,
    let first = ask_keyed(&router, "/predict", &one, Some(key)).await;
    assert_eq!(first.0, StatusCode::OK);
    // then asking it again without the key, or with a wrong one, gets 401,
    let without = ask_keyed(&router, "/predict", &one, None).await;
    assert_eq!(without.0, StatusCode::UNAUTHORIZED);
    let wrong = ask_keyed(&router, "/predict", &one, Some("not-the-key-at-all")).await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    // with it, the cached bytes, until the caller's rate is spent: then 429.
    assert_eq!(ask_keyed(&router, "/predict", &one, Some(key)).await, first);
    assert_eq!(ask_keyed(&router, "/predict", &one, Some(key)).await, first);
    let over = ask_keyed(&router, "/predict", &one, Some(key)).await;
    assert_eq!(over.0, StatusCode::TOO_MANY_REQUESTS);
}
