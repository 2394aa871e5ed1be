//! `POST /recommend`: courses the learner has not viewed, from their nearest neighbours'
//! viewing, each with the tags it carries and why it is recommended.

use std::collections::HashSet;

use axum::response::{IntoResponse, Response};
use kindred_core::Model;
use kindred_core::courses::CourseTable;
use kindred_core::recommend::{self, RECOMMEND_NEIGHBOURS, Recommendation, Scoring, Voter};
use kindred_core::users::Feature;
use serde::Serialize;
use serde_json::json;

use super::answer::{
    BatchResponse, Reason, batch, matched_features, neighbours, profile_embedding, unknown_user,
};
use super::error::{ApiError, unprocessable};
use super::request::{Filters, Query, Subject};
use super::settings::Disclosure;

/// Similar learners named per recommended course, at most (where the deployment
/// discloses profiles).
pub const VOTERS_SHOWN: usize = 3;

/// A similar learner who viewed a recommended course.
#[derive(Debug, Serialize, PartialEq)]
pub struct CourseVoter {
    /// The learner's handle.
    pub user_handle: u64,
    /// Their similarity to the learner recommended for.
    pub similarity: f32,
}

/// Why a course is recommended.
#[derive(Debug, Serialize, PartialEq)]
pub struct CourseReason<'a> {
    /// How many of the similar learners asked viewed it.
    pub similar_learners: u32,
    /// The course's tags that the learner (or profile) also has among their strongest
    /// features.
    pub shared_tags: Vec<&'a str>,
    /// The similar learners whose viewing counts most (only where the deployment
    /// discloses profiles: it says what another learner watched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similar_users: Option<Vec<CourseVoter>>,
}

/// One recommended course.
#[derive(Debug, Serialize, PartialEq)]
pub struct CourseRecommendation<'a> {
    /// Rank, 1 for the strongest.
    pub rank: u32,
    /// The course id as in the data files.
    pub course_id: &'a str,
    /// The neighbours' summed votes; comparable within one answer only.
    pub score: f32,
    /// The course's tags.
    pub tags: Vec<&'a str>,
    /// Why (absent where the deployment does not disclose reasons).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub because: Option<CourseReason<'a>>,
}

/// Body of a successful `POST /recommend` for one user.
#[derive(Debug, Serialize, PartialEq)]
pub struct RecommendResponse<'a> {
    /// The learner.
    pub user_handle: u64,
    /// Model version that answered.
    pub model_version: &'a str,
    /// Similar learners whose courses were scored.
    pub neighbours: u32,
    /// Courses the learner has not viewed, strongest first.
    pub recommendations: Vec<CourseRecommendation<'a>>,
}

/// Body of a successful profile `POST /recommend`.
#[derive(Debug, Serialize, PartialEq)]
pub struct ProfileRecommendResponse<'a> {
    /// Model version that answered.
    pub model_version: &'a str,
    /// The profile's tags the model knows, with their weight, largest first.
    pub matched: Vec<Reason<'a>>,
    /// Tags of the profile that the model does not know (ignored), as given.
    pub unknown_tags: Vec<String>,
    /// Similar learners whose courses were scored.
    pub neighbours: u32,
    /// Courses, strongest first (none the request excluded).
    pub recommendations: Vec<CourseRecommendation<'a>>,
}

/// What a recommendation is computed from: the learner's embedding, features and viewed
/// courses (none for a profile), and the row to leave out of the neighbours.
struct Learner<'q> {
    embedding: &'q [f32],
    features: &'q [Feature],
    row: Option<u32>,
    handle: Option<u64>,
}

/// Answers any validated `/recommend` query, showing what `disclosure` allows.
pub fn respond_recommend(
    model: &Model,
    q: &Query,
    disclosure: Disclosure,
) -> Result<Response, ApiError> {
    let courses = course_table(model)?;
    let (k, filters) = (q.k, &q.filters);
    let ask = Recommender {
        model,
        courses,
        k,
        filters,
        disclosure,
    };
    Ok(match &q.subject {
        Subject::Handle(h) => axum::Json(ask.handle(*h)?).into_response(),
        Subject::Handles(hs) => axum::Json(batch(model, hs, |h| ask.handle(h))).into_response(),
        Subject::Profile(p) => {
            let (folded, embedding) = profile_embedding(model, p)?;
            let learner = Learner {
                embedding: &embedding.0,
                features: &folded.features,
                row: None,
                handle: None,
            };
            let (neighbours, recommendations) = ask.courses_for(&learner);
            axum::Json(ProfileRecommendResponse {
                model_version: &model.manifest.version,
                matched: matched_features(model, &folded),
                unknown_tags: folded.unknown_tags.clone(),
                neighbours,
                recommendations,
            })
            .into_response()
        }
    })
}

