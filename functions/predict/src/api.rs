//! The HTTP API: routes, request validation and JSON responses.
//!
//! Every outcome is a JSON response with the right status: client mistakes are 4xx,
//! an unavailable model is 503 with `Retry-After`, and internal details go to the
//! logs, never into a response.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kindred_core::embedding::Embedding;
use kindred_core::projection::{self, Profile};
use kindred_core::search::Neighbour;
use kindred_core::store::ObjectStore;
use kindred_core::users::{Feature, Signal};
use kindred_core::{Model, query};
use lambda_http::request::RequestContext;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cache::ModelCache;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest body read (and discarded) to answer 413 cleanly; larger ones are cut off.
const DRAIN_LIMIT_BYTES: usize = 1024 * 1024;
/// Default number of similar users.
pub const DEFAULT_K: u32 = 10;
/// Largest number of similar users one request may ask for.
pub const MAX_K: u32 = 100;
/// Seconds a client should wait before retrying when no model is available.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// The OpenAPI document of this API (also in the repo as `functions/predict/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");
/// The explorer page served at `GET /explore` (self-contained HTML calling `predict`).
pub const EXPLORE_HTML: &str = include_str!("explore.html");

/// Builds the router shared by the Lambda and the local server.
///
/// Requests from an API Gateway stage other than `$default` arrive with the stage in
/// front of the path (`/testStage/predict`, as `lambda_http` builds it for REST APIs and
/// as HTTP APIs send it); the stage is taken off before routing, so the same routes
/// answer under any stage, with or without `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH`.
pub fn router<S: ObjectStore + 'static>(cache: Arc<ModelCache<S>>) -> Router {
    let routes = Router::new()
        .route("/predict", post(predict::<S>).fallback(method_not_allowed))
        .route(
            "/shard/search",
            post(shard_search::<S>).fallback(method_not_allowed),
        )
        .route("/health", get(health::<S>).fallback(method_not_allowed))
        .route("/openapi.json", get(openapi).fallback(method_not_allowed))
        .route("/explore", get(explore).fallback(method_not_allowed))
        .route("/", get(index).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(cache);
    // Layers on a router run after routing, so the stage is stripped in an outer router
    // whose only route is the inner one.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::map_request(strip_stage))
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

/// A JSON error response `{"error": ..., "detail": ...}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: Value,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<Value>) -> Self {
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
            Ok(Raw::Text(s)) => s.trim().parse().map(Handle).map_err(|_| {
                serde::de::Error::custom(
                    "user_handle must be a non-negative integer or a string of digits",
                )
            }),
            Err(_) => Err(serde::de::Error::custom(
                "user_handle must be a non-negative integer or a string of digits",
            )),
        }
    }
}

/// Body of `POST /predict`: exactly one of `user_handle`, `user_handles` or `profile`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// The user to find similar customers for.
    #[serde(default)]
    pub user_handle: Option<Handle>,
    /// Several users, answered one by one (at most [`MAX_BATCH`]).
    #[serde(default)]
    pub user_handles: Option<Vec<Handle>>,
    /// A cold-start profile instead of a known user.
    #[serde(default)]
    pub profile: Option<ProfileRequest>,
    /// How many similar users to return (1 to 100, default 10).
    #[serde(default)]
    pub k: Option<i64>,
    /// Handles never to return (at most [`MAX_EXCLUDE`]).
    #[serde(default)]
    pub exclude: Option<Vec<Handle>>,
    /// Leave out neighbours less similar than this (-1 to 1).
    #[serde(default)]
    pub min_similarity: Option<f64>,
}

/// A cold-start profile in a request: what a new user watched, follows and scored.
/// Tags may be spelled any way the data spells them (`C#`, `csharp`, `c-sharp`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    /// Average view seconds per course tag.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, f64>,
    /// Followed interest tags.
    #[serde(default)]
    pub interests: Vec<String>,
    /// Assessment scores per tag (0 to 1000).
    #[serde(default)]
    pub assessments: std::collections::BTreeMap<String, f64>,
}

