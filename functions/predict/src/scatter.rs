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

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
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

use crate::api::{self, ApiError, Query, Subject};

/// Largest shard answer read.
const MAX_SHARD_ANSWER_BYTES: usize = 8 << 20;

/// The shard endpoints and how long to wait for each.
pub struct Gather {
    endpoints: Vec<String>,
    /// How each of `endpoints` (same order) is reached.
    targets: Vec<Target>,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

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

/// One endpoint as written: how to reach it, before any client exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSpec {
    /// `http://host:port`, without a trailing slash.
    Http(String),
    /// `lambda:FUNCTION[@ENDPOINT_URL]`.
    Lambda {
        /// Function name, `name:alias` or ARN.
        function: String,
        /// Invoke endpoint override (a local emulator), if any.
        endpoint_url: Option<String>,
    },
}

/// Parses endpoints (after expanding `{a..b}`), refusing anything that is neither an
/// `http://` base URL nor `lambda:FUNCTION[@URL]`.
pub fn parse_endpoints(specs: &[String]) -> Result<Vec<(String, EndpointSpec)>, String> {
    let mut out = Vec::new();
    for spec in specs {
        for e in expand_range(spec.trim())? {
            let e = e.trim_end_matches('/').to_owned();
            let parsed = match e.strip_prefix("lambda:") {
                Some(rest) => {
                    let (function, url) = match rest.split_once('@') {
                        Some((f, u)) => (f, Some(u)),
                        None => (rest, None),
                    };
                    if function.is_empty()
                        || !function
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c))
                    {
                        return Err(format!(
                            "shard endpoint {e:?}: {function:?} is not a Lambda function name or ARN"
                        ));
                    }
                    if let Some(u) = url {
                        http_base(u).map_err(|why| format!("shard endpoint {e:?}: {why}"))?;
                    }
                    EndpointSpec::Lambda {
                        function: function.to_owned(),
                        endpoint_url: url.map(str::to_owned),
                    }
                }
                None => EndpointSpec::Http(
                    http_base(&e).map_err(|why| format!("shard endpoint {e:?}: {why}"))?,
                ),
            };
            if out.iter().any(|(name, _)| *name == e) {
                return Err(format!("shard endpoint {e:?} is listed twice"));
            }
            out.push((e, parsed));
        }
    }
    if out.is_empty() {
        return Err("no shard endpoint given".into());
    }
    Ok(out)
}

/// `text` checked as an `http://` URL with a host, without a trailing slash.
fn http_base(text: &str) -> Result<String, String> {
    let text = text.trim_end_matches('/');
    let uri: axum::http::Uri = text.parse().map_err(|err| format!("not a URL: {err}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err("must be an http:// URL with a host (or lambda:FUNCTION)".into());
    }
    Ok(text.to_owned())
}

/// `text` with its one `{a..b}` expanded (`x-{0..2}` gives `x-0`, `x-1`, `x-2`).
fn expand_range(text: &str) -> Result<Vec<String>, String> {
    let Some(open) = text.find('{') else {
        return Ok(vec![text.to_owned()]);
    };
    let close = text[open..]
        .find('}')
        .map(|c| open + c)
        .ok_or_else(|| format!("{text:?}: '{{' without '}}'"))?;
    let inner = &text[open + 1..close];
    let (a, b) = inner
        .split_once("..")
        .ok_or_else(|| format!("{text:?}: expected {{first..last}}"))?;
    let number = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("{text:?}: {s:?} is not a number"))
    };
    let (a, b) = (number(a)?, number(b)?);
    if a > b || b - a >= 1024 {
        return Err(format!(
            "{text:?}: the range must run upwards over at most 1024 numbers"
        ));
    }
    let (head, tail) = (&text[..open], &text[close + 1..]);
    if tail.contains('{') {
        return Err(format!("{text:?}: one {{first..last}} per endpoint"));
    }
    Ok((a..=b).map(|i| format!("{head}{i}{tail}")).collect())
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
        let parsed = parse_endpoints(&specs)?;
        let needs_aws = parsed
            .iter()
            .any(|(_, p)| matches!(p, EndpointSpec::Lambda { .. }));
        let aws = if needs_aws {
            Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
        } else {
            None
        };
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
                (EndpointSpec::Lambda { .. }, None) => unreachable!("AWS configuration loaded"),
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
        })
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
        let req = axum::http::Request::post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
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
        let filters = filters_json(q);
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
                let points: Vec<&Embedding> = near.iter().map(|x| &x.2).collect();
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
        merge_into(&mut second, &filters_json(q));
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

