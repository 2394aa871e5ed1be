//! The real `kindred-predict` binary as a local HTTP server (`--listen`), driven by a real
//! HTTP client (hyper's).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use common::process::{Running, function};
use common::{UNKNOWN_HANDLE, eventually, known_handle};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kindred_core::store::LocalStore;
use serde_json::Value;

const START: Duration = Duration::from_secs(30);

/// A server process and the address it logged.
struct Server {
    process: Running,
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Starts the binary on a free port over `store` with `--refresh-seconds 0`.
async fn start(store: &Path, extra_env: &[(&str, &str)]) -> Server {
    let mut cmd = function();
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--refresh-seconds",
        "0",
        "--store",
    ])
    .arg(store);
    cmd.envs(extra_env.iter().copied());
    start_with(cmd).await
}

async fn start_with(cmd: std::process::Command) -> Server {
    let mut process = Running::spawn(cmd);
    let serving = process
        .wait_for_log(START, "the listening address", |e| {
            e["fields"]["message"] == "serving"
        })
        .await;
    let addr = serving["fields"]["address"]
        .as_str()
        .expect("address field")
        .parse()
        .expect("socket address");
    let client = Client::builder(TokioExecutor::new()).build_http();
    Server {
        process,
        addr,
        client,
    }
}

impl Server {
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Full::new(body)).unwrap())
            .await
            .expect("HTTP exchange");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("response body").to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        (parts.status, parts.headers, json)
    }

    async fn predict(&self, body: &str) -> (StatusCode, HeaderMap, Value) {
        self.send(
            Method::POST,
            "/predict",
            &[("content-type", "application/json")],
            Bytes::from(body.to_owned()),
        )
        .await
    }

    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Value) {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    /// `GET path` answered as text.
    async fn get_text(&self, path: &str) -> (StatusCode, HeaderMap, String) {
        let req = Request::get(format!("http://{}{path}", self.addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = self.client.request(req).await.expect("HTTP exchange");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("response body").to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }
}

/// The value of the Prometheus sample `series` (name and labels, as written) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_answers_by_route_and_status_and_describe_the_model() {
    // Given a server over a published model,
    let dir = tempfile::tempdir().unwrap();
    let v1 = common::version(1);
    common::publish(&LocalStore::new(dir.path()), &v1).await;
    let server = start(dir.path(), &[]).await;
    // before any query the model is not loaded;
    let (status, headers, text) = server.get_text("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert_eq!(
        sample(&text, "kindred_model_state{state=\"not_loaded\"}"),
        1.0
    );
    // when three queries are answered, one request is malformed and one path unknown,
    for i in 0..3 {
        let (status, _, _) = server
            .predict(&format!(r#"{{"user_handle": {}}}"#, known_handle(i)))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(server.predict("{").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(server.get("/nowhere").await.0, StatusCode::NOT_FOUND);
    // then /metrics counts each by route and status class, times them, and names the
    // model loaded, its size and how long loading it took.
    let (_, _, text) = server.get_text("/metrics").await;
    let count = |route: &str, class: &str| {
        sample(
            &text,
            &format!("kindred_requests_total{{route=\"{route}\",status=\"{class}\"}}"),
        )
    };
    assert_eq!(count("/predict", "2xx"), 3.0);
    assert_eq!(count("/predict", "4xx"), 1.0);
    assert_eq!(count("/predict", "5xx"), 0.0);
    assert_eq!(count("other", "4xx"), 1.0);
    assert_eq!(count("/metrics", "2xx"), 1.0);
    assert_eq!(
        sample(
            &text,
            "kindred_request_duration_seconds_count{route=\"/predict\"}"
        ),
        4.0
    );
    assert_eq!(
        sample(
            &text,
            "kindred_request_duration_seconds_bucket{route=\"/predict\",le=\"+Inf\"}"
        ),
        4.0
    );
    assert!(
        sample(
            &text,
            "kindred_request_duration_seconds_sum{route=\"/predict\"}"
        ) > 0.0
    );
    assert_eq!(
        sample(&text, &format!("kindred_model_info{{version=\"{v1}\"}}")),
        1.0
    );
    assert_eq!(
        sample(&text, "kindred_model_users"),
        common::model().len() as f64
    );
    assert_eq!(sample(&text, "kindred_model_state{state=\"loaded\"}"), 1.0);
    assert_eq!(sample(&text, "kindred_model_loads_total"), 1.0);
    assert!(sample(&text, "kindred_model_load_seconds") > 0.0);
}

#[tokio::test]
async fn recommend_answers_over_http_and_its_mistakes_are_json_4xx() {
    // Given the binary serving the test model,
    let dir = tempfile::tempdir().unwrap();
    common::publish(&LocalStore::new(dir.path()), &common::version(1)).await;
    let server = start(dir.path(), &[]).await;
    let post = |body: &'static str| {
        server.send(
            Method::POST,
            "/recommend",
            &[("content-type", "application/json")],
            Bytes::from(body),
        )
    };
    // when a known user asks for courses, the answer is ranked courses with their tags,
    // what they were chosen for, and the model version;
    let handle = known_handle(3);
    let body = format!(r#"{{"user_handle": {handle}, "k": 4}}"#);
    let (status, _, a) = server
        .send(
            Method::POST,
            "/recommend",
            &[("content-type", "application/json")],
            Bytes::from(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["user_handle"], handle);
    assert_eq!(a["model_version"], common::version(1));
    let recs = a["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), 4);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["rank"], i + 1);
        assert!(r["course_id"].as_str().is_some_and(|c| !c.is_empty()));
        assert!(r["tags"].is_array() && r["because"]["shared_tags"].is_array());
        // (the default disclosure names no other learner).
        assert!(r["because"].get("similar_users").is_none());
    }
    // and mistakes are JSON 4xx: an unknown user, /predict's field, a GET, a bad k.
    let unknown = post(r#"{"user_handle": 987654321}"#).await;
    assert_eq!(
        (unknown.0, unknown.2["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown user"))
    );
    let wrong_route = server
        .predict(r#"{"user_handle": 1, "exclude_courses": ["x"]}"#)
        .await;
    assert_eq!(wrong_route.0, StatusCode::BAD_REQUEST, "{}", wrong_route.2);
    let (status, headers, _) = server.get("/recommend").await;
    assert_eq!(
        (status, headers["allow"].to_str().unwrap()),
        (StatusCode::METHOD_NOT_ALLOWED, "POST")
    );
    assert_eq!(
        post(r#"{"user_handle": 1, "k": 0}"#).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Each is counted under its own route.
    let (_, _, text) = server.get_text("/metrics").await;
    let count = |class: &str| {
        sample(
            &text,
            &format!("kindred_requests_total{{route=\"/recommend\",status=\"{class}\"}}"),
        )
    };
    assert_eq!((count("2xx"), count("4xx")), (1.0, 3.0));
}

#[tokio::test]
async fn the_server_loads_lazily_answers_503_until_a_model_is_published_then_200() {
    // Given a server over an empty store,
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).await;
    // /health reports nothing loaded,
    let (status, _, h) = server.get("/health").await;
    assert_eq!(
        (status, h["state"].as_str()),
        (StatusCode::OK, Some("not_loaded"))
    );
    // and a prediction is 503 with a retry hint;
    let (status, headers, body) = server.predict(r#"{"user_handle": 1}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(body["detail"]["reason"], "no model has been published yet");
    // when a model is published, then the next request is answered by it.
    let v1 = common::version(1);
    common::publish(&LocalStore::new(dir.path()), &v1).await;
    let handle = known_handle(5);
    let (status, headers, body) = server
        .predict(&format!(r#"{{"user_handle": {handle}, "k": 5}}"#))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    common::assert_prediction(&body, handle, 5, &v1);
    let (_, _, h) = server.get("/health").await;
    assert_eq!(
        (h["state"].as_str(), h["model_version"].as_str()),
        (Some("loaded"), Some(v1.as_str()))
    );
    assert_eq!(h["users"], common::model().len());
    // The index and the OpenAPI document are served as JSON.
    let (status, headers, index) = server.get("/").await;
    assert_eq!(
        (status, index["openapi"].as_str()),
        (StatusCode::OK, Some("/openapi.json"))
    );
    assert_eq!(headers["content-type"], "application/json");
    let (status, headers, doc) = server.get("/openapi.json").await;
    assert_eq!(
        (status, doc["info"]["title"].as_str()),
        (StatusCode::OK, Some("Kindred"))
    );
    assert_eq!(headers["content-type"], "application/json");
}

#[tokio::test]
async fn the_server_maps_client_mistakes_to_json_4xx() {
    let dir = tempfile::tempdir().unwrap();
    common::publish(&LocalStore::new(dir.path()), &common::version(1)).await;
    let server = start(dir.path(), &[]).await;
    let known = known_handle(0);
    const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
    let big = Bytes::from(format!(
        r#"{{"user_handle": {known}, "pad": "{}"}}"#,
        "x".repeat(100 * 1024)
    ));
    type Case = (
        Method,
        &'static str,
        &'static [(&'static str, &'static str)],
        Bytes,
        StatusCode,
    );
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/predict",
            JSON,
            Bytes::from_static(b"{not json"),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/predict",
            JSON,
            Bytes::from_static(br#"{"user_handle": 1, "x": 2}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/predict",
            JSON,
            Bytes::from(format!(r#"{{"user_handle": {known}, "k": 1000}}"#)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/predict",
            JSON,
            Bytes::from(format!(r#"{{"user_handle": {UNKNOWN_HANDLE}}}"#)),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/predict",
            JSON,
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::POST,
            "/predict",
            &[("content-type", "text/csv")],
            Bytes::from_static(b"1"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::GET,
            "/predict",
            &[],
            Bytes::new(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::PATCH,
            "/openapi.json",
            &[],
            Bytes::new(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::GET,
            "/predict/",
            &[],
            Bytes::new(),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, headers, body, expected) in cases {
        let case = format!("{method} {path} {headers:?}");
        // Given a mistaken request over HTTP, then the answer is a JSON error with the status.
        let (status, response_headers, body) =
            server.send(method.clone(), path, headers, body).await;
        assert_eq!(status, expected, "{case}: {body}");
        assert_eq!(
            response_headers["content-type"], "application/json",
            "{case}"
        );
        assert!(
            body["error"].is_string() && body.get("detail").is_some(),
            "{case}: {body}"
        );
        if expected == StatusCode::METHOD_NOT_ALLOWED {
            assert!(response_headers.contains_key("allow"), "{case}");
        }
    }
    // A request without a content type is read as JSON (curl -d without -H).
    let (status, _, body) = server
        .send(
            Method::POST,
            "/predict",
            &[],
            Bytes::from(format!(r#"{{"user_handle": "{known}"}}"#)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The server still answers after all that.
    assert_eq!(server.get("/health").await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_server_swaps_in_a_newly_published_version() {
    // Given a server answering with v1 and checking the store on every request,
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let (v1, v2) = (common::version(1), common::version(2));
    common::publish(&store, &v1).await;
    let server = start(dir.path(), &[]).await;
    let body = format!(r#"{{"user_handle": {}}}"#, known_handle(0));
    assert_eq!(server.predict(&body).await.2["model_version"], v1.as_str());
    // when v2 is published, then answers move to v2 and none fails meanwhile.
    common::publish(&store, &v2).await;
    eventually(Duration::from_secs(30), "v2 to answer", || async {
        let (status, _, answer) = server.predict(&body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        (answer["model_version"] == v2.as_str()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_s3_store_gives_503_from_the_binary() {
    // Given the binary configured with an S3 store whose endpoint refuses connections,
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{closed}");
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/kindred-test"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kindred-test"),
    ];
    let mut server = start(Path::new("s3://kindred-test-bucket/models"), &env).await;
    // when a prediction is asked for, then it is 503 "unreachable" with a retry hint,
    let (status, headers, body) = server.predict(r#"{"user_handle": 1}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(body["detail"]["reason"], "the model store is unreachable");
    // the endpoint stays out of the answer and goes to the log.
    assert!(!body.to_string().contains(&closed.to_string()), "{body}");
    // (The log line may reach the pipe reader just after the response: wait for it.)
    let warning = server
        .process
        .wait_for_log(Duration::from_secs(10), "the store warning", |e| {
            e["fields"]["message"] == "model store unavailable"
        })
        .await;
    assert!(
        warning["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("current.json")
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_gracefully() {
    // Given a running server,
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[]).await;
    assert_eq!(server.get("/health").await.0, StatusCode::OK);
    // when it receives SIGTERM,
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &server.process.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // then it exits successfully after logging that it stopped.
    let status = server.process.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}: {}", server.process.stderr());
    assert!(
        server
            .process
            .log_events()
            .iter()
            .any(|e| e["fields"]["message"] == "stopped")
    );
}

#[tokio::test]
async fn text_logs_name_the_address_and_carry_no_colour_codes_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = function();
    cmd.args(["--listen", "127.0.0.1:0", "--store"])
        .arg(dir.path());
    let process = Running::spawn(cmd);
    let deadline = std::time::Instant::now() + START;
    while !process.stderr().contains("serving") {
        assert!(std::time::Instant::now() < deadline, "{}", process.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = process.stderr();
    assert!(log.contains("address=127.0.0.1:"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in piped logs: {log:?}"
    );
}

#[test]
fn help_describes_the_options_and_their_environment_variables() {
    let out = function().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--store",
        "KINDRED_STORE",
        "s3://bucket/prefix",
        "--listen",
        "KINDRED_LISTEN",
        "--refresh-seconds",
        "KINDRED_REFRESH_SECONDS",
        "--log-format",
        "KINDRED_LOG",
        "--disclose",
        "KINDRED_DISCLOSE",
        "--api-keys",
        "KINDRED_API_KEYS",
        "Lambda",
        "POST /predict",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn outside_lambda_without_listen_it_exits_with_a_hint() {
    // Given no Lambda runtime and no --listen, then the binary explains what to pass.
    let out = function()
        .args(["--store", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--listen"), "{stderr}");
}

#[test]
fn a_lambda_environment_missing_its_variables_is_an_error_not_a_panic() {
    // Given AWS_LAMBDA_RUNTIME_API but not the function's variables,
    let out = function()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env_remove("AWS_LAMBDA_FUNCTION_NAME")
        .env_remove("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .env_remove("AWS_LAMBDA_FUNCTION_VERSION")
        .args(["--store", "/nonexistent"])
        .output()
        .unwrap();
    // then it exits with an error naming them.
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("AWS_LAMBDA_FUNCTION_NAME") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn it_refuses_to_listen_beyond_loopback_without_keys_and_refuses_short_keys() {
    // Given an address on every interface and no API keys,
    let out = function()
        .args(["--listen", "0.0.0.0:0", "--store", "/nonexistent"])
        .output()
        .unwrap();
    // then the binary exits before listening, saying why and what to pass,
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without authentication")
            && stderr.contains("--api-keys"),
        "{stderr}"
    );
    // and a key shorter than 16 characters is refused as an argument, not used.
    let out = function()
        .args(["--listen", "0.0.0.0:0", "--store", "/nonexistent"])
        .env("KINDRED_API_KEYS", "too-short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shorter than 16"), "{stderr}");
}

#[tokio::test]
async fn with_api_keys_the_server_answers_only_callers_that_present_one() {
    // Given a published model served with a key (on loopback, as a test may listen),
    let store = tempfile::tempdir().unwrap();
    common::publish(&LocalStore::new(store.path()), &common::version(1)).await;
    let key = "s3cret-key-for-the-test";
    let server = start(store.path(), &[("KINDRED_API_KEYS", key)]).await;
    let body = Bytes::from(format!(r#"{{"user_handle": {}}}"#, known_handle(0)));
    // when a client asks without the key, then it gets a 401 JSON error,
    let (status, headers, json) = server.predict(std::str::from_utf8(&body).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    assert_eq!(json["error"], "missing API key");
    assert!(headers.contains_key("www-authenticate"));
    // and with it, the answer.
    let bearer = format!("Bearer {key}");
    let (status, _, json) = server
        .send(
            Method::POST,
            "/predict",
            &[
                ("content-type", "application/json"),
                ("authorization", &bearer),
            ],
            body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    common::assert_prediction(&json, known_handle(0), 10, &common::version(1));
    // The metrics need the key too.
    assert_eq!(server.get("/metrics").await.0, StatusCode::UNAUTHORIZED);
    // The key never appears in the logs.
    assert!(!server.process.stderr().contains(key));
}
