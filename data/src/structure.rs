//! How much shared-taste structure a file of user tags carries, measured
//! without ground truth, so that generated data can be held against the real
//! files.
//!
//! The challenge's real data has no planted cohorts, and two of its four files
//! are missing; the real assessments are the one file of user activity there
//! is. For a file of (user, tag) rows, [`measure`] takes every ordered pair of
//! distinct tags of one user (each user with two or more tags weighs the same)
//! and computes the mutual information between the pair's first and second
//! tag: how much one of a user's tags tells about another. A finite sample
//! shows some information even with no structure at all, so the same figure
//! is computed again with the tags shuffled across users (each user keeps
//! their number of rows, each tag its number of rows), and the difference,
//! [`TagStructure::excess_information`], is the structure: 0 when users pick
//! tags independently of each other, larger the more a user's tags belong
//! together.
//!
//! A second figure, [`TagStructure::held_out_gain`], asks the same question
//! another way: hide one of a user's tags and predict it from the tags the
//! user's other tags co-occur with among the other users; it is the mean log
//! gain of that prediction over popularity alone. Two measures, because the
//! setting at which generated data matches the real file differs between them.
//!
//! ```
//! use kindred_datagen::structure::{UserTags, measure};
//!
//! // Two groups of tags; each of 300 users takes two tags of one group.
//! let pairs = [["a", "b"], ["b", "c"], ["a", "c"], ["x", "y"], ["y", "z"], ["x", "z"]];
//! let users = UserTags::from_names(pairs.iter().cycle().take(300));
//! let s = measure(&users, 5, 1);
//! assert!(s.excess_information() > 0.5, "{s:?}");
//! ```

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::rng::{Rng, Stream};

/// Users and the distinct tags of each, tags numbered in order of first
/// appearance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserTags {
    /// Tag names; a user's tags index into this.
    pub tags: Vec<String>,
    /// Each user's distinct tags, sorted; users in order of first appearance.
    pub users: Vec<Vec<u32>>,
}

impl UserTags {
    /// Builds the table from each user's tag names (repeats within a user are
    /// dropped; empty names are skipped).
    pub fn from_names<I, U, S>(users: I) -> Self
    where
        I: IntoIterator<Item = U>,
        U: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut table = UserTags::default();
        let mut ids: HashMap<String, u32> = HashMap::new();
        for user in users {
            let mut mine: Vec<u32> = user
                .into_iter()
                .filter(|t| !t.as_ref().is_empty())
                .map(|t| table.id(&mut ids, t.as_ref()))
                .collect();
            mine.sort_unstable();
            mine.dedup();
            table.users.push(mine);
        }
        table
    }

    fn id(&mut self, ids: &mut HashMap<String, u32>, name: &str) -> u32 {
        if let Some(&id) = ids.get(name) {
            return id;
        }
        let id = self.tags.len() as u32;
        self.tags.push(name.to_owned());
        ids.insert(name.to_owned(), id);
        id
    }

    /// Reads `user_handle` and the tag column `column` (for example
    /// `assessment_tag` or `interest_tag`) of a challenge CSV. Repeated rows
    /// count once; rows with an empty tag are skipped. A row that cannot be read
    /// or has no integer handle is an error naming its line.
    pub fn read_csv(path: &Path, column: &str) -> Result<Self> {
        let mut reader = csv::Reader::from_path(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let headers = reader
            .headers()
            .with_context(|| format!("cannot read the header of {}", path.display()))?
            .clone();
        let find = |name: &str| headers.iter().position(|h| h == name);
        let (Some(user_col), Some(tag_col)) = (find("user_handle"), find(column)) else {
            bail!(
                "{} needs the columns user_handle and {column}; it has {}",
                path.display(),
                headers.iter().collect::<Vec<_>>().join(", ")
            );
        };
        let mut order: Vec<u64> = Vec::new();
        let mut per_user: HashMap<u64, Vec<String>> = HashMap::new();
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let record = record.with_context(|| format!("line {line} of {}", path.display()))?;
            let handle: u64 = record
                .get(user_col)
                .and_then(|h| h.trim().parse().ok())
                .with_context(|| {
                    format!("line {line} of {}: no integer user_handle", path.display())
                })?;
            let tag = record.get(tag_col).unwrap_or("").to_owned();
            per_user
                .entry(handle)
                .or_insert_with(|| {
                    order.push(handle);
                    Vec::new()
                })
                .push(tag);
        }
        Ok(Self::from_names(
            order
                .into_iter()
                .map(|h| per_user.remove(&h).unwrap_or_default()),
        ))
    }

    /// At most `n` of the users, drawn at random with `seed` (all of them, in
    /// their order, when there are no more than `n`). The measures grow with
    /// the number of users, so files are compared at equal sizes.
    pub fn sample(&self, n: usize, seed: u64) -> UserTags {
        if self.users.len() <= n {
            return self.clone();
        }
        let mut order: Vec<usize> = (0..self.users.len()).collect();
        Rng::stream(seed, Stream::Structure, u64::MAX).shuffle(&mut order);
        order.truncate(n);
        order.sort_unstable();
        UserTags {
            tags: self.tags.clone(),
            users: order.iter().map(|&u| self.users[u].clone()).collect(),
        }
    }
}

