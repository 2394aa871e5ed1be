//! The HTTP API: routes, request validation and JSON responses.
//!
//! Every outcome is a JSON response with the right status: client mistakes are 4xx,
//! an unavailable model is 503 with `Retry-After`, and internal details go to the
//! logs, never into a response.
//!
//! * `routes`: the router, stage stripping and the handlers;
//! * `request`: request parsing and validation into a [`Query`];
//! * `answer`: answers built from a model (the in-process query path);
//! * `answers`: a bounded cache of encoded answers, by model version;
//! * `recommend`: `POST /recommend`, courses from similar learners;
//! * `error`: [`ApiError`], every failure as a JSON response;
//! * `explore`: the index, the OpenAPI document and the explorer page;
//! * `shard`: `POST /shard/search`, the call a scatter-gather coordinator makes;
//! * `settings`: what a deployment allows: disclosure, API keys, shard mode;
//! * `throttle`: a token bucket per caller.

mod answer;
mod answers;
mod error;
mod explore;
mod recommend;
mod request;
mod routes;
mod settings;
mod shard;
mod throttle;

pub use answer::{
    Assessment, BECAUSE_MAX, BatchItem, BatchResponse, PredictResponse, ProfileResponse, Reason,
    SimilarUser, TagTime, UserView, answer, answer_batch, answer_handle, answer_profile, batch,
    neighbours, respond,
};
pub use answers::{
    AnswerCache, AnswerCacheStats, AnswerKey, CacheOutcome, DEFAULT_ANSWER_CACHE_MB,
};
pub use error::{ApiError, RETRY_AFTER_SECONDS};
pub use explore::{EXPLORE_HTML, OPENAPI};
pub use recommend::{
    CourseReason, CourseRecommendation, CourseVoter, ProfileRecommendResponse, RecommendBatch,
    RecommendResponse, VOTERS_SHOWN, recommend_handle, respond_recommend,
};
pub use request::{
    Ask, DEFAULT_K, Filters, Handle, MAX_BATCH, MAX_BATCH_NEIGHBOURS, MAX_BODY_BYTES, MAX_EXCLUDE,
    MAX_EXCLUDE_COURSES, MAX_K, MAX_PROFILE_ENTRIES, MAX_TAG_CHARS, MAX_WORK, PredictRequest,
    ProfileRequest, Query, Subject, parse_for, parse_request,
};
pub use routes::{BasePath, catch_panics, router, router_with};
pub(crate) use routes::{guard, method_not_allowed, not_found, read_body, wrapped};
pub use settings::{ApiKeys, CallerRate, Disclosure, Settings};
pub use shard::{
    ShardAnswer, ShardFoldAnswer, ShardOwnerAnswer, ShardQuery, ShardSearch, answer_shard_search,
};
