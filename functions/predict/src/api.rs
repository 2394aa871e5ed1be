//! The HTTP API: routes, request validation and JSON responses.
//!
//! Every outcome is a JSON response with the right status: client mistakes are 4xx,
//! an unavailable model is 503 with `Retry-After`, and internal details go to the
//! logs, never into a response.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kindred_core::{Model, query};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cache::{LoadState, ModelCache};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Default number of similar users.
pub const DEFAULT_K: u32 = 10;
/// Largest number of similar users one request may ask for.
pub const MAX_K: u32 = 100;
/// Seconds a client should wait before retrying when no model is available.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// The OpenAPI document of this API (also in the repo as `functions/predict/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Builds the router shared by the Lambda and the local server.
pub fn router(cache: Arc<ModelCache>) -> Router {
    Router::new()
        .route("/predict", post(predict).fallback(method_not_allowed))
        .route("/health", get(health).fallback(method_not_allowed))
        .route("/openapi.json", get(openapi).fallback(method_not_allowed))
        .route("/", get(index).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(cache)
}

/// A JSON error response `{"error": ..., "detail": ...}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: Value,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<Value>) -> Self {
        ApiError { status, error, detail: detail.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(json!({"error": self.error, "detail": self.detail}))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            // The detail carries the allowed method.
            if let Some(allow) = self.detail.get("allowed").and_then(Value::as_str).and_then(|a| HeaderValue::from_str(a).ok()) {
                resp.headers_mut().insert(header::ALLOW, allow);
            }
        }
        resp
    }
}

/// A user handle: a JSON integer, or a string of digits as some clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle(pub u64);

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Int(n)) => Ok(Handle(n)),
            Ok(Raw::Text(s)) => s
                .trim()
                .parse()
                .map(Handle)
                .map_err(|_| serde::de::Error::custom("user_handle must be a non-negative integer or a string of digits")),
            Err(_) => Err(serde::de::Error::custom("user_handle must be a non-negative integer or a string of digits")),
        }
    }
}

/// Body of `POST /predict`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// The user to find similar customers for.
    pub user_handle: Handle,
    /// How many similar users to return (1 to 100, default 10).
    #[serde(default)]
    pub k: Option<i64>,
}

/// A course tag with the user's average view seconds on it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TagTime {
    /// Tag name.
    pub tag: String,
    /// Average seconds per view row of courses with this tag.
    pub avg_view_seconds: f32,
}

/// An assessment result.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Assessment {
    /// Assessment tag.
    pub tag: String,
    /// Score (0 to 300 in the challenge data).
    pub score: u16,
}

/// What the API shows about a user.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct UserView {
    /// Top course tags by average view seconds.
    pub top_tags: Vec<TagTime>,
    /// Distinct courses viewed.
    pub courses_viewed: u32,
    /// Distinct course tags viewed.
    pub tags_viewed: u32,
    /// Interests (first few).
    pub interests: Vec<String>,
    /// Assessment scores.
    pub assessments: Vec<Assessment>,
}

/// One similar user.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SimilarUser {
    /// Rank, 1 for the most similar.
    pub rank: u32,
    /// The user's handle.
    pub user_handle: u64,
    /// Cosine similarity of the embeddings, in [-1, 1].
    pub similarity: f32,
    /// The user's summary.
    pub summary: UserView,
}

/// Body of a successful `POST /predict`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PredictResponse {
    /// The query user.
    pub user_handle: u64,
    /// Model version that answered.
    pub model_version: String,
    /// The query user's summary.
    pub summary: UserView,
    /// Similar users, most similar first; never the query user.
    pub similar_users: Vec<SimilarUser>,
}

fn user_view(model: &Model, row: u32) -> UserView {
    let u = &model.users.users[row as usize];
    UserView {
        top_tags: u.top_tags.iter().map(|&(t, s)| TagTime { tag: model.tag(t).to_owned(), avg_view_seconds: s }).collect(),
        courses_viewed: u.courses,
        tags_viewed: u.tags_viewed,
        interests: u.interests.iter().map(|&t| model.tag(t).to_owned()).collect(),
        assessments: u.assessments.iter().map(|&(t, score)| Assessment { tag: model.tag(t).to_owned(), score }).collect(),
    }
}

