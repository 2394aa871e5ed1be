//! The router shared by the Lambda and the local server, API Gateway stage stripping,
//! and the handlers of `/predict` and `/health`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::uri::PathAndQuery;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use kindred_core::store::ObjectStore;
use lambda_http::request::RequestContext;
use serde_json::json;

use super::answer::respond;
use super::answers::{AnswerKey, CacheOutcome};
use super::error::{ApiError, internal_error, model_unavailable, too_large, unauthorized};
use super::explore::{explore, index, openapi};
use super::recommend::respond_recommend;
use super::request::{Ask, parse_for};
use super::settings::{ApiKeys, Settings};
use super::shard::shard_search;
use super::throttle::{self, CallerRate, Throttle};
use crate::cache::ModelCache;
use crate::metrics::{Metrics, ModelGauges, route_of};

/// Largest body read (and discarded) to answer 413 cleanly; larger ones are cut off.
const DRAIN_LIMIT_BYTES: usize = 1024 * 1024;

/// Builds the router shared by the Lambda and the local server, with the default
/// [`Settings`] (no key needed, reasons disclosed, no `/shard/search`).
pub fn router<S: ObjectStore + 'static>(cache: Arc<ModelCache<S>>) -> Router {
    router_with(cache, Settings::default())
}

/// Builds the router shared by the Lambda and the local server.
///
/// With keys in `settings`, `/predict`, `/recommend`, `/metrics` and `/shard/search` answer 401 unless the request
/// carries `Authorization: Bearer KEY` with one of them; `/health` and the documentation
/// routes stay open. `/shard/search` exists only in shard mode.
///
/// Requests from an API Gateway stage other than `$default` arrive with the stage in
/// front of the path (`/testStage/predict`, as `lambda_http` builds it for REST APIs and
/// as HTTP APIs send it); the stage is taken off before routing, so the same routes
/// answer under any stage, with or without `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH`.
pub fn router_with<S: ObjectStore + 'static>(
    cache: Arc<ModelCache<S>>,
    settings: Settings,
) -> Router {
    let mut protected = Router::new()
        .route("/predict", post(predict::<S>).fallback(method_not_allowed))
        .route(
            "/recommend",
            post(recommend::<S>).fallback(method_not_allowed),
        )
        .route("/metrics", get(metrics::<S>).fallback(method_not_allowed));
    if settings.shard_mode {
        protected = protected.route(
            "/shard/search",
            post(shard_search::<S>).fallback(method_not_allowed),
        );
    }
    let counters = Arc::clone(&settings.metrics);
    let observed = Arc::clone(&cache);
    let routes = guard(protected, settings.keys.clone(), settings.caller_rate)
        .route("/health", get(health::<S>).fallback(method_not_allowed))
        .route("/openapi.json", get(openapi).fallback(method_not_allowed))
        .route("/explore", get(explore).fallback(method_not_allowed))
        .route("/", get(index).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(Extension(Arc::new(settings)))
        .with_state(cache);
    wrapped(routes, counters, move || Some(observed.gauges()))
}

/// The layers around a router's `routes`, shared by the model router and the
/// scatter-gather coordinator: from the outside in, the API Gateway stage taken off the
/// path, every answer counted in `metrics` by the route as routed (`model` says what the
/// process serves, for EMF lines), and a panic answered as a 500. Layers on a router run
/// after routing, so they sit on an outer router whose only route is the inner one.
pub(crate) fn wrapped(
    routes: Router,
    metrics: Arc<Metrics>,
    model: impl Fn() -> Option<ModelGauges> + Clone + Send + Sync + 'static,
) -> Router {
    catch_panics(Router::new().fallback_service(routes))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| {
                let (metrics, model) = (Arc::clone(&metrics), model.clone());
                async move { count(&metrics, model, req, next).await }
            },
        ))
        .layer(axum::middleware::map_request(strip_stage))
}

/// Answers the request and counts the answer by route and status class; in Lambda,
/// also writes its EMF line to stdout (CloudWatch extracts the metrics from the log).
async fn count(
    metrics: &Metrics,
    model: impl FnOnce() -> Option<ModelGauges>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = route_of(req.uri().path());
    let resp = next.run(req).await;
    let took = started.elapsed();
    let status = resp.status().as_u16();
    metrics.count(route, status, took);
    if metrics.emf() {
        let now = kindred_core::registry::unix_millis();
        let cached = resp.extensions().get::<CacheOutcome>().copied();
        println!(
            "{}",
            metrics.emf_line(route, status, took, model().as_ref(), cached, now)
        );
    }
    resp
}