/// Most handles in one `user_handles` request.
pub const MAX_BATCH: usize = 100;
/// Most neighbours one batch request may ask for in total (`handles x k`), which keeps
/// the answer well under Lambda's 6 MB response limit.
pub const MAX_BATCH_NEIGHBOURS: usize = 1000;
/// Most handles in `exclude`.
pub const MAX_EXCLUDE: usize = 1000;
/// Most entries (tags, interests and assessments together) in a profile.
pub const MAX_PROFILE_ENTRIES: usize = 1000;
/// Longest tag name accepted in a profile, in bytes.
pub const MAX_TAG_BYTES: usize = 200;

/// What a request asks about.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// One known user.
    Handle(u64),
    /// Several known users.
    Handles(Vec<u64>),
    /// A profile to fold into the embedding space.
    Profile(Profile),
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Who to find neighbours for.
    pub subject: Subject,
    /// Neighbours per answer.
    pub k: u32,
    /// Filters on the neighbours.
    pub filters: Filters,
}

/// Filters applied to every answer of a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// Handles never returned.
    pub exclude: std::collections::HashSet<u64>,
    /// Smallest similarity returned.
    pub min_similarity: Option<f32>,
}

/// A course tag with the user's average view seconds on it.
#[derive(Debug, Serialize, PartialEq)]
pub struct TagTime<'a> {
    /// Tag name.
    pub tag: &'a str,
    /// Average seconds per view row of courses with this tag.
    pub avg_view_seconds: f32,
}

/// An assessment result.
#[derive(Debug, Serialize, PartialEq)]
pub struct Assessment<'a> {
    /// Assessment tag.
    pub tag: &'a str,
    /// Score (0 to 300 in the challenge data).
    pub score: u16,
}

/// What the API shows about a user (borrowed from the model: nothing is copied).
#[derive(Debug, Serialize, PartialEq)]
pub struct UserView<'a> {
    /// Top course tags by average view seconds.
    pub top_tags: Vec<TagTime<'a>>,
    /// Distinct courses viewed.
    pub courses_viewed: u32,
    /// Distinct course tags viewed.
    pub tags_viewed: u32,
    /// Interests (first few).
    pub interests: Vec<&'a str>,
    /// Assessment scores.
    pub assessments: Vec<Assessment<'a>>,
}

/// Reasons given per similar user, at most.
pub const BECAUSE_MAX: usize = 5;

/// One reason two users are similar: a feature they share and its part in their
/// similarity.
#[derive(Debug, Serialize, PartialEq)]
pub struct Reason<'a> {
    /// `views`, `interests` or `assessments`.
    pub signal: Signal,
    /// The tag.
    pub tag: &'a str,
    /// The term this shared feature adds to the users' similarity before the SVD (the dot
    /// product of their unit-length weighted rows); larger explains more.
    pub weight: f32,
}

/// One similar user.
#[derive(Debug, Serialize, PartialEq)]
pub struct SimilarUser<'a> {
    /// Rank, 1 for the most similar.
    pub rank: u32,
    /// The user's handle.
    pub user_handle: u64,
    /// Cosine similarity of the embeddings, in [-1, 1].
    pub similarity: f32,
    /// The shared tags, interests and assessments that contribute most, largest first
    /// (empty for models published before explanations existed).
    pub because: Vec<Reason<'a>>,
    /// The user's summary.
    pub summary: UserView<'a>,
}

/// Body of a successful `POST /predict`.
#[derive(Debug, Serialize, PartialEq)]
pub struct PredictResponse<'a> {
    /// The query user.
    pub user_handle: u64,
    /// Model version that answered.
    pub model_version: &'a str,
    /// The query user's summary.
    pub summary: UserView<'a>,
    /// Similar users, most similar first; never the query user.
    pub similar_users: Vec<SimilarUser<'a>>,
}

fn user_view(model: &Model, row: u32) -> UserView<'_> {
    let u = &model.users.users[row as usize];
    UserView {
        top_tags: u
            .top_tags
            .iter()
            .map(|&(t, s)| TagTime {
                tag: model.tag(t),
                avg_view_seconds: s,
            })
            .collect(),
        courses_viewed: u.courses,
        tags_viewed: u.tags_viewed,
        interests: u.interests.iter().map(|&t| model.tag(t)).collect(),
        assessments: u
            .assessments
            .iter()
            .map(|&(t, score)| Assessment {
                tag: model.tag(t),
                score,
            })
            .collect(),
    }
}

