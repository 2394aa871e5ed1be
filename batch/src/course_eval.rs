//! Hold-out quality of course recommendations, side by side with two baselines.
//!
//! For a sample of users with at least [`MIN_COURSES`] distinct courses, the most recent
//! [`HIDDEN_SHARE`] of their courses (by the last day they viewed each) are hidden: every
//! view row of them leaves the data, and the model is trained again without them. Each
//! method then ranks 10 courses the user has not (visibly) viewed:
//!
//! - *popularity*: the courses with the most viewers;
//! - *item-kNN*: per course, its [`ITEM_NEIGHBOURS`] most similar courses by cosine of
//!   their viewer sets; a course's score is its summed similarity to the user's courses;
//! - *kindred*: what `POST /recommend` answers ([`kindred_core::recommend`]).
//!
//! Recall@10 is the share of a user's hidden courses in the 10, NDCG@10 also rewards
//! ranking them first; both are averaged over users.

use std::collections::{HashMap, HashSet};

use kindred_core::courses::CourseTable;
use kindred_core::recommend::{self, RECOMMEND_NEIGHBOURS, Scoring, Voter};

use crate::assemble::course_table;
use crate::config::TrainConfig;
use crate::fast_hash::FastSet;
use crate::index::sample_rows;
use crate::ingest::Dataset;
use crate::summary::Stages;
use crate::train::{self, TrainError};

/// Users need this many distinct courses to take part.
pub const MIN_COURSES: usize = 5;
/// Share of a sampled user's courses hidden (the most recent).
pub const HIDDEN_SHARE: f64 = 0.2;
/// Similar courses kept per course by the item-kNN baseline.
pub const ITEM_NEIGHBOURS: usize = 100;
/// Courses ranked per user.
pub const K: usize = 10;

/// Which users' courses are hidden.
#[derive(Clone, Debug)]
pub struct CoursePlan {
    /// Hidden courses per sampled user.
    pub hidden: HashMap<u64, Vec<u32>>,
}

impl CoursePlan {
    /// Draws up to `users` users with at least [`MIN_COURSES`] courses and hides the most
    /// recent `share` of each one's courses (at least one), reproducibly from `seed`.
    pub fn draw(ds: &Dataset, users: usize, share: f64, seed: u64) -> CoursePlan {
        // Per user and course, the last day viewed (ties: the later row in the file).
        let mut last: HashMap<u64, HashMap<u32, (u32, usize)>> = HashMap::new();
        for (i, v) in ds.views.iter().enumerate() {
            let seen = last.entry(v.user).or_default().entry(v.course).or_default();
            *seen = (*seen).max((v.day, i));
        }
        let mut eligible: Vec<u64> = last
            .iter()
            .filter(|(_, c)| c.len() >= MIN_COURSES)
            .map(|(&h, _)| h)
            .collect();
        eligible.sort_unstable();
        let hidden = sample_rows(eligible.len(), users, seed)
            .into_iter()
            .map(|i| {
                let h = eligible[i as usize];
                let mut courses: Vec<(u32, (u32, usize))> =
                    last[&h].iter().map(|(&c, &when)| (c, when)).collect();
                courses.sort_unstable_by_key(|c| std::cmp::Reverse(c.1));
                let n = ((courses.len() as f64 * share).round() as usize).max(1);
                (h, courses[..n].iter().map(|c| c.0).collect())
            })
            .collect();
        CoursePlan { hidden }
    }

    /// The data set without any view row of a hidden course.
    pub fn training_data(&self, ds: &Dataset) -> Dataset {
        let hidden: FastSet<(u64, u32)> = self
            .hidden
            .iter()
            .flat_map(|(&h, cs)| cs.iter().map(move |&c| (h, c)))
            .collect();
        let mut train = ds.clone();
        train
            .views
            .retain(|v| !hidden.contains(&(v.user, v.course)));
        train
    }
}

/// Recall@k and NDCG@k of one method, averaged over the plan's users.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CourseScores {
    /// Mean share of hidden courses among the k ranked.
    pub recall: f64,
    /// Mean normalised discounted cumulative gain at k (binary relevance).
    pub ndcg: f64,
    /// Users measured.
    pub users: usize,
}

/// Scores `ranked(user)` (the user's k courses, best first) against the hidden courses.
pub fn score(plan: &CoursePlan, k: usize, ranked: impl Fn(u64) -> Vec<u32>) -> CourseScores {
    let (mut recall, mut ndcg) = (0.0, 0.0);
    for (&user, hidden) in &plan.hidden {
        let got = ranked(user);
        let gain = |i: usize| 1.0 / ((i + 2) as f64).log2();
        let dcg: f64 = got
            .iter()
            .take(k)
            .enumerate()
            .filter(|(_, c)| hidden.contains(c))
            .map(|(i, _)| gain(i))
            .sum();
        let ideal: f64 = (0..hidden.len().min(k)).map(gain).sum();
        let hits = got.iter().take(k).filter(|c| hidden.contains(c)).count();
        recall += hits as f64 / hidden.len() as f64;
        ndcg += dcg / ideal;
    }
    let n = plan.hidden.len().max(1) as f64;
    CourseScores {
        recall: recall / n,
        ndcg: ndcg / n,
        users: plan.hidden.len(),
    }
}

/// Every course, most viewers (distinct users) first.
pub fn by_popularity(table: &CourseTable) -> Vec<u32> {
    let mut viewers = vec![0u32; table.len()];
    for (_, course, _) in table.rows() {
        viewers[course as usize] += 1;
    }
    let mut order: Vec<u32> = (0..table.len() as u32).collect();
    order.sort_by(|&a, &b| {
        viewers[b as usize]
            .cmp(&viewers[a as usize])
            .then(a.cmp(&b))
    });
    order
}

