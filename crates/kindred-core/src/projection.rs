//! Folding a new profile into the embedding space (cold-start queries).
//!
//! Training embeds a user's weighted row `a` as `a V Σ^(p-1)` (see the batch's `svd`
//! module). A profile that was not in the training data (tags watched with seconds,
//! interests, assessment scores) gets the same treatment: its values are weighted exactly
//! as a training row (transform, inverse document frequency, per-block normalisation,
//! block weight), multiplied by the stored basis `V Σ^(p-1)` and, when the model was
//! trained with neighbourhood smoothing, smoothed towards its nearest users.
//!
//! The projection is the optional artifact `projection.bin`; models without it answer
//! handle queries only.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::embedding::Embedding;
use crate::error::{Error, Result};
use crate::tags;
use crate::users::{Feature, Signal};

/// How a block's raw values become matrix values (as in training).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueTransform {
    /// The raw value.
    Raw,
    /// `ln(1 + value)` (negative values count as 0).
    Log1p,
    /// 1 for any present entry.
    Binary,
}

impl ValueTransform {
    /// Applies the transform.
    pub fn apply(self, v: f32) -> f32 {
        match self {
            ValueTransform::Raw => v,
            ValueTransform::Log1p => v.max(0.0).ln_1p(),
            ValueTransform::Binary => 1.0,
        }
    }
}

/// One block of the training matrix, as needed to weight and project a profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectedBlock {
    /// Which signal the block holds.
    pub signal: Signal,
    /// Value transform.
    pub transform: ValueTransform,
    /// Whether rows of the block were scaled to unit length.
    pub normalise: bool,
    /// Block weight after normalisation.
    pub weight: f32,
    /// Tag ids with a column in this block, increasing.
    pub tags: Vec<u32>,
    /// Inverse document frequency of each column (1 when the block has none).
    pub idf: Vec<f32>,
    /// Row-major `tags.len() x dimensions` rows of `V Σ^(p-1)` for this block's columns.
    pub basis: Vec<f32>,
}

/// Row-mean centring used in training (the seed's method).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Centring {
    /// Columns of the training matrix (the mean is over all of them).
    pub columns: u32,
    /// `1ᵀ V Σ^(p-1)`, one value per dimension.
    pub basis_column_sums: Vec<f32>,
}

/// The most neighbours a profile is smoothed with: a stored projection asking for more
/// is refused at load (each profile query searches that many users).
pub const MAX_SMOOTHING_NEIGHBOURS: u32 = 1024;

/// The smoothing applied to training embeddings, repeated for folded-in profiles: one
/// step towards the mean of the profile's `neighbours` nearest (smoothed) users.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Smoothing {
    /// Nearest users averaged in (0: none): the count each training embedding got (a
    /// share of the users smoothed together, capped; for a model smoothed in random
    /// groups, that of one group), at most the index's `ef_search` so that the profile's
    /// neighbours come from the index.
    pub neighbours: u32,
    /// Weight of their mean.
    pub weight: f32,
}

impl Smoothing {
    /// Whether the step moves an embedding at all: some neighbours, a weight not 0.
    pub fn moves(&self) -> bool {
        self.neighbours > 0 && self.weight != 0.0
    }
}

/// Everything needed to embed a profile like a training row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// Embedding dimensions.
    pub dimensions: u32,
    /// The blocks a profile can fill (views, interests, assessments).
    pub blocks: Vec<ProjectedBlock>,
    /// Row-mean centring, if training used it.
    pub centring: Option<Centring>,
    /// Neighbourhood smoothing of embeddings.
    pub smoothing: Smoothing,
}

/// How training weighed events by age (`kindred-batch train --half-life-days`): an
/// event's weight falls from 1 towards `floor`, halving the distance every
/// `half_life_days`. The one formula for training rows and folded profiles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recency {
    /// Days for the weight to lose half its distance to the floor (positive).
    pub half_life_days: f32,
    /// The least an old event weighs (0 to 1).
    pub floor: f32,
}