/// A Lambda client for Invoke calls within `timeout`: at most 2 attempts (one quick retry
/// of a throttle or transient error, 20 ms backoff) and each attempt cut at `timeout`, so
/// the SDK's own retries do not spend the per-shard budget in backoff and the reason a
/// shard is missing stays the real one. `endpoint_url` overrides the Invoke endpoint (a
/// local emulator; any region will do for signing there).
fn lambda_client(
    aws: &aws_config::SdkConfig,
    endpoint_url: Option<&str>,
    timeout: Duration,
) -> Result<aws_sdk_lambda::Client, String> {
    use aws_sdk_lambda::config::{Region, retry::RetryConfig, timeout::TimeoutConfig};
    let mut config = aws_sdk_lambda::config::Builder::from(aws)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(timeout)
                .build(),
        );
    match endpoint_url {
        Some(url) => {
            config = config.endpoint_url(url);
            if aws.region().is_none() {
                config = config.region(Region::new("us-east-1"));
            }
        }
        None if aws.region().is_none() => {
            return Err(
                "lambda: shard endpoints need an AWS region (AWS_REGION or the AWS config)".into(),
            );
        }
        None => {}
    }
    Ok(aws_sdk_lambda::Client::from_conf(config.build()))
}

/// Calls `function` with the Lambda `Invoke` API: `POST path` with a JSON `body` as an
/// API Gateway HTTP API event, read back from the function's API Gateway response.
async fn invoke(
    client: &aws_sdk_lambda::Client,
    function: &str,
    path: &str,
    body: &[u8],
) -> Result<(StatusCode, Value), String> {
    let event = invoke_event(path, body);
    let out = client
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
        .send()
        .await
        .map_err(|e| {
            format!(
                "invoke failed: {}",
                aws_sdk_lambda::error::DisplayErrorContext(e)
            )
        })?;
    let payload = out.payload().map(|b| b.as_ref()).unwrap_or_default();
    if payload.len() > MAX_SHARD_ANSWER_BYTES {
        return Err(format!("answer of {} bytes is too large", payload.len()));
    }
    if let Some(kind) = out.function_error() {
        let text = String::from_utf8_lossy(&payload[..payload.len().min(300)]);
        return Err(format!("function error ({kind}): {text}"));
    }
    invoke_answer(payload)
}

/// The API Gateway HTTP API (payload 2.0) event of `POST path` with a JSON body: what
/// the shard function's runtime (lambda_http) turns into the request it routes.
pub fn invoke_event(path: &str, body: &[u8]) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "user-agent": "kindred-scatter"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "kindred-scatter",
            "domainName": "kindred-scatter.internal",
            "domainPrefix": "kindred-scatter",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "kindred-scatter",
            },
            "requestId": "kindred-scatter",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0,
        },
        "body": String::from_utf8_lossy(body),
        "isBase64Encoded": false,
    })
}

/// Status and JSON body of a function's API Gateway response payload.
pub fn invoke_answer(payload: &[u8]) -> Result<(StatusCode, Value), String> {
    let response: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("the function's answer is not JSON: {e}"))?;
    let status = response["statusCode"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(u16::try_from(s).ok()?).ok())
        .ok_or_else(|| "the function's answer has no statusCode".to_owned())?;
    if response["isBase64Encoded"] == true {
        return Err(format!(
            "answer with status {status} has a base64 body (not a JSON answer)"
        ));
    }
    let body = response["body"].as_str().unwrap_or("");
    let value = serde_json::from_str(body)
        .map_err(|e| format!("answer with status {status} is not JSON: {e}"))?;
    Ok((status, value))
}

/// Which shards the endpoints that answered hold, against the model's shard count: a
/// shard no endpoint serves (a new shard after the batch split the users further, or a
/// gap in the `--shards` assignment) makes the answer partial, like a failed endpoint.
#[derive(Default)]
struct Coverage {
    held: std::collections::BTreeSet<u64>,
    count: Option<u64>,
}

