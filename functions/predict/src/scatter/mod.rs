//! Scatter-gather: answering `POST /predict` from shard-serving processes.
//!
//! In this mode the process holds no model. Each endpoint is a `kindred-predict` that
//! serves some shards of the same version (`--shards`), reached in one of two ways:
//!
//! - `http://host:port`: a process serving HTTP (`--listen`), called with plain HTTP;
//! - `lambda:FUNCTION` (a name, `name:alias` or an ARN): a deployed function, called with
//!   the Lambda `Invoke` API (signed with the standard AWS configuration; the payload is
//!   the API Gateway HTTP API event of the request, the answer its response). For a local
//!   emulator, `lambda:FUNCTION@http://127.0.0.1:9000` names the Invoke endpoint
//!   (`cargo lambda watch`'s); otherwise `AWS_ENDPOINT_URL_LAMBDA` applies as usual.
//!
//! `{a..b}` in an endpoint expands to one endpoint per number (`lambda:kindred-shard-{0..3}`).
//! A handle query goes out in two rounds, every call under a per-shard timeout:
//!
//! 1. `POST /shard/search {"user_handle": h, ...}` to every endpoint. The one holding
//!    the user's shard answers with its own top-k and the user's embedding and features;
//!    the others answer 404 (`user in a shard not served here`).
//! 2. `POST /shard/search {"vector": ..., "features": ..., "model_version": ...}` to
//!    every other endpoint, which answers its top-k for that embedding (refusing with
//!    409 if it serves another version, whose embedding space differs).
//!
//! The answers are merged exactly (top k by similarity, ties by handle) and re-ranked.
//! A profile query also takes two rounds: every endpoint folds the profile and returns
//! its users nearest to it; the coordinator smooths the folded embedding towards the
//! nearest of all (as one process does), then asks every endpoint for its top k.
//! An endpoint that fails, times out or serves another version is left out and the
//! answer says so: `"partial": true` with `shards_missing`; so does a shard of the
//! model version that no endpoint serves. Only when the user's own shard cannot be
//! reached is there no answer (503, `Retry-After`). Each round waits at most the timeout,
//! so a partial answer takes up to about twice the timeout.

mod endpoints;
mod invoke;
mod merge;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tracing::warn;

use kindred_core::embedding::Embedding;
use kindred_core::projection::smooth_towards;

use crate::api::{self, ApiError, ApiKeys, CallerRate, Disclosure, Query, Subject};
use crate::metrics::Metrics;

pub use endpoints::{EndpointSpec, parse_endpoints};
use invoke::{invoke, lambda_client};
pub use invoke::{invoke_answer, invoke_event};
pub use merge::merge_lists;
use merge::{Coverage, bits_to_f32, filters_json, flag, merge_into, reason, take_list};

/// Largest shard answer read.
const MAX_SHARD_ANSWER_BYTES: usize = 8 << 20;

/// The shard endpoints and how long to wait for each.
pub struct Gather {
    endpoints: Vec<String>,
    /// How each of `endpoints` (same order) is reached.
    targets: Vec<Target>,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
    /// What answers may reveal; shards are asked for no more.
    disclosure: Disclosure,
    /// The key sent to HTTP shard endpoints (`Authorization: Bearer`).
    shard_key: Option<String>,
    /// The coordinator's answers, counted (`/metrics`, EMF lines in Lambda).
    metrics: Arc<Metrics>,
}

/// Most shard calls one request may cause (each handle of a batch costs two rounds to
/// every endpoint); a batch over it gets a 422 that says how many handles fit.
pub const MAX_FAN_OUT: usize = 256;

/// How one endpoint is reached.
enum Target {
    /// A base URL, called over plain HTTP.
    Http(String),
    /// A function, called with the Lambda `Invoke` API.
    Lambda {
        function: String,
        client: aws_sdk_lambda::Client,
    },
}

