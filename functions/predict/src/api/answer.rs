//! Answers built from a model: the in-process query path from a validated [`Query`] to
//! the JSON response.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kindred_core::Model;
use kindred_core::embedding::Embedding;
use kindred_core::projection::{self, Profile};
use kindred_core::query;
use kindred_core::search::Neighbour;
use kindred_core::users::{Feature, Signal};
use serde::Serialize;
use serde_json::json;

use super::error::{ApiError, unprocessable};
use super::request::{Filters, Query, Subject};
use super::settings::Disclosure;

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
    /// Assessment scores (only where the deployment discloses them, [`Disclosure::Full`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assessments: Option<Vec<Assessment<'a>>>,
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
    /// (empty for models published before explanations existed; absent where the
    /// deployment does not disclose reasons).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub because: Option<Vec<Reason<'a>>>,
    /// The user's summary (where the deployment discloses profiles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<UserView<'a>>,
}

/// Body of a successful `POST /predict`.
#[derive(Debug, Serialize, PartialEq)]
pub struct PredictResponse<'a> {
    /// The query user.
    pub user_handle: u64,
    /// Model version that answered.
    pub model_version: &'a str,
    /// The query user's summary (where the deployment discloses profiles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<UserView<'a>>,
    /// Similar users, most similar first; never the query user.
    pub similar_users: Vec<SimilarUser<'a>>,
}

/// What `disclosure` lets an answer show about the user in `row`.
pub(super) fn user_view(model: &Model, row: u32, disclosure: Disclosure) -> Option<UserView<'_>> {
    if !disclosure.profiles() {
        return None;
    }
    let u = model.users.users.get(row);
    Some(UserView {
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
        assessments: disclosure.scores().then(|| {
            u.assessments
                .iter()
                .map(|&(t, score)| Assessment {
                    tag: model.tag(t),
                    score,
                })
                .collect()
        }),
    })
}

fn because<'m>(model: &'m Model, features: &[Feature], b: u32) -> Vec<Reason<'m>> {
    query::explain(features, model.users.users.get(b).features, BECAUSE_MAX)
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
/// index returns too few.
pub fn neighbours(
    model: &Model,
    query: &[f32],
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
        n.similarity >= min && !filters.exclude.contains(&model.users.users.handle(n.row))
    });
    found.truncate(k);
    found
}

pub(super) fn similar_users<'m>(
    model: &'m Model,
    found: Vec<Neighbour>,
    features: &[Feature],
    disclosure: Disclosure,
) -> Vec<SimilarUser<'m>> {
    found
        .into_iter()
        .enumerate()
        .map(|(i, n)| SimilarUser {
            rank: i as u32 + 1,
            user_handle: model.users.users.handle(n.row),
            similarity: n.similarity.clamp(-1.0, 1.0),
            because: disclosure
                .reasons()
                .then(|| because(model, features, n.row)),
            summary: user_view(model, n.row, disclosure),
        })
        .collect()
}

pub(super) fn unknown_user(model: &Model, handle: u64) -> ApiError {
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
/// users most similar to `handle`, with everything the model knows about them
/// ([`Disclosure::Full`]). An unknown handle is a 404 error.
pub fn answer(model: &Model, handle: u64, k: u32) -> Result<PredictResponse<'_>, ApiError> {
    answer_handle(model, handle, k, &Filters::default(), Disclosure::Full)
}

/// [`answer`] with filters, showing what `disclosure` allows.
pub fn answer_handle<'m>(
    model: &'m Model,
    handle: u64,
    k: u32,
    filters: &Filters,
    disclosure: Disclosure,
) -> Result<PredictResponse<'m>, ApiError> {
    let row = model
        .row_of(handle)
        .ok_or_else(|| unknown_user(model, handle))?;
    let found = neighbours(model, &model.embedding(row), Some(row), k as usize, filters);
    Ok(PredictResponse {
        user_handle: handle,
        model_version: &model.manifest.version,
        summary: user_view(model, row, disclosure),
        similar_users: similar_users(
            model,
            found,
            model.users.users.get(row).features,
            disclosure,
        ),
    })
}