impl Coverage {
    fn add(&mut self, shards: &Value, count: &Value) {
        self.held.extend(
            shards
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64),
        );
        self.count(count);
    }

    fn count(&mut self, count: &Value) {
        if let Some(c) = count.as_u64() {
            self.count = Some(self.count.map_or(c, |k| k.max(c)));
        }
    }

    fn gaps(&self) -> Option<Missing> {
        let count = self.count?;
        let gaps: Vec<u64> = (0..count.min(1 << 16))
            .filter(|s| !self.held.contains(s))
            .collect();
        (!gaps.is_empty()).then(|| Missing {
            endpoint: "(none)".to_owned(),
            reason: format!("shards {gaps:?} of {count} are served by no endpoint"),
        })
    }
}

/// Why an endpoint's answer was not used.
fn reason(status: StatusCode, v: &Value) -> String {
    if v.is_object() {
        format!("status {status}: {}", v["error"])
    } else {
        format!("status {status}: the answer is not a JSON object")
    }
}

/// `f32` components from a JSON array of their bit patterns (0 for anything else).
fn bits_to_f32(v: &Value) -> Vec<f32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| f32::from_bits(x.as_u64().unwrap_or(0) as u32))
                .collect()
        })
        .unwrap_or_default()
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

/// The request's filters as JSON fields.
fn filters_json(q: &Query) -> Value {
    let mut exclude: Vec<u64> = q.filters.exclude.iter().copied().collect();
    exclude.sort_unstable();
    let mut v = json!({"exclude": exclude});
    if let Some(m) = q.filters.min_similarity {
        v["min_similarity"] = json!(m);
    }
    v
}

fn merge_into(target: &mut Value, fields: &Value) {
    if let (Some(t), Some(f)) = (target.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            t.insert(k.clone(), v.clone());
        }
    }
}

fn take_list(answer: &mut Value) -> Vec<Value> {
    match answer.get_mut("similar_users").map(Value::take) {
        Some(Value::Array(list)) => list.into_iter().filter(Value::is_object).collect(),
        _ => Vec::new(),
    }
}

/// The top `k` of several ranked lists of similar users (by similarity, ties by handle),
/// ranked 1.. again.
pub fn merge_lists(lists: Vec<Vec<Value>>, k: usize) -> Value {
    let mut all: Vec<Value> = lists
        .into_iter()
        .flatten()
        .filter(Value::is_object)
        .collect();
    let key = |v: &Value| {
        (
            v["similarity"].as_f64().unwrap_or(f64::NEG_INFINITY),
            v["user_handle"].as_u64().unwrap_or(u64::MAX),
        )
    };
    all.sort_by(|a, b| {
        let (sa, ha) = key(a);
        let (sb, hb) = key(b);
        sb.total_cmp(&sa).then(ha.cmp(&hb))
    });
    all.dedup_by(|a, b| a["user_handle"] == b["user_handle"]);
    all.truncate(k);
    for (i, v) in all.iter_mut().enumerate() {
        v["rank"] = json!(i + 1);
    }
    Value::Array(all)
}

/// Marks an answer partial when endpoints are missing.
fn flag(answer: &mut Value, missing: &[Missing]) {
    answer["partial"] = json!(!missing.is_empty());
    answer["shards_missing"] = missing
        .iter()
        .map(|m| json!({"endpoint": m.endpoint, "reason": m.reason}))
        .collect();
}

/// The router of a scatter-gather coordinator: `POST /predict` and `GET /health`.
/// Like [`api::router`], a named API Gateway stage is taken off the path first.
pub fn router(gather: Arc<Gather>) -> Router {
    let routes = Router::new()
        .route("/predict", post(predict).fallback(api::method_not_allowed))
        .route("/health", get(health).fallback(api::method_not_allowed))
        .fallback(api::not_found)
        .with_state(gather);
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::map_request(api::strip_stage))
}

async fn health(State(g): State<Arc<Gather>>) -> Response {
    axum::Json(json!({"status": "ok", "mode": "scatter-gather", "endpoints": g.endpoints}))
        .into_response()
}