fn because<'m>(model: &'m Model, features: &[Feature], b: u32) -> Vec<Reason<'m>> {
    query::explain(
        features,
        &model.users.users[b as usize].features,
        BECAUSE_MAX,
    )
    .into_iter()
    .map(|c| Reason {
        signal: c.signal,
        tag: model.tag(c.tag),
        weight: c.weight,
    })
    .collect()
}

/// The `k` users most similar to `query` that pass `filters`, never `exclude_row`: the
/// exact scan for small models, else the index, falling back to an exact scan when the
/// index returns too few (it considers at most `ef_search` candidates).
pub fn neighbours(
    model: &Model,
    query: &Embedding,
    exclude_row: Option<u32>,
    k: usize,
    filters: &Filters,
) -> Vec<Neighbour> {
    let want = k + filters.exclude.len();
    let mut found = query::nearest(model, query, want, exclude_row);
    let available = model.len() - usize::from(exclude_row.is_some());
    if found.len() < want.min(available) {
        found = model.shards.exact(query, want, exclude_row);
    }
    let min = filters.min_similarity.unwrap_or(f32::NEG_INFINITY);
    found.retain(|n| {
        n.similarity >= min
            && !filters
                .exclude
                .contains(&model.users.users[n.row as usize].handle)
    });
    found.truncate(k);
    found
}

fn similar_users<'m>(
    model: &'m Model,
    found: Vec<Neighbour>,
    features: &[Feature],
) -> Vec<SimilarUser<'m>> {
    found
        .into_iter()
        .enumerate()
        .map(|(i, n)| SimilarUser {
            rank: i as u32 + 1,
            user_handle: model.users.users[n.row as usize].handle,
            similarity: n.similarity.clamp(-1.0, 1.0),
            because: because(model, features, n.row),
            summary: user_view(model, n.row),
        })
        .collect()
}

fn unknown_user(model: &Model, handle: u64) -> ApiError {
    let shard = model.shard_of(handle);
    if !model.holds_all_shards() && !model.shards_held().contains(&shard) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "user in a shard not served here",
            json!({
                "user_handle": handle,
                "shard": shard,
                "shards_served": model.shards_held(),
                "shard_count": model.manifest.shard_count(),
                "model_version": model.manifest.version,
            }),
        );
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown user",
        json!({"user_handle": handle, "model_version": model.manifest.version}),
    )
}

/// Answers a validated request against a model (the in-process query path): the `k`
/// users most similar to `handle`. An unknown handle is a 404 error.
pub fn answer(model: &Model, handle: u64, k: u32) -> Result<PredictResponse<'_>, ApiError> {
    answer_handle(model, handle, k, &Filters::default())
}

/// [`answer`] with filters.
pub fn answer_handle<'m>(
    model: &'m Model,
    handle: u64,
    k: u32,
    filters: &Filters,
) -> Result<PredictResponse<'m>, ApiError> {
    let row = model
        .row_of(handle)
        .ok_or_else(|| unknown_user(model, handle))?;
    let found = neighbours(model, model.embedding(row), Some(row), k as usize, filters);
    Ok(PredictResponse {
        user_handle: handle,
        model_version: &model.manifest.version,
        summary: user_view(model, row),
        similar_users: similar_users(model, found, &model.users.users[row as usize].features),
    })
}

/// One answer of a batch request: the answer, or the error for that handle.
#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum BatchItem<'a> {
    /// The handle's answer.
    Answer(PredictResponse<'a>),
    /// Why the handle has no answer (an unknown user).
    Error {
        /// The handle asked for.
        user_handle: u64,
        /// Short error.
        error: &'static str,
    },
}

/// Body of a successful batch `POST /predict`.
#[derive(Debug, Serialize, PartialEq)]
pub struct BatchResponse<'a> {
    /// Model version that answered.
    pub model_version: &'a str,
    /// One item per requested handle, in request order.
    pub results: Vec<BatchItem<'a>>,
}

/// Answers each handle of a batch; unknown handles get an error item, not a failed batch.
pub fn answer_batch<'m>(
    model: &'m Model,
    handles: &[u64],
    k: u32,
    filters: &Filters,
) -> BatchResponse<'m> {
    BatchResponse {
        model_version: &model.manifest.version,
        results: handles
            .iter()
            .map(|&h| match answer_handle(model, h, k, filters) {
                Ok(a) => BatchItem::Answer(a),
                Err(_) => BatchItem::Error {
                    user_handle: h,
                    error: "unknown user",
                },
            })
            .collect(),
    }
}