/// One answer of a batch request: the answer, or the error for that handle.
#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum BatchItem<T> {
    /// The handle's answer.
    Answer(T),
    /// Why the handle has no answer (an unknown user).
    Error {
        /// The handle asked for.
        user_handle: u64,
        /// Short error.
        error: &'static str,
    },
}

/// Body of a successful batch `POST /predict` (`T` a [`PredictResponse`]) or
/// `POST /recommend`.
#[derive(Debug, Serialize, PartialEq)]
pub struct BatchResponse<'a, T> {
    /// Model version that answered.
    pub model_version: &'a str,
    /// One item per requested handle, in request order.
    pub results: Vec<BatchItem<T>>,
}

/// Answers each handle of a batch with `one`; unknown handles get an error item, not a
/// failed batch.
pub fn batch<'m, T>(
    model: &'m Model,
    handles: &[u64],
    one: impl Fn(u64) -> Result<T, ApiError>,
) -> BatchResponse<'m, T> {
    BatchResponse {
        model_version: &model.manifest.version,
        results: handles
            .iter()
            .map(|&h| match one(h) {
                Ok(a) => BatchItem::Answer(a),
                Err(_) => BatchItem::Error {
                    user_handle: h,
                    error: "unknown user",
                },
            })
            .collect(),
    }
}

/// Answers each handle of a batch; unknown handles get an error item, not a failed batch.
pub fn answer_batch<'m>(
    model: &'m Model,
    handles: &[u64],
    k: u32,
    filters: &Filters,
    disclosure: Disclosure,
) -> BatchResponse<'m, PredictResponse<'m>> {
    batch(model, handles, |h| {
        answer_handle(model, h, k, filters, disclosure)
    })
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
    disclosure: Disclosure,
) -> Result<ProfileResponse<'m>, ApiError> {
    let (folded, embedding) = profile_embedding(model, profile)?;
    let found = neighbours(model, &embedding.0, None, k as usize, filters);
    let matched = matched_features(model, &folded);
    Ok(ProfileResponse {
        model_version: &model.manifest.version,
        matched,
        unknown_tags: folded.unknown_tags,
        similar_users: similar_users(model, found, &folded.features, disclosure),
    })
}

/// A profile folded into the embedding space and smoothed as training smoothed its users:
/// the profile's features and the embedding to search from.
pub(super) fn profile_embedding(
    model: &Model,
    profile: &Profile,
) -> Result<(projection::Folded, Embedding), ApiError> {
    let folded = fold_profile(model, profile)?;
    let embedding = query::smoothed(model, folded.embedding.clone(), None);
    Ok((folded, embedding))
}

/// Folds a profile, or says why it cannot be (no projection, no known tag).
pub(super) fn fold_profile(
    model: &Model,
    profile: &Profile,
) -> Result<projection::Folded, ApiError> {
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

/// The profile's known features, largest weight first.
pub(super) fn matched_features<'m>(
    model: &'m Model,
    folded: &projection::Folded,
) -> Vec<Reason<'m>> {
    let mut matched: Vec<Reason<'m>> = folded
        .features
        .iter()
        .map(|f| Reason {
            signal: f.signal,
            tag: model.tag(f.tag.into()),
            weight: f.weight,
        })
        .collect();
    matched.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    matched
}

/// Answers any validated query, showing what `disclosure` allows.
pub fn respond(model: &Model, q: &Query, disclosure: Disclosure) -> Result<Response, ApiError> {
    let (k, filters) = (q.k, &q.filters);
    Ok(match &q.subject {
        Subject::Handle(h) => {
            axum::Json(answer_handle(model, *h, k, filters, disclosure)?).into_response()
        }
        Subject::Handles(hs) => {
            axum::Json(answer_batch(model, hs, k, filters, disclosure)).into_response()
        }
        Subject::Profile(p) => {
            axum::Json(answer_profile(model, p, k, filters, disclosure)?).into_response()
        }
    })
}