/// What [`measure`] found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TagStructure {
    /// Users with at least one tag.
    pub users: usize,
    /// Users with at least two distinct tags (the ones the pairs come from).
    pub users_with_pairs: usize,
    /// Distinct tags.
    pub tags: usize,
    /// Share of all (user, tag) rows taken by the five most common tags.
    pub top5_share: f64,
    /// Entropy of one tag of a pair, in nats.
    pub pair_tag_entropy: f64,
    /// Mutual information between the two tags of a user's pair, in nats.
    pub pair_information: f64,
    /// The same with tags shuffled across users, averaged over the shuffles.
    pub shuffled_information: f64,
    /// A second, independent measure: how much better a user's tag is
    /// predicted from their other tags than from popularity, in nats per tag
    /// (see the module documentation).
    pub held_out_gain: f64,
}

impl TagStructure {
    /// Information beyond what shuffled tags show: the structure, in nats.
    pub fn excess_information(&self) -> f64 {
        self.pair_information - self.shuffled_information
    }
}

/// Measures the structure of `users`, with `shuffles` shuffled copies (at
/// least 1) drawn from `seed`. Deterministic for a seed.
pub fn measure(users: &UserTags, shuffles: u32, seed: u64) -> TagStructure {
    let n_tags = users.tags.len();
    let shuffles = shuffles.max(1);
    let mut rng = Rng::stream(seed, Stream::Structure, 0);
    let shuffled_information = (0..shuffles)
        .map(|_| pair_information(&shuffled(&users.users, &mut rng), n_tags).0)
        .sum::<f64>()
        / f64::from(shuffles);
    let (information, entropy) = pair_information(&users.users, n_tags);

    let mut rows = vec![0u64; n_tags];
    for &t in users.users.iter().flatten() {
        rows[t as usize] += 1;
    }
    let total: u64 = rows.iter().sum();
    rows.sort_unstable_by(|a, b| b.cmp(a));
    let top5: u64 = rows.iter().take(5).sum();
    TagStructure {
        users: users.users.iter().filter(|u| !u.is_empty()).count(),
        users_with_pairs: users.users.iter().filter(|u| u.len() >= 2).count(),
        tags: n_tags,
        top5_share: if total == 0 {
            0.0
        } else {
            top5 as f64 / total as f64
        },
        pair_tag_entropy: entropy,
        pair_information: information,
        shuffled_information,
        held_out_gain: held_out_gain(&users.users, n_tags),
    }
}

/// [`TagStructure::excess_information`] of `halves` random halves of the
/// users: its spread shows how much the figure moves with the sample. The
/// figure grows with the number of users, so halves read lower than the whole.
pub fn excess_on_halves(users: &UserTags, halves: u32, shuffles: u32, seed: u64) -> Vec<f64> {
    (0..halves)
        .map(|h| {
            let half = users.sample(users.users.len() / 2, seed.wrapping_add(u64::from(h)));
            measure(&half, shuffles, seed ^ u64::from(h)).excess_information()
        })
        .collect()
}