/// Why one endpoint gave nothing usable for a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    /// The endpoint.
    pub endpoint: String,
    /// What went wrong (timeout, connection error, status, other version).
    pub reason: String,
}

impl Gather {
    /// Endpoints as [`parse_endpoints`] reads them. Lambda endpoints share one AWS
    /// configuration (region, credentials), loaded here once.
    pub async fn new(specs: Vec<String>, timeout: Duration) -> Result<Gather, String> {
        let needs_aws = parse_endpoints(&specs)?
            .iter()
            .any(|(_, p)| matches!(p, EndpointSpec::Lambda { .. }));
        let aws = if needs_aws {
            Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
        } else {
            None
        };
        Self::with_aws_config(specs, timeout, aws)
    }

    /// [`Gather::new`] with the AWS configuration for Lambda endpoints given, instead of
    /// loaded from the environment (required when there are Lambda endpoints).
    pub fn with_aws_config(
        specs: Vec<String>,
        timeout: Duration,
        aws: Option<aws_config::SdkConfig>,
    ) -> Result<Gather, String> {
        let parsed = parse_endpoints(&specs)?;
        if aws.is_none()
            && parsed
                .iter()
                .any(|(_, p)| matches!(p, EndpointSpec::Lambda { .. }))
        {
            return Err("Lambda endpoints need an AWS configuration".to_owned());
        }
        // One client per Invoke endpoint (the default one, or each local emulator).
        let mut clients: Vec<(Option<String>, aws_sdk_lambda::Client)> = Vec::new();
        let mut endpoints = Vec::with_capacity(parsed.len());
        let mut targets = Vec::with_capacity(parsed.len());
        for (name, spec) in parsed {
            let target = match (spec, &aws) {
                (EndpointSpec::Http(base), _) => Target::Http(base),
                (
                    EndpointSpec::Lambda {
                        function,
                        endpoint_url,
                    },
                    Some(aws),
                ) => {
                    let client = match clients.iter().find(|(u, _)| *u == endpoint_url) {
                        Some((_, c)) => c.clone(),
                        None => {
                            let c = lambda_client(aws, endpoint_url.as_deref(), timeout)?;
                            clients.push((endpoint_url, c.clone()));
                            c
                        }
                    };
                    Target::Lambda { function, client }
                }
                (EndpointSpec::Lambda { .. }, None) => unreachable!("checked above"),
            };
            endpoints.push(name);
            targets.push(target);
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        Ok(Gather {
            endpoints,
            targets,
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
            disclosure: Disclosure::default(),
            shard_key: None,
            metrics: Arc::default(),
        })
    }

    /// Answers reveal at most `disclosure` (shards are asked for no more).
    pub fn with_disclosure(mut self, disclosure: Disclosure) -> Gather {
        self.disclosure = disclosure;
        self
    }

    /// Sends `key` as `Authorization: Bearer` to HTTP shard endpoints that require one.
    pub fn with_shard_key(mut self, key: Option<String>) -> Gather {
        self.shard_key = key;
        self
    }

    /// Counts the coordinator's answers in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Gather {
        self.metrics = metrics;
        self
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// POSTs `body` to `path` of every endpoint at once; each result within the timeout.
    async fn fan_out(
        &self,
        endpoints: &[String],
        path: &str,
        body: &Value,
    ) -> Vec<(String, Result<(StatusCode, Value), String>)> {
        let bytes = Bytes::from(body.to_string());
        let calls = endpoints.iter().map(|e| {
            let bytes = bytes.clone();
            async move {
                let call = async {
                    // Endpoint names are unique (parse_endpoints refuses repeats).
                    let i = self.endpoints.iter().position(|x| x == e);
                    match i.map(|i| &self.targets[i]) {
                        Some(Target::Http(base)) => self.post(base, path, bytes).await,
                        Some(Target::Lambda { function, client }) => {
                            invoke(client, function, path, &bytes).await
                        }
                        None => Err("not an endpoint of this coordinator".to_owned()),
                    }
                };
                let result = tokio::time::timeout(self.timeout, call)
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.timeout)));
                (e.clone(), result)
            }
        });
        futures_join_all(calls).await
    }

    async fn post(
        &self,
        base: &str,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Value), String> {
        let mut req = axum::http::Request::post(format!("{base}{path}"))
            .header("content-type", "application/json");
        if let Some(key) = &self.shard_key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_SHARD_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("answer with status {status} is not JSON: {e}"))?;
        Ok((status, value))
    }

    /// The last round of a query: `body` (an embedding to search) to `endpoints`; their
    /// lists go to `lists`, failures to `missing`, and, when every endpoint answered,
    /// shards that no endpoint holds too (with an endpoint missing, its shards are
    /// unknown and already reported).
    async fn search_round(
        &self,
        endpoints: &[String],
        body: &Value,
        lists: &mut Vec<Vec<Value>>,
        missing: &mut Vec<Missing>,
        mut coverage: Coverage,
    ) {
        for (endpoint, result) in self.fan_out(endpoints, "/shard/search", body).await {
            match result {
                Ok((StatusCode::OK, mut v)) if v.is_object() => {
                    coverage.add(&v["shards"], &v["shard_count"]);
                    lists.push(take_list(&mut v));
                }
                Ok((status, v)) => missing.push(Missing {
                    endpoint,
                    reason: reason(status, &v),
                }),
                Err(reason) => missing.push(Missing { endpoint, reason }),
            }
        }
        if missing.is_empty() {
            missing.extend(coverage.gaps());
        }
    }

    /// The merged answer for one handle.
    pub async fn answer_handle(&self, handle: u64, q: &Query) -> Result<Value, ApiError> {
        let filters = filters_json(q, self.disclosure);
        let mut first = json!({"user_handle": handle, "k": q.k});
        merge_into(&mut first, &filters);
        let round1 = self.fan_out(&self.endpoints, "/shard/search", &first).await;
        let mut missing = Vec::new();
        let mut coverage = Coverage::default();
        let mut owners: Vec<(String, Value)> = Vec::new();
        let mut unknown = false;
        let mut owner_shard: Option<u64> = None;
        for (endpoint, result) in round1 {
            match result {
                Ok((StatusCode::OK, v)) if v.is_object() => {
                    coverage.add(&v["shards"], &v["shard_count"]);
                    owners.push((endpoint, v));
                }
                Ok((StatusCode::NOT_FOUND, v)) if v.is_object() => {
                    unknown |= v["error"] == "unknown user";
                    owner_shard = owner_shard.or(v["detail"]["shard"].as_u64());
                    coverage.count(&v["detail"]["shard_count"]);
                }
                Ok((status, v)) => missing.push(Missing {
                    endpoint,
                    reason: reason(status, &v),
                }),
                Err(reason) => missing.push(Missing { endpoint, reason }),
            }
        }
        if owners.is_empty() {
            if unknown {
                return Err(ApiError::not_found_user(handle));
            }
            if missing.is_empty() && owner_shard.is_none() {
                return Err(ApiError::not_found_user(handle));
            }
            warn!(
                handle,
                ?missing,
                ?owner_shard,
                "no endpoint answered for the user's shard"
            );
            return Err(ApiError::shard_unavailable(
                handle,
                missing.iter().map(|m| m.endpoint.clone()).collect(),
            ));
        }
        // The first owner gives the query; replicas or overlapping endpoints that also
        // hold the user add their lists (duplicates are merged away).
        let mut answer = owners[0].1.clone();
        let (query, _, _) = answer
            .as_object_mut()
            .map(|o| {
                (
                    o.remove("query"),
                    o.remove("shards"),
                    o.remove("shard_count"),
                )
            })
            .unwrap_or_default();
        let query = query.unwrap_or(Value::Null);
        let version = answer["model_version"].clone();
        let mut lists: Vec<Vec<Value>> = owners.iter_mut().map(|(_, v)| take_list(v)).collect();
        let others: Vec<String> = self
            .endpoints
            .iter()
            .filter(|e| {
                !owners.iter().any(|(o, _)| o == *e) && !missing.iter().any(|m| &m.endpoint == *e)
            })
            .cloned()
            .collect();
        let mut second = json!({
            "vector": query["vector"],
            "features": query["features"],
            "model_version": version,
            "exclude_handle": handle,
            "k": q.k,
        });
        merge_into(&mut second, &filters);
        self.search_round(&others, &second, &mut lists, &mut missing, coverage)
            .await;
        answer["similar_users"] = merge_lists(lists, q.k as usize);
        flag(&mut answer, &missing);
        Ok(answer)
    }

    /// The merged answer for a profile, in two rounds as one process would compute it:
    /// every endpoint folds the profile and gives its users nearest to it; the coordinator
    /// smooths the folded embedding towards the nearest of all of them, then asks every
    /// endpoint for its top k of the smoothed embedding.
    pub async fn answer_profile(&self, body: &[u8], q: &Query) -> Result<Value, ApiError> {
        let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let first = json!({"profile": request["profile"]});
        let mut folds: Vec<(String, Value)> = Vec::new();
        let mut missing = Vec::new();
        let mut refusal: Option<(StatusCode, Value)> = None;
        for (endpoint, result) in self.fan_out(&self.endpoints, "/shard/search", &first).await {
            match result {
                Ok((StatusCode::OK, v)) if v.is_object() => {
                    let agrees = folds
                        .first()
                        .is_none_or(|(_, f)| f["model_version"] == v["model_version"]);
                    if agrees {
                        folds.push((endpoint, v));
                    } else {
                        missing.push(Missing {
                            endpoint,
                            reason: format!("serves model version {}", v["model_version"]),
                        });
                    }
                }
                Ok((status, v)) if status.is_client_error() && v.is_object() => {
                    refusal = Some((status, v))
                }
                Ok((status, v)) => missing.push(Missing {
                    endpoint,
                    reason: reason(status, &v),
                }),
                Err(reason) => missing.push(Missing { endpoint, reason }),
            }
        }
        let Some((_, fold)) = folds.first() else {
            if let Some((status, v)) = refusal {
                return Err(ApiError::relayed(status, v));
            }
            return Err(ApiError::shard_unavailable(
                0,
                missing.iter().map(|m| m.endpoint.clone()).collect(),
            ));
        };
        let folded = Embedding(bits_to_f32(&fold["folded"]["vector"]));
        let smoothed = match fold["smoothing"].as_array() {
            Some(s) if s.len() == 2 => {
                let n = s[0].as_u64().unwrap_or(0) as usize;
                let weight = s[1].as_f64().unwrap_or(0.0) as f32;
                let mut near: Vec<(f64, u64, Embedding)> = folds
                    .iter()
                    .flat_map(|(_, f)| f["near"].as_array().cloned().unwrap_or_default())
                    .filter_map(|t| {
                        Some((
                            t[1].as_f64()?,
                            t[0].as_u64()?,
                            Embedding(bits_to_f32(&t[2])),
                        ))
                    })
                    .collect();
                near.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                near.truncate(n);
                let points: Vec<&[f32]> = near.iter().map(|x| &x.2.0[..]).collect();
                smooth_towards(&folded, &points, weight)
            }
            _ => folded,
        };
        let version = fold["model_version"].clone();
        let mut second = json!({
            "vector": smoothed.0.iter().map(|x| x.to_bits()).collect::<Vec<u32>>(),
            "features": fold["folded"]["features"],
            "model_version": version,
            "k": q.k,
        });
        merge_into(&mut second, &filters_json(q, self.disclosure));
        let answered: Vec<String> = folds.iter().map(|(e, _)| e.clone()).collect();
        let mut lists = Vec::new();
        self.search_round(
            &answered,
            &second,
            &mut lists,
            &mut missing,
            Coverage::default(),
        )
        .await;
        let mut answer = json!({
            "model_version": version,
            "matched": fold["matched"],
            "unknown_tags": fold["unknown_tags"],
            "similar_users": merge_lists(lists, q.k as usize),
        });
        flag(&mut answer, &missing);
        Ok(answer)
    }
}