/// Body of a successful profile `POST /predict`.
#[derive(Debug, Serialize, PartialEq)]
pub struct ProfileResponse<'a> {
    /// Model version that answered.
    pub model_version: &'a str,
    /// The profile's tags the model knows, with their weight in the folded profile
    /// (unit-length weighted row), largest first.
    pub matched: Vec<Reason<'a>>,
    /// Tags of the profile that the model does not know (ignored), as given.
    pub unknown_tags: Vec<String>,
    /// Similar users, most similar first.
    pub similar_users: Vec<SimilarUser<'a>>,
}

/// Answers a cold-start profile: folds it into the embedding space as training would
/// have embedded it (then smooths it like training did) and searches its neighbours.
pub fn answer_profile<'m>(
    model: &'m Model,
    profile: &Profile,
    k: u32,
    filters: &Filters,
) -> Result<ProfileResponse<'m>, ApiError> {
    let folded = fold_profile(model, profile)?;
    let mut embedding = folded.embedding.clone();
    if let Some(s) = profile_smoothing(model) {
        let near = neighbours(
            model,
            &embedding,
            None,
            s.neighbours as usize,
            &Filters::default(),
        );
        let points: Vec<&Embedding> = near.iter().map(|n| model.embedding(n.row)).collect();
        embedding = projection::smooth_towards(&embedding, &points, s.weight);
    }
    let found = neighbours(model, &embedding, None, k as usize, filters);
    let matched = matched_features(model, &folded);
    Ok(ProfileResponse {
        model_version: &model.manifest.version,
        matched,
        unknown_tags: folded.unknown_tags,
        similar_users: similar_users(model, found, &folded.features),
    })
}

/// Folds a profile, or says why it cannot be (no projection, no known tag).
fn fold_profile(model: &Model, profile: &Profile) -> Result<projection::Folded, ApiError> {
    let folded = model.fold(profile).ok_or_else(|| {
        unprocessable(
            "profile queries unsupported by this model version",
            json!({"model_version": model.manifest.version, "hint": "publish a model with kindred-batch 0.1 or later (it writes projection.bin)"}),
        )
    })?;
    if folded.features.is_empty() {
        return Err(unprocessable(
            "no known tags in profile",
            json!({"unknown_tags": folded.unknown_tags, "model_version": model.manifest.version}),
        ));
    }
    Ok(folded)
}

/// The smoothing a folded profile gets, as the model's users got it (none if off).
fn profile_smoothing(model: &Model) -> Option<projection::Smoothing> {
    model
        .projection()
        .map(|p| p.smoothing)
        .filter(|s| s.neighbours > 0 && s.weight != 0.0)
}

/// The profile's known features, largest weight first.
fn matched_features<'m>(model: &'m Model, folded: &projection::Folded) -> Vec<Reason<'m>> {
    let mut matched: Vec<Reason<'m>> = folded
        .features
        .iter()
        .map(|f| Reason {
            signal: f.signal,
            tag: model.tag(f.tag),
            weight: f.weight,
        })
        .collect();
    matched.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    matched
}

/// Answers any validated query.
pub fn respond(model: &Model, q: &Query) -> Result<Response, ApiError> {
    Ok(match &q.subject {
        Subject::Handle(h) => {
            axum::Json(answer_handle(model, *h, q.k, &q.filters)?).into_response()
        }
        Subject::Handles(hs) => {
            axum::Json(answer_batch(model, hs, q.k, &q.filters)).into_response()
        }
        Subject::Profile(p) => {
            axum::Json(answer_profile(model, p, q.k, &q.filters)?).into_response()
        }
    })
}

