//! The planted structure: latent cohorts of users with shared tastes, and the
//! interest-tag vocabulary they follow.
//!
//! A cohort is grown from a seed tag by repeatedly adding tags that co-occur
//! with its members on courses (cosine-weighted), so its focal tags belong
//! together and all have courses. Tags already used by another cohort are
//! penalised, so cohorts overlap only a little.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::assessments::ASSESSMENT_TAGS;
use crate::catalog::Catalog;
use crate::rng::{Rng, Stream, WeightedIndex};

/// Smallest and largest number of focal tags of a cohort.
const FOCAL_TAGS: (u64, u64) = (6, 15);
/// Courses a tag needs to seed a cohort.
const MIN_SEED_COURSES: usize = 5;
/// Weight factor for candidate tags already focal in another cohort.
const REUSE_PENALTY: f64 = 0.15;
/// Neighbouring (non-focal) tags in a cohort's interest profile ...
const NEIGHBOUR_TAGS: usize = 30;
/// ... and their total weight relative to the focal tags.
const NEIGHBOUR_MASS: f64 = 0.35;
/// Share of the lower-case course-tag vocabulary that users follow as interests
/// (the real data: 748 interest tags for about 1,000 course tags).
const FOLLOWABLE_SHARE: f64 = 0.75;
/// Log-sd of cohort sizes.
const COHORT_SIZE_SIGMA: f64 = 0.5;

/// Interest tags every platform user is likely to follow; they lead the global
/// popularity ranking when present (the real top two are `javascript` and
/// `javascript-frameworks`).
const POPULAR_INTERESTS: &[&str] = &[
    "javascript",
    "javascript-frameworks",
    "c#",
    "python",
    "java",
    "angular",
    "html5",
    "css",
    "nodejs",
    "sql-server",
    "microsoft-azure",
    "docker",
    "react.js",
    "data-analysis",
    "information-security",
    "powershell",
    "3d-modeling",
    "photoshop",
    "project-management",
    "unity",
];

/// Interest tags that are not course tags: the assessment spelling of a few
/// technologies. They enter a cohort's profile through the assessment mapping.
const INTEREST_ONLY: &[&str] = &["c-sharp", "node-js", "angular-js", "c-plus-plus"];

/// What users can follow in `user_interests.csv`.
pub(crate) struct InterestVocab {
    /// Interest tags, most popular first.
    pub names: Vec<String>,
    /// Interest id of each catalogue tag (by lower-case name), if followable.
    pub of_tag: Vec<Option<u32>>,
    by_name: HashMap<String, u32>,
    popular: WeightedIndex,
}

impl InterestVocab {
    /// The followable lower-case tags: the popular list, the interest-only
    /// tags, then the most used course tags, with Zipf popularity by rank.
    pub(crate) fn new(cat: &Catalog) -> Self {
        let mut courses_of: BTreeMap<String, usize> = BTreeMap::new();
        for (t, name) in cat.tags.iter().enumerate() {
            *courses_of.entry(name.to_lowercase()).or_default() += cat.tag_courses[t].len();
        }
        let mut ranked: Vec<(&String, usize)> = courses_of.iter().map(|(n, &c)| (n, c)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let followable = ((ranked.len() as f64 * FOLLOWABLE_SHARE).round() as usize).max(1);

        let mut names: Vec<String> = Vec::new();
        let mut by_name: HashMap<String, u32> = HashMap::new();
        let mut add = |name: &str, names: &mut Vec<String>| {
            if !by_name.contains_key(name) {
                by_name.insert(name.to_owned(), names.len() as u32);
                names.push(name.to_owned());
            }
        };
        for name in POPULAR_INTERESTS {
            if courses_of.contains_key(*name) {
                add(name, &mut names);
            }
        }
        for name in INTEREST_ONLY {
            add(name, &mut names);
        }
        for (name, _) in ranked.iter().take(followable) {
            add(name, &mut names);
        }

        let of_tag = cat
            .tags
            .iter()
            .map(|t| by_name.get(&t.to_lowercase()).copied())
            .collect();
        let popular = WeightedIndex::new((0..names.len()).map(|r| 1.0 / (r as f64 + 1.0)))
            .expect("vocabulary is not empty");
        Self {
            names,
            of_tag,
            by_name,
            popular,
        }
    }

    /// Number of interest tags.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// A globally popular interest tag.
    pub(crate) fn popular(&self, rng: &mut Rng) -> u32 {
        self.popular.sample(rng) as u32
    }
}

/// Description of one cohort, as recorded in `generator.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CohortSummary {
    /// Cohort number, as in `ground_truth.csv`.
    pub id: u32,
    /// The focal course tags, seed first.
    pub focal_tags: Vec<String>,
    /// Distinct courses carrying at least one focal tag.
    pub courses: u64,
    /// Assessment tags the cohort takes (and scores higher on), most likely first.
    pub assessment_tags: Vec<String>,
    /// Users whose primary cohort this is.
    pub primary_users: u64,
}

