//! Request and model metrics: counted in process, read as Prometheus text at `/metrics`,
//! and (in Lambda) written as one CloudWatch Embedded Metric Format line per request.
//!
//! Counters are atomics updated once per request; nothing here allocates on the request
//! path except the EMF line itself, which is only written when EMF is on.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::api::{AnswerCacheStats, CacheOutcome};

/// The routes counted apart; any other path counts as `other` (so arbitrary paths cannot
/// grow the label set).
pub const ROUTES: [&str; 6] = [
    "/predict",
    "/recommend",
    "/shard/search",
    "/health",
    "/metrics",
    "other",
];

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// Status classes counted: 2xx, 3xx, 4xx, 5xx (anything else counts as 5xx).
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// The content type of [`Metrics::prometheus`]'s text.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// CloudWatch namespace of the function's metrics.
pub const NAMESPACE: &str = "Kindred";

#[derive(Default)]
struct RouteStats {
    classes: [AtomicU64; 4],
    /// Cumulative counts per bucket are computed when read; these are per bucket, the
    /// last one for answers slower than every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    micros: AtomicU64,
}

/// What the model cache reports for metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelGauges {
    /// The version serving, if any.
    pub version: Option<String>,
    /// Users in the loaded model.
    pub users: u64,
    /// The cache's state as `/health` names it: `not_loaded`, `loaded` or `unavailable`.
    pub state: &'static str,
    /// Versions loaded since start.
    pub loads: u64,
    /// Versions refused (failed verification or over the memory limit) since start.
    pub refusals: u64,
    /// How long the last load took.
    pub last_load: Option<Duration>,
}

/// The process's counters.
pub struct Metrics {
    routes: [RouteStats; ROUTES.len()],
    /// Write an EMF line per request to stdout (in Lambda).
    emf: bool,
    /// Model loads already reported in an EMF line.
    loads_reported: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(false)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("emf", &self.emf).finish()
    }
}

/// The route of `path`, as an index into [`ROUTES`]: the last (`other`) for every path
/// not named there.
pub fn route_of(path: &str) -> usize {
    ROUTES[..ROUTES.len() - 1]
        .iter()
        .position(|r| path == *r)
        .unwrap_or(ROUTES.len() - 1)
}

/// The class of an HTTP status code: one of `2xx`, `3xx`, `4xx`, `5xx`.
fn class_of(status: u16) -> usize {
    match status {
        200..=299 => 0,
        300..=399 => 1,
        400..=499 => 2,
        _ => 3,
    }
}

impl Metrics {
    /// Counters at zero; `emf`: whether an EMF line ([`Metrics::emf_line`]) is written
    /// for each answer.
    pub fn new(emf: bool) -> Self {
        Metrics {
            routes: Default::default(),
            emf,
            loads_reported: AtomicU64::new(0),
        }
    }

    /// Whether EMF lines are written.
    pub fn emf(&self) -> bool {
        self.emf
    }