impl Recency {
    /// The weight of an event `age_days` old: `floor + (1 - floor) * 0.5^(age / half-life)`.
    pub fn factor(&self, age_days: f32) -> f32 {
        let halved = (-age_days.max(0.0) / self.half_life_days * std::f32::consts::LN_2).exp();
        self.floor + (1.0 - self.floor) * halved
    }
}

/// A cold-start profile: what a new user watched, follows and scored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// Average view seconds per course tag.
    pub views: Vec<(String, f32)>,
    /// Followed interest tags.
    pub interests: Vec<String>,
    /// Assessment scores per tag.
    pub assessments: Vec<(String, f32)>,
    /// Days since the learner last engaged with a tag (any of its entries above); with a
    /// model trained with recency, an older tag weighs less, as in training. Tags not
    /// listed count as new.
    pub ages: Vec<(String, f32)>,
}

/// A profile folded into the embedding space.
#[derive(Clone, Debug, PartialEq)]
pub struct Folded {
    /// Unit-length embedding before smoothing (zero when nothing was known).
    pub embedding: Embedding,
    /// The projection before normalising, `a V Σ^(p-1)`.
    pub projected: Vec<f32>,
    /// Squared norm of the weighted (and, with centring, centred) row `a`.
    pub row_norm_sq: f32,
    /// The profile's weighted row as explanation features (unit length, sorted).
    pub features: Vec<Feature>,
    /// Tags of the profile that the model does not know, as given.
    pub unknown_tags: Vec<String>,
}

impl Projection {
    /// Checks the projection against the model it belongs to (`tag_count` tags,
    /// `dimensions` dimensions).
    pub fn validate(&self, tag_count: usize, dimensions: usize) -> Result<()> {
        if self.dimensions as usize != dimensions {
            return Err(Error::InvalidVecDimension {
                expected: dimensions,
                received: self.dimensions as usize,
            });
        }
        let d = dimensions;
        for b in &self.blocks {
            let bad = b.idf.len() != b.tags.len()
                || b.basis.len() != b.tags.len() * d
                || !b.tags.windows(2).all(|w| w[0] < w[1])
                || b.tags.last().is_some_and(|&t| t as usize >= tag_count)
                || !b.weight.is_finite()
                || b.idf.iter().chain(&b.basis).any(|x| !x.is_finite());
            if bad {
                return Err(Error::Inconsistent(format!(
                    "projection block {:?} is malformed",
                    b.signal
                )));
            }
        }
        let s = &self.smoothing;
        if s.neighbours > MAX_SMOOTHING_NEIGHBOURS || !s.weight.is_finite() {
            return Err(Error::Inconsistent(format!(
                "projection smoothing of {} neighbours with weight {} is out of range (at most {MAX_SMOOTHING_NEIGHBOURS} neighbours, a finite weight)",
                s.neighbours, s.weight
            )));
        }
        if let Some(c) = &self.centring
            && (c.basis_column_sums.len() != d || c.columns == 0)
        {
            return Err(Error::Inconsistent(
                "projection centring is malformed".into(),
            ));
        }
        Ok(())
    }

    /// Weights a profile exactly as training weighted rows, and projects it. Tag names
    /// are matched by [`tags::key`] against `key_to_tag`.
    ///
    /// With `recency` (the model's), each entry is also weighed by the age the profile
    /// gives its tag.
    pub fn fold(
        &self,
        profile: &Profile,
        key_to_tag: &HashMap<String, u32>,
        recency: Option<Recency>,
    ) -> Folded {
        let age_of: HashMap<String, f32> = profile
            .ages
            .iter()
            .map(|(t, a)| (tags::key(t), *a))
            .collect();
        let given = profile
            .views
            .iter()
            .map(|(t, v)| (Signal::Views, t.as_str(), *v))
            .chain(
                profile
                    .interests
                    .iter()
                    .map(|t| (Signal::Interests, t.as_str(), 1.0)),
            )
            .chain(
                profile
                    .assessments
                    .iter()
                    .map(|(t, v)| (Signal::Assessments, t.as_str(), *v)),
            );
        let mut unknown: Vec<String> = Vec::new();
        let mut entries = Vec::new();
        for (signal, name, value) in given {
            // A signal the model was trained without is not looked at (nor reported).
            if !self.blocks.iter().any(|b| b.signal == signal) {
                continue;
            }
            let key = tags::key(name);
            let Some(&tag) = key_to_tag.get(&key) else {
                if !unknown.iter().any(|u| u == name) {
                    unknown.push(name.to_owned());
                }
                continue;
            };
            let factor = match (recency, age_of.get(&key)) {
                (Some(r), Some(&age)) => r.factor(age),
                _ => 1.0,
            };
            entries.push(Entry {
                signal,
                tag,
                value,
                factor,
            });
        }
        let mut folded = self.fold_entries(&entries);
        folded.unknown_tags = unknown;
        folded
    }