/// Validates a request (content type, body size, JSON shape, ranges). A missing content
/// type is accepted; errors are 400, 413, 415, 422.
pub fn parse_request(headers: &HeaderMap, body: &[u8]) -> Result<Query, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let json_like =
            ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"));
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
    // serde would also read a struct from a JSON array (`[1, 5]`): only objects are valid.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid request body",
            json!("expected a JSON object such as {\"user_handle\": 1}"),
        ));
    }
    let req: PredictRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid request body",
            json!(e.to_string()),
        )
    })?;
    let k = validate_k(req.k)?;
    let subject = match (req.user_handle, req.user_handles, req.profile) {
        (Some(h), None, None) => Subject::Handle(h.0),
        (None, Some(hs), None) => {
            if hs.is_empty() || hs.len() > MAX_BATCH {
                return Err(unprocessable(
                    "user_handles out of range",
                    json!({"count": hs.len(), "min": 1, "max": MAX_BATCH}),
                ));
            }
            if hs.len() * k as usize > MAX_BATCH_NEIGHBOURS {
                return Err(unprocessable(
                    "batch too large",
                    json!({"handles": hs.len(), "k": k, "max_handles_times_k": MAX_BATCH_NEIGHBOURS}),
                ));
            }
            Subject::Handles(hs.into_iter().map(|h| h.0).collect())
        }
        (None, None, Some(p)) => Subject::Profile(validate_profile(p)?),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid request body",
                json!("give exactly one of user_handle, user_handles or profile"),
            ));
        }
    };
    Ok(Query {
        subject,
        k,
        filters: validate_filters(req.exclude, req.min_similarity)?,
    })
}

/// `k` of a request: 1 to [`MAX_K`], [`DEFAULT_K`] when absent; else 422.
fn validate_k(k: Option<i64>) -> Result<u32, ApiError> {
    match k {
        None => Ok(DEFAULT_K),
        Some(k) if (1..=i64::from(MAX_K)).contains(&k) => Ok(k as u32),
        Some(k) => Err(unprocessable(
            "k out of range",
            json!({"k": k, "min": 1, "max": MAX_K}),
        )),
    }
}

/// The `exclude` (at most [`MAX_EXCLUDE`]) and `min_similarity` (-1 to 1) of a request.
fn validate_filters(
    exclude: Option<Vec<Handle>>,
    min_similarity: Option<f64>,
) -> Result<Filters, ApiError> {
    let exclude = exclude.unwrap_or_default();
    if exclude.len() > MAX_EXCLUDE {
        return Err(unprocessable(
            "exclude too long",
            json!({"count": exclude.len(), "max": MAX_EXCLUDE}),
        ));
    }
    let min_similarity = match min_similarity {
        None => None,
        Some(m) if m.is_finite() && (-1.0..=1.0).contains(&m) => Some(m as f32),
        Some(m) => {
            return Err(unprocessable(
                "min_similarity out of range",
                json!({"min_similarity": m, "min": -1, "max": 1}),
            ));
        }
    };
    Ok(Filters {
        exclude: exclude.into_iter().map(|h| h.0).collect(),
        min_similarity,
    })
}

/// 503 while no model can be served.
fn model_unavailable(u: crate::cache::Unavailable) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "model unavailable",
        json!({"reason": u.reason, "retry_after_seconds": RETRY_AFTER_SECONDS}),
    )
}

fn unprocessable(error: &'static str, detail: Value) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error, detail)
}

/// Checks a profile's sizes and values and converts it for folding.
fn validate_profile(p: ProfileRequest) -> Result<Profile, ApiError> {
    let entries = p.tags.len() + p.interests.len() + p.assessments.len();
    if entries == 0 {
        return Err(unprocessable(
            "empty profile",
            json!("give at least one of tags (seconds per tag), interests or assessments"),
        ));
    }
    if entries > MAX_PROFILE_ENTRIES {
        return Err(unprocessable(
            "profile too large",
            json!({"entries": entries, "max": MAX_PROFILE_ENTRIES}),
        ));
    }
    let names = p
        .tags
        .keys()
        .chain(&p.interests)
        .chain(p.assessments.keys());
    for name in names {
        if name.trim().is_empty() || name.len() > MAX_TAG_BYTES {
            return Err(unprocessable(
                "invalid tag name",
                json!({"tag": name.chars().take(40).collect::<String>(), "max_bytes": MAX_TAG_BYTES}),
            ));
        }
    }
    let check = |field: &str, map: &std::collections::BTreeMap<String, f64>, max: f64| match map
        .iter()
        .find(|(_, v)| !(v.is_finite() && (0.0..=max).contains(*v)))
    {
        Some((tag, v)) => Err(unprocessable(
            "profile value out of range",
            json!({"field": field, "tag": tag, "value": v, "min": 0, "max": max}),
        )),
        None => Ok(()),
    };
    // A year of viewing is far more than any average per tag.
    check("tags", &p.tags, 31_536_000.0)?;
    check("assessments", &p.assessments, 1000.0)?;
    Ok(Profile {
        views: p.tags.into_iter().map(|(t, v)| (t, v as f32)).collect(),
        interests: p.interests,
        assessments: p
            .assessments
            .into_iter()
            .map(|(t, v)| (t, v as f32))
            .collect(),
    })
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request body too large",
        json!({"max_bytes": MAX_BODY_BYTES}),
    )
}