/// One latent cohort with its sampling tables.
pub(crate) struct Cohort {
    pub focal: Vec<u32>,
    focal_pick: WeightedIndex,
    interest_ids: Vec<u32>,
    interest_pick: Option<WeightedIndex>,
    /// Assessments (indices into [`ASSESSMENT_TAGS`]) and their weights.
    assessments: Vec<(u32, f64)>,
    assessment_pick: Option<WeightedIndex>,
    courses: u64,
    /// Relative number of users.
    pub size: f64,
}

impl Cohort {
    /// A course of this cohort: a focal tag by weight, then a course of it by popularity.
    pub(crate) fn course(&self, cat: &Catalog, rng: &mut Rng) -> u32 {
        let tag = self.focal[self.focal_pick.sample(rng)];
        cat.course_of_tag(tag, rng)
    }

    /// An interest tag of this cohort (`None` if none of its tags is followable).
    pub(crate) fn interest(&self, rng: &mut Rng) -> Option<u32> {
        self.interest_pick
            .as_ref()
            .map(|p| self.interest_ids[p.sample(rng)])
    }

    /// An assessment (index into [`ASSESSMENT_TAGS`]) this cohort takes, if any.
    pub(crate) fn assessment(&self, rng: &mut Rng) -> Option<u32> {
        self.assessment_pick
            .as_ref()
            .map(|p| self.assessments[p.sample(rng)].0)
    }

    /// The cohort's description for the report.
    pub(crate) fn summary(&self, id: u32, cat: &Catalog, primary_users: u64) -> CohortSummary {
        let mut assessments = self.assessments.clone();
        assessments.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        CohortSummary {
            id,
            focal_tags: self
                .focal
                .iter()
                .map(|&t| cat.tags[t as usize].clone())
                .collect(),
            courses: self.courses,
            assessment_tags: assessments
                .into_iter()
                .map(|(a, _)| ASSESSMENT_TAGS[a as usize].name.to_owned())
                .collect(),
            primary_users,
        }
    }
}