    /// Weights one row's raw entries exactly as training weighted its rows (transform,
    /// idf, recency factor, per-block normalisation, block weight), and projects it. An
    /// entry whose tag has no column in its block is ignored; of repeated entries, the
    /// last counts.
    pub fn fold_entries(&self, entries: &[Entry]) -> Folded {
        let d = self.dimensions as usize;
        let mut acc = vec![0.0f32; d];
        let mut row: Vec<(Signal, u32, f32)> = Vec::new();
        let mut row_sum = 0.0f32;
        for block in &self.blocks {
            // Column index and weighted value of each known tag (a repeat keeps the last).
            let mut cols: Vec<(usize, f32)> = Vec::new();
            for e in entries.iter().filter(|e| e.signal == block.signal) {
                let Ok(col) = block.tags.binary_search(&e.tag) else {
                    continue; // a known tag nobody in training had in this block
                };
                let v = block.transform.apply(e.value) * block.idf[col] * e.factor;
                match cols.iter_mut().find(|c| c.0 == col) {
                    Some(c) => c.1 = v,
                    None => cols.push((col, v)),
                }
            }
            let norm = if block.normalise {
                cols.iter().map(|c| c.1 * c.1).sum::<f32>().sqrt()
            } else {
                1.0
            };
            if norm == 0.0 || !norm.is_finite() {
                continue;
            }
            for (col, v) in cols {
                let v = v / norm * block.weight;
                if v == 0.0 || !v.is_finite() {
                    continue;
                }
                row_sum += v;
                for (a, b) in acc.iter_mut().zip(&block.basis[col * d..(col + 1) * d]) {
                    *a += v * b;
                }
                row.push((block.signal, block.tags[col], v));
            }
        }
        let mut norm_sq: f32 = row.iter().map(|r| r.2 * r.2).sum();
        let norm = norm_sq.sqrt();
        if let Some(c) = &self.centring {
            let mean = row_sum / c.columns as f32;
            for (a, s) in acc.iter_mut().zip(&c.basis_column_sums) {
                *a -= mean * s;
            }
            // The centred row's squared norm: |a|^2 - columns * mean^2.
            norm_sq = (norm_sq - c.columns as f32 * mean * mean).max(0.0);
        }
        let mut features: Vec<Feature> = row
            .into_iter()
            .map(|(signal, tag, v)| Feature {
                signal,
                // Below the vocabulary's size (`validate`), which is at most `MAX_TAGS`.
                tag: tag as u16,
                weight: if norm > 0.0 { v / norm } else { 0.0 },
            })
            .collect();
        features.sort_by_key(|f| (f.signal, f.tag));
        features.dedup_by_key(|f| (f.signal, f.tag));
        Folded {
            projected: acc.clone(),
            row_norm_sq: norm_sq,
            embedding: Embedding::normalized(acc),
            features,
            unknown_tags: Vec::new(),
        }
    }