async fn predict<S: ObjectStore + 'static>(
    State(cache): State<Arc<ModelCache<S>>>,
    req: Request,
) -> Result<Response, ApiError> {
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
    let query = parse_request(&parts.headers, &bytes)?;
    let model = cache.get().await.map_err(model_unavailable)?;
    respond(&model, &query)
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

async fn index(base: Option<axum::Extension<BasePath>>) -> impl IntoResponse {
    let base = base.map(|b| b.0.0).unwrap_or_default();
    axum::Json(json!({
        "name": "Kindred",
        "description": "Finds the customers most similar to a given one, ranked by cosine similarity of their learning-behaviour embeddings.",
        "endpoints": {
            "POST /predict": "{\"user_handle\": 1, \"k\": 10} -> ranked similar users with summaries and reasons; also {\"user_handles\": [1, 2]}, {\"profile\": {\"tags\": {\"python\": 3600}, \"interests\": [\"python\"]}}, and the filters exclude and min_similarity",
            "GET /explore": "an explorer page for the model",
            "GET /health": "model version, user count and load state",
            "GET /openapi.json": "OpenAPI 3.1 description of this API",
        },
        "openapi": format!("{base}/openapi.json"),
        "predict": format!("{base}/predict"),
    }))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The explorer page: nothing but this page and its own inline style and script may load.
async fn explore() -> impl IntoResponse {
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

/// Body of `POST /shard/search`, the call a scatter-gather coordinator makes to a
/// process serving some shards ([`crate::scatter`]): either a handle, answered by the
/// process holding the user's shard together with the user's embedding and features, or
/// that embedding and those features, answered with the top k of the shards held.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSearch {
    /// Round 1: the user to look up.
    #[serde(default)]
    pub user_handle: Option<Handle>,
    /// Profile round 1: a cold-start profile to fold; the answer carries the folded
    /// embedding and the shards' nearest users for its smoothing.
    #[serde(default)]
    pub profile: Option<ProfileRequest>,
    /// Round 2: the query user's embedding, as the bit patterns of its `f32` components
    /// (exact: a decimal round trip can move the last bit and reorder near ties).
    #[serde(default)]
    pub vector: Option<Vec<u32>>,
    /// Round 2: the query user's strongest features (for `because`).
    #[serde(default)]
    pub features: Option<Vec<Feature>>,
    /// Round 2: the model version the embedding comes from; another one is refused (409).
    #[serde(default)]
    pub model_version: Option<String>,
    /// Round 2: the query user, never returned.
    #[serde(default)]
    pub exclude_handle: Option<u64>,
    /// Neighbours wanted (1 to 100, default 10).
    #[serde(default)]
    pub k: Option<i64>,
    /// Handles never to return.
    #[serde(default)]
    pub exclude: Option<Vec<Handle>>,
    /// Smallest similarity returned.
    #[serde(default)]
    pub min_similarity: Option<f64>,
}

async fn shard_search<S: ObjectStore + 'static>(
    State(cache): State<Arc<ModelCache<S>>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    let req: ShardSearch = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid request body",
            json!(e.to_string()),
        )
    })?;
    let model = cache.get().await.map_err(model_unavailable)?;
    answer_shard_search(&model, req)
}

/// A round-1 answer of `POST /shard/search`: the user's answer from the shards held, the
/// shards held, and the user's embedding and features for round 2. (Serialised directly,
/// not through a `Value`, so similarities keep their shortest `f32` spelling and merge
/// into answers identical to a single process's.)
#[derive(Debug, Serialize)]
pub struct ShardOwnerAnswer<'a> {
    /// The answer from the shards held.
    #[serde(flatten)]
    pub answer: PredictResponse<'a>,
    /// Shards held.
    pub shards: Vec<u32>,
    /// Shards of the model version.
    pub shard_count: u32,
    /// The query user's embedding and features.
    pub query: ShardQuery<'a>,
}