    /// Counts one answer of route `route` (an index into [`ROUTES`], from [`route_of`])
    /// with `status` that took `took`.
    pub fn count(&self, route: usize, status: u16, took: Duration) {
        let stats = &self.routes[route];
        stats.classes[class_of(status)].fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        stats.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        stats
            .micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The EMF document for one answer: `Requests` (count) and `Latency` (milliseconds)
    /// by `Route` and `StatusClass`; the model's version, users and cache state as
    /// properties; `ModelLoadTime` (milliseconds) and `ModelLoads` once after each load,
    /// and `ModelRefusals`, by `Service`; for a cacheable question (`cached`),
    /// `AnswerCacheHits` and `AnswerCacheMisses` (one of them 1) by `Route`.
    pub fn emf_line(
        &self,
        route: usize,
        status: u16,
        took: Duration,
        model: Option<&ModelGauges>,
        cached: Option<CacheOutcome>,
        now_millis: u64,
    ) -> String {
        // A scatter-gather coordinator holds no model.
        let none = ModelGauges {
            state: "none",
            ..ModelGauges::default()
        };
        let model = model.unwrap_or(&none);
        let reported = self.loads_reported.swap(model.loads, Ordering::Relaxed);
        let mut directives = vec![json!({
            "Namespace": NAMESPACE,
            "Dimensions": [["Service", "Route", "StatusClass"], ["Service", "Route"]],
            "Metrics": [
                {"Name": "Requests", "Unit": "Count"},
                {"Name": "Latency", "Unit": "Milliseconds"},
            ],
        })];
        let mut doc = json!({
            "Service": "kindred-predict",
            "Route": ROUTES[route],
            "StatusClass": CLASSES[class_of(status)],
            "Requests": 1,
            "Latency": took.as_secs_f64() * 1000.0,
            "ModelVersion": model.version.as_deref().unwrap_or("none"),
            "ModelUsers": model.users,
            "CacheState": model.state,
        });
        let mut model_metrics = Vec::new();
        if model.loads > reported
            && let Some(load) = model.last_load
        {
            doc["ModelLoadTime"] = json!(load.as_secs_f64() * 1000.0);
            doc["ModelLoads"] = json!(model.loads - reported);
            model_metrics.push(json!({"Name": "ModelLoadTime", "Unit": "Milliseconds"}));
            model_metrics.push(json!({"Name": "ModelLoads", "Unit": "Count"}));
        }
        if model.refusals > 0 {
            doc["ModelRefusals"] = json!(model.refusals);
            model_metrics.push(json!({"Name": "ModelRefusals", "Unit": "Count"}));
        }
        if let Some(outcome) = cached {
            let hit = u8::from(outcome == CacheOutcome::Hit);
            doc["AnswerCacheHits"] = json!(hit);
            doc["AnswerCacheMisses"] = json!(1 - hit);
            directives.push(json!({
                "Namespace": NAMESPACE,
                "Dimensions": [["Service", "Route"]],
                "Metrics": [
                    {"Name": "AnswerCacheHits", "Unit": "Count"},
                    {"Name": "AnswerCacheMisses", "Unit": "Count"},
                ],
            }));
        }
        if !model_metrics.is_empty() {
            directives.push(json!({
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": model_metrics,
            }));
        }
        doc["_aws"] = json!({ "Timestamp": now_millis, "CloudWatchMetrics": directives });
        doc.to_string()
    }

    /// The counters, `model` and `answers` (none for a scatter-gather coordinator) in
    /// Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(
        &self,
        model: Option<&ModelGauges>,
        answers: Option<&AnswerCacheStats>,
    ) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP kindred_requests_total Answers by route and status class.\n");
        out.push_str("# TYPE kindred_requests_total counter\n");
        for (route, stats) in ROUTES.iter().zip(&self.routes) {
            for (class, n) in CLASSES.iter().zip(&stats.classes) {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "kindred_requests_total{{route=\"{route}\",status=\"{class}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP kindred_request_duration_seconds Time from request to answer, by route.\n",
        );
        out.push_str("# TYPE kindred_request_duration_seconds histogram\n");
        for (route, stats) in ROUTES.iter().zip(&self.routes) {
            let mut cumulative = 0;
            for (i, n) in stats.buckets.iter().enumerate() {
                cumulative += n.load(Ordering::Relaxed);
                let le = BUCKETS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "kindred_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let seconds = stats.micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "kindred_request_duration_seconds_sum{{route=\"{route}\"}} {seconds}"
            );
            let _ = writeln!(
                out,
                "kindred_request_duration_seconds_count{{route=\"{route}\"}} {cumulative}"
            );
        }
        let gauge = |out: &mut String, name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{value}\n"
            );
        };
        if let Some(a) = answers {
            let series = [
                (
                    "kindred_answer_cache_hits_total",
                    "counter",
                    a.hits,
                    "Answers served from the answer cache.",
                ),
                (
                    "kindred_answer_cache_misses_total",
                    "counter",
                    a.misses,
                    "Cacheable questions not in the answer cache (answered, or an error).",
                ),
                (
                    "kindred_answer_cache_bytes",
                    "gauge",
                    a.bytes,
                    "Bytes the answer cache holds.",
                ),
                (
                    "kindred_answer_cache_budget_bytes",
                    "gauge",
                    a.budget,
                    "The answer cache's budget (0: off).",
                ),
            ];
            for (name, kind, n, help) in series {
                gauge(&mut out, name, kind, help, format!(" {n}"));
            }
        }
        let Some(model) = model else {
            return out;
        };
        if let Some(version) = &model.version {
            gauge(
                &mut out,
                "kindred_model_info",
                "gauge",
                "The model version serving.",
                format!("{{version=\"{version}\"}} 1"),
            );
        }
        gauge(
            &mut out,
            "kindred_model_users",
            "gauge",
            "Users in the loaded model.",
            format!(" {}", model.users),
        );
        let _ = write!(
            out,
            "# HELP kindred_model_state The model cache's state (1 for the current one).\n# TYPE kindred_model_state gauge\n"
        );
        for state in ["not_loaded", "loaded", "unavailable"] {
            let _ = writeln!(
                out,
                "kindred_model_state{{state=\"{state}\"}} {}",
                u8::from(state == model.state)
            );
        }
        gauge(
            &mut out,
            "kindred_model_loads_total",
            "counter",
            "Model versions loaded since start.",
            format!(" {}", model.loads),
        );
        gauge(
            &mut out,
            "kindred_model_refusals_total",
            "counter",
            "Model versions refused since start.",
            format!(" {}", model.refusals),
        );
        if let Some(load) = model.last_load {
            gauge(
                &mut out,
                "kindred_model_load_seconds",
                "gauge",
                "How long the last model load took.",
                format!(" {}", load.as_secs_f64()),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(loads: u64) -> ModelGauges {
        ModelGauges {
            version: Some("v1".into()),
            users: 10,
            state: "loaded",
            loads,
            refusals: 0,
            last_load: Some(Duration::from_millis(35)),
        }
    }

    #[test]
    fn counts_become_prometheus_series_with_cumulative_buckets() {
        let m = Metrics::new(false);
        m.count(route_of("/predict"), 200, Duration::from_micros(100));
        m.count(route_of("/predict"), 200, Duration::from_millis(3));
        m.count(route_of("/predict"), 400, Duration::from_micros(50));
        m.count(route_of("/nope"), 404, Duration::from_micros(10));
        let answers = AnswerCacheStats {
            hits: 7,
            misses: 3,
            bytes: 4096,
            budget: 1 << 20,
        };
        let text = m.prometheus(Some(&model(1)), Some(&answers));
        for line in [
            "kindred_requests_total{route=\"/predict\",status=\"2xx\"} 2",
            "kindred_requests_total{route=\"/predict\",status=\"4xx\"} 1",
            "kindred_requests_total{route=\"other\",status=\"4xx\"} 1",
            "kindred_request_duration_seconds_bucket{route=\"/predict\",le=\"0.00025\"} 2",
            "kindred_request_duration_seconds_bucket{route=\"/predict\",le=\"0.0025\"} 2",
            "kindred_request_duration_seconds_bucket{route=\"/predict\",le=\"0.005\"} 3",
            "kindred_request_duration_seconds_bucket{route=\"/predict\",le=\"+Inf\"} 3",
            "kindred_request_duration_seconds_count{route=\"/predict\"} 3",
            "kindred_model_info{version=\"v1\"} 1",
            "kindred_model_state{state=\"loaded\"} 1",
            "kindred_model_state{state=\"not_loaded\"} 0",
            "kindred_model_load_seconds 0.035",
            "kindred_answer_cache_hits_total 7",
            "kindred_answer_cache_misses_total 3",
            "kindred_answer_cache_bytes 4096",
            "kindred_answer_cache_budget_bytes 1048576",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Every sample line is `name{labels} number` or `name number`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit_once(' ').unwrap().1;
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn an_emf_line_declares_only_members_it_carries_and_reports_a_load_once() {
        let m = Metrics::new(true);
        let line = |route: &str, status, ms, cached, now| -> serde_json::Value {
            let took = Duration::from_millis(ms);
            let text = m.emf_line(route_of(route), status, took, Some(&model(1)), cached, now);
            serde_json::from_str(&text).unwrap()
        };
        let first = line("/predict", 503, 2, None, 7);
        let second = line("/predict", 200, 1, Some(CacheOutcome::Hit), 8);
        let third = line("/recommend", 404, 1, Some(CacheOutcome::Miss), 9);
        for doc in [&first, &second, &third] {
            let directives = doc["_aws"]["CloudWatchMetrics"].as_array().unwrap();
            for d in directives {
                assert_eq!(d["Namespace"], NAMESPACE);
                for set in d["Dimensions"].as_array().unwrap() {
                    for dim in set.as_array().unwrap() {
                        assert!(doc[dim.as_str().unwrap()].is_string(), "{dim} in {doc}");
                    }
                }
                for metric in d["Metrics"].as_array().unwrap() {
                    assert!(
                        doc[metric["Name"].as_str().unwrap()].is_number(),
                        "{metric} in {doc}"
                    );
                }
            }
        }
        assert_eq!(first["StatusClass"], "5xx");
        assert_eq!(first["ModelLoadTime"], 35.0);
        assert!(second.get("ModelLoadTime").is_none(), "{second}");
        assert_eq!(second["_aws"]["Timestamp"], 8);
        // A cacheable question counts one hit or one miss; others carry neither.
        assert!(first.get("AnswerCacheHits").is_none(), "{first}");
        assert_eq!(
            (&second["AnswerCacheHits"], &second["AnswerCacheMisses"]),
            (&json!(1), &json!(0))
        );
        assert_eq!(
            (&third["AnswerCacheHits"], &third["AnswerCacheMisses"]),
            (&json!(0), &json!(1))
        );
    }
}
