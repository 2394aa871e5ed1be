//! Courses from similar learners: each neighbour votes for the courses they viewed,
//! in proportion to their similarity and to how much of their time the course took.

use std::collections::{HashMap, HashSet};

use crate::courses::{CourseTable, Viewed};

/// Neighbours whose courses are scored for one recommendation answer.
pub const RECOMMEND_NEIGHBOURS: usize = 50;

/// How the neighbours' votes are weighed (the defaults are what `kindred-batch eval`
/// measured best; see docs/recommendations.md).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scoring {
    /// A neighbour's vote is `similarity^power`: above 1, the closest neighbours count
    /// for more than the many far ones.
    pub power: f32,
    /// Share of a vote that follows engagement: `0` counts every viewed course alike,
    /// `1` splits the vote by the neighbour's share of time (`ln(1 + seconds)`) on it.
    pub engagement: f32,
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring {
            power: 2.0,
            engagement: 0.5,
        }
    }
}

/// A neighbour as recommendations see them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Voter {
    /// The neighbour's handle.
    pub handle: u64,
    /// Cosine similarity to the learner recommended for.
    pub similarity: f32,
}

/// One recommended course.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    /// Course id (index into [`CourseTable::ids`]).
    pub course: u32,
    /// Sum of the votes, larger first; comparable within one answer only.
    pub score: f32,
    /// How many of the neighbours viewed the course.
    pub voters: u32,
    /// The neighbours whose votes count most, largest first (at most `shown` of them).
    pub top_voters: Vec<Voter>,
}

/// The `k` courses the `voters` viewed most, by [`Scoring`], that are neither in `seen`
/// (sorted by course, as [`CourseTable::viewed_by`] returns them) nor in `exclude`;
/// each with up to `shown` of its strongest voters. Neighbours with a similarity of zero
/// or less do not vote.
pub fn recommend(
    table: &CourseTable,
    voters: &[Voter],
    seen: &[Viewed],
    exclude: &HashSet<u32>,
    k: usize,
    shown: usize,
    scoring: Scoring,
) -> Vec<Recommendation> {
    let mut acc: HashMap<u32, (f32, Vec<(f32, Voter)>)> = HashMap::new();
    for voter in voters.iter().filter(|v| v.similarity > 0.0) {
        let courses = table.viewed_by(voter.handle);
        if courses.is_empty() {
            continue;
        }
        let strength = voter.similarity.powf(scoring.power);
        let total: f32 = courses.iter().map(|v| engagement(v.seconds)).sum();
        let even = 1.0 / courses.len() as f32;
        for v in courses {
            let skip = seen.binary_search_by_key(&v.course, |s| s.course).is_ok()
                || exclude.contains(&v.course);
            if skip {
                continue;
            }
            let share = if total > 0.0 {
                engagement(v.seconds) / total
            } else {
                even
            };
            let vote = strength * ((1.0 - scoring.engagement) + scoring.engagement * share / even);
            let entry = acc.entry(v.course).or_default();
            entry.0 += vote;
            entry.1.push((vote, *voter));
        }
    }
    let mut out: Vec<Recommendation> = acc
        .into_iter()
        .map(|(course, (score, mut votes))| {
            votes.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.handle.cmp(&b.1.handle)));
            Recommendation {
                course,
                score,
                voters: votes.len() as u32,
                top_voters: votes.into_iter().take(shown).map(|(_, v)| v).collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.voters.cmp(&a.voters))
            .then(a.course.cmp(&b.course))
    });
    out.truncate(k);
    out
}

/// How much one course's time counts: the log damps the few very long sessions.
fn engagement(seconds: u32) -> f32 {
    (seconds as f32).ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> CourseTable {
        // Courses 0..4; user 1 is the learner, 2 and 3 neighbours, 4 a dissimilar one.
        CourseTable::build(
            (0..5).map(|c| format!("c{c}")).collect(),
            vec![vec![]; 5],
            vec![
                (1, 0, 100),
                (2, 0, 100),
                (2, 1, 3600),
                (2, 2, 60),
                (3, 1, 600),
                (3, 3, 600),
                (4, 4, 9000),
            ],
        )
    }

    fn v(handle: u64, similarity: f32) -> Voter {
        Voter { handle, similarity }
    }

    #[test]
    fn courses_seen_by_more_and_closer_neighbours_rank_first_and_seen_ones_never_appear() {
        let t = table();
        let voters = [v(2, 0.9), v(3, 0.5), v(4, -0.2)];
        let got = recommend(
            &t,
            &voters,
            &t.viewed_by(1),
            &HashSet::new(),
            10,
            2,
            Scoring::default(),
        );
        let courses: Vec<u32> = got.iter().map(|r| r.course).collect();
        // Course 1 has two voters, including the closest; 0 is seen; 4's only voter is
        // dissimilar and does not vote.
        assert_eq!(courses[0], 1);
        assert!(!courses.contains(&0) && !courses.contains(&4));
        assert_eq!(courses.len(), 3);
        assert_eq!(got[0].voters, 2);
        assert_eq!(got[0].top_voters, [v(2, 0.9), v(3, 0.5)]);
        assert!(got.windows(2).all(|w| w[0].score >= w[1].score));
        // Engagement: neighbour 2 spent far less time on course 2 (60 s) than on its
        // others, so its vote for it is below an even share of 0.9², while neighbour 3's
        // two equal courses get even votes of 0.5².
        let c2 = got.iter().find(|r| r.course == 2).unwrap();
        let c3 = got.iter().find(|r| r.course == 3).unwrap();
        assert!(c2.score > 0.0 && c2.score < 0.81, "{c2:?}");
        assert!((c3.score - 0.25).abs() < 1e-6, "{c3:?}");
    }

    #[test]
    fn excluded_courses_and_the_cut_at_k_are_respected() {
        let t = table();
        let voters = [v(2, 0.9), v(3, 0.5)];
        let exclude: HashSet<u32> = [1].into();
        let got = recommend(&t, &voters, &[], &exclude, 2, 1, Scoring::default());
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|r| r.course != 1 && r.top_voters.len() == 1));
        // Counting every course alike, the closer neighbour's courses lead.
        let flat = Scoring {
            power: 1.0,
            engagement: 0.0,
        };
        let got = recommend(&t, &voters, &[], &HashSet::new(), 10, 3, flat);
        assert!((got[0].score - 1.4).abs() < 1e-6, "course 1: 0.9 + 0.5");
        assert!(recommend(&t, &[], &[], &HashSet::new(), 10, 3, flat).is_empty());
    }
}
