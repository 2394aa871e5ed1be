//! What shapes a model: the training configuration, its method presets and defaults.

use std::path::PathBuf;

use kindred_core::manifest::HnswParams;
use serde::{Deserialize, Serialize};

use crate::matrix::{BlockWeighting, Transform};

/// Names of the matrix blocks, by block index.
pub const BLOCK_NAMES: [&str; 4] = ["views", "interests", "assessments", "courses"];

/// A preset of the whole weighting, for side-by-side comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Kindred's default: the baseline with recency weighting (see
    /// [`TrainConfig::half_life_days`]), interests weighted twice, assessments at half
    /// weight (so users with only assessments get neighbours too) and each embedding
    /// smoothed, at weight 2, towards the mean of its nearest neighbours: 2% of the users,
    /// at most 200 (see [`crate::smooth`]).
    Kindred,
    /// The strongest classical baseline we built: tf-idf weighted views (log seconds) and
    /// interests, each block normalised per user with equal weights, truncated SVD, cosine
    /// on U Σ. (Adding assessments lowered its scores on every data set measured.)
    Baseline,
    /// The replaced Python service: mean view seconds per tag (views only), row-mean
    /// centring, rank 50, cosine on U.
    Seed,
}

/// Everything that shapes a model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The preset this configuration started from.
    pub method: Method,
    /// Folder holding the CSVs.
    pub data: PathBuf,
    /// SVD rank (embedding dimension).
    pub rank: usize,
    /// Embeddings are `U Σ^power`.
    pub power: f64,
    /// Weighting of the views block (average seconds per tag).
    pub views: BlockWeighting,
    /// Weighting of the interests block.
    pub interests: BlockWeighting,
    /// Weighting of the assessments block.
    pub assessments: BlockWeighting,
    /// Weighting of the courses block (log total seconds per user and course).
    pub courses: BlockWeighting,
    /// Subtract each row's mean before the SVD (the seed's demeaning).
    pub centre_rows: bool,
    /// Most neighbours averaged into each embedding by [`crate::smooth`] (0: no
    /// smoothing).
    pub smooth_neighbours: usize,
    /// Share of the users smoothed together (all, or a random group at scale) whose mean
    /// is averaged into each embedding, up to [`TrainConfig::smooth_neighbours`] (see
    /// [`crate::smooth::neighbours_for`]).
    #[serde(default = "default_smooth_share")]
    pub smooth_share: f32,
    /// Weight of the neighbours' mean in the smoothing.
    pub smooth_weight: f32,
    /// HNSW parameters. Their `ef_construction` is the one of small shards; an index is
    /// built with [`TrainConfig::hnsw_for`].
    pub hnsw: HnswParams,
    /// efConstruction chosen explicitly, for every shard size; `None`: `hnsw`'s below
    /// [`LARGE_SHARD_USERS`] users per shard, [`LARGE_EF_CONSTRUCTION`] from there.
    #[serde(default)]
    pub ef_construction: Option<usize>,
    /// Number of index shards; `None` derives it from [`TrainConfig::shard_users`].
    pub shards: Option<u32>,
    /// Target users per shard when the shard count is derived.
    pub shard_users: usize,
    /// Users sampled to measure recall@10.
    pub recall_sample: usize,
    /// Worker threads.
    pub threads: usize,
    /// Course tags kept per user summary.
    pub summary_tags: usize,
    /// Interests kept per user summary.
    pub summary_interests: usize,
    /// Strongest features kept per user, for the function's explanations (`because`).
    pub explain_features: usize,
    /// When to measure hold-out recall.
    pub evaluate: Evaluate,
    /// Users sampled for the cohort precision and hold-out measures.
    pub eval_sample: usize,
    /// Recency: how much older views, interests and assessments weigh falls from 1
    /// towards [`TrainConfig::recency_floor`], halving the distance every this many days
    /// before the newest event in the data (never the wall clock); `None`: all alike.
    #[serde(default)]
    pub half_life_days: Option<f32>,
    /// The least an old event weighs under recency (0 to 1).
    #[serde(default)]
    pub recency_floor: f32,
}

/// Kindred's recency half-life, chosen by measurement (see docs/quality.md#recency).
pub const DEFAULT_HALF_LIFE_DAYS: f32 = 90.0;
/// Kindred's recency floor, chosen with the half-life.
pub const DEFAULT_RECENCY_FLOOR: f32 = 0.4;

fn default_smooth_share() -> f32 {
    crate::smooth::DEFAULT_SHARE
}

/// Default target of users per index shard: a 250k-user shard builds in about a minute
/// and a half here and loads in well under a second (see docs/scaling.md).
pub const DEFAULT_SHARD_USERS: usize = 250_000;

impl TrainConfig {
    /// Shards for a model of `users` users: [`TrainConfig::shards`] if set, else enough
    /// shards of at most [`TrainConfig::shard_users`] users (at least 1).
    pub fn shard_count(&self, users: usize) -> u32 {
        let derived = users.div_ceil(self.shard_users.max(1)).max(1);
        self.shards
            .unwrap_or(derived.min(u32::MAX as usize) as u32)
            .max(1)
    }

