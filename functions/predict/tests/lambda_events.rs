//! The router driven with real Lambda events: API Gateway REST (v1, stage "testStage"),
//! HTTP API (v2) and Function URL payloads, as `lambda_http` parses them.
//!
//! The events start from the example payloads shipped in the cargo registry
//! (`aws_lambda_events` and `lambda_http` sources), with method, path, headers and body
//! set per case.

mod common;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use common::{UNKNOWN_HANDLE, known_handle, model};
use kindred_core::store::LocalStore;
use kindred_e2e::events::{SOURCES, Source, event_json, fixture};
use kindred_predict::api;
use kindred_predict::cache::ModelCache;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A Lambda event from `source` for `method path`, as the runtime hands it to the function.
fn event(
    source: Source,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> lambda_http::Request {
    let ev = event_json(source, method, path, headers, body);
    lambda_http::request::from_str(&ev.to_string()).expect("lambda_http parses the event")
}

/// What the function answers: status, headers and the body as API Gateway receives it.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

/// Drives the router as `lambda_http::run` does and converts the response the same way.
async fn call(router: &Router, req: lambda_http::Request) -> Answer {
    // The router's error type is `Infallible`: no outcome can become an `Err` of the
    // service (which API Gateway would turn into a 502), so this pattern is irrefutable.
    let Ok(resp) = router.clone().oneshot(req).await;
    let resp = lambda_http::IntoResponse::into_response(resp).await;
    let (parts, body) = resp.into_parts();
    let body = match body {
        // JSON must reach API Gateway as text, not base64.
        lambda_http::Body::Text(text) if text.is_empty() => Value::Null,
        lambda_http::Body::Text(text) => serde_json::from_str(&text).expect("JSON body"),
        lambda_http::Body::Empty => Value::Null,
        other => panic!("{} answered with a non-text body: {other:?}", parts.status),
    };
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A router over a folder with the test model published as `version(1)`.
async fn serving() -> (Router, tempfile::TempDir) {
    serving_with(api::Settings::default()).await
}

fn predict(source: Source, body: &str) -> lambda_http::Request {
    event(
        source,
        "POST",
        "/predict",
        &[("Content-Type", "application/json")],
        Some(body),
    )
}

fn assert_json_error(a: &Answer, status: StatusCode, error: &str, case: &str) {
    assert_eq!(a.status, status, "{case}: {}", a.body);
    assert_eq!(a.headers["content-type"], "application/json", "{case}");
    assert_eq!(a.body["error"], error, "{case}: {}", a.body);
    assert!(
        a.body.get("detail").is_some(),
        "{case}: no detail in {}",
        a.body
    );
}

#[tokio::test]
async fn predict_answers_ranked_similar_users_for_every_event_source() {
    // Given a published model,
    let (router, _dir) = serving().await;
    let handle = known_handle(7);
    for source in SOURCES {
        // when a known user is asked for from each event source,
        let a = call(
            &router,
            predict(source, &format!(r#"{{"user_handle": {handle}}}"#)),
        )
        .await;
        // then the answer is 200 JSON with ten users ranked by descending similarity,
        assert_eq!(a.status, StatusCode::OK, "{source:?}: {}", a.body);
        assert_eq!(a.headers["content-type"], "application/json");
        common::assert_prediction(
            &a.body,
            handle,
            api::DEFAULT_K as usize,
            &common::version(1),
        );
        // and each similarity is the cosine of the two users' embeddings.
        let m = model();
        let q = m.embedding(m.row_of(handle).unwrap());
        for u in a.body["similar_users"].as_array().unwrap() {
            let other = m.embedding(m.row_of(u["user_handle"].as_u64().unwrap()).unwrap());
            let cosine = kindred_core::embedding::dot(&q, &other) as f64;
            assert!(
                (u["similarity"].as_f64().unwrap() - cosine).abs() < 1e-4,
                "{source:?}: {u} vs {cosine}"
            );
        }
    }
}

#[tokio::test]
async fn recommend_answers_the_same_courses_for_every_event_source() {
    // Given a published model and the courses the query core recommends for a user,
    let (router, _dir) = serving().await;
    let handle = known_handle(7);
    let expected = api::recommend_handle(
        model(),
        handle,
        5,
        &api::Filters::default(),
        api::Disclosure::default(),
    )
    .unwrap();
    let expected: Vec<(&str, u32)> = expected
        .recommendations
        .iter()
        .map(|r| (r.course_id, r.because.as_ref().unwrap().similar_learners))
        .collect();
    for source in SOURCES {
        // when each event source asks POST /recommend (under a REST stage too),
        let a = call(
            &router,
            event(
                source,
                "POST",
                "/recommend",
                &[("Content-Type", "application/json")],
                Some(&format!(r#"{{"user_handle": {handle}, "k": 5}}"#)),
            ),
        )
        .await;
        // then the answer is those courses, never a 5xx.
        assert_eq!(a.status, StatusCode::OK, "{source:?}: {}", a.body);
        assert_eq!(a.headers["content-type"], "application/json");
        assert_eq!(a.body["model_version"], common::version(1));
        let got: Vec<(&str, u32)> = a.body["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let n = r["because"]["similar_learners"].as_u64().unwrap() as u32;
                (r["course_id"].as_str().unwrap(), n)
            })
            .collect();
        assert_eq!(got, expected, "{source:?}");
        let bad = call(
            &router,
            event(
                source,
                "POST",
                "/recommend",
                &[],
                Some(r#"{"user_handle": 1, "k": "x"}"#),
            ),
        )
        .await;
        assert_json_error(
            &bad,
            StatusCode::BAD_REQUEST,
            "invalid request body",
            "k as text",
        );
    }
}

#[tokio::test]
async fn a_numeric_string_handle_k_and_a_missing_content_type_are_accepted() {
    let (router, _dir) = serving().await;
    let handle = known_handle(3);
    for source in SOURCES {
        // Given a handle sent as a string and k = 3, then three users come back.
        let a = call(
            &router,
            predict(source, &format!(r#"{{"user_handle": "{handle}", "k": 3}}"#)),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{source:?}: {}", a.body);
        common::assert_prediction(&a.body, handle, 3, &common::version(1));
        // Given no content type at all (curl -d without -H), then the body is read as JSON.
        let bare = event(
            source,
            "POST",
            "/predict",
            &[],
            Some(&format!(r#"{{"user_handle": {handle}}}"#)),
        );
        let a = call(&router, bare).await;
        assert_eq!(
            a.status,
            StatusCode::OK,
            "{source:?} without content type: {}",
            a.body
        );
        // Given a JSON content type with parameters, then it is accepted too.
        let with_charset = event(
            source,
            "POST",
            "/predict",
            &[("Content-Type", "application/json; charset=utf-8")],
            Some(&format!(r#"{{"user_handle": {handle}, "k": 1}}"#)),
        );
        let a = call(&router, with_charset).await;
        common::assert_prediction(&a.body, handle, 1, &common::version(1));
    }
}

#[tokio::test]
async fn k_up_to_100_returns_k_users_even_beyond_the_index_search_width() {
    // Given an index searching 64 candidates (the default ef_search),
    let (router, _dir) = serving().await;
    assert!(model().manifest.hnsw.ef_search < 100);
    let handle = known_handle(11);
    // when k = 100 is asked for, then 100 distinct users come back, ranked.
    let a = call(
        &router,
        predict(
            Source::HttpApi,
            &format!(r#"{{"user_handle": {handle}, "k": 100}}"#),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    common::assert_prediction(&a.body, handle, 100, &common::version(1));
    let mut handles: Vec<u64> = a.body["similar_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_handle"].as_u64().unwrap())
        .collect();
    handles.sort_unstable();
    handles.dedup();
    assert_eq!(handles.len(), 100);
}

const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

/// A mistaken request and the error it must get.
struct Mistake {
    case: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Option<String>,
    status: StatusCode,
    error: &'static str,
}

impl Mistake {
    fn new(
        case: &'static str,
        method: &'static str,
        path: &'static str,
        headers: &'static [(&'static str, &'static str)],
        body: Option<String>,
        status: StatusCode,
        error: &'static str,
    ) -> Self {
        Mistake {
            case,
            method,
            path,
            headers,
            body,
            status,
            error,
        }
    }
}

#[tokio::test]
async fn client_mistakes_get_json_errors_with_the_right_4xx_status() {
    let (router, _dir) = serving().await;
    let known = known_handle(0);
    let big = format!(
        r#"{{"user_handle": {known}, "pad": "{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let cases = [
        Mistake::new(
            "invalid JSON",
            "POST",
            "/predict",
            JSON,
            Some("{\"user_handle\": ".into()),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "empty body",
            "POST",
            "/predict",
            JSON,
            None,
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "wrong type",
            "POST",
            "/predict",
            JSON,
            Some(r#"{"user_handle": true}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "fraction",
            "POST",
            "/predict",
            JSON,
            Some(r#"{"user_handle": 1.5}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "negative handle",
            "POST",
            "/predict",
            JSON,
            Some(r#"{"user_handle": -1}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "non-digit string",
            "POST",
            "/predict",
            JSON,
            Some(r#"{"user_handle": "abc"}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "k as string",
            "POST",
            "/predict",
            JSON,
            Some(format!(r#"{{"user_handle": {known}, "k": "5"}}"#)),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "unknown field",
            "POST",
            "/predict",
            JSON,
            Some(format!(r#"{{"user_handle": {known}, "limit": 5}}"#)),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "missing handle",
            "POST",
            "/predict",
            JSON,
            Some(r#"{"k": 5}"#.into()),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "array body",
            "POST",
            "/predict",
            JSON,
            Some("[1]".into()),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "array body with k",
            "POST",
            "/predict",
            JSON,
            Some(format!("[{known}, 5]")),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "JSON string",
            "POST",
            "/predict",
            JSON,
            Some("\"1\"".into()),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "duplicate field",
            "POST",
            "/predict",
            JSON,
            Some(format!(r#"{{"user_handle": {known}, "user_handle": 2}}"#)),
            StatusCode::BAD_REQUEST,
            "invalid request body",
        ),
        Mistake::new(
            "k = 0",
            "POST",
            "/predict",
            JSON,
            Some(format!(r#"{{"user_handle": {known}, "k": 0}}"#)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "k out of range",
        ),
        Mistake::new(
            "k = 101",
            "POST",
            "/predict",
            JSON,
            Some(format!(r#"{{"user_handle": {known}, "k": 101}}"#)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "k out of range",
        ),
        Mistake::new(
            "k = -3",
            "POST",
            "/predict",
            JSON,
            Some(format!(r#"{{"user_handle": {known}, "k": -3}}"#)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "k out of range",
        ),
        Mistake::new(
            "unknown user",
            "POST",
            "/predict",
            JSON,
            Some(format!(r#"{{"user_handle": {UNKNOWN_HANDLE}}}"#)),
            StatusCode::NOT_FOUND,
            "unknown user",
        ),
        Mistake::new(
            "over 64 KiB",
            "POST",
            "/predict",
            JSON,
            Some(big),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ),
        Mistake::new(
            "text/plain",
            "POST",
            "/predict",
            &[("Content-Type", "text/plain")],
            Some(format!(r#"{{"user_handle": {known}}}"#)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content type",
        ),
        Mistake::new(
            "form",
            "POST",
            "/predict",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some("user_handle=1".into()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content type",
        ),
        Mistake::new(
            "GET /predict",
            "GET",
            "/predict",
            &[],
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ),
        Mistake::new(
            "POST /health",
            "POST",
            "/health",
            JSON,
            Some("{}".into()),
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ),
        Mistake::new(
            "DELETE /",
            "DELETE",
            "/",
            &[],
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ),
        Mistake::new(
            "unknown route",
            "GET",
            "/users/1",
            &[],
            None,
            StatusCode::NOT_FOUND,
            "no such route",
        ),
    ];
    for source in SOURCES {
        for m in &cases {
            let case = format!("{source:?} {}", m.case);
            // Given a mistaken request, when the function answers,
            let a = call(
                &router,
                event(source, m.method, m.path, m.headers, m.body.as_deref()),
            )
            .await;
            // then it is a JSON error with the expected 4xx status, never a 5xx,
            assert_json_error(&a, m.status, m.error, &case);
            assert!(a.status.is_client_error(), "{case}");
        }
    }
    // and specific details: the Allow header on 405, the limits on 413 and 422.
    let a = call(
        &router,
        event(Source::RestApi, "GET", "/predict", &[], None),
    )
    .await;
    assert_eq!(a.headers["allow"], "POST");
    let a = call(
        &router,
        event(Source::FunctionUrl, "PUT", "/health", &[], None),
    )
    .await;
    assert_eq!(a.headers["allow"], "GET, HEAD");
    let a = call(
        &router,
        predict(
            Source::HttpApi,
            &format!(r#"{{"user_handle": {known}, "k": 500}}"#),
        ),
    )
    .await;
    assert_eq!(a.body["detail"], json!({"k": 500, "min": 1, "max": 100}));
    let a = call(
        &router,
        predict(
            Source::HttpApi,
            &format!(r#"{{"user_handle": {UNKNOWN_HANDLE}}}"#),
        ),
    )
    .await;
    assert_eq!(a.body["detail"]["user_handle"], UNKNOWN_HANDLE);
    assert_eq!(a.body["detail"]["model_version"], common::version(1));
}

#[tokio::test]
async fn without_a_published_model_predict_is_503_with_a_retry_hint() {
    // Given a store where nothing was published,
    let dir = tempfile::tempdir().unwrap();
    let router = api::router(ModelCache::new(
        LocalStore::new(dir.path()),
        Duration::from_secs(3600),
    ));
    for source in SOURCES {
        // when a valid request arrives,
        let a = call(&router, predict(source, r#"{"user_handle": 1}"#)).await;
        // then it is 503 with Retry-After and the reason, in the same JSON error shape.
        assert_json_error(
            &a,
            StatusCode::SERVICE_UNAVAILABLE,
            "model unavailable",
            &format!("{source:?}"),
        );
        assert_eq!(
            a.headers["retry-after"],
            api::RETRY_AFTER_SECONDS.to_string()
        );
        assert_eq!(
            a.body["detail"]["reason"],
            "no model has been published yet"
        );
        assert_eq!(
            a.body["detail"]["retry_after_seconds"],
            api::RETRY_AFTER_SECONDS
        );
    }
    // A client mistake is still a 4xx, not a 503.
    let a = call(
        &router,
        predict(Source::HttpApi, r#"{"user_handle": 1, "k": 0}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    // And /health says why nothing serves.
    let a = call(&router, event(Source::HttpApi, "GET", "/health", &[], None)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["state"], "unavailable");
    assert_eq!(a.body["reason"], "no model has been published yet");
    assert_eq!(a.body["model_version"], Value::Null);
}

#[tokio::test]
async fn a_rest_api_stage_in_the_path_is_stripped_before_routing() {
    let (router, _dir) = serving().await;
    let handle = known_handle(1);
    // Given a REST API event of stage "testStage", lambda_http puts the stage in the path;
    let req = predict(Source::RestApi, &format!(r#"{{"user_handle": {handle}}}"#));
    assert_eq!(req.uri().path(), "/testStage/predict");
    // when it reaches the router, then /predict answers,
    let a = call(&router, req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    common::assert_prediction(&a.body, handle, 10, &common::version(1));
    // the stage root is the index, whose links carry the stage,
    let a = call(&router, event(Source::RestApi, "GET", "/", &[], None)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["openapi"], "/testStage/openapi.json");
    assert_eq!(a.body["predict"], "/testStage/predict");
    // and wrong methods and unknown routes keep their statuses under the stage.
    let a = call(
        &router,
        event(Source::RestApi, "GET", "/predict", &[], None),
    )
    .await;
    assert_eq!(
        (a.status, a.headers["allow"].to_str().unwrap()),
        (StatusCode::METHOD_NOT_ALLOWED, "POST")
    );
    let a = call(
        &router,
        event(Source::RestApi, "GET", "/nowhere", &[], None),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.body["detail"]["path"], "/nowhere");

    // Given an HTTP API with a named stage, whose raw path includes the stage,
    let mut ev = fixture(Source::HttpApi);
    ev["requestContext"]["stage"] = json!("prod");
    ev["rawPath"] = json!("/prod/predict");
    ev["requestContext"]["http"]["method"] = json!("POST");
    ev["body"] = json!(format!(r#"{{"user_handle": {handle}, "k": 2}}"#));
    ev["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    let req = lambda_http::request::from_str(&ev.to_string()).unwrap();
    assert_eq!(req.uri().path(), "/prod/predict");
    // then /predict answers too.
    let a = call(&router, req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    common::assert_prediction(&a.body, handle, 2, &common::version(1));
    // Without a stage (HTTP API $default), the index links are at the root.
    let a = call(&router, event(Source::HttpApi, "GET", "/", &[], None)).await;
    assert_eq!(a.body["openapi"], "/openapi.json");
}

#[tokio::test]
async fn health_index_and_openapi_describe_the_service_and_health_does_not_load() {
    let (router, _dir) = serving().await;
    // Given a fresh function, /health reports nothing loaded (it does not load the model);
    let a = call(
        &router,
        event(Source::FunctionUrl, "GET", "/health", &[], None),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["state"], "not_loaded");
    assert_eq!(a.body["model_version"], Value::Null);
    assert_eq!(a.body["users"], Value::Null);
    // after one prediction it reports the version and the user count.
    let a = call(
        &router,
        predict(
            Source::FunctionUrl,
            &format!(r#"{{"user_handle": {}}}"#, known_handle(0)),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = call(
        &router,
        event(Source::FunctionUrl, "GET", "/health", &[], None),
    )
    .await;
    assert_eq!(a.body["state"], "loaded");
    assert_eq!(a.body["model_version"], common::version(1));
    assert_eq!(a.body["users"], model().len());
    assert_eq!(a.body["reason"], Value::Null);
    // HEAD is answered like GET, without a body.
    let a = call(
        &router,
        event(Source::HttpApi, "HEAD", "/health", &[], None),
    )
    .await;
    assert_eq!((a.status, a.body), (StatusCode::OK, Value::Null));

    // The index describes the service and links the API.
    let a = call(&router, event(Source::HttpApi, "GET", "/", &[], None)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body["description"].as_str().unwrap().contains("similar"));
    assert_eq!(a.body["openapi"], "/openapi.json");

    // The OpenAPI document served is the one in the repo, and documents every status.
    let a = call(
        &router,
        event(Source::RestApi, "GET", "/openapi.json", &[], None),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let in_repo: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap(),
    )
    .unwrap();
    // (the document in the repository, less /shard/search, which only a process serving
    // shards routes and documents),
    let mut expected = in_repo.clone();
    expected["paths"]
        .as_object_mut()
        .unwrap()
        .remove("/shard/search");
    assert_eq!(a.body, expected);
    assert!(a.body["openapi"].as_str().unwrap().starts_with("3."));
    let statuses = a.body["paths"]["/predict"]["post"]["responses"]
        .as_object()
        .unwrap();
    for status in ["200", "400", "404", "405", "413", "415", "422", "503"] {
        assert!(
            statuses.contains_key(status),
            "openapi.json lacks {status} for /predict"
        );
    }
    for path in ["/", "/health", "/openapi.json"] {
        assert!(
            a.body["paths"][path]["get"].is_object(),
            "openapi.json lacks GET {path}"
        );
    }
    // Every schema reference resolves.
    let text = a.body.to_string();
    for reference in text
        .split("\"$ref\":\"#/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
    {
        let target = reference.split('/').fold(&a.body, |v, part| &v[part]);
        assert!(target.is_object(), "dangling $ref #/{reference}");
    }
}

#[tokio::test]
async fn profile_and_batch_queries_answer_from_every_event_source() {
    // Given a published model (which carries the fold-in projection),
    let (router, _dir) = serving().await;
    let m = model();
    let u = &m.users.users.get(m.row_of(known_handle(5)).unwrap());
    let tag = m.tag(u.features[0].tag.into()).to_owned();
    let (a, b) = (known_handle(1), known_handle(2));
    for source in SOURCES {
        // when a cold-start profile is asked for,
        let body = json!({"profile": {"tags": {tag.clone(): 1800}, "interests": [tag.clone(), "no-such-tag"]}, "k": 4});
        let p = call(&router, predict(source, &body.to_string())).await;
        // then four users come back, ranked, with the unknown tag reported,
        assert_eq!(p.status, StatusCode::OK, "{source:?}: {}", p.body);
        let users = p.body["similar_users"].as_array().unwrap();
        assert_eq!(users.len(), 4, "{source:?}: {}", p.body);
        assert_eq!(p.body["unknown_tags"], json!(["no-such-tag"]));
        assert!(p.body["matched"].as_array().is_some_and(|m| !m.is_empty()));
        // and a batch answers each handle in order, with an error item for an unknown one.
        let body = json!({"user_handles": [a, UNKNOWN_HANDLE, b], "k": 2});
        let r = call(&router, predict(source, &body.to_string())).await;
        assert_eq!(r.status, StatusCode::OK, "{source:?}: {}", r.body);
        let results = r.body["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0]["user_handle"], a);
        assert_eq!(results[0]["similar_users"].as_array().unwrap().len(), 2);
        assert_eq!(
            results[1],
            json!({"user_handle": UNKNOWN_HANDLE, "error": "unknown user"})
        );
        assert_eq!(results[2]["user_handle"], b);
        // A profile of unknown tags only is a 422 naming them.
        let body = json!({"profile": {"interests": ["no-such-tag"]}});
        let e = call(&router, predict(source, &body.to_string())).await;
        assert_json_error(
            &e,
            StatusCode::UNPROCESSABLE_ENTITY,
            "no known tags in profile",
            "unknown tags",
        );
        assert_eq!(e.body["detail"]["unknown_tags"], json!(["no-such-tag"]));
    }
}

/// A router over a folder with the test model published as `version(1)`, with `settings`.
async fn serving_with(settings: api::Settings) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    common::publish(&LocalStore::new(dir.path()), &common::version(1)).await;
    let cache = ModelCache::new(LocalStore::new(dir.path()), Duration::from_secs(3600));
    (api::router_with(cache, settings), dir)
}

/// Standard base64 (RFC 4648, with padding), as API Gateway encodes binary bodies.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn answers_reveal_only_what_the_deployment_discloses() {
    let handle = known_handle(3);
    let profile = r#"{"profile": {"tags": {"python": 3600}, "interests": ["python"]}}"#;
    for disclosure in api::Disclosure::ALL {
        // Given a router that discloses `disclosure`,
        let settings = api::Settings {
            disclosure,
            ..api::Settings::default()
        };
        let (router, _dir) = serving_with(settings).await;
        // when a user, a batch and a profile are asked for,
        let one = call(
            &router,
            predict(Source::HttpApi, &format!(r#"{{"user_handle": {handle}}}"#)),
        )
        .await;
        let batch = call(
            &router,
            predict(
                Source::HttpApi,
                &format!(r#"{{"user_handles": [{handle}]}}"#),
            ),
        )
        .await;
        let cold = call(&router, predict(Source::HttpApi, profile)).await;
        for a in [&one, &batch, &cold] {
            assert_eq!(a.status, StatusCode::OK, "{disclosure}: {}", a.body);
        }
        // then every answer ranks neighbours with similarities, and shows reasons,
        // summaries and assessment scores exactly when the level includes them.
        let answers = [&one.body, &batch.body["results"][0], &cold.body];
        for answer in answers {
            let similar = answer["similar_users"].as_array().unwrap();
            assert_eq!(similar.len(), 10, "{disclosure}: {answer}");
            for u in similar {
                assert!(u["similarity"].is_number() && u["user_handle"].is_u64());
                assert_eq!(
                    u.get("because").is_some(),
                    disclosure.reasons(),
                    "{disclosure}: {u}"
                );
                assert_eq!(
                    u.get("summary").is_some(),
                    disclosure.profiles(),
                    "{disclosure}: {u}"
                );
                if let Some(summary) = u.get("summary") {
                    assert!(summary["top_tags"].is_array(), "{summary}");
                    assert_eq!(
                        summary.get("assessments").is_some(),
                        disclosure.scores(),
                        "{disclosure}: {summary}"
                    );
                }
            }
        }
        for answer in [&one.body, &batch.body["results"][0]] {
            assert_eq!(
                answer.get("summary").is_some(),
                disclosure.profiles(),
                "{answer}"
            );
        }
        // The default shows reasons only: no learner's profile or score.
        if disclosure == api::Disclosure::default() {
            assert!(
                one.body.get("summary").is_none()
                    && one.body["similar_users"][0]["because"].is_array()
            );
        }
    }
}

#[tokio::test]
async fn with_api_keys_predict_needs_a_bearer_key_and_health_stays_open() {
    // Given a router that accepts two keys,
    let keys = api::ApiKeys::parse("key-number-one-0001,key-number-two-0002").unwrap();
    let settings = api::Settings {
        keys,
        ..api::Settings::default()
    };
    let (router, _dir) = serving_with(settings).await;
    let body = format!(r#"{{"user_handle": {}}}"#, known_handle(1));
    let with = |auth: Option<&str>| {
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend(auth.map(|a| ("Authorization", a)));
        event(Source::HttpApi, "POST", "/predict", &headers, Some(&body))
    };
    // when /predict comes without a key, with a wrong key or with a key in another scheme,
    for (auth, error) in [
        (None, "missing API key"),
        (Some("Bearer key-number-one-0002"), "unknown API key"),
        (Some("Bearer key-number-one-000"), "unknown API key"),
        (Some("Basic key-number-one-0001"), "missing API key"),
    ] {
        let a = call(&router, with(auth)).await;
        // then it is a 401 JSON error that names the scheme, and nothing is answered,
        assert_json_error(&a, StatusCode::UNAUTHORIZED, error, &format!("{auth:?}"));
        assert_eq!(a.headers["www-authenticate"], "Bearer realm=\"kindred\"");
        assert!(a.body.get("similar_users").is_none());
    }
    // with either key it answers,
    for key in ["Bearer key-number-one-0001", "Bearer key-number-two-0002"] {
        let a = call(&router, with(Some(key))).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    // and /health and the documentation need no key.
    for path in ["/health", "/openapi.json", "/"] {
        let a = call(&router, event(Source::HttpApi, "GET", path, &[], None)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn shard_search_is_routed_only_in_shard_mode() {
    let body = format!(r#"{{"user_handle": {}}}"#, known_handle(2));
    let search = || {
        event(
            Source::HttpApi,
            "POST",
            "/shard/search",
            &[("Content-Type", "application/json")],
            Some(&body),
        )
    };
    // Given the default router, /shard/search (raw embeddings) is no route at all,
    let (router, _dir) = serving().await;
    let a = call(&router, search()).await;
    assert_json_error(&a, StatusCode::NOT_FOUND, "no such route", "default");
    // and in shard mode it answers the owner's round.
    let settings = api::Settings {
        shard_mode: true,
        ..api::Settings::default()
    };
    let (router, _dir) = serving_with(settings).await;
    let a = call(&router, search()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body["query"]["vector"].is_array(), "{}", a.body);
    // The document each serves says the same.
    let doc = call(
        &router,
        event(Source::HttpApi, "GET", "/openapi.json", &[], None),
    )
    .await;
    assert!(doc.body["paths"]["/shard/search"].is_object());
    let (plain, _dir) = serving().await;
    let doc = call(
        &plain,
        event(Source::HttpApi, "GET", "/openapi.json", &[], None),
    )
    .await;
    assert!(doc.body["paths"].get("/shard/search").is_none());
}

#[tokio::test]
async fn a_request_over_the_work_budget_is_refused_with_422_that_says_why() {
    // Given a published model,
    let (router, _dir) = serving().await;
    let exclude: Vec<String> = (1_000_000..1_000_990).map(|h: u64| h.to_string()).collect();
    let exclude = exclude.join(",");
    // a single user with the widest k and a long exclude list is within the budget,
    let one = format!(
        r#"{{"user_handle": {}, "k": 100, "exclude": [{exclude}]}}"#,
        known_handle(0)
    );
    let a = call(&router, predict(Source::HttpApi, &one)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["similar_users"].as_array().unwrap().len(), 100);
    // but two users with it are not: 2 x (100 + 990) searched neighbours.
    let two = format!(
        r#"{{"user_handles": [{}, {}], "k": 100, "exclude": [{exclude}]}}"#,
        known_handle(0),
        known_handle(1)
    );
    let a = call(&router, predict(Source::HttpApi, &two)).await;
    assert_json_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "request over the work budget",
        "batch",
    );
    assert_eq!(a.body["detail"]["work"], 2 * (100 + 990));
    assert_eq!(a.body["detail"]["max_work"], api::MAX_WORK);
}

#[tokio::test]
async fn a_base64_encoded_body_is_read_like_a_plain_one() {
    // Given a published model and the same request as plain text and as base64 (what API
    // Gateway sends for a body it treats as binary),
    let (router, _dir) = serving().await;
    let body = format!(r#"{{"user_handle": {}, "k": 4}}"#, known_handle(5));
    for source in [Source::RestApi, Source::HttpApi] {
        let plain = event_json(
            source,
            "POST",
            "/predict",
            &[("Content-Type", "application/json")],
            Some(&body),
        );
        let mut encoded = plain.clone();
        encoded["body"] = json!(base64(body.as_bytes()));
        encoded["isBase64Encoded"] = json!(true);
        // when both reach the function, then both get the same answer,
        let parse = |ev: &Value| lambda_http::request::from_str(&ev.to_string()).unwrap();
        let a = call(&router, parse(&plain)).await;
        let b = call(&router, parse(&encoded)).await;
        assert_eq!(a.status, StatusCode::OK, "{source:?}: {}", a.body);
        assert_eq!((b.status, &b.body), (a.status, &a.body), "{source:?}");
        // and a base64 body that is not JSON is a 400 like a plain one.
        let mut bad = plain.clone();
        bad["body"] = json!(base64(b"{not json"));
        bad["isBase64Encoded"] = json!(true);
        assert_json_error(
            &call(&router, parse(&bad)).await,
            StatusCode::BAD_REQUEST,
            "invalid request body",
            "base64",
        );
    }
}

#[tokio::test]
async fn a_handler_panic_is_a_500_json_error_not_a_dropped_request() {
    // Given a route that panics, behind the layer every Kindred router has,
    let router = api::catch_panics(Router::new().route(
        "/predict",
        axum::routing::post(|| async {
            panic!("a bug");
            #[allow(unreachable_code)]
            ""
        }),
    ));
    // when it is called from an HTTP API and a Function URL (a REST API event carries its
    // stage in the path, which this bare route does not strip), then the client gets a
    // 500 JSON error (API Gateway passes it on instead of answering 502), with no
    // internal detail.
    for source in [Source::HttpApi, Source::FunctionUrl] {
        let a = call(&router, predict(source, "{}")).await;
        assert_json_error(
            &a,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            "panic",
        );
        assert!(!a.body.to_string().contains("a bug"), "{}", a.body);
    }
}

#[tokio::test]
async fn a_caller_over_its_rate_gets_429_and_other_callers_are_still_answered() {
    // Given a router that lets each caller make 2 requests at once, then 1 a minute,
    let settings = api::Settings {
        caller_rate: Some(api::CallerRate {
            per_second: 1.0 / 60.0,
            burst: 2,
        }),
        ..api::Settings::default()
    };
    let (router, _dir) = serving_with(settings).await;
    let body = format!(r#"{{"user_handle": {}}}"#, known_handle(4));
    let from = |ip: &str, principal: Option<&str>| {
        let mut ev = event_json(
            Source::HttpApi,
            "POST",
            "/predict",
            &[("Content-Type", "application/json")],
            Some(&body),
        );
        ev["requestContext"]["http"]["sourceIp"] = json!(ip);
        if let Some(arn) = principal {
            ev["requestContext"]["authorizer"] = json!({"iam": {"userArn": arn}});
        }
        lambda_http::request::from_str(&ev.to_string()).unwrap()
    };
    // when one address asks three times, then the third is a 429 with Retry-After,
    for _ in 0..2 {
        assert_eq!(
            call(&router, from("198.51.100.7", None)).await.status,
            StatusCode::OK
        );
    }
    let a = call(&router, from("198.51.100.7", None)).await;
    assert_json_error(
        &a,
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests",
        "third",
    );
    let wait: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // while another address, and an IAM principal calling from the first address, are
    // callers of their own.
    assert_eq!(
        call(&router, from("203.0.113.9", None)).await.status,
        StatusCode::OK
    );
    let principal = Some("arn:aws:iam::123456789012:user/app");
    assert_eq!(
        call(&router, from("198.51.100.7", principal)).await.status,
        StatusCode::OK
    );
}
