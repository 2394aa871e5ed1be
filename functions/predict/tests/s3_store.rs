//! The function over an S3 store: unreachable (a closed port), and LocalStack behind a
//! proxy that can be switched off (`kindred_e2e::FaultProxy`), for an outage followed by
//! recovery.
//!
//! S3 clients are built for an explicit endpoint (no process-wide environment variables).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::{eventually, known_handle, version};
use kindred_core::store::{S3Store, Store};
use kindred_e2e::{FaultProxy, ProxyMode};
use kindred_predict::api;
use kindred_predict::cache::{ModelCache, Unavailable};
use serde_json::Value;
use tower::ServiceExt;

async fn predict(router: &Router, handle: u64) -> (StatusCode, HeaderMap, Value) {
    let req = Request::post("/predict")
        .header("content-type", "application/json")
        .body(Body::from(format!(r#"{{"user_handle": {handle}}}"#)))
        .unwrap();
    let Ok(resp) = router.clone().oneshot(req).await;
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap(),
    )
}

fn assert_unavailable(answer: &(StatusCode, HeaderMap, Value), reason: Unavailable) {
    let (status, headers, body) = answer;
    assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], api::RETRY_AFTER_SECONDS.to_string());
    assert_eq!(body["detail"]["reason"], reason.reason, "{body}");
}

/// A local port with nothing listening on it.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn an_s3_store_on_a_closed_port_gives_503_unreachable_without_leaking_the_endpoint() {
    // Given an S3 store whose endpoint refuses connections,
    let port = closed_port();
    let store = S3Store::at_endpoint(&format!("http://127.0.0.1:{port}"), "kindred", "models");
    let router = api::router(ModelCache::new(Store::S3(store), Duration::from_secs(3600)));
    // when a prediction is asked for,
    let started = Instant::now();
    let answer = predict(&router, 1).await;
    // then it is a prompt 503 with a retry hint, naming no address.
    assert_unavailable(&answer, Unavailable::STORE_UNREACHABLE);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        !answer.2.to_string().contains(&port.to_string()),
        "{}",
        answer.2
    );
}

/// S3 store unreachable, then reachable but empty, then serving; an outage while
/// serving is ridden out and a version published meanwhile is picked up afterwards.
#[tokio::test]
#[ignore = "needs LocalStack S3: run ./dev test"]
async fn an_s3_store_outage_gives_503_then_recovery_serves_and_picks_up_new_versions() {
    let endpoint = std::env::var("KINDRED_TEST_S3_ENDPOINT")
        .expect("KINDRED_TEST_S3_ENDPOINT (./dev test sets it)");
    let upstream: SocketAddr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("KINDRED_TEST_S3_ENDPOINT is http://<ip>:<port>");
    // Given a bucket on LocalStack, written directly, and read by the function through a proxy,
    let bucket = format!("kindred-predict-test-{}", std::process::id());
    let direct = S3Store::at_endpoint(&endpoint, &bucket, "predict-it");
    direct
        .create_bucket_if_missing()
        .await
        .expect("create bucket");
    let proxy = FaultProxy::start(upstream);
    let through = S3Store::at_endpoint(&proxy.endpoint(), &bucket, "predict-it");
    let router = api::router(ModelCache::new(Store::S3(through), Duration::ZERO));

    // when the proxy is off, then predictions are 503 "unreachable";
    proxy.set(ProxyMode::Refuse);
    assert_unavailable(&predict(&router, 1).await, Unavailable::STORE_UNREACHABLE);
    // when it is on but nothing is published, 503 "no model";
    proxy.set(ProxyMode::Pass);
    assert_unavailable(&predict(&router, 1).await, Unavailable::NO_MODEL);
    // when v1 is published, the next request is answered by it;
    let (v1, v2) = (version(1), version(2));
    common::publish(&direct, &v1).await;
    let (status, _, body) = predict(&router, known_handle(0)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    common::assert_prediction(&body, known_handle(0), 10, &v1);
    // when the store goes away again, requests are still answered from memory,
    proxy.set(ProxyMode::Refuse);
    common::publish(&direct, &v2).await;
    for i in 0..10 {
        let (status, _, body) = predict(&router, known_handle(i)).await;
        assert_eq!(
            (status, body["model_version"].as_str()),
            (StatusCode::OK, Some(v1.as_str()))
        );
    }
    // and when it is back, the version published meanwhile takes over.
    proxy.set(ProxyMode::Pass);
    eventually(Duration::from_secs(60), "v2 after the outage", || {
        let router = router.clone();
        let v2 = v2.clone();
        async move {
            let (status, _, body) = predict(&router, known_handle(1)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            (body["model_version"] == v2.as_str()).then_some(())
        }
    })
    .await;
}

#[tokio::test]
#[ignore = "needs LocalStack S3: run ./dev test"]
async fn a_publish_interleaved_between_another_publishs_pointer_read_and_write_never_rolls_back_on_s3()
 {
    let endpoint = std::env::var("KINDRED_TEST_S3_ENDPOINT")
        .expect("KINDRED_TEST_S3_ENDPOINT (./dev test sets it)");
    let bucket = format!("kindred-interleave-{}", std::process::id());
    for (prefix, first, second) in [
        // Given a publish whose pointer write is preceded by a newer version's publish,
        // then the newer stays current and the older is refused as stale;
        ("older-first", common::version(1), common::version(2)),
        // given one preceded by an older version's, then it retries over it and wins.
        ("newer-first", common::version(4), common::version(3)),
    ] {
        let store = S3Store::at_endpoint(&endpoint, &bucket, prefix);
        store.create_bucket_if_missing().await.expect("bucket");
        common::check_interleaved_publish(store, &first, &second).await;
    }
}