/// `GET /metrics`: the counters in Prometheus text format.
async fn metrics<S: ObjectStore + 'static>(
    State(cache): State<Arc<ModelCache<S>>>,
    Extension(settings): Extension<Arc<Settings>>,
) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            crate::metrics::PROMETHEUS_CONTENT_TYPE,
        )],
        settings
            .metrics
            .prometheus(Some(&cache.gauges()), Some(&settings.answers.stats())),
    )
        .into_response()
}

/// `router` with a panic in any of its handlers answered as a 500 JSON error (and logged)
/// instead of a dropped connection (local server) or API Gateway's 502 (Lambda).
pub fn catch_panics(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(catch_panic))
}

async fn catch_panic(req: Request, next: axum::middleware::Next) -> Response {
    let inner = std::pin::pin!(next.run(req));
    match (CatchUnwind { inner }).await {
        Ok(resp) => resp,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = message, "a handler panicked");
            internal_error().into_response()
        }
    }
}

/// A future that returns a panic of `inner` as an `Err` instead of unwinding further.
struct CatchUnwind<F> {
    inner: F,
}

impl<F: std::future::Future + Unpin> std::future::Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.inner;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(inner).poll(cx)
        })) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(out)) => std::task::Poll::Ready(Ok(out)),
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    }
}

/// The path prefix a request arrived under (the API Gateway stage, e.g. `/testStage`),
/// empty when there is none; links in responses are built on it.
#[derive(Debug, Clone, Default)]
pub struct BasePath(pub String);

/// The API Gateway stage of a Lambda request, when it is a named one.
fn stage_of(req: &Request) -> Option<&str> {
    let stage = match req.extensions().get::<RequestContext>()? {
        RequestContext::ApiGatewayV1(ctx) => ctx.stage.as_deref(),
        RequestContext::ApiGatewayV2(ctx) => ctx.stage.as_deref(),
        RequestContext::WebSocket(ctx) => ctx.stage.as_deref(),
        _ => None,
    }?;
    (!stage.is_empty() && stage != "$default" && !stage.contains('/')).then_some(stage)
}

/// Takes a named stage off the front of the path (`/testStage/predict` to `/predict`).
pub(crate) async fn strip_stage(mut req: Request) -> Request {
    let mut base = BasePath::default();
    if let Some(stage) = stage_of(&req) {
        let prefix = format!("/{stage}");
        let path = req.uri().path();
        let rest = match path.strip_prefix(&prefix) {
            Some("") => Some("/"),
            Some(rest) if rest.starts_with('/') => Some(rest),
            _ => None,
        };
        if let Some(uri) = rest.and_then(|rest| with_path(req.uri(), rest)) {
            *req.uri_mut() = uri;
            base = BasePath(prefix);
        }
    }
    req.extensions_mut().insert(base);
    req
}

/// `uri` with its path replaced by `path`, keeping scheme, authority and query.
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

/// `router`'s routes (those added so far) answer 401 without one of `keys` (no keys: no
/// check), then 429 once a caller has asked faster than `rate` (none: no limit).
pub(crate) fn guard<S: Clone + Send + Sync + 'static>(
    mut router: Router<S>,
    keys: ApiKeys,
    rate: Option<CallerRate>,
) -> Router<S> {
    // The layer added last runs first: keys are checked before a caller's bucket is used.
    if let Some(rate) = rate {
        router = router.route_layer(axum::middleware::from_fn_with_state(
            Throttle::new(rate),
            throttle::limit,
        ));
    }
    if !keys.is_empty() {
        router = router.route_layer(axum::middleware::from_fn_with_state(
            Arc::new(keys),
            require_key,
        ));
    }
    router
}

/// Lets a request through only with `Authorization: Bearer KEY` naming one of `keys`.
async fn require_key(
    State(keys): State<Arc<ApiKeys>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii);
    match presented {
        Some(key) if keys.accepts(key) => next.run(req).await,
        Some(_) => unauthorized("unknown API key").into_response(),
        None => unauthorized("missing API key").into_response(),
    }
}

async fn predict<S: ObjectStore + 'static>(
    cache: State<Arc<ModelCache<S>>>,
    settings: Extension<Arc<Settings>>,
    req: Request,
) -> Result<Response, ApiError> {
    ask(Ask::Predict, cache, settings, req).await
}

async fn recommend<S: ObjectStore + 'static>(
    cache: State<Arc<ModelCache<S>>>,
    settings: Extension<Arc<Settings>>,
    req: Request,
) -> Result<Response, ApiError> {
    ask(Ask::Recommend, cache, settings, req).await
}