/// The first `k` courses of `order` ([`by_popularity`]) not in `seen`.
pub fn popular(order: &[u32], seen: &[u32], k: usize) -> Vec<u32> {
    order
        .iter()
        .copied()
        .filter(|c| !seen.contains(c))
        .take(k)
        .collect()
}

/// Item-kNN: each course's [`ITEM_NEIGHBOURS`] most similar courses by the cosine of
/// their (binary) viewer sets.
pub struct ItemKnn {
    similar: Vec<Vec<(u32, f32)>>,
}

impl ItemKnn {
    /// Builds the neighbour lists from every user's courses.
    pub fn build(table: &CourseTable) -> ItemKnn {
        let n = table.len();
        let mut viewers: Vec<Vec<u32>> = vec![Vec::new(); n];
        for u in 0..table.users() {
            for v in table.viewed_at(u) {
                viewers[v.course as usize].push(u as u32);
            }
        }
        let mut co: HashMap<u32, u32> = HashMap::new();
        let similar = (0..n)
            .map(|i| {
                co.clear();
                for &u in &viewers[i] {
                    for v in table.viewed_at(u as usize) {
                        if v.course as usize != i {
                            *co.entry(v.course).or_default() += 1;
                        }
                    }
                }
                let ni = viewers[i].len() as f32;
                let mut sims: Vec<(u32, f32)> = co
                    .iter()
                    .map(|(&j, &c)| (j, c as f32 / (ni * viewers[j as usize].len() as f32).sqrt()))
                    .collect();
                sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                sims.truncate(ITEM_NEIGHBOURS);
                sims
            })
            .collect();
        ItemKnn { similar }
    }

    /// The `k` courses most similar to `seen` (summed), not in `seen`.
    pub fn rank(&self, seen: &[u32], k: usize) -> Vec<u32> {
        let mut score: HashMap<u32, f32> = HashMap::new();
        for &s in seen {
            for &(c, sim) in &self.similar[s as usize] {
                *score.entry(c).or_default() += sim;
            }
        }
        let mut ranked: Vec<(u32, f32)> = score
            .into_iter()
            .filter(|(c, _)| !seen.contains(c))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.into_iter().take(k).map(|(c, _)| c).collect()
    }
}

/// The three methods' scores on `ds`, hiding the courses of up to `users` users.
pub fn compare(
    ds: &Dataset,
    cfg: &TrainConfig,
    users: usize,
) -> Result<Vec<(&'static str, CourseScores)>, TrainError> {
    let plan = CoursePlan::draw(ds, users, HIDDEN_SHARE, cfg.hnsw.seed);
    let train_ds = plan.training_data(ds);
    let table = course_table(&train_ds);
    let seen = |h: u64| -> Vec<u32> { table.viewed_by(h).iter().map(|v| v.course).collect() };
    let order = by_popularity(&table);
    let popularity = score(&plan, K, |h| popular(&order, &seen(h), K));
    let knn = ItemKnn::build(&table);
    let item_knn = score(&plan, K, |h| knn.rank(&seen(h), K));
    let fitted = train::fit(&train_ds, cfg, &FastSet::default(), &mut Stages::quiet())?;
    let row_of: HashMap<u64, u32> = fitted
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.handle, i as u32))
        .collect();
    let kindred = score(&plan, K, |h| {
        let Some(&row) = row_of.get(&h) else {
            return Vec::new();
        };
        let voters: Vec<Voter> = fitted
            .shards
            .nearest(
                &fitted.shards.embedding(row),
                RECOMMEND_NEIGHBOURS,
                Some(row),
            )
            .into_iter()
            .map(|n| Voter {
                handle: fitted.users[n.row as usize].handle,
                similarity: n.similarity,
            })
            .collect();
        recommend::recommend(
            &table,
            &voters,
            &table.viewed_by(h),
            &HashSet::new(),
            K,
            0,
            Scoring::default(),
        )
        .into_iter()
        .map(|r| r.course)
        .collect()
    });
    Ok(vec![
        ("popularity", popularity),
        ("item-kNN", item_knn),
        ("kindred", kindred),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_and_ndcg_reward_hidden_courses_ranked_first() {
        let plan = CoursePlan {
            hidden: [(1, vec![7, 8])].into(),
        };
        let perfect = score(&plan, 10, |_| vec![7, 8, 1]);
        assert_eq!((perfect.recall, perfect.ndcg, perfect.users), (1.0, 1.0, 1));
        let late = score(&plan, 10, |_| vec![1, 2, 7]);
        assert_eq!(late.recall, 0.5);
        assert!(late.ndcg > 0.0 && late.ndcg < 0.5);
        assert_eq!(score(&plan, 2, |_| vec![1, 2, 7]).recall, 0.0);
    }

    #[test]
    fn baselines_rank_by_viewers_and_by_courses_viewed_together() {
        // Users 1..=3 viewed 0 and 1 together; user 4 viewed 2 and 3; 0 is the most viewed.
        let rows = vec![
            (1, 0, 1),
            (1, 1, 1),
            (2, 0, 1),
            (2, 1, 1),
            (3, 0, 1),
            (4, 2, 1),
            (4, 3, 1),
            (5, 0, 1),
        ];
        let t = CourseTable::build(
            (0..4).map(|c| c.to_string()).collect(),
            vec![vec![]; 4],
            rows,
        );
        let order = by_popularity(&t);
        assert_eq!(popular(&order, &[], 2), [0, 1]);
        assert_eq!(popular(&order, &[0], 1), [1]);
        let knn = ItemKnn::build(&t);
        assert_eq!(knn.rank(&[0], 10), [1], "only 1 was viewed with 0");
        assert_eq!(knn.rank(&[2], 10), [3]);
    }
}
