//! Queries over a loaded model: the users nearest to one, and why two users are similar.

use std::cmp::Ordering;

use crate::embedding::Embedding;
use crate::model::Model;
use crate::projection::Smoothing;
use crate::search::Neighbour;
use crate::shard::Shards;
use crate::users::{Feature, Signal};

/// One shared feature's part in the similarity of two users.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contribution {
    /// The block.
    pub signal: Signal,
    /// Tag id.
    pub tag: u32,
    /// The product of the two users' weights: the term this feature adds to the dot product
    /// of their unit-length training rows.
    pub weight: f32,
}

/// Why two users are similar: their shared features (both sorted by signal and tag, as
/// stored), ranked by contribution, the `n` largest positive ones.
pub fn explain(a: &[Feature], b: &[Feature], n: usize) -> Vec<Contribution> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match (a[i].signal, a[i].tag).cmp(&(b[j].signal, b[j].tag)) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                let weight = a[i].weight * b[j].weight;
                if weight > 0.0 {
                    out.push(Contribution {
                        signal: a[i].signal,
                        tag: u32::from(a[i].tag),
                        weight,
                    });
                }
                i += 1;
                j += 1;
            }
        }
    }
    out.sort_by(|x, y| {
        y.weight
            .total_cmp(&x.weight)
            .then((x.signal, x.tag).cmp(&(y.signal, y.tag)))
    });
    out.truncate(n);
    out
}

/// The `k` users most similar to the user at `row` (never the user themself): an exact
/// scan for small models, the HNSW indexes otherwise, merged over the shards held.
pub fn similar_users(model: &Model, row: u32, k: usize) -> Vec<Neighbour> {
    nearest(model, &model.embedding(row), k, Some(row))
}

/// The `k` users most similar to `query`, leaving out `exclude`: an exact scan for small
/// models, the HNSW indexes otherwise, merged over the shards held.
pub fn nearest(model: &Model, query: &[f32], k: usize, exclude: Option<u32>) -> Vec<Neighbour> {
    model.shards.nearest(query, k, exclude)
}

/// The smoothing a folded-in embedding gets, as the model's users got it (`None` when
/// the model has no projection or training did not smooth).
pub fn smoothing(model: &Model) -> Option<Smoothing> {
    model
        .projection()
        .map(|p| p.smoothing)
        .filter(Smoothing::moves)
}

/// A folded-in embedding smoothed as training smoothed its users: one step towards the
/// mean of its nearest users (never `exclude`), when the model's projection asks for it.
/// Profiles and `kindred-batch update` both fold in through here.
pub fn smoothed(model: &Model, folded: Embedding, exclude: Option<u32>) -> Embedding {
    match smoothing(model) {
        Some(s) => smoothed_among(&model.shards, s, folded, exclude),
        None => folded,
    }
}

/// [`smoothed`] over `shards` with `smoothing`: one step towards the mean of the
/// `smoothing.neighbours` rows nearest `folded` (never `exclude`), as served. The
/// training run's hold-out measure folds its users in through here too.
pub fn smoothed_among(
    shards: &Shards,
    smoothing: Smoothing,
    folded: Embedding,
    exclude: Option<u32>,
) -> Embedding {
    if !smoothing.moves() {
        return folded;
    }
    let near = shards.nearest(&folded.0, smoothing.neighbours as usize, exclude);
    smoothed_towards(shards, smoothing, &folded, &near)
}

/// [`smoothed_among`]'s step once `folded`'s nearest rows of `shards` (`near`) are
/// found: towards their mean with `smoothing`'s weight. For a caller that searches many
/// folded embeddings at once.
pub fn smoothed_towards(
    shards: &Shards,
    smoothing: Smoothing,
    folded: &Embedding,
    near: &[Neighbour],
) -> Embedding {
    let points: Vec<_> = near.iter().map(|n| shards.embedding(n.row)).collect();
    let points: Vec<&[f32]> = points.iter().map(|p| &**p).collect();
    crate::projection::smooth_towards(folded, &points, smoothing.weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(signal: Signal, tag: u16, weight: f32) -> Feature {
        Feature {
            signal,
            tag,
            weight,
        }
    }

    #[test]
    fn explanations_are_the_shared_features_ranked_by_their_product() {
        // Given two users sharing views of tags 1 and 3 and an interest in tag 1, where a
        // shared view tag in one user's views is only an interest of the other,
        let a = [
            f(Signal::Views, 1, 0.6),
            f(Signal::Views, 3, 0.3),
            f(Signal::Views, 7, 0.5),
            f(Signal::Interests, 1, 0.5),
        ];
        let b = [
            f(Signal::Views, 1, 0.2),
            f(Signal::Views, 3, 0.8),
            f(Signal::Interests, 1, 0.4),
            f(Signal::Interests, 7, 0.4),
        ];
        // when the two are explained,
        let got = explain(&a, &b, 10);
        // then the terms are the shared (signal, tag) pairs only, largest first,
        let terms: Vec<(Signal, u32)> = got.iter().map(|c| (c.signal, c.tag)).collect();
        assert_eq!(
            terms,
            [
                (Signal::Views, 3),
                (Signal::Interests, 1),
                (Signal::Views, 1)
            ]
        );
        // each weighing the product of the two weights, summing to the rows' dot product,
        assert!((got[0].weight - 0.24).abs() < 1e-6);
        let dot: f32 = got.iter().map(|c| c.weight).sum();
        assert!((dot - (0.12 + 0.24 + 0.2)).abs() < 1e-6);
        // and the list is cut at n, the same either way round.
        assert_eq!(explain(&a, &b, 2), got[..2]);
        assert_eq!(explain(&b, &a, 10), got);
        assert!(explain(&a, &[], 5).is_empty());
    }
}