/// Answers a validated request against a model (the in-process query path).
pub fn answer(model: &Model, handle: u64, k: u32) -> Result<PredictResponse, ApiError> {
    let row = model.row_of(handle).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown user", json!({"user_handle": handle, "model_version": model.manifest.version}))
    })?;
    let similar_users = query::similar_users(model, row, k as usize)
        .into_iter()
        .enumerate()
        .map(|(i, n)| SimilarUser {
            rank: i as u32 + 1,
            user_handle: model.users.users[n.row as usize].handle,
            similarity: n.similarity.clamp(-1.0, 1.0),
            summary: user_view(model, n.row),
        })
        .collect();
    Ok(PredictResponse {
        user_handle: handle,
        model_version: model.manifest.version.clone(),
        summary: user_view(model, row),
        similar_users,
    })
}

/// Validates a request body (content type, size, JSON shape, `k` range).
pub fn parse_request(headers: &HeaderMap, body: &[u8]) -> Result<(u64, u32), ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let json_like = ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"));
        if !json_like {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported content type",
                json!({"expected": "application/json", "received": ct}),
            ));
        }
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    let req: PredictRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid request body", json!(e.to_string())))?;
    let k = match req.k {
        None => DEFAULT_K,
        Some(k) if (1..=i64::from(MAX_K)).contains(&k) => k as u32,
        Some(k) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "k out of range",
                json!({"k": k, "min": 1, "max": MAX_K}),
            ));
        }
    };
    Ok((req.user_handle.0, k))
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large", json!({"max_bytes": MAX_BODY_BYTES}))
}

async fn predict(State(cache): State<Arc<ModelCache>>, req: Request) -> Result<axum::Json<PredictResponse>, ApiError> {
    let (parts, body) = req.into_parts();
    if let Some(len) = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok())
        && len > MAX_BODY_BYTES
    {
        return Err(too_large());
    }
    let bytes: Bytes = axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await.map_err(|_| too_large())?;
    let (handle, k) = parse_request(&parts.headers, &bytes)?;
    let model = cache.get().await.map_err(|u| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model unavailable",
            json!({"reason": u.reason, "retry_after_seconds": RETRY_AFTER_SECONDS}),
        )
    })?;
    answer(&model, handle, k).map(axum::Json)
}

async fn health(State(cache): State<Arc<ModelCache>>) -> impl IntoResponse {
    let model = cache.peek();
    axum::Json(json!({
        "status": "ok",
        "state": cache.state(),
        "model_version": model.as_ref().map(|m| m.manifest.version.clone()),
        "users": model.as_ref().map(|m| m.len()),
        "created_at": model.as_ref().map(|m| m.manifest.created_at.clone()),
        "recall_at_10": model.as_ref().map(|m| m.manifest.recall_at_10),
    }))
}

async fn index() -> impl IntoResponse {
    axum::Json(json!({
        "name": "Kindred",
        "description": "Finds the customers most similar to a given one, ranked by cosine similarity of their learning-behaviour embeddings.",
        "endpoints": {
            "POST /predict": "{\"user_handle\": 1, \"k\": 10} -> ranked similar users with summaries",
            "GET /health": "model version, user count and load state",
            "GET /openapi.json": "OpenAPI 3.1 description of this API",
        },
        "openapi": "/openapi.json",
    }))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    let allowed = match uri.path() {
        "/predict" => "POST",
        _ => "GET, HEAD",
    };
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        json!({"method": method.as_str(), "allowed": allowed}),
    )
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route", json!({"path": uri.path(), "see": "/"}))
}

impl LoadState {
    /// Whether a model is serving.
    pub fn is_loaded(self) -> bool {
        self == LoadState::Loaded
    }
}
