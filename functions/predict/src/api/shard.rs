//! `POST /shard/search`: what a process serving some shards answers a scatter-gather
//! coordinator ([`crate::scatter`]).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kindred_core::Model;
use kindred_core::store::ObjectStore;
use kindred_core::users::Feature;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::answer::{
    PredictResponse, Reason, SimilarUser, answer_handle, fold_profile, matched_features,
    neighbours, similar_users,
};
use super::error::{ApiError, model_unavailable, too_large, unprocessable};
use super::request::{
    Filters, Handle, MAX_BODY_BYTES, ProfileRequest, Whole, check_work, integer, present,
    validate_filters, validate_k, validate_profile,
};
use super::routes::read_body;
use super::settings::{Disclosure, Settings};
use crate::cache::ModelCache;

/// Body of `POST /shard/search`, the call a scatter-gather coordinator makes to a
/// process serving some shards ([`crate::scatter`]): either a handle, answered by the
/// process holding the user's shard together with the user's embedding and features, or
/// that embedding and those features, answered with the top k of the shards held.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSearch {
    /// Round 1: the user to look up.
    #[serde(default, deserialize_with = "present")]
    pub user_handle: Option<Handle>,
    /// Profile round 1: a cold-start profile to fold; the answer carries the folded
    /// embedding and the shards' nearest users for its smoothing.
    #[serde(default, deserialize_with = "present")]
    pub profile: Option<ProfileRequest>,
    /// Round 2: the query user's embedding, as the bit patterns of its `f32` components
    /// (exact: a decimal round trip can move the last bit and reorder near ties).
    #[serde(default, deserialize_with = "present")]
    pub vector: Option<Vec<Bits>>,
    /// Round 2: the query user's strongest features (for `because`).
    #[serde(default, deserialize_with = "present")]
    pub features: Option<Vec<WireFeature>>,
    /// Round 2: the model version the embedding comes from; another one is refused (409).
    #[serde(default, deserialize_with = "present")]
    pub model_version: Option<String>,
    /// Round 2: the query user, never returned.
    #[serde(default, deserialize_with = "present")]
    pub exclude_handle: Option<Handle>,
    /// Neighbours wanted (1 to 100, default 10).
    #[serde(default, deserialize_with = "integer")]
    pub k: Option<i64>,
    /// Handles never to return.
    #[serde(default)]
    pub exclude: Option<Vec<Handle>>,
    /// Smallest similarity returned.
    #[serde(default)]
    pub min_similarity: Option<f64>,
    /// How much the coordinator's answers may reveal; the shard answers with the lesser
    /// of this and its own setting (default: its own).
    #[serde(default, deserialize_with = "present")]
    pub disclosure: Option<Disclosure>,
}

/// A 32-bit pattern or tag id: an integer from 0 to 2^32 - 1, written `7` or `7.0` (JSON
/// Schema counts both as integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bits(pub u32);

impl<'de> Deserialize<'de> for Bits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Whole::deserialize(d)?
            .value()
            .and_then(|v| u32::try_from(v).ok())
            .map(Bits)
            .ok_or_else(|| serde::de::Error::custom("not an integer from 0 to 4294967295"))
    }
}

/// A feature as a coordinator sends it (the query user's, for `because`).
#[derive(Debug, Deserialize)]
pub struct WireFeature {
    /// The block.
    pub signal: kindred_core::users::Signal,
    /// Tag id.
    pub tag: Bits,
    /// Weight in the user's unit-length row (one that is not finite as an `f32` is
    /// dropped).
    pub weight: f64,
}

pub(super) async fn shard_search<S: ObjectStore + 'static>(
    State(cache): State<Arc<ModelCache<S>>>,
    Extension(settings): Extension<Arc<Settings>>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (_, body) = read_body(req).await?;
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
    answer_shard_search(&model, req, settings.disclosure)
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

/// Answers a [`ShardSearch`] from the shards `model` holds, revealing at most `disclosure`
/// (less if the coordinator asks for less).
pub fn answer_shard_search(
    model: &Model,
    req: ShardSearch,
    disclosure: Disclosure,
) -> Result<Response, ApiError> {
    let disclosure = req.disclosure.map_or(disclosure, |d| d.min(disclosure));
    let k = validate_k(req.k)?;
    let mut filters = validate_filters(req.exclude, req.min_similarity)?;
    check_work(1, k, filters.exclude.len())?;
    let served = model.shards_held();
    match (req.user_handle, req.vector, req.profile) {
        (None, None, Some(p)) => {
            let profile = validate_profile(p)?;
            let folded = fold_profile(model, &profile)?;
            let smoothing = kindred_core::query::smoothing(model);
            let near = match smoothing {
                Some(s) => neighbours(
                    model,
                    &folded.embedding.0,
                    None,
                    s.neighbours as usize,
                    &Filters::default(),
                )
                .into_iter()
                .map(|n| {
                    let e = model.embedding(n.row);
                    let handle = model.users.users.handle(n.row);
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
            let answer = answer_handle(model, h.0, k, &filters, disclosure)?;
            let row = model.row_of(h.0).expect("answered users are held");
            let query = ShardQuery {
                vector: model.embedding(row).iter().map(|x| x.to_bits()).collect(),
                features: model.users.users.get(row).features,
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
            let vector: Vec<f32> = bits.into_iter().map(|b| f32::from_bits(b.0)).collect();
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
            let mut features: Vec<Feature> = req
                .features
                .unwrap_or_default()
                .into_iter()
                .filter(|f| (f.tag.0 as usize) < model.users.tags.len())
                .map(|f| Feature {
                    signal: f.signal,
                    // Below the vocabulary's size, which is at most `MAX_TAGS`.
                    tag: f.tag.0 as u16,
                    weight: f.weight as f32,
                })
                .collect();
            features.retain(|f| f.weight.is_finite());
            features.sort_by_key(|f| (f.signal, f.tag));
            features.dedup_by(|a, b| (a.signal, a.tag) == (b.signal, b.tag));
            filters.exclude.extend(req.exclude_handle.map(|h| h.0));
            // As sent: the owner's unit embedding, bit for bit.
            let found = neighbours(model, &vector, None, k as usize, &filters);
            Ok(axum::Json(ShardAnswer {
                model_version: &model.manifest.version,
                shards: served,
                shard_count: model.manifest.shard_count(),
                similar_users: similar_users(model, found, &features, disclosure),
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