/// Batch answers of `/recommend`, one per handle (unknown ones as error items).
pub type RecommendBatch<'m> = BatchResponse<'m, RecommendResponse<'m>>;

/// The `k` courses recommended to a known learner; an unknown handle is a 404 error, a
/// model without a course table a 422.
pub fn recommend_handle<'m>(
    model: &'m Model,
    handle: u64,
    k: u32,
    filters: &Filters,
    disclosure: Disclosure,
) -> Result<RecommendResponse<'m>, ApiError> {
    let courses = course_table(model)?;
    Recommender {
        model,
        courses,
        k,
        filters,
        disclosure,
    }
    .handle(handle)
}

/// The version's course table, or the 422 that says it has none.
fn course_table(model: &Model) -> Result<&CourseTable, ApiError> {
    model.courses().ok_or_else(|| {
        unprocessable(
            "recommendations unsupported by this model version",
            json!({"model_version": model.manifest.version, "hint": "publish a model with a kindred-batch that writes courses.bin"}),
        )
    })
}

/// One `/recommend` request against a model with a course table.
struct Recommender<'m, 'r> {
    model: &'m Model,
    courses: &'m CourseTable,
    k: u32,
    filters: &'r Filters,
    disclosure: Disclosure,
}

impl<'m> Recommender<'m, '_> {
    /// The answer for a known learner; an unknown handle is a 404 error.
    fn handle(&self, handle: u64) -> Result<RecommendResponse<'m>, ApiError> {
        let model = self.model;
        let row = model
            .row_of(handle)
            .ok_or_else(|| unknown_user(model, handle))?;
        let embedding = model.embedding(row);
        let learner = Learner {
            embedding: &embedding,
            features: model.users.users.get(row).features,
            row: Some(row),
            handle: Some(handle),
        };
        let (neighbours, recommendations) = self.courses_for(&learner);
        Ok(RecommendResponse {
            user_handle: handle,
            model_version: &model.manifest.version,
            neighbours,
            recommendations,
        })
    }

    /// The learner's [`RECOMMEND_NEIGHBOURS`] neighbours (after the request's filters)
    /// and the `k` courses they recommend.
    fn courses_for(&self, learner: &Learner<'_>) -> (u32, Vec<CourseRecommendation<'m>>) {
        let (model, courses, filters, disclosure) =
            (self.model, self.courses, self.filters, self.disclosure);
        let k = self.k;
        let found = neighbours(
            model,
            learner.embedding,
            learner.row,
            RECOMMEND_NEIGHBOURS,
            filters,
        );
        let voters: Vec<Voter> = found
            .iter()
            .map(|n| Voter {
                handle: model.users.users.handle(n.row),
                similarity: n.similarity,
            })
            .collect();
        let seen = learner
            .handle
            .map_or_else(Vec::new, |h| courses.viewed_by(h));
        let exclude: HashSet<u32> = filters
            .exclude_courses
            .iter()
            .filter_map(|c| model.course_id(c))
            .collect();
        let shown = if disclosure.profiles() {
            VOTERS_SHOWN
        } else {
            0
        };
        let found = recommend::recommend(
            courses,
            &voters,
            &seen,
            &exclude,
            k as usize,
            shown,
            Scoring::default(),
        );
        let own: HashSet<u32> = learner.features.iter().map(|f| f.tag.into()).collect();
        let out = found
            .into_iter()
            .enumerate()
            .map(|(i, r)| course_answer(model, courses, i, r, &own, disclosure))
            .collect();
        (voters.len() as u32, out)
    }
}

fn course_answer<'m>(
    model: &'m Model,
    courses: &'m CourseTable,
    i: usize,
    r: Recommendation,
    own: &HashSet<u32>,
    disclosure: Disclosure,
) -> CourseRecommendation<'m> {
    let tags = &courses.tags[r.course as usize];
    CourseRecommendation {
        rank: i as u32 + 1,
        course_id: &courses.ids[r.course as usize],
        score: r.score,
        tags: tags.iter().map(|&t| model.tag(t)).collect(),
        because: disclosure.reasons().then(|| CourseReason {
            similar_learners: r.voters,
            shared_tags: tags
                .iter()
                .filter(|t| own.contains(t))
                .map(|&t| model.tag(t))
                .collect(),
            similar_users: disclosure.profiles().then(|| {
                r.top_voters
                    .iter()
                    .map(|v| CourseVoter {
                        user_handle: v.handle,
                        similarity: v.similarity.clamp(-1.0, 1.0),
                    })
                    .collect()
            }),
        }),
    }
}
