//! Quality measures of a trained model.
//!
//! - *Cohort precision@k* (generated data only): the share of a user's k nearest
//!   neighbours drawn from the user's planted primary cohort (`ground_truth.csv`). Chance
//!   level is the share of same-cohort pairs.
//! - *Hold-out recall@k* (any data): hide a share of some users' tags (every view of a
//!   course with the tag, the interest, the assessment), fold the rest of their rows into
//!   the trained model or train again without the hidden tags, and count how many of the
//!   hidden tags at least one of the user's k neighbours carries. Chance level is the same
//!   count for k random users.

use std::collections::HashMap;

use kindred_core::search::Neighbour;
use kindred_core::shard::Shards;

use crate::fast_hash::{FastMap, FastSet};
use crate::index::{permutation, sample_rows, served_neighbours};
use crate::ingest::Dataset;

/// Cohort precision@k of `index` as served ([`served_neighbours`]: exact search up to
/// [`kindred_core::model::EXACT_SCAN_MAX_USERS`] users, the indexes above) over the
/// points at `rows`, with `handles[point]` the point's user and `cohort_of` mapping a
/// handle to its planted cohort; searched on `threads` threads. Users without a known
/// cohort are skipped. Returns (precision, chance level).
pub fn cohort_precision(
    index: &Shards,
    handles: &[u64],
    cohort_of: &HashMap<u64, u32>,
    rows: &[u32],
    k: usize,
    threads: usize,
) -> (f64, f64) {
    let known: Vec<u32> = rows
        .iter()
        .copied()
        .filter(|&row| cohort_of.contains_key(&handles[row as usize]))
        .collect();
    let near = served_neighbours(index, &known, k, threads);
    cohort_precision_of(handles, cohort_of, &known, &near)
}

/// [`cohort_precision`] from neighbours searched elsewhere: `near[i]`, those of the point
/// at `rows[i]` (rows whose user has no known cohort are skipped).
pub fn cohort_precision_of(
    handles: &[u64],
    cohort_of: &HashMap<u64, u32>,
    rows: &[u32],
    near: &[Vec<Neighbour>],
) -> (f64, f64) {
    let mut hits = 0usize;
    let mut total = 0usize;
    for (&row, found) in rows.iter().zip(near) {
        let Some(c) = cohort_of.get(&handles[row as usize]) else {
            continue;
        };
        for n in found {
            total += 1;
            if cohort_of.get(&handles[n.row as usize]) == Some(c) {
                hits += 1;
            }
        }
    }
    // Chance: probability that two distinct users in the model share a cohort.
    let mut sizes: HashMap<u32, u64> = HashMap::new();
    let mut n = 0u64;
    for h in handles {
        if let Some(&c) = cohort_of.get(h) {
            *sizes.entry(c).or_default() += 1;
            n += 1;
        }
    }
    let pairs: u64 = sizes.values().map(|s| s * s.saturating_sub(1)).sum();
    let chance = if n > 1 {
        pairs as f64 / (n * (n - 1)) as f64
    } else {
        0.0
    };
    (ratio(hits, total), chance)
}

/// The rows of a reproducible sample of `count` users drawn in handle order, so that the
/// same users are measured whatever order the index gave its points. The draw is always
/// shuffled, even of every user: the first `m` of a sample are the sample of `m`
/// ([`crate::measured`] reads several measures' samples from one).
pub fn sample_users(handles: &[u64], count: usize, seed: u64) -> Vec<u32> {
    let n = handles.len();
    let mut by_handle: Vec<u32> = (0..n as u32).collect();
    by_handle.sort_unstable_by_key(|&row| handles[row as usize]);
    let drawn = if count >= n {
        permutation(n, seed)
    } else {
        sample_rows(n, count, seed)
    };
    drawn.into_iter().map(|i| by_handle[i as usize]).collect()
}

fn ratio(a: usize, b: usize) -> f64 {
    if b > 0 { a as f64 / b as f64 } else { 0.0 }
}