    /// HNSW parameters for a model of `users` users: [`TrainConfig::hnsw`] with the
    /// efConstruction given explicitly, or else chosen by the size of the largest shard
    /// (each shard is its own graph): [`LARGE_EF_CONSTRUCTION`] from
    /// [`LARGE_SHARD_USERS`] users per shard.
    pub fn hnsw_for(&self, users: usize) -> HnswParams {
        let largest_shard = users.div_ceil(self.shard_count(users) as usize);
        let mut params = self.hnsw.clone();
        params.ef_construction =
            self.ef_construction
                .unwrap_or(if largest_shard >= LARGE_SHARD_USERS {
                    LARGE_EF_CONSTRUCTION
                } else {
                    self.hnsw.ef_construction
                });
        params
    }
}

/// Users per shard from which the HNSW build's default efConstruction is
/// [`LARGE_EF_CONSTRUCTION`].
pub const LARGE_SHARD_USERS: usize = 200_000;
/// efConstruction of large shards by default. With shards of 200k and 250k users it kept
/// recall@10 at 0.994 and cohort precision within 0.001 of 64's, building in 0.61-0.65
/// of the time; at 100k users per shard recall@10 fell to 0.989 and at 10k to 0.988, so
/// smaller shards keep 64 (docs/performance.md).
pub const LARGE_EF_CONSTRUCTION: usize = 48;

/// Share of a hold-out user's tags hidden.
pub const HOLDOUT_SHARE: f64 = 0.2;
/// Most users (with any view, interest or assessment) in the data for which `--evaluate
/// auto` measures hold-out recall; up to it `--evaluate refit` runs its second fit beside
/// the first.
pub const AUTO_HOLDOUT_MAX_USERS: usize = 200_000;

/// Whether and how the training run measures hold-out recall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Evaluate {
    /// Folding the hold-out users in, up to 200,000 users in the data.
    Auto,
    /// Folding the hold-out users in, at any size.
    Always,
    /// A second fit without the hidden tags (matrix, SVD, smoothing), at any size.
    Refit,
    /// Never.
    Never,
}

/// The default configuration (as documented in docs/configuration.md) for a data folder.
pub fn default_config(data: PathBuf) -> TrainConfig {
    config_for(Method::Kindred, data)
}

/// The configuration of a method preset for a data folder.
pub fn config_for(method: Method, data: PathBuf) -> TrainConfig {
    let tfidf = |transform, weight| BlockWeighting {
        transform,
        idf: true,
        normalise: true,
        weight,
    };
    let mut cfg = TrainConfig {
        method,
        data,
        rank: 64,
        power: 1.0,
        views: tfidf(Transform::Log1p, 1.0),
        interests: tfidf(Transform::Binary, 2.0),
        assessments: tfidf(Transform::Raw, 0.5),
        courses: tfidf(Transform::Log1p, 0.0),
        centre_rows: false,
        smooth_neighbours: 200,
        smooth_share: crate::smooth::DEFAULT_SHARE,
        smooth_weight: 2.0,
        hnsw: HnswParams {
            ef_construction: 64,
            ef_search: 64,
            heuristic: true,
            seed: 42,
        },
        ef_construction: None,
        shards: None,
        shard_users: DEFAULT_SHARD_USERS,
        recall_sample: 1000,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        summary_tags: 5,
        summary_interests: 20,
        explain_features: 16,
        evaluate: Evaluate::Auto,
        eval_sample: 1000,
        half_life_days: Some(DEFAULT_HALF_LIFE_DAYS),
        recency_floor: DEFAULT_RECENCY_FLOOR,
    };
    match method {
        Method::Kindred => {}
        Method::Baseline => {
            cfg.half_life_days = None;
            cfg.interests.weight = 1.0;
            cfg.assessments.weight = 0.0;
            cfg.smooth_neighbours = 0;
        }
        Method::Seed => {
            cfg.views = BlockWeighting {
                transform: Transform::Raw,
                idf: false,
                normalise: false,
                weight: 1.0,
            };
            cfg.interests.weight = 0.0;
            cfg.assessments.weight = 0.0;
            cfg.courses.weight = 0.0;
            cfg.half_life_days = None;
            cfg.centre_rows = true;
            cfg.smooth_neighbours = 0;
            cfg.rank = 50;
            cfg.power = 0.0;
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_models_build_with_the_smaller_ef_construction_unless_one_was_chosen() {
        let mut cfg = default_config(PathBuf::from("data"));
        assert_eq!(cfg.hnsw_for(10_000).ef_construction, 64);
        assert_eq!(cfg.hnsw_for(LARGE_SHARD_USERS - 1).ef_construction, 64);
        assert_eq!(
            cfg.hnsw_for(LARGE_SHARD_USERS).ef_construction,
            LARGE_EF_CONSTRUCTION
        );
        assert_eq!(
            cfg.hnsw_for(1_000_000).ef_construction,
            LARGE_EF_CONSTRUCTION
        );
        // A value given explicitly holds at every size, above or below the rule's.
        for ef in [32, 100] {
            cfg.ef_construction = Some(ef);
            assert_eq!(cfg.hnsw_for(1_000_000).ef_construction, ef);
            assert_eq!(cfg.hnsw_for(10_000).ef_construction, ef);
        }
        // The rule counts users per shard: 1M users in shards of 10k build with 64.
        cfg.ef_construction = None;
        cfg.shard_users = 10_000;
        assert_eq!(cfg.hnsw_for(1_000_000).ef_construction, 64);
        // Everything else is the configured parameters.
        assert_eq!(cfg.hnsw_for(1_000_000).ef_search, cfg.hnsw.ef_search);
    }
}