/// Mutual information of a user's (first, second) tag over ordered pairs of
/// distinct tags, each user weighing 1; and the entropy of one tag. In nats;
/// (0, 0) without pairs.
fn pair_information(users: &[Vec<u32>], n_tags: usize) -> (f64, f64) {
    let mut joint = vec![0.0f64; n_tags * n_tags];
    let mut total = 0.0;
    for tags in users.iter().filter(|t| t.len() >= 2) {
        let n = tags.len() as f64;
        let w = 1.0 / (n * (n - 1.0));
        for &a in tags {
            for &b in tags {
                if a != b {
                    joint[a as usize * n_tags + b as usize] += w;
                }
            }
        }
        total += 1.0;
    }
    if total == 0.0 {
        return (0.0, 0.0);
    }
    let marginal: Vec<f64> = joint
        .chunks(n_tags.max(1))
        .map(|row| row.iter().sum())
        .collect();
    let mut information = 0.0;
    for (i, &j) in joint.iter().enumerate() {
        if j > 0.0 {
            let (a, b) = (i / n_tags, i % n_tags);
            information += j / total * (j * total / (marginal[a] * marginal[b])).ln();
        }
    }
    let entropy = -marginal
        .iter()
        .filter(|&&m| m > 0.0)
        .map(|&m| m / total * (m / total).ln())
        .sum::<f64>();
    (information, entropy)
}

/// Attempts to find a swap partner for a tag dealt twice to one user.
const SWAP_ATTEMPTS: usize = 200;

/// The users' tags shuffled across users: each user keeps their number of
/// tags, each tag its number of rows. Tags are dealt at random; a tag dealt
/// twice to one user is swapped with a random tag of another user where
/// neither swap repeats a tag. Only if no such swap turns up in
/// [`SWAP_ATTEMPTS`] tries is the repeat dropped (it does not happen with the
/// challenge's files).
fn shuffled(users: &[Vec<u32>], rng: &mut Rng) -> Vec<Vec<u32>> {
    let mut pool: Vec<u32> = users.iter().flatten().copied().collect();
    rng.shuffle(&mut pool);
    let mut ranges = Vec::with_capacity(users.len());
    let mut owner = Vec::with_capacity(pool.len());
    for (u, tags) in users.iter().enumerate() {
        let start = owner.len();
        owner.extend(std::iter::repeat_n(u, tags.len()));
        ranges.push(start..owner.len());
    }
    let holds =
        |pool: &[u32], range: &std::ops::Range<usize>, tag: u32| pool[range.clone()].contains(&tag);
    for range in &ranges {
        for pos in range.clone() {
            if !pool[range.start..pos].contains(&pool[pos]) {
                continue;
            }
            for _ in 0..SWAP_ATTEMPTS {
                let other = rng.index(pool.len());
                let theirs = &ranges[owner[other]];
                if theirs == range {
                    continue;
                }
                let (mine, given) = (pool[pos], pool[other]);
                if !holds(&pool, range, given) && !holds(&pool, theirs, mine) {
                    pool.swap(pos, other);
                    break;
                }
            }
        }
    }
    ranges
        .into_iter()
        .map(|range| {
            let mut mine = pool[range].to_vec();
            mine.sort_unstable();
            mine.dedup();
            mine
        })
        .collect()
}

/// Weight of the co-occurrence prediction in [`held_out_gain`]; the rest is
/// popularity, so that a tag never seen with the others keeps a chance.
const CO_OCCURRENCE_WEIGHT: f64 = 0.9;