/// Which users' tags are hidden for the hold-out measure, and every user's full tag set.
#[derive(Clone, Debug)]
pub struct HoldoutPlan {
    /// Users with hidden tags.
    pub users: Vec<u64>,
    /// Hidden (handle, tag) pairs.
    pub hidden: FastSet<(u64, u32)>,
    /// Each user's distinct tags in the full data (views, interests, assessments), sorted.
    pub tags_of: FastMap<u64, Vec<u32>>,
    /// Seed of the plan (also used for the chance level).
    pub seed: u64,
}

/// Users need this many distinct tags to take part (so that 80% of them remain).
pub const HOLDOUT_MIN_TAGS: usize = 5;

impl HoldoutPlan {
    /// Draws up to `users` users with at least [`HOLDOUT_MIN_TAGS`] tags and hides
    /// `share` of each one's tags (at least one), reproducibly from `seed`.
    pub fn draw(ds: &Dataset, users: usize, share: f64, seed: u64) -> HoldoutPlan {
        let mut tags_of: FastMap<u64, Vec<u32>> = FastMap::default();
        for v in &ds.views {
            tags_of
                .entry(v.user)
                .or_default()
                .extend(&ds.course_tags[v.course as usize]);
        }
        for &(u, t) in &ds.interests {
            tags_of.entry(u).or_default().push(t);
        }
        for &(u, t, _) in &ds.assessments {
            tags_of.entry(u).or_default().push(t);
        }
        for tags in tags_of.values_mut() {
            tags.sort_unstable();
            tags.dedup();
        }
        let mut eligible: Vec<u64> = tags_of
            .iter()
            .filter(|(_, t)| t.len() >= HOLDOUT_MIN_TAGS)
            .map(|(&h, _)| h)
            .collect();
        eligible.sort_unstable();
        let chosen: Vec<u64> = sample_rows(eligible.len(), users, seed)
            .into_iter()
            .map(|i| eligible[i as usize])
            .collect();
        let mut hidden = FastSet::default();
        for (i, &h) in chosen.iter().enumerate() {
            let tags = &tags_of[&h];
            let n = ((tags.len() as f64 * share).round() as usize).max(1);
            for j in sample_rows(tags.len(), n, seed ^ (i as u64).wrapping_mul(0x9E37_79B9)) {
                hidden.insert((h, tags[j as usize]));
            }
        }
        HoldoutPlan {
            users: chosen,
            hidden,
            tags_of,
            seed,
        }
    }

    fn carries(&self, user: u64, tag: u32) -> bool {
        self.tags_of
            .get(&user)
            .is_some_and(|t| t.binary_search(&tag).is_ok())
    }
}

/// Hold-out recall@k of a model whose plan users were embedded without their hidden pairs
/// (folded in, or trained again): the share of
/// hidden tags that at least one of the user's k neighbours carries. `handles[point]` is
/// each point's user, `nearest(point, k)` its k nearest other points. Returns (recall,
/// chance level with k random users).
pub fn holdout_recall(
    plan: &HoldoutPlan,
    handles: &[u64],
    k: usize,
    nearest: impl Fn(u32, usize) -> Vec<Neighbour>,
) -> (f64, f64) {
    let point_of: FastMap<u64, u32> = handles
        .iter()
        .enumerate()
        .map(|(p, &h)| (h, p as u32))
        .collect();
    let mut by_user: FastMap<u64, Vec<u32>> = FastMap::default();
    for &(h, t) in &plan.hidden {
        by_user.entry(h).or_default().push(t);
    }
    let (mut found, mut found_by_chance, mut total) = (0usize, 0usize, 0usize);
    for (i, &user) in plan.users.iter().enumerate() {
        let (Some(&point), Some(tags)) = (point_of.get(&user), by_user.get(&user)) else {
            continue;
        };
        let neighbours: Vec<u64> = nearest(point, k)
            .iter()
            .map(|n| handles[n.row as usize])
            .collect();
        let random: Vec<u64> = sample_rows(handles.len(), k + 1, plan.seed ^ (i as u64 + 1))
            .into_iter()
            .map(|p| handles[p as usize])
            .filter(|&h| h != user)
            .take(k)
            .collect();
        for &t in tags {
            total += 1;
            if neighbours.iter().any(|&n| plan.carries(n, t)) {
                found += 1;
            }
            if random.iter().any(|&n| plan.carries(n, t)) {
                found_by_chance += 1;
            }
        }
    }
    (ratio(found, total), ratio(found_by_chance, total))
}
