//! Merging shard answers: ranked lists into one, which shards answered, and the
//! partial-answer flag.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Missing;
use crate::api::{Disclosure, Query};

/// Which shards the endpoints that answered hold, against the model's shard count: a
/// shard no endpoint serves (a new shard after the batch split the users further, or a
/// gap in the `--shards` assignment) makes the answer partial, like a failed endpoint.
#[derive(Default)]
pub(super) struct Coverage {
    held: std::collections::BTreeSet<u64>,
    count: Option<u64>,
}

impl Coverage {
    pub(super) fn add(&mut self, shards: &Value, count: &Value) {
        self.held.extend(
            shards
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64),
        );
        self.count(count);
    }

    pub(super) fn count(&mut self, count: &Value) {
        if let Some(c) = count.as_u64() {
            self.count = Some(self.count.map_or(c, |k| k.max(c)));
        }
    }

    pub(super) fn gaps(&self) -> Option<Missing> {
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
pub(super) fn reason(status: StatusCode, v: &Value) -> String {
    if v.is_object() {
        format!("status {status}: {}", v["error"])
    } else {
        format!("status {status}: the answer is not a JSON object")
    }
}

/// `f32` components from a JSON array of their bit patterns (0 for anything else).
pub(super) fn bits_to_f32(v: &Value) -> Vec<f32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| f32::from_bits(x.as_u64().unwrap_or(0) as u32))
                .collect()
        })
        .unwrap_or_default()
}

/// The request's filters, and what the shards may reveal, as JSON fields.
pub(super) fn filters_json(q: &Query, disclosure: Disclosure) -> Value {
    let mut exclude: Vec<u64> = q.filters.exclude.iter().copied().collect();
    exclude.sort_unstable();
    let mut v = json!({"exclude": exclude, "disclosure": disclosure});
    if let Some(m) = q.filters.min_similarity {
        v["min_similarity"] = json!(m);
    }
    v
}

pub(super) fn merge_into(target: &mut Value, fields: &Value) {
    if let (Some(t), Some(f)) = (target.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            t.insert(k.clone(), v.clone());
        }
    }
}

pub(super) fn take_list(answer: &mut Value) -> Vec<Value> {
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
pub(super) fn flag(answer: &mut Value, missing: &[Missing]) {
    answer["partial"] = json!(!missing.is_empty());
    answer["shards_missing"] = missing
        .iter()
        .map(|m| json!({"endpoint": m.endpoint, "reason": m.reason}))
        .collect();
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
}