/// How much better a user's tag is predicted from their other tags than from
/// popularity alone, in nats: for each user with two or more tags and each of
/// their tags `t`, with that user left out of every count, the mean of
/// `ln(p(t | others) / p_pop(t))`. `p_pop` is each tag's share of users among
/// the tags the user's others are not; `p(t | others)` mixes (0.9) the mean,
/// over the others `o`, of `t`'s share of the users `o` shares a tag with, and
/// (0.1) `p_pop`. 0 when users pick tags independently; a tag only this user
/// has is skipped. Cost: tags² memory, users x tags² time at most.
fn held_out_gain(users: &[Vec<u32>], n_tags: usize) -> f64 {
    let mut users_with = vec![0u64; n_tags];
    let mut together = vec![0u64; n_tags * n_tags];
    let update = |users_with: &mut [u64], together: &mut [u64], tags: &[u32], add: bool| {
        let step = |x: &mut u64| if add { *x += 1 } else { *x -= 1 };
        for &a in tags {
            step(&mut users_with[a as usize]);
            for &b in tags.iter().filter(|&&b| b != a) {
                step(&mut together[a as usize * n_tags + b as usize]);
            }
        }
    };
    for tags in users {
        update(&mut users_with, &mut together, tags, true);
    }
    let (mut gain, mut held) = (0.0, 0u64);
    let mut pop = vec![0.0f64; n_tags];
    let mut co = vec![0.0f64; n_tags];
    for tags in users.iter().filter(|t| t.len() >= 2) {
        update(&mut users_with, &mut together, tags, false);
        for &t in tags {
            let others: Vec<u32> = tags.iter().copied().filter(|&o| o != t).collect();
            let candidate = |c: usize| !others.contains(&(c as u32));
            let total: u64 = (0..n_tags)
                .filter(|&c| candidate(c))
                .map(|c| users_with[c])
                .sum();
            if users_with[t as usize] == 0 || total == 0 {
                continue;
            }
            for c in 0..n_tags {
                pop[c] = if candidate(c) {
                    users_with[c] as f64 / total as f64
                } else {
                    0.0
                };
                co[c] = 0.0;
            }
            for &o in &others {
                let row = &together[o as usize * n_tags..(o as usize + 1) * n_tags];
                let seen: u64 = (0..n_tags).filter(|&c| candidate(c)).map(|c| row[c]).sum();
                for c in (0..n_tags).filter(|&c| candidate(c)) {
                    // An `o` seen with no candidate predicts by popularity.
                    co[c] += if seen == 0 {
                        pop[c]
                    } else {
                        row[c] as f64 / seen as f64
                    };
                }
            }
            let t = t as usize;
            let predicted = CO_OCCURRENCE_WEIGHT * co[t] / others.len() as f64
                + (1.0 - CO_OCCURRENCE_WEIGHT) * pop[t];
            gain += (predicted / pop[t]).ln();
            held += 1;
        }
        update(&mut users_with, &mut together, tags, true);
    }
    if held == 0 { 0.0 } else { gain / held as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `users` users each taking `per_user` tags: from one of `groups` groups
    /// of `group_size` tags with probability `coherence`, else from all tags.
    fn planted(
        users: usize,
        groups: u32,
        group_size: u32,
        per_user: usize,
        coherence: f64,
        seed: u64,
    ) -> UserTags {
        let mut rng = Rng::from_seed(seed);
        let all = groups * group_size;
        let names = (0..users).map(|_| {
            let group = rng.below(u64::from(groups)) as u32;
            (0..per_user)
                .map(|_| {
                    let tag = if rng.chance(coherence) {
                        group * group_size + rng.below(u64::from(group_size)) as u32
                    } else {
                        rng.below(u64::from(all)) as u32
                    };
                    format!("t{tag}")
                })
                .collect::<Vec<_>>()
        });
        UserTags::from_names(names.collect::<Vec<_>>())
    }

    #[test]
    fn given_tags_drawn_independently_when_measured_then_there_is_no_structure() {
        let users = planted(3_000, 6, 9, 3, 0.0, 7);
        let s = measure(&users, 5, 1);
        assert!(
            s.pair_information > 0.05,
            "a finite sample shows information: {s:?}"
        );
        assert!(s.excess_information().abs() < 0.03, "{s:?}");
        assert!(s.held_out_gain.abs() < 0.05, "{s:?}");
    }

    #[test]
    fn given_more_coherent_users_when_measured_then_both_measures_grow() {
        let at = |c| measure(&planted(3_000, 6, 9, 3, c, 7), 5, 1);
        let (weak, strong, pure) = (at(0.5), at(0.8), at(1.0));
        let excess = [&weak, &strong, &pure].map(|s| s.excess_information());
        assert!(
            0.03 < excess[0] && excess[0] < excess[1] && excess[1] < excess[2],
            "{excess:?}"
        );
        // Six equally likely groups: a pair tells the group, ln 6 at most.
        assert!(excess[2] <= 6f64.ln() + 0.05, "{excess:?}");
        let gain = [&weak, &strong, &pure].map(|s| s.held_out_gain);
        assert!(
            0.05 < gain[0] && gain[0] < gain[1] && gain[1] < gain[2],
            "{gain:?}"
        );
        // At best a hidden tag is one of the 7 group tags the user's two others
        // are not, against 1 in 52 by popularity.
        assert!(
            gain[2] <= (0.9 * 52.0 / 7.0 + 0.1f64).ln() + 0.01,
            "{gain:?}"
        );
    }

    #[test]
    fn given_users_when_shuffled_then_every_user_keeps_their_count_and_every_tag_its_rows() {
        // Few tags and users with many of them: random dealing repeats tags often.
        let users = planted(400, 2, 4, 6, 0.9, 5);
        let mut rng = Rng::from_seed(3);
        let mixed = shuffled(&users.users, &mut rng);
        let counts = |u: &[Vec<u32>]| u.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(counts(&mixed), counts(&users.users));
        let rows = |u: &[Vec<u32>]| {
            let mut r = vec![0; users.tags.len()];
            u.iter().flatten().for_each(|&t| r[t as usize] += 1);
            r
        };
        assert_eq!(rows(&mixed), rows(&users.users));
        assert_ne!(mixed, users.users);
    }

    #[test]
    fn given_a_seed_when_measuring_twice_then_the_figures_are_equal() {
        let users = planted(500, 4, 5, 4, 0.5, 3);
        assert_eq!(measure(&users, 3, 9), measure(&users, 3, 9));
        assert_eq!(
            excess_on_halves(&users, 3, 2, 9),
            excess_on_halves(&users, 3, 2, 9)
        );
    }

    #[test]
    fn given_users_with_one_tag_each_then_no_pairs_and_no_information() {
        let users = UserTags::from_names([["a"], ["b"], ["a"]]);
        let s = measure(&users, 2, 1);
        assert_eq!((s.users, s.users_with_pairs, s.tags), (3, 0, 2));
        assert_eq!((s.pair_information, s.excess_information()), (0.0, 0.0));
        assert!((s.top5_share - 1.0).abs() < 1e-12);
    }

    #[test]
    fn given_a_challenge_csv_when_read_then_users_and_tags_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.csv");
        std::fs::write(
            &path,
            "\"user_handle\",\"assessment_tag\",\"user_assessment_date\",\"user_assessment_score\"\n\
             7,\"css\",\"2017-08-11 20:09:56\",38\n\
             7,\"java\",\"2017-08-11 20:09:56\",38\n\
             3,\"css\",\"2017-08-11 20:09:56\",38\n\
             7,\"css\",\"2017-08-12 20:09:56\",40\n\
             3,\"\",\"2017-08-11 20:09:56\",38\n",
        )
        .unwrap();
        let users = UserTags::read_csv(&path, "assessment_tag").unwrap();
        assert_eq!(users.tags, ["css", "java"]);
        assert_eq!(users.users, [vec![0, 1], vec![0]]);

        let err = UserTags::read_csv(&path, "interest_tag").unwrap_err();
        assert!(format!("{err:#}").contains("interest_tag"), "{err:#}");
        std::fs::write(&path, "user_handle,assessment_tag\nseven,css\n").unwrap();
        let err = UserTags::read_csv(&path, "assessment_tag").unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }
}
