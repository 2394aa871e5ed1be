//! Scatter-gather's Lambda `Invoke` transport against an HTTP server that answers the
//! Invoke API (`POST /2015-03-31/functions/<name>/invocations`) the ways Lambda can: a
//! function's answer, a function error (`X-Amz-Function-Error`), a throttle (429
//! `TooManyRequestsException`) and a call that never ends. The happy path against a real
//! emulator (`cargo lambda watch`) is in `tests/tests/scatter.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kindred_predict::api;
use kindred_predict::scatter::Gather;
use serde_json::{Value, json};

/// Calls per function name.
#[derive(Default)]
struct Calls(std::sync::Mutex<Vec<String>>, AtomicUsize);

async fn invocations(
    State(calls): State<Arc<Calls>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    calls.0.lock().unwrap().push(name.clone());
    calls.1.fetch_add(1, Ordering::SeqCst);
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match name.as_str() {
        // The owner of every handle: a round-1 answer with an empty list, after checking
        // that the payload is the API Gateway event of POST /shard/search.
        "owner" => {
            assert_eq!(event["rawPath"], "/shard/search", "{event}");
            assert_eq!(event["requestContext"]["http"]["method"], "POST");
            let request: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
            let answer = json!({
                "model_version": "v1",
                "user_handle": request["user_handle"],
                "similar_users": [{"user_handle": 9, "similarity": 0.5, "rank": 1}],
                "query": {"vector": [], "features": []},
                "shards": [0],
                "shard_count": 1,
            });
            let response = json!({
                "statusCode": 200,
                "headers": {"content-type": "application/json"},
                "body": answer.to_string(),
                "isBase64Encoded": false,
            });
            response.to_string().into_response()
        }
        "crashes" => {
            let mut headers = HeaderMap::new();
            headers.insert("x-amz-function-error", "Unhandled".parse().unwrap());
            (headers, r#"{"errorMessage":"boom","errorType":"Panic"}"#).into_response()
        }
        "throttled" => {
            let mut headers = HeaderMap::new();
            headers.insert(
                "x-amzn-errortype",
                "TooManyRequestsException".parse().unwrap(),
            );
            (
                StatusCode::TOO_MANY_REQUESTS,
                headers,
                r#"{"Type":"User","message":"Rate Exceeded."}"#,
            )
                .into_response()
        }
        "stalls" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            StatusCode::OK.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn serve(calls: Arc<Calls>) -> SocketAddr {
    let app = Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(invocations),
        )
        .with_state(calls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn invoke_failures_become_flagged_partial_answers_with_their_reasons_within_the_timeout() {
    // Given an Invoke endpoint with a function that answers, one that crashes, one that
    // is throttled and one that never answers,
    let calls = Arc::new(Calls::default());
    let addr = serve(calls.clone()).await;
    let endpoint = |f: &str| format!("lambda:{f}@http://{addr}");
    let specs = ["owner", "crashes", "throttled", "stalls"].map(endpoint);
    let timeout = Duration::from_millis(700);
    // (An AWS configuration built here, not read from process variables: the test
    // binary is threaded.)
    use aws_sdk_lambda::config::{Credentials, Region, SharedCredentialsProvider};
    let aws = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "test",
        )))
        .build();
    let gather = Gather::with_aws_config(specs.to_vec(), timeout, Some(aws)).expect("endpoints");
    // when a handle is asked for,
    let q = api::parse_request(&HeaderMap::new(), br#"{"user_handle": 3, "k": 5}"#).unwrap();
    let started = Instant::now();
    let answer = gather.answer_handle(3, &q).await.expect("an answer");
    let took = started.elapsed();
    // then the owner's list comes back, flagged partial, with each failure's reason,
    assert_eq!(answer["similar_users"][0]["user_handle"], 9, "{answer}");
    assert_eq!(answer["partial"], true, "{answer}");
    let missing = answer["shards_missing"].as_array().unwrap();
    let reason = |f: &str| -> String {
        missing
            .iter()
            .find(|m| m["endpoint"] == endpoint(f).as_str())
            .unwrap_or_else(|| panic!("{f} not reported in {answer}"))["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        reason("crashes").contains("function error (Unhandled)"),
        "{answer}"
    );
    assert!(reason("crashes").contains("boom"), "{answer}");
    assert!(reason("throttled").contains("TooManyRequests"), "{answer}");
    assert!(reason("stalls").contains("no answer within"), "{answer}");
    assert_eq!(missing.len(), 3, "{answer}");
    // the stalled call was cut by the per-shard timeout (one round: the failed
    // endpoints are not asked again in round 2),
    assert!(took < Duration::from_secs(10), "{took:?}");
    // and a throttle was retried once, not three times.
    let throttled = calls
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|n| *n == "throttled")
        .count();
    assert_eq!(throttled, 2);
}
