//! Per-caller throttling: a token bucket per caller, so that one caller (one API key,
//! one IAM principal, one JWT subject, or else one source address) cannot take every
//! answer a process can give. Each process keeps its own buckets: under Lambda a caller's
//! share is this rate per warm instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lambda_http::request::RequestContext;
use serde_json::json;

use super::error::ApiError;

/// How fast one caller may ask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallerRate {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests at once after a quiet spell.
    pub burst: u32,
}

/// Callers whose buckets are kept; beyond it, full buckets (idle callers) are dropped.
const MAX_CALLERS: usize = 10_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of one router.
pub(crate) struct Throttle {
    rate: CallerRate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Throttle {
    pub(crate) fn new(rate: CallerRate) -> Arc<Throttle> {
        Arc::new(Throttle {
            rate,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token from `caller`'s bucket; `Err(seconds)` to wait when it is empty.
    fn take(&self, caller: &str, now: Instant) -> Result<(), f64> {
        let burst = f64::from(self.rate.burst.max(1));
        let per_second = self.rate.per_second.max(f64::MIN_POSITIVE);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_CALLERS && !buckets.contains_key(caller) {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - bucket.tokens) / per_second)
        }
    }
}

/// Who is asking: the API key presented, else the principal API Gateway authenticated
/// (IAM user ARN, JWT subject), else the source address, else one shared caller.
fn caller(req: &Request) -> String {
    if let Some(key) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // Kept in memory only; a digest so the map does not hold the key itself.
        return format!("key:{}", kindred_core::codec::sha256_hex(key.as_bytes()));
    }
    match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            let auth = ctx.authorizer.as_ref();
            if let Some(arn) = auth
                .and_then(|a| a.iam.as_ref())
                .and_then(|i| i.user_arn.clone().or_else(|| i.caller_id.clone()))
            {
                return format!("iam:{arn}");
            }
            if let Some(sub) = auth
                .and_then(|a| a.jwt.as_ref())
                .and_then(|j| j.claims.get("sub"))
            {
                return format!("jwt:{sub}");
            }
            ctx.http
                .source_ip
                .as_ref()
                .map_or_else(|| "anonymous".to_owned(), |ip| format!("ip:{ip}"))
        }
        Some(RequestContext::ApiGatewayV1(ctx)) => {
            let id = &ctx.identity;
            id.user_arn
                .clone()
                .or_else(|| id.caller.clone())
                .map(|p| format!("iam:{p}"))
                .or_else(|| id.source_ip.as_ref().map(|ip| format!("ip:{ip}")))
                .unwrap_or_else(|| "anonymous".to_owned())
        }
        _ => "anonymous".to_owned(),
    }
}

/// Answers 429 with `Retry-After` when the caller's bucket is empty.
pub(crate) async fn limit(
    State(throttle): State<Arc<Throttle>>,
    req: Request,
    next: Next,
) -> Response {
    match throttle.take(&caller(&req), Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let seconds = wait.ceil().max(1.0) as u64;
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests",
                json!({
                    "per_second": throttle.rate.per_second,
                    "burst": throttle.rate.burst,
                    "retry_after_seconds": seconds,
                }),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_caller_gets_its_burst_then_the_rate_and_others_are_unaffected() {
        let t = Throttle::new(CallerRate {
            per_second: 2.0,
            burst: 3,
        });
        let t0 = Instant::now();
        // A burst of 3 at once, then the fourth waits half a second;
        for _ in 0..3 {
            assert_eq!(t.take("a", t0), Ok(()));
        }
        let wait = t.take("a", t0).unwrap_err();
        assert!((wait - 0.5).abs() < 1e-9, "{wait}");
        // another caller has its own bucket,
        assert_eq!(t.take("b", t0), Ok(()));
        // and after half a second the first may ask once more.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(t.take("a", later), Ok(()));
        assert!(t.take("a", later).is_err());
    }
}