/// A query route: the body validated for `route`, then answered from the current model
/// with what the deployment discloses.
async fn ask<S: ObjectStore + 'static>(
    route: Ask,
    State(cache): State<Arc<ModelCache<S>>>,
    Extension(settings): Extension<Arc<Settings>>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, bytes) = read_body(req).await?;
    let query = parse_for(route, &parts.headers, &bytes)?;
    let model = cache.get().await.map_err(model_unavailable)?;
    let version = &model.manifest.version;
    let key =
        AnswerKey::of(route, &query, settings.disclosure).filter(|_| settings.answers.is_on());
    if let Some(body) = key.and_then(|key| settings.answers.get(version, key)) {
        let mut hit = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
        hit.extensions_mut().insert(CacheOutcome::Hit);
        return Ok(hit);
    }
    let mut answer = match route {
        Ask::Predict => respond(&model, &query, settings.disclosure),
        Ask::Recommend => respond_recommend(&model, &query, settings.disclosure),
    }
    .unwrap_or_else(IntoResponse::into_response);
    if key.is_some() {
        answer.extensions_mut().insert(CacheOutcome::Miss);
    }
    let Some(key) = key.filter(|_| answer.status() == StatusCode::OK) else {
        return Ok(answer);
    };
    // The encoded body is kept as it is sent: a hit answers with the same bytes.
    let (head, body) = answer.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.map_err(|e| {
        tracing::error!(error = %e, "an answer's body could not be read");
        internal_error()
    })?;
    settings.answers.put(version, key, &body);
    Ok(Response::from_parts(head, Body::from(body)))
}

/// The request's head and body, or 413 (as JSON, like every error) for a body over
/// [`DRAIN_LIMIT_BYTES`]. Routes check their own, smaller, limits on what this returns.
pub(crate) async fn read_body(
    req: Request,
) -> Result<(axum::http::request::Parts, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > DRAIN_LIMIT_BYTES as u64) {
        return Err(too_large());
    }
    // An oversize body is still read (up to a bound) before the 413 goes out: a server
    // that answers and closes with unread input makes the peer's TCP stack reset the
    // connection, and the client then sees a broken pipe instead of the 413.
    let bytes: Bytes = axum::body::to_bytes(Body::new(body), DRAIN_LIMIT_BYTES)
        .await
        .map_err(|_| too_large())?;
    Ok((parts, bytes))
}

async fn health<S: ObjectStore + 'static>(
    State(cache): State<Arc<ModelCache<S>>>,
) -> impl IntoResponse {
    let model = cache.peek();
    axum::Json(json!({
        "status": "ok",
        "state": cache.state(),
        "reason": cache.last_failure().map(|u| u.reason),
        "model_version": model.as_ref().map(|m| m.manifest.version.clone()),
        "users": model.as_ref().map(|m| m.len()),
        "created_at": model.as_ref().map(|m| m.manifest.created_at.clone()),
        "recall_at_10": model.as_ref().map(|m| m.manifest.recall_at_10),
    }))
}

pub(crate) async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    let allowed = match uri.path() {
        "/predict" | "/recommend" | "/shard/search" => "POST",
        _ => "GET, HEAD",
    };
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        json!({"method": method.as_str(), "allowed": allowed}),
    )
}

pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route",
        json!({"path": uri.path(), "see": "/"}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;

    fn request(uri: &str, stage: Option<&str>) -> Request {
        let mut req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        if let Some(stage) = stage {
            let mut ctx = ApiGatewayProxyRequestContext::default();
            ctx.stage = Some(stage.to_owned());
            req.extensions_mut()
                .insert(RequestContext::ApiGatewayV1(ctx));
        }
        req
    }

    async fn stripped(uri: &str, stage: Option<&str>) -> (String, String) {
        let req = strip_stage(request(uri, stage)).await;
        let base = req
            .extensions()
            .get::<BasePath>()
            .expect("base path recorded")
            .0
            .clone();
        (req.uri().to_string(), base)
    }

    #[tokio::test]
    async fn a_named_stage_is_stripped_from_the_front_of_the_path_only() {
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        // Given a named stage, the prefix goes and the query and host stay.
        assert_eq!(
            stripped("https://h.example/prod/predict?a=1", Some("prod")).await,
            s("https://h.example/predict?a=1", "/prod")
        );
        assert_eq!(stripped("/prod", Some("prod")).await, s("/", "/prod"));
        assert_eq!(stripped("/prod/", Some("prod")).await, s("/", "/prod"));
        // A path that only starts with the stage's letters, or lacks the stage, is left alone.
        assert_eq!(
            stripped("/production/predict", Some("prod")).await,
            s("/production/predict", "")
        );
        assert_eq!(stripped("/predict", Some("prod")).await, s("/predict", ""));
        // No stage, "$default", or a request that did not come through API Gateway: unchanged.
        assert_eq!(
            stripped("/$default/predict", Some("$default")).await,
            s("/$default/predict", "")
        );
        assert_eq!(
            stripped("/prod/predict", None).await,
            s("/prod/predict", "")
        );
    }
}