async fn predict(State(g): State<Arc<Gather>>, headers: HeaderMap, body: Bytes) -> Response {
    let q = match api::parse_request(&headers, &body) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_merge_by_similarity_then_handle_and_are_ranked_again() {
        let a = vec![
            json!({"user_handle": 5, "similarity": 0.9, "rank": 1}),
            json!({"user_handle": 2, "similarity": 0.5, "rank": 2}),
        ];
        let b = vec![
            json!({"user_handle": 9, "similarity": 0.7, "rank": 1}),
            json!({"user_handle": 1, "similarity": 0.5, "rank": 2}),
        ];
        let merged = merge_lists(vec![a, b], 3);
        let got: Vec<(u64, u64)> = merged
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["user_handle"].as_u64().unwrap(),
                    v["rank"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, [(5, 1), (9, 2), (1, 3)]);
    }

    fn parse(specs: &[&str]) -> Result<Vec<(String, EndpointSpec)>, String> {
        parse_endpoints(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn endpoints_are_http_urls_or_lambda_functions_with_ranges_expanded() {
        for bad in [
            &[][..],
            &["ftp://x"],
            &["not a url"],
            &["lambda:"],
            &["lambda:a b"],
            &["lambda:f@ftp://x"],
            &["http://h-{3..1}"],
            &["http://h-{0..2}-{0..1}"],
            &["lambda:f-{0..5000}"],
            &["lambda:f-{0.2}"],
            &["lambda:f-{0..2}", "lambda:f-1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let got = parse(&[
            "http://127.0.0.1:1/",
            "lambda:arn:aws:lambda:eu-west-1:123456789012:function:k-shard-0:live",
            "lambda:k-shard-{1..2}@http://127.0.0.1:9000",
        ])
        .unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "http://127.0.0.1:1",
                "lambda:arn:aws:lambda:eu-west-1:123456789012:function:k-shard-0:live",
                "lambda:k-shard-1@http://127.0.0.1:9000",
                "lambda:k-shard-2@http://127.0.0.1:9000",
            ]
        );
        assert_eq!(got[0].1, EndpointSpec::Http("http://127.0.0.1:1".into()));
        assert_eq!(
            got[3].1,
            EndpointSpec::Lambda {
                function: "k-shard-2".into(),
                endpoint_url: Some("http://127.0.0.1:9000".into()),
            }
        );
    }

    #[tokio::test]
    async fn lambda_endpoints_need_a_region_unless_they_name_their_endpoint() {
        // Given no AWS region anywhere,
        // SAFETY: no other test of this binary reads the AWS variables.
        unsafe {
            std::env::remove_var("AWS_REGION");
            std::env::remove_var("AWS_DEFAULT_REGION");
            std::env::set_var("AWS_CONFIG_FILE", "/nonexistent");
            std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
        }
        let t = Duration::from_millis(100);
        // then a lambda: endpoint is refused at start-up, naming the missing region,
        let err = match Gather::new(vec!["lambda:kindred-shard-0".into()], t).await {
            Ok(_) => panic!("accepted without a region"),
            Err(e) => e,
        };
        assert!(err.contains("region"), "{err}");
        // and one naming a local emulator is accepted.
        assert!(
            Gather::new(vec!["lambda:f@http://127.0.0.1:9".into()], t)
                .await
                .is_ok()
        );
    }

    #[test]
    fn the_invoke_event_is_an_http_api_request_the_lambda_runtime_routes() {
        // Given the event for a shard search,
        let body = br#"{"user_handle": 7, "k": 3}"#;
        let event = invoke_event("/shard/search", body);
        // when lambda_http reads it as the runtime does,
        let req = lambda_http::request::from_str(&event.to_string()).expect("an API Gateway event");
        // then it is that POST, with that body.
        assert_eq!(req.method(), "POST");
        assert_eq!(req.uri().path(), "/shard/search");
        assert_eq!(req.headers()["content-type"], "application/json");
        match req.body() {
            lambda_http::Body::Text(t) => assert_eq!(t.as_bytes(), body),
            other => panic!("body {other:?}"),
        }
    }

    #[test]
    fn invoke_answers_are_read_from_api_gateway_responses() {
        let ok = br#"{"statusCode":404,"headers":{},"body":"{\"error\":\"unknown user\"}","isBase64Encoded":false}"#;
        let (status, v) = invoke_answer(ok).unwrap();
        assert_eq!(
            (status.as_u16(), v["error"].as_str()),
            (404, Some("unknown user"))
        );
        for bad in [
            &b"not json"[..],
            br#"{"body":"{}"}"#,
            br#"{"statusCode":200,"body":"<html>"}"#,
            br#"{"statusCode":200,"body":"e30=","isBase64Encoded":true}"#,
        ] {
            assert!(
                invoke_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