    /// `σ_j^(p-1)` of each dimension: the norm of the basis's column `j` (`V` has unit
    /// columns), to take a projected row back to its coordinates in `V`.
    pub fn basis_scales(&self) -> Vec<f32> {
        let d = self.dimensions as usize;
        let mut sq = vec![0.0f64; d];
        for b in &self.blocks {
            for row in b.basis.chunks_exact(d.max(1)) {
                for (s, x) in sq.iter_mut().zip(row) {
                    *s += f64::from(*x) * f64::from(*x);
                }
            }
        }
        sq.into_iter().map(|s| s.sqrt() as f32).collect()
    }

    /// The squared norm of a folded row's part inside the basis's span, `|a V|^2`
    /// (`scales` from [`Projection::basis_scales`]): with [`Folded::row_norm_sq`], how
    /// much of a row the stored basis keeps, as the SVD's explained variance measures it
    /// over the training rows.
    pub fn kept_norm_sq(folded: &Folded, scales: &[f32]) -> f32 {
        folded
            .projected
            .iter()
            .zip(scales)
            .filter(|(_, s)| **s > 0.0)
            .map(|(a, s)| (a / s) * (a / s))
            .sum()
    }
}

/// One raw entry of a row to fold in: its block, tag, value as in the data (seconds,
/// 1 for an interest, a score) and recency factor (1 for none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    /// The block.
    pub signal: Signal,
    /// Tag id in the model's vocabulary.
    pub tag: u32,
    /// The raw value.
    pub value: f32,
    /// The recency factor.
    pub factor: f32,
}

/// Maps each tag's key to its id, for matching profile tags in any spelling.
pub fn key_index(tag_names: &[String]) -> HashMap<String, u32> {
    tag_names
        .iter()
        .enumerate()
        .map(|(id, name)| (tags::key(name), id as u32))
        .collect()
}

