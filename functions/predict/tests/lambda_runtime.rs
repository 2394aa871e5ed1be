//! The real binary in Lambda mode: a fake Lambda Runtime API (the interface the Lambda
//! service and `cargo lambda watch` offer) hands it API Gateway and Function URL events
//! and collects what it answers, as API Gateway would receive it.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::process::{Running, function};
use common::{known_handle, version};
use kindred_core::store::LocalStore;
use kindred_e2e::events::{Source, event_json};
use serde_json::Value;
use tokio::sync::mpsc;

/// What the function posted back for one invocation.
#[derive(Debug)]
struct Outcome {
    request_id: String,
    /// "response" or "error".
    kind: &'static str,
    body: Value,
}

#[derive(Clone)]
struct Runtime {
    events: Arc<Mutex<VecDeque<(String, Value)>>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

async fn next(State(rt): State<Runtime>) -> Response {
    let Some((id, event)) = rt.events.lock().unwrap().pop_front() else {
        // No more work: hold the long poll open, as the real service does.
        return std::future::pending().await;
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000;
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:kindred-predict"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-5e9f0c65-1de4d666d4dd26aced652b6c".parse().unwrap(),
    );
    (headers, axum::Json(event)).into_response()
}

fn record(rt: &Runtime, request_id: String, kind: &'static str, body: &Bytes) -> StatusCode {
    let body = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()));
    let _ = rt.outcomes.send(Outcome {
        request_id,
        kind,
        body,
    });
    StatusCode::ACCEPTED
}

async fn response(State(rt): State<Runtime>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    record(&rt, id, "response", &body)
}

async fn error(State(rt): State<Runtime>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    record(&rt, id, "error", &body)
}

async fn init_error(State(rt): State<Runtime>, body: Bytes) -> StatusCode {
    record(&rt, "init".into(), "error", &body)
}

/// Starts a fake Runtime API serving `events`; returns its address and the outcomes.
async fn fake_runtime(
    events: Vec<(String, Value)>,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Outcome>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let rt = Runtime {
        events: Arc::new(Mutex::new(events.into())),
        outcomes: tx,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(rt);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

/// A response header from an API Gateway v1 (`multiValueHeaders`) or v2 (`headers`) answer.
fn header(body: &Value, name: &str) -> Option<String> {
    let find = |map: &Value| {
        map.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| match v {
                Value::Array(values) => values
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.as_str().unwrap_or_default().to_owned(),
            })
    };
    find(&body["multiValueHeaders"]).or_else(|| find(&body["headers"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_answers_lambda_invocations_from_every_event_source() {
    // Given a published model and a queue of invocations,
    let dir = tempfile::tempdir().unwrap();
    common::publish(&LocalStore::new(dir.path()), &version(1)).await;
    let handle = known_handle(4);
    let json = [("Content-Type", "application/json")];
    let predict = format!(r#"{{"user_handle": {handle}, "k": 4}}"#);
    let events = vec![
        (
            "health-cold",
            event_json(Source::FunctionUrl, "GET", "/health", &[], None),
        ),
        (
            "rest-predict",
            event_json(Source::RestApi, "POST", "/predict", &json, Some(&predict)),
        ),
        (
            "http-predict",
            event_json(Source::HttpApi, "POST", "/predict", &json, Some(&predict)),
        ),
        (
            "url-predict",
            event_json(Source::FunctionUrl, "POST", "/predict", &[], Some(&predict)),
        ),
        (
            "rest-405",
            event_json(Source::RestApi, "GET", "/predict", &[], None),
        ),
        (
            "http-400",
            event_json(Source::HttpApi, "POST", "/predict", &json, Some("{")),
        ),
        (
            "url-404",
            event_json(
                Source::FunctionUrl,
                "POST",
                "/predict",
                &json,
                Some(r#"{"user_handle": 987654321}"#),
            ),
        ),
        (
            "rest-health",
            event_json(Source::RestApi, "GET", "/health", &[], None),
        ),
    ];
    let count = events.len();
    let (addr, mut outcomes) = fake_runtime(
        events
            .into_iter()
            .map(|(id, e)| (id.to_owned(), e))
            .collect(),
    )
    .await;
    // when the binary runs under that Runtime API,
    let mut cmd = function();
    cmd.env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "kindred-predict")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("KINDRED_STORE", dir.path());
    let process = Running::spawn(cmd);
    let mut answers = std::collections::HashMap::new();
    for _ in 0..count {
        let outcome = tokio::time::timeout(Duration::from_secs(30), outcomes.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no answer within 30 s; got {answers:?}\n{}",
                    process.stderr()
                )
            })
            .unwrap();
        // then every invocation gets a response, never an invocation error (a 502),
        assert_eq!(
            outcome.kind,
            "response",
            "{outcome:?}\n{}",
            process.stderr()
        );
        answers.insert(outcome.request_id.clone(), outcome.body);
    }
    let status = |id: &str| answers[id]["statusCode"].as_i64().unwrap();
    let body = |id: &str| -> Value {
        serde_json::from_str(answers[id]["body"].as_str().unwrap()).unwrap()
    };

    // the model was not loaded before the first prediction,
    assert_eq!(
        (status("health-cold"), body("health-cold")["state"].as_str()),
        (200, Some("not_loaded"))
    );
    // predictions through the REST API (stage "testStage"), HTTP API and Function URL succeed,
    for id in ["rest-predict", "http-predict", "url-predict"] {
        assert_eq!(status(id), 200, "{id}: {}", answers[id]);
        assert_eq!(answers[id]["isBase64Encoded"], false, "{id}");
        assert_eq!(
            header(&answers[id], "content-type").as_deref(),
            Some("application/json"),
            "{id}"
        );
        common::assert_prediction(&body(id), handle, 4, &version(1));
    }
    // errors keep their status and headers,
    assert_eq!(status("rest-405"), 405);
    assert_eq!(
        header(&answers["rest-405"], "allow").as_deref(),
        Some("POST")
    );
    assert_eq!(
        (status("http-400"), body("http-400")["error"].as_str()),
        (400, Some("invalid request body"))
    );
    assert_eq!(
        (status("url-404"), body("url-404")["error"].as_str()),
        (404, Some("unknown user"))
    );
    assert_eq!(body("rest-health")["model_version"], version(1));
    // and the logs are JSON, one event a line.
    let stderr = process.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert!(
        process
            .log_events()
            .iter()
            .any(|e| e["fields"]["message"] == "model loaded"),
        "{stderr}"
    );
}