/// Grows `count` cohorts over the catalogue.
pub(crate) fn build_cohorts(
    cat: &Catalog,
    vocab: &InterestVocab,
    count: u32,
    seed: u64,
) -> Result<Vec<Cohort>> {
    let mut rng = Rng::stream(seed, Stream::Cohorts, 0);
    let cooc = co_occurrence(cat);
    let n_courses: Vec<f64> = cat.tag_courses.iter().map(|c| c.len() as f64).collect();
    let words: Vec<Vec<String>> = cat.tags.iter().map(|t| name_words(t)).collect();

    let mut seedable: Vec<u32> = (0..cat.tags.len() as u32)
        .filter(|&t| {
            cat.tag_courses[t as usize].len() >= MIN_SEED_COURSES && !cooc[t as usize].is_empty()
        })
        .collect();
    if seedable.len() < count as usize {
        // A sparse catalogue: let any tag with courses seed a cohort.
        seedable = (0..cat.tags.len() as u32).collect();
    }
    if seedable.len() < count as usize {
        bail!(
            "the course tags have only {} distinct tags, too few for {count} cohorts",
            seedable.len()
        );
    }

    let mut used = vec![false; cat.tags.len()];
    let mut seeded = vec![false; cat.tags.len()];
    let mut cohorts = Vec::with_capacity(count as usize);
    for _ in 0..count {
        // Seed: a tag no cohort uses yet (else one no cohort was seeded from).
        let fresh: Vec<u32> = seedable
            .iter()
            .copied()
            .filter(|&t| !used[t as usize])
            .collect();
        let pool = if fresh.is_empty() {
            seedable
                .iter()
                .copied()
                .filter(|&t| !seeded[t as usize])
                .collect()
        } else {
            fresh
        };
        let pick = WeightedIndex::new(pool.iter().map(|&t| n_courses[t as usize].sqrt()))
            .expect("seed pool is not empty");
        let seed_tag = pool[pick.sample(&mut rng)];
        seeded[seed_tag as usize] = true;

        // Grow by co-occurrence.
        let target = rng.between(FOCAL_TAGS.0, FOCAL_TAGS.1) as usize;
        let mut focal = vec![seed_tag];
        let mut score: BTreeMap<u32, f64> = BTreeMap::new();
        let add_neighbours = |m: u32, score: &mut BTreeMap<u32, f64>| {
            for &(c, n) in &cooc[m as usize] {
                let cosine = f64::from(n) / (n_courses[m as usize] * n_courses[c as usize]).sqrt();
                *score.entry(c).or_default() += cosine;
            }
        };
        add_neighbours(seed_tag, &mut score);
        while focal.len() < target {
            let penalty = |t: u32| if used[t as usize] { REUSE_PENALTY } else { 1.0 };
            let mut candidates: Vec<(u32, f64)> = score
                .iter()
                .filter(|(t, _)| !focal.contains(t))
                .map(|(&t, &s)| (t, s * s * penalty(t)))
                .collect();
            if candidates.is_empty() {
                // No co-occurring tag left: fall back to tags sharing a name
                // word with the members (`windows-10` ~ `windows-phone`).
                candidates = (0..cat.tags.len() as u32)
                    .filter(|t| !focal.contains(t))
                    .map(|t| {
                        let shared = focal
                            .iter()
                            .map(|&m| shared_words(&words[m as usize], &words[t as usize]))
                            .sum::<usize>();
                        (t, shared as f64 * penalty(t))
                    })
                    .filter(|c| c.1 > 0.0)
                    .collect();
            }
            let Some(pick) = WeightedIndex::new(candidates.iter().map(|c| c.1)) else {
                break;
            };
            let next = candidates[pick.sample(&mut rng)].0;
            focal.push(next);
            add_neighbours(next, &mut score);
        }
        for &t in &focal {
            used[t as usize] = true;
        }

        let focal_weights: Vec<f64> = (0..focal.len())
            .map(|i| rng.lognormal(0.0, 0.3) / (1.0 + 0.1 * i as f64))
            .collect();
        let mut neighbours: Vec<(u32, f64)> = score
            .into_iter()
            .filter(|(t, _)| !focal.contains(t))
            .collect();
        neighbours.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        neighbours.truncate(NEIGHBOUR_TAGS);

        cohorts.push(make_cohort(
            cat,
            vocab,
            focal,
            &focal_weights,
            &neighbours,
            rng.lognormal(0.0, COHORT_SIZE_SIGMA),
        ));
    }
    Ok(cohorts)
}

/// Assembles a cohort's sampling tables from its focal tags and neighbours.
fn make_cohort(
    cat: &Catalog,
    vocab: &InterestVocab,
    focal: Vec<u32>,
    focal_weights: &[f64],
    neighbours: &[(u32, f64)],
    size: f64,
) -> Cohort {
    let focal_mass: f64 = focal_weights.iter().sum();
    let neighbour_total: f64 = neighbours.iter().map(|n| n.1).sum();
    // Tag profile: focal tags by weight, neighbours sharing NEIGHBOUR_MASS.
    let mut profile: Vec<(u32, f64)> = focal
        .iter()
        .copied()
        .zip(focal_weights.iter().copied())
        .collect();
    if neighbour_total > 0.0 {
        profile.extend(
            neighbours
                .iter()
                .map(|&(t, s)| (t, NEIGHBOUR_MASS * focal_mass * s / neighbour_total)),
        );
    }

    // Interests: the profile's tags by lower-case name, plus matching interest-only tags.
    let mut interests: BTreeMap<u32, f64> = BTreeMap::new();
    for &(t, w) in &profile {
        if let Some(i) = vocab.of_tag[t as usize] {
            *interests.entry(i).or_default() += w;
        }
    }
    // Assessments: the profile's weight on each assessment's related tags,
    // times the square root of the assessment's real popularity.
    let mut assessments: BTreeMap<u32, f64> = BTreeMap::new();
    for (a, tag) in ASSESSMENT_TAGS.iter().enumerate() {
        let hit: f64 = profile
            .iter()
            .filter(|(t, _)| {
                tag.related
                    .contains(&cat.tags[*t as usize].to_lowercase().as_str())
            })
            .map(|p| p.1)
            .sum();
        if hit > 0.0 {
            assessments.insert(a as u32, hit * f64::from(tag.real_rows).sqrt());
            let interest_only = INTEREST_ONLY
                .contains(&tag.name)
                .then(|| vocab.by_name.get(tag.name))
                .flatten();
            if let Some(&i) = interest_only {
                *interests.entry(i).or_default() += 0.5 * hit;
            }
        }
    }

    let mut courses: Vec<u32> = focal
        .iter()
        .flat_map(|&t| cat.tag_courses[t as usize].iter().copied())
        .collect();
    courses.sort_unstable();
    courses.dedup();

    let focal_pick =
        WeightedIndex::new(focal_weights.iter().copied()).expect("focal weights are positive");
    let (interest_ids, interest_weights): (Vec<u32>, Vec<f64>) = interests.into_iter().unzip();
    let assessments: Vec<(u32, f64)> = assessments.into_iter().collect();
    Cohort {
        focal,
        focal_pick,
        interest_ids,
        interest_pick: WeightedIndex::new(interest_weights),
        assessment_pick: WeightedIndex::new(assessments.iter().map(|a| a.1)),
        assessments,
        courses: courses.len() as u64,
        size,
    }
}