/// Runs the futures concurrently on this task (they borrow the coordinator, so they are
/// polled here rather than spawned); outputs in input order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<(usize, std::pin::Pin<Box<F>>)> =
        futures.map(Box::pin).enumerate().collect();
    let mut out: Vec<Option<F::Output>> = Vec::new();
    out.resize_with(pending.len(), || None);
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => {
                out[*i] = Some(v);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}

/// The router of a scatter-gather coordinator: `POST /predict`, `GET /metrics` and
/// `GET /health`.
/// Like [`api::router`], a named API Gateway stage is taken off the path first.
pub fn router(gather: Arc<Gather>) -> Router {
    router_with(gather, ApiKeys::default(), None)
}

/// [`router`] whose `/predict` answers 401 without one of `keys` (none: open) and 429 to
/// a caller asking faster than `rate` (none: no limit).
pub fn router_with(gather: Arc<Gather>, keys: ApiKeys, rate: Option<CallerRate>) -> Router {
    let predict_route = api::guard(
        Router::new()
            .route("/predict", post(predict).fallback(api::method_not_allowed))
            .route("/metrics", get(metrics).fallback(api::method_not_allowed)),
        keys,
        rate,
    );
    let metrics = Arc::clone(&gather.metrics);
    let routes = predict_route
        .route("/health", get(health).fallback(api::method_not_allowed))
        .fallback(api::not_found)
        .with_state(gather);
    api::wrapped(routes, metrics, || None)
}

