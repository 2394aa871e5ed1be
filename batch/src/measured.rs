//! The sample of users a training run measures its model on, with their neighbours as the
//! model serves them, searched once: the index's recall, cohort precision and the
//! report's similarity histogram all read the same answers. At 10k users each of the
//! three had searched its own 1,000 users exactly (a matrix product of 1,000 x 10k and a
//! selection each).

use std::collections::HashMap;

use kindred_core::model::EXACT_SCAN_MAX_USERS;
use kindred_core::search::Neighbour;
use kindred_core::shard::Shards;

use crate::config::TrainConfig;
use crate::eval;
use crate::index;

/// Neighbours a measure reads per user.
pub const K: usize = 10;

/// Seed of the sample's draw (in handle order, [`eval::sample_users`]).
const SEED: u64 = 11;

/// A reproducible sample of a model's users and their [`K`] nearest as served.
pub struct Measured {
    /// The sampled rows, drawn in handle order: the first `m` are the sample of `m`.
    rows: Vec<u32>,
    /// Each row's neighbours as served ([`index::served_neighbours`]), nearest first.
    near: Vec<Vec<Neighbour>>,
}

impl Measured {
    /// The users `cfg`'s measures sample ([`TrainConfig::recall_sample`] or
    /// [`TrainConfig::eval_sample`], whichever is more) of `shards` (`handles[row]` a
    /// row's user), searched on `cfg.threads` threads.
    pub fn of_config(shards: &Shards, handles: &[u64], cfg: &TrainConfig) -> Measured {
        let count = cfg.recall_sample.max(cfg.eval_sample);
        Measured::sample(shards, handles, count, cfg.threads)
    }

    /// Samples `count` of `shards`' rows (`handles[row]` its user) and searches their
    /// neighbours on `threads` threads.
    pub fn sample(shards: &Shards, handles: &[u64], count: usize, threads: usize) -> Measured {
        let rows = eval::sample_users(handles, count, SEED);
        let near = index::served_neighbours(shards, &rows, K, threads);
        Measured { rows, near }
    }

    /// Rows sampled.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when no row is sampled.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Users a measure of `count` of the sample reads: the first `count`, or all.
    pub fn prefix(&self, count: usize) -> usize {
        count.min(self.rows.len())
    }

    /// Recall@[`K`] of `shards`' indexes against exact search over the first `count`
    /// sampled rows: the served answers are exact up to [`EXACT_SCAN_MAX_USERS`] users;
    /// above, the exact ones are searched here ([`index::recall`]).
    pub fn recall(&self, shards: &Shards, count: usize, threads: usize) -> f64 {
        let count = self.prefix(count);
        let rows = &self.rows[..count];
        if shards.len() > EXACT_SCAN_MAX_USERS {
            return index::recall(shards, rows, K, threads);
        }
        index::recall_against(shards, rows, &self.near[..count], K, threads)
    }

    /// Cohort precision@[`K`] over the first `count` sampled rows whose user has a cohort
    /// in `cohort_of`, and its chance level ([`eval::cohort_precision`]).
    pub fn cohort_precision(
        &self,
        handles: &[u64],
        cohort_of: &HashMap<u64, u32>,
        count: usize,
    ) -> (f64, f64) {
        let count = self.prefix(count);
        eval::cohort_precision_of(handles, cohort_of, &self.rows[..count], &self.near[..count])
    }

    /// The similarity of each of the first `count` sampled rows to each of its neighbours.
    pub fn similarities(&self, count: usize) -> Vec<f32> {
        let count = self.prefix(count);
        self.near[..count]
            .iter()
            .flatten()
            .map(|n| n.similarity)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::one_shard;

    #[test]
    fn the_measures_read_one_search_as_each_would_have_searched_alone() {
        // Given a 600-point model (served by a scan) whose users fall in 12 cohorts,
        let shards = one_shard(600, 16, 12, 5);
        let handles: Vec<u64> = (0..600).map(|i| 1000 + 7 * i).collect();
        let cohort_of: HashMap<u64, u32> = handles
            .iter()
            .enumerate()
            .filter(|&(i, _)| i % 5 != 0)
            .map(|(i, &h)| (h, (i % 12) as u32))
            .collect();
        // Each measure over the first `count` sampled users, against the same measure
        // searching those users on its own: recall against exact search,
        let check = |measured: &Measured, count: usize| {
            let rows = eval::sample_users(&handles, count, SEED);
            assert_eq!(
                measured.recall(&shards, count, 2),
                index::recall(&shards, &rows, K, 2),
                "{count}"
            );
            // cohort precision (users without a cohort left out),
            assert_eq!(
                measured.cohort_precision(&handles, &cohort_of, count),
                eval::cohort_precision(&shards, &handles, &cohort_of, &rows, K, 2),
                "{count}"
            );
            // and the similarities, ten a user, those of a plain scan (to the rounding
            // of a matrix product's sums).
            let plain: Vec<f32> = rows
                .iter()
                .flat_map(|&r| shards.exact(&shards.embedding(r), K, Some(r)))
                .map(|n| n.similarity)
                .collect();
            let got = measured.similarities(count);
            assert_eq!(got.len(), plain.len());
            assert!(got.iter().zip(&plain).all(|(a, b)| (a - b).abs() < 1e-5));
        };
        // when 200 users are sampled and measured, and every user (more than there are),
        for (drawn, counts) in [(200, vec![50, 200]), (700, vec![50, 200, 600])] {
            let measured = Measured::sample(&shards, &handles, drawn, 2);
            assert_eq!(measured.len(), drawn.min(600));
            // then each measure over a prefix equals the same measure searching on its
            // own (a prefix of every user is a random sample too).
            for count in counts {
                check(&measured, count);
            }
        }
    }
}