/// The distinctive words of a tag name: lower case, split at `-`, `.` and `_`,
/// without pure numbers and one-letter words.
fn name_words(tag: &str) -> Vec<String> {
    tag.to_lowercase()
        .split(['-', '.', '_', ' '])
        .filter(|w| w.len() > 1 && !w.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

/// How many words two tag names share.
fn shared_words(a: &[String], b: &[String]) -> usize {
    a.iter().filter(|w| b.contains(w)).count()
}

/// For each tag, the tags sharing a course with it and how many courses they share.
fn co_occurrence(cat: &Catalog) -> Vec<Vec<(u32, u32)>> {
    let mut pairs: HashMap<(u32, u32), u32> = HashMap::new();
    for course in &cat.courses {
        for (i, &a) in course.tags.iter().enumerate() {
            for &b in &course.tags[i + 1..] {
                *pairs.entry((a.min(b), a.max(b))).or_default() += 1;
            }
        }
    }
    let mut cooc = vec![Vec::new(); cat.tags.len()];
    for ((a, b), n) in pairs {
        cooc[a as usize].push((b, n));
        cooc[b as usize].push((a, n));
    }
    for list in &mut cooc {
        list.sort_unstable();
    }
    cooc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_tag_names_when_splitting_then_only_distinctive_words_remain() {
        assert_eq!(name_words("Windows-10"), ["windows"]);
        assert_eq!(name_words("asp.net-mvc5"), ["asp", "net", "mvc5"]);
        assert_eq!(
            shared_words(&name_words("windows-phone"), &name_words("windows-10")),
            1
        );
        assert_eq!(shared_words(&name_words("c#"), &name_words("java")), 0);
    }

    #[test]
    fn given_the_synthetic_catalogue_when_building_cohorts_then_each_has_focal_tags_and_courses() {
        let rows = crate::synth::synthesize(&mut Rng::from_seed(5));
        let cat = Catalog::from_rows(&rows, 5).unwrap();
        let vocab = InterestVocab::new(&cat);
        let cohorts = build_cohorts(&cat, &vocab, 40, 5).unwrap();
        assert_eq!(cohorts.len(), 40);
        for c in &cohorts {
            assert!(
                (3..=15).contains(&c.focal.len()),
                "{} focal tags",
                c.focal.len()
            );
            assert!(c.courses >= 5, "{} courses", c.courses);
            assert!(c.interest_pick.is_some());
        }
        // Seeds are distinct, so no two cohorts are the same.
        let seeds: std::collections::BTreeSet<u32> = cohorts.iter().map(|c| c.focal[0]).collect();
        assert_eq!(seeds.len(), 40);
    }

    #[test]
    fn given_more_cohorts_than_tags_then_building_fails() {
        let rows = vec![
            ("a".to_owned(), "x".to_owned()),
            ("b".to_owned(), "y".to_owned()),
        ];
        let cat = Catalog::from_rows(&rows, 1).unwrap();
        let vocab = InterestVocab::new(&cat);
        assert!(build_cohorts(&cat, &vocab, 3, 1).is_err());
        assert_eq!(build_cohorts(&cat, &vocab, 2, 1).unwrap().len(), 2);
    }
}