/// `GET /metrics`: the coordinator's counters in Prometheus text format (no model).
async fn metrics(State(g): State<Arc<Gather>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::PROMETHEUS_CONTENT_TYPE,
        )],
        g.metrics.prometheus(None, None),
    )
        .into_response()
}

async fn health(State(g): State<Arc<Gather>>) -> Response {
    axum::Json(json!({"status": "ok", "mode": "scatter-gather", "endpoints": g.endpoints}))
        .into_response()
}

async fn predict(State(g): State<Arc<Gather>>, req: axum::extract::Request) -> Response {
    let (parts, body) = match api::read_body(req).await {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let q = match api::parse_request(&parts.headers, &body) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    if let Subject::Handles(hs) = &q.subject {
        let calls = hs.len() * 2 * g.endpoints.len();
        if calls > MAX_FAN_OUT {
            return ApiError::unprocessable(
                "batch too large for scatter-gather",
                json!({
                    "handles": hs.len(),
                    "shard_calls": calls,
                    "max_shard_calls": MAX_FAN_OUT,
                    "max_handles": MAX_FAN_OUT / (2 * g.endpoints.len()).max(1),
                }),
            )
            .into_response();
        }
    }
    let result = match &q.subject {
        Subject::Handle(h) => g.answer_handle(*h, &q).await,
        Subject::Profile(_) => g.answer_profile(&body, &q).await,
        Subject::Handles(hs) => {
            let answers = futures_join_all(hs.iter().map(|&h| g.answer_handle(h, &q))).await;
            let results: Vec<Value> = hs
                .iter()
                .zip(answers)
                .map(|(&h, a)| match a {
                    Ok(v) => v,
                    Err(e) => json!({"user_handle": h, "error": e.body()["error"]}),
                })
                .collect();
            let version = results.iter().find_map(|r| r.get("model_version").cloned());
            Ok(json!({"model_version": version, "results": results}))
        }
    };
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