/// `normalise(e + weight * mean(neighbours))`: the smoothing step of training, for a
/// folded-in profile whose neighbours are already smoothed users.
pub fn smooth_towards(e: &Embedding, neighbours: &[&[f32]], weight: f32) -> Embedding {
    if neighbours.is_empty() || weight == 0.0 {
        return e.clone();
    }
    let w = weight / neighbours.len() as f32;
    let mut acc = e.0.clone();
    for n in neighbours {
        for (a, x) in acc.iter_mut().zip(n.iter()) {
            *a += w * x;
        }
    }
    Embedding::normalized(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn projection() -> Projection {
        // Two dimensions; views over tags 0 and 1, interests over tag 2.
        Projection {
            dimensions: 2,
            blocks: vec![
                ProjectedBlock {
                    signal: Signal::Views,
                    transform: ValueTransform::Log1p,
                    normalise: true,
                    weight: 1.0,
                    tags: vec![0, 1],
                    idf: vec![1.0, 2.0],
                    basis: vec![1.0, 0.0, 0.0, 1.0],
                },
                ProjectedBlock {
                    signal: Signal::Interests,
                    transform: ValueTransform::Binary,
                    normalise: true,
                    weight: 2.0,
                    tags: vec![2],
                    idf: vec![1.0],
                    basis: vec![1.0, 1.0],
                },
            ],
            centring: None,
            smoothing: Smoothing {
                neighbours: 0,
                weight: 0.0,
            },
        }
    }

    fn keys() -> HashMap<String, u32> {
        key_index(&["python".into(), "c#".into(), "nodejs".into(), "go".into()])
    }

    #[test]
    fn a_profile_is_weighted_like_a_training_row_and_projected() {
        // Given a view of tag 1 (spelled "csharp") for e - 1 seconds (log1p = 1),
        let p = Profile {
            views: vec![("CSharp".into(), std::f32::consts::E - 1.0)],
            ..Default::default()
        };
        // when folded,
        let f = projection().fold(&p, &keys(), None);
        // then the row is idf 2 normalised to 1 at column 1, so the embedding is (0, 1),
        assert!((f.embedding.0[0]).abs() < 1e-6 && (f.embedding.0[1] - 1.0).abs() < 1e-6);
        // and the one feature carries the whole (unit) row.
        assert_eq!(f.features.len(), 1);
        assert_eq!(
            (f.features[0].signal, f.features[0].tag),
            (Signal::Views, 1)
        );
        assert!((f.features[0].weight - 1.0).abs() < 1e-6);
        assert!(f.unknown_tags.is_empty());
    }

    #[test]
    fn interests_add_with_their_block_weight_and_unknown_tags_are_reported() {
        let p = Profile {
            views: vec![("python".into(), std::f32::consts::E - 1.0)],
            interests: vec!["Node-JS".into(), "cobol".into()],
            ..Default::default()
        };
        let f = projection().fold(&p, &keys(), None);
        // views (1, 0) + interests 2 * (1, 1) = (3, 2), normalised.
        let n = (9.0f32 + 4.0).sqrt();
        assert!((f.embedding.0[0] - 3.0 / n).abs() < 1e-5);
        assert!((f.embedding.0[1] - 2.0 / n).abs() < 1e-5);
        assert_eq!(f.unknown_tags, vec!["cobol".to_owned()]);
        // "go" is a known tag without a column: neither unknown nor used.
        let g = projection().fold(
            &Profile {
                interests: vec!["go".into()],
                ..Default::default()
            },
            &keys(),
            None,
        );
        assert!(g.features.is_empty() && g.unknown_tags.is_empty());
        assert!(g.embedding.0.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn an_older_tag_weighs_less_by_the_models_recency_as_in_training() {
        let r = Recency {
            half_life_days: 30.0,
            floor: 0.4,
        };
        assert_eq!(r.factor(0.0), 1.0);
        assert!((r.factor(30.0) - 0.7).abs() < 1e-6);
        assert!((r.factor(1e6) - 0.4).abs() < 1e-6);
        // Two viewed tags (log1p = 1; idf 1 and 2), c# last seen 30 days ago: it weighs
        // 0.7 of what it would,
        let e = std::f32::consts::E - 1.0;
        let p = Profile {
            views: vec![("python".into(), e), ("c#".into(), e)],
            ages: vec![("CSharp".into(), 30.0)],
            ..Default::default()
        };
        let weights = |recency| {
            let f = projection().fold(&p, &keys(), recency);
            (f.features[0].weight, f.features[1].weight)
        };
        let (python, csharp) = weights(Some(r));
        assert!((csharp / python - 2.0 * 0.7).abs() < 1e-5);
        // and a model without recency ignores the ages.
        let (python, csharp) = weights(None);
        assert!((csharp / python - 2.0).abs() < 1e-5);
    }

    #[test]
    fn malformed_projections_are_refused() {
        let mut p = projection();
        assert!(p.validate(4, 2).is_ok());
        assert!(p.validate(4, 3).is_err());
        assert!(
            p.validate(2, 2).is_err(),
            "tag 2 is out of range for 2 tags"
        );
        p.blocks[0].basis.pop();
        assert!(p.validate(4, 2).is_err());
        let mut q = projection();
        q.blocks[1].idf[0] = f32::NAN;
        assert!(q.validate(4, 2).is_err());
    }

    #[test]
    fn a_signal_the_model_was_trained_without_is_neither_used_nor_reported() {
        // The projection has no assessments block: an assessment's tag, known or not,
        // is not looked at.
        let p = Profile {
            views: vec![("python".into(), 10.0)],
            assessments: vec![("cobol".into(), 200.0), ("go".into(), 100.0)],
            ..Default::default()
        };
        let f = projection().fold(&p, &keys(), None);
        assert!(f.unknown_tags.is_empty(), "{:?}", f.unknown_tags);
        assert!(f.features.iter().all(|x| x.signal == Signal::Views));
    }

    #[test]
    fn smoothing_pulls_towards_the_neighbours_mean() {
        let e = Embedding(vec![1.0, 0.0]);
        let a = Embedding(vec![0.0, 1.0]);
        let s = smooth_towards(&e, &[&a.0, &a.0], 1.0);
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((s.0[0] - h).abs() < 1e-6 && (s.0[1] - h).abs() < 1e-6);
        assert_eq!(smooth_towards(&e, &[], 1.0), e);
    }
}
