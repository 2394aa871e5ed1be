//! Quality measures of a trained model.
//!
//! On generated data, whose ground truth says which latent cohort each user was drawn
//! from, *cohort precision@k* is the share of a user's k nearest neighbours that share
//! the user's primary cohort. Chance level is the share of same-cohort pairs.

use std::collections::HashMap;

use kindred_core::{Model, query};

/// Cohort precision@k of the model's index (approximate search, as served) over `rows`,
/// with `cohort_of` mapping a handle to its planted cohort. Users without a known cohort
/// are skipped. Returns (precision, chance level).
pub fn cohort_precision(
    model: &Model,
    cohort_of: &HashMap<u64, u32>,
    rows: &[u32],
    k: usize,
) -> (f64, f64) {
    let mut hits = 0usize;
    let mut total = 0usize;
    for &row in rows {
        let Some(c) = cohort_of.get(&model.users.users[row as usize].handle) else {
            continue;
        };
        for n in query::similar_users(model, row, k) {
            total += 1;
            if cohort_of.get(&model.users.users[n.row as usize].handle) == Some(c) {
                hits += 1;
            }
        }
    }
    // Chance: probability that two distinct users in the model share a cohort.
    let mut sizes: HashMap<u32, u64> = HashMap::new();
    let mut n = 0u64;
    for u in &model.users.users {
        if let Some(&c) = cohort_of.get(&u.handle) {
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
    (
        if total > 0 {
            hits as f64 / total as f64
        } else {
            0.0
        },
        chance,
    )
}
