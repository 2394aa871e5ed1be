//! The self-describing routes: the index (`GET /`), the OpenAPI document and the
//! explorer page.

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use super::routes::BasePath;
use super::settings::Settings;

/// The OpenAPI document of this API (also in the repo as `functions/predict/openapi.json`).
pub const OPENAPI: &str = include_str!("../../openapi.json");
/// The explorer page served at `GET /explore` (self-contained HTML calling `predict`).
pub const EXPLORE_HTML: &str = include_str!("../explore.html");

pub(super) async fn index(base: Option<axum::Extension<BasePath>>) -> impl IntoResponse {
    let base = base.map(|b| b.0.0).unwrap_or_default();
    axum::Json(json!({
        "name": "Kindred",
        "description": "Finds the customers most similar to a given one, ranked by cosine similarity of their learning-behaviour embeddings.",
        "endpoints": {
            "POST /predict": "{\"user_handle\": 1, \"k\": 10} -> ranked similar users with summaries and reasons; also {\"user_handles\": [1, 2]}, {\"profile\": {\"tags\": {\"python\": 3600}, \"interests\": [\"python\"]}}, and the filters exclude and min_similarity",
            "GET /explore": "an explorer page for the model",
            "GET /health": "model version, user count and load state",
            "GET /metrics": "request and model counters in Prometheus text format",
            "GET /openapi.json": "OpenAPI 3.1 description of this API",
        },
        "openapi": format!("{base}/openapi.json"),
        "predict": format!("{base}/predict"),
    }))
}

/// The OpenAPI document as this process serves it: without `/shard/search` unless it is
/// in shard mode (the route exists only there).
pub(super) async fn openapi(
    axum::Extension(settings): axum::Extension<std::sync::Arc<Settings>>,
) -> impl IntoResponse {
    static WITHOUT_SHARD_ROUTE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let document: &'static str = if settings.shard_mode {
        OPENAPI
    } else {
        WITHOUT_SHARD_ROUTE.get_or_init(|| {
            let mut doc: serde_json::Value =
                serde_json::from_str(OPENAPI).expect("openapi.json is JSON (tested)");
            if let Some(paths) = doc["paths"].as_object_mut() {
                paths.remove("/shard/search");
            }
            doc.to_string()
        })
    };
    ([(header::CONTENT_TYPE, "application/json")], document)
}

/// The explorer page: nothing but this page and its own inline style and script may load.
pub(super) async fn explore() -> impl IntoResponse {
    const CSP: &str = concat!(
        "default-src 'self'; script-src 'self' 'unsafe-inline'; ",
        "style-src 'self' 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"
    );
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ];
    (headers, EXPLORE_HTML)
}