/// The query user as round 2 needs it.
#[derive(Debug, Serialize)]
pub struct ShardQuery<'a> {
    /// Unit embedding, as `f32` bit patterns.
    pub vector: Vec<u32>,
    /// Strongest features.
    pub features: &'a [Feature],
}

/// A profile round-1 answer of `POST /shard/search`: the folded profile and, when the
/// model smooths profiles, the `neighbours` users of the shards held nearest to it (with
/// their embeddings), from which the coordinator smooths it as one process would.
#[derive(Debug, Serialize)]
pub struct ShardFoldAnswer<'a> {
    /// Model version that answered.
    pub model_version: &'a str,
    /// Shards held.
    pub shards: Vec<u32>,
    /// Shards of the model version.
    pub shard_count: u32,
    /// The profile's known features, largest weight first.
    pub matched: Vec<Reason<'a>>,
    /// Tags of the profile the model does not know.
    pub unknown_tags: Vec<String>,
    /// The folded embedding (bits) and features, before smoothing.
    pub folded: ShardQuery<'a>,
    /// The smoothing to apply: (neighbours, weight); absent when profiles are not smoothed.
    pub smoothing: Option<(u32, f32)>,
    /// Nearest users of the shards held: handle, similarity, embedding bits.
    pub near: Vec<(u64, f32, Vec<u32>)>,
}

/// A round-2 answer of `POST /shard/search`.
#[derive(Debug, Serialize)]
pub struct ShardAnswer<'a> {
    /// Model version that answered.
    pub model_version: &'a str,
    /// Shards held.
    pub shards: Vec<u32>,
    /// Shards of the model version.
    pub shard_count: u32,
    /// The shards' most similar users.
    pub similar_users: Vec<SimilarUser<'a>>,
}

/// Answers a [`ShardSearch`] from the shards `model` holds.
pub fn answer_shard_search(model: &Model, req: ShardSearch) -> Result<Response, ApiError> {
    let k = validate_k(req.k)?;
    let mut filters = validate_filters(req.exclude, req.min_similarity)?;
    let served = model.shards_held();
    match (req.user_handle, req.vector, req.profile) {
        (None, None, Some(p)) => {
            let profile = validate_profile(p)?;
            let folded = fold_profile(model, &profile)?;
            let smoothing = profile_smoothing(model);
            let near = match smoothing {
                Some(s) => neighbours(
                    model,
                    &folded.embedding,
                    None,
                    s.neighbours as usize,
                    &Filters::default(),
                )
                .into_iter()
                .map(|n| {
                    let e = &model.embedding(n.row).0;
                    let handle = model.users.users[n.row as usize].handle;
                    (
                        handle,
                        n.similarity,
                        e.iter().map(|x| x.to_bits()).collect(),
                    )
                })
                .collect(),
                None => Vec::new(),
            };
            Ok(axum::Json(ShardFoldAnswer {
                model_version: &model.manifest.version,
                shards: served,
                shard_count: model.manifest.shard_count(),
                matched: matched_features(model, &folded),
                unknown_tags: folded.unknown_tags.clone(),
                folded: ShardQuery {
                    vector: folded.embedding.0.iter().map(|x| x.to_bits()).collect(),
                    features: &folded.features,
                },
                smoothing: smoothing.map(|s| (s.neighbours, s.weight)),
                near,
            })
            .into_response())
        }
        (Some(h), None, None) => {
            let answer = answer_handle(model, h.0, k, &filters)?;
            let row = model.row_of(h.0).expect("answered users are held");
            let query = ShardQuery {
                vector: model.embedding(row).0.iter().map(|x| x.to_bits()).collect(),
                features: &model.users.users[row as usize].features,
            };
            Ok(axum::Json(ShardOwnerAnswer {
                answer,
                shards: served,
                shard_count: model.manifest.shard_count(),
                query,
            })
            .into_response())
        }
        (None, Some(bits), None) => {
            let vector: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
            if req.model_version.as_deref() != Some(model.manifest.version.as_str()) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "model version differs",
                    json!({"serving": model.manifest.version, "asked": req.model_version}),
                ));
            }
            if vector.len() != model.dimensions() || vector.iter().any(|x| !x.is_finite()) {
                return Err(unprocessable(
                    "invalid vector",
                    json!({"expected_dimensions": model.dimensions(), "received": vector.len()}),
                ));
            }
            let mut features = req.features.unwrap_or_default();
            features.retain(|f| (f.tag as usize) < model.users.tags.len() && f.weight.is_finite());
            features.sort_by_key(|f| (f.signal, f.tag));
            features.dedup_by(|a, b| (a.signal, a.tag) == (b.signal, b.tag));
            filters.exclude.extend(req.exclude_handle);
            // As sent: the owner's unit embedding, bit for bit.
            let found = neighbours(model, &Embedding(vector), None, k as usize, &filters);
            Ok(axum::Json(ShardAnswer {
                model_version: &model.manifest.version,
                shards: served,
                shard_count: model.manifest.shard_count(),
                similar_users: similar_users(model, found, &features),
            })
            .into_response())
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid request body",
            json!("give exactly one of user_handle, vector or profile"),
        )),
    }
}

