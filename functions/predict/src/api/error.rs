//! [`ApiError`]: every failure of every route as a JSON response with the right status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::request::MAX_BODY_BYTES;

/// Seconds a client should wait before retrying when no model is available.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// A JSON error response `{"error": ..., "detail": ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) error: &'static str,
    pub(super) detail: Value,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, error: &'static str, detail: impl Into<Value>) -> Self {
        ApiError {
            status,
            error,
            detail: detail.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// 404 for a handle no shard knows (scatter-gather, where no model is at hand).
    pub fn not_found_user(handle: u64) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown user",
            json!({"user_handle": handle}),
        )
    }

    /// 503 when the shard holding a user did not answer (scatter-gather).
    pub fn shard_unavailable(handle: u64, endpoints: Vec<String>) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shard unavailable",
            json!({
                "user_handle": handle,
                "endpoints_failed": endpoints,
                "retry_after_seconds": RETRY_AFTER_SECONDS,
            }),
        )
    }

    /// 422: the request is well formed but cannot be served as asked.
    pub fn unprocessable(error: &'static str, detail: Value) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error, detail)
    }

    /// A client error every shard gave, passed on with its status and body as `detail`.
    pub fn relayed(status: StatusCode, body: Value) -> Self {
        ApiError::new(status, "rejected by the shards", body)
    }

    /// The JSON body: `{"error": ..., "detail": ...}`.
    pub fn body(&self) -> Value {
        json!({"error": self.error, "detail": self.detail})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kindred\""),
            );
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            // The detail carries the allowed method.
            if let Some(allow) = self
                .detail
                .get("allowed")
                .and_then(Value::as_str)
                .and_then(|a| HeaderValue::from_str(a).ok())
            {
                resp.headers_mut().insert(header::ALLOW, allow);
            }
        }
        resp
    }
}

/// 503 while no model can be served.
pub(super) fn model_unavailable(u: crate::cache::Unavailable) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "model unavailable",
        json!({"reason": u.reason, "retry_after_seconds": RETRY_AFTER_SECONDS}),
    )
}

/// 500 for a failure inside the server (a panic, logged where it happened): no details.
pub(super) fn internal_error() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error",
        json!("the request could not be answered; it has been logged"),
    )
}

/// 401 without one of the deployment's API keys.
pub(super) fn unauthorized(why: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        why,
        json!({"expected": "Authorization: Bearer KEY, with a key this deployment was given"}),
    )
}

pub(super) fn unprocessable(error: &'static str, detail: Value) -> ApiError {
    ApiError::unprocessable(error, detail)
}

pub(super) fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request body too large",
        json!({"max_bytes": MAX_BODY_BYTES}),
    )
}