pub(crate) async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    let allowed = match uri.path() {
        "/predict" | "/shard/search" => "POST",
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

    #[test]
    fn requests_are_validated_before_any_model_is_needed() {
        let mut json = HeaderMap::new();
        json.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let q = parse_request(&json, br#" {"user_handle": "42", "k": null}"#).unwrap();
        assert_eq!((q.subject, q.k), (Subject::Handle(42), DEFAULT_K));
        let q = parse_request(&HeaderMap::new(), br#"{"user_handle": 7, "k": 100}"#).unwrap();
        assert_eq!((q.subject, q.k), (Subject::Handle(7), 100));
        let status = |body: &[u8]| parse_request(&HeaderMap::new(), body).unwrap_err().status;
        assert_eq!(
            status(br#"{"user_handle": 18446744073709551616}"#),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(br#"{"user_handle": 1, "k": 101}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(&vec![b' '; MAX_BODY_BYTES + 1]),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        // Exactly one subject.
        assert_eq!(status(br#"{"k": 3}"#), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(br#"{"user_handle": 1, "user_handles": [2]}"#),
            StatusCode::BAD_REQUEST
        );
        // Batches: 1 to 100 handles, at most 1,000 neighbours in all.
        assert_eq!(
            status(br#"{"user_handles": []}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let many = format!("{{\"user_handles\": [{}]}}", ["1"; 101].join(","));
        assert_eq!(status(many.as_bytes()), StatusCode::UNPROCESSABLE_ENTITY);
        let wide = format!(
            "{{\"user_handles\": [{}], \"k\": 100}}",
            ["1"; 11].join(",")
        );
        assert_eq!(status(wide.as_bytes()), StatusCode::UNPROCESSABLE_ENTITY);
        let q = parse_request(
            &HeaderMap::new(),
            br#"{"user_handles": [3, "4"], "exclude": [5], "min_similarity": 0.25}"#,
        )
        .unwrap();
        assert_eq!(q.subject, Subject::Handles(vec![3, 4]));
        assert!(q.filters.exclude.contains(&5) && q.filters.min_similarity == Some(0.25));
        // Filters in range.
        assert_eq!(
            status(br#"{"user_handle": 1, "min_similarity": 1.5}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // Profiles: not empty, values in range, known fields only.
        assert_eq!(
            status(br#"{"profile": {}}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(br#"{"profile": {"tags": {"python": -1}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(br#"{"profile": {"tags": {"": 10}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            status(br#"{"profile": {"tagz": {"python": 10}}}"#),
            StatusCode::BAD_REQUEST
        );
        let q = parse_request(
            &HeaderMap::new(),
            br#"{"profile": {"tags": {"python": 3600}, "interests": ["c#"], "assessments": {"python": 200}}}"#,
        )
        .unwrap();
        assert_eq!(
            q.subject,
            Subject::Profile(Profile {
                views: vec![("python".into(), 3600.0)],
                interests: vec!["c#".into()],
                assessments: vec![("python".into(), 200.0)],
            })
        );
        let mut text = HeaderMap::new();
        text.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/json"));
        assert_eq!(
            parse_request(&text, b"{}").unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
