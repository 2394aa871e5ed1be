//! The course catalogue: courses, their tags, and the fixed per-course facts
//! the views carry (author, level, popularity).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::rng::{Rng, Stream, WeightedIndex};

/// Authors per course in the real data (about 1,412 authors for 5,942 courses).
const AUTHORS_PER_COURSE: f64 = 1_412.0 / 5_942.0;
/// Log-sd of course popularity: a few courses draw most casual views.
const POPULARITY_SIGMA: f64 = 1.3;

/// Course difficulty, fixed per course.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Beginner,
    Intermediate,
    Advanced,
}

impl Level {
    /// The label written in `user_course_views.csv`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Level::Beginner => "Beginner",
            Level::Intermediate => "Intermediate",
            Level::Advanced => "Advanced",
        }
    }
}

/// One course.
#[derive(Clone, Debug)]
pub(crate) struct Course {
    pub id: String,
    /// Indices into [`Catalog::tags`]; empty for courses tagged `""`.
    pub tags: Vec<u32>,
    pub author: u32,
    pub level: Level,
    /// Relative chance of being viewed, among courses of the same tag or globally.
    pub popularity: f64,
}

/// All courses and tags, with sampling indices.
pub(crate) struct Catalog {
    pub courses: Vec<Course>,
    /// Distinct non-empty tags in order of first appearance (case kept).
    pub tags: Vec<String>,
    /// Courses of each tag.
    pub tag_courses: Vec<Vec<u32>>,
    /// Per tag: draws one of its courses by popularity.
    tag_course_pick: Vec<WeightedIndex>,
    /// Draws any course by popularity (the "globally popular" noise).
    popular_pick: WeightedIndex,
    /// Rows of `course_tags.csv`.
    pub rows: u64,
    /// Distinct authors.
    pub authors: u32,
}

impl Catalog {
    /// Builds the catalogue from `(course_id, tag)` rows; an empty tag means
    /// "no tags". Authors, levels and popularity are drawn from `seed`.
    pub(crate) fn from_rows(rows: &[(String, String)], seed: u64) -> Result<Self> {
        if rows.is_empty() {
            bail!("course tags have no rows");
        }
        let mut course_index: HashMap<&str, u32> = HashMap::new();
        let mut tag_index: HashMap<&str, u32> = HashMap::new();
        let mut courses: Vec<Course> = Vec::new();
        let mut tags: Vec<String> = Vec::new();
        for (course_id, tag) in rows {
            if course_id.is_empty() {
                bail!("course tags contain an empty course_id");
            }
            let c = *course_index.entry(course_id).or_insert_with(|| {
                courses.push(Course {
                    id: course_id.clone(),
                    tags: Vec::new(),
                    author: 0,
                    level: Level::Beginner,
                    popularity: 1.0,
                });
                (courses.len() - 1) as u32
            });
            if tag.is_empty() {
                continue;
            }
            let t = *tag_index.entry(tag).or_insert_with(|| {
                tags.push(tag.clone());
                (tags.len() - 1) as u32
            });
            let course_tags = &mut courses[c as usize].tags;
            if !course_tags.contains(&t) {
                course_tags.push(t);
            }
        }
        if tags.is_empty() {
            bail!("course tags have no non-empty tag");
        }

        let mut tag_courses = vec![Vec::new(); tags.len()];
        for (c, course) in courses.iter().enumerate() {
            for &t in &course.tags {
                tag_courses[t as usize].push(c as u32);
            }
        }

        let mut rng = Rng::stream(seed, Stream::CourseMeta, 0);
        for course in &mut courses {
            course.popularity = rng.lognormal(0.0, POPULARITY_SIGMA);
            course.level = match rng.f64() {
                x if x < 0.45 => Level::Beginner,
                x if x < 0.85 => Level::Intermediate,
                _ => Level::Advanced,
            };
        }
        let authors = assign_authors(&mut courses, &mut rng);

        let tag_course_pick = tag_courses
            .iter()
            .map(|cs| {
                WeightedIndex::new(cs.iter().map(|&c| courses[c as usize].popularity))
                    .expect("every tag has a course with positive popularity")
            })
            .collect();
        let popular_pick = WeightedIndex::new(courses.iter().map(|c| c.popularity))
            .expect("courses have positive popularity");

        Ok(Self {
            courses,
            tags,
            tag_courses,
            tag_course_pick,
            popular_pick,
            rows: rows.len() as u64,
            authors,
        })
    }

    /// Reads `(course_id, course_tags)` rows from a challenge-format file.
    pub(crate) fn read_rows(path: &Path) -> Result<Vec<(String, String)>> {
        let file = File::open(path)
            .with_context(|| format!("cannot open course tags {}", path.display()))?;
        Self::read_rows_from(file, &path.display().to_string())
    }

    /// Reads `(course_id, course_tags)` rows in the challenge's format from
    /// `input`, named `name` in errors.
    pub(crate) fn read_rows_from(input: impl Read, name: &str) -> Result<Vec<(String, String)>> {
        let mut reader = csv::Reader::from_reader(input);
        let headers = reader
            .headers()
            .with_context(|| format!("cannot read the header of {name}"))?
            .clone();
        if headers.len() != 2 || &headers[0] != "course_id" || &headers[1] != "course_tags" {
            bail!("{name} does not look like course_tags.csv: header is {headers:?}");
        }
        reader
            .records()
            .map(|r| {
                let r = r.with_context(|| format!("bad row in {name}"))?;
                Ok((r[0].to_owned(), r[1].to_owned()))
            })
            .collect()
    }

    /// A course of tag `tag`, by popularity.
    pub(crate) fn course_of_tag(&self, tag: u32, rng: &mut Rng) -> u32 {
        let t = tag as usize;
        self.tag_courses[t][self.tag_course_pick[t].sample(rng)]
    }

    /// Any course, by popularity.
    pub(crate) fn popular_course(&self, rng: &mut Rng) -> u32 {
        self.popular_pick.sample(rng) as u32
    }
}

/// Gives every course an author. Courses are walked in order of their first
/// tag so authors mostly stay within a topic; each course starts a new author
/// with a fixed chance, giving about `AUTHORS_PER_COURSE` authors per course
/// with a few prolific ones. Handles are shuffled to `1..=authors`. Returns
/// the number of authors.
fn assign_authors(courses: &mut [Course], rng: &mut Rng) -> u32 {
    let mut order: Vec<usize> = (0..courses.len()).collect();
    order.sort_by_key(|&c| (courses[c].tags.first().copied(), c));
    let mut run_of_course = vec![0u32; courses.len()];
    let mut runs = 0u32;
    for (i, &c) in order.iter().enumerate() {
        if i == 0 || rng.chance(AUTHORS_PER_COURSE) {
            runs += 1;
        }
        run_of_course[c] = runs - 1;
    }
    let mut handles: Vec<u32> = (1..=runs).collect();
    rng.shuffle(&mut handles);
    for (course, run) in courses.iter_mut().zip(run_of_course) {
        course.author = handles[run as usize];
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(c, t)| ((*c).to_owned(), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn given_rows_with_an_empty_tag_and_a_repeat_then_the_catalogue_keeps_them_apart() {
        let cat = Catalog::from_rows(
            &rows(&[
                ("a", "x"),
                ("a", "y"),
                ("b", ""),
                ("c", "x"),
                ("a", "x"),
                ("d", "X"),
            ]),
            1,
        )
        .unwrap();
        assert_eq!(cat.courses.len(), 4);
        assert_eq!(cat.tags, ["x", "y", "X"]);
        assert_eq!(cat.courses[0].tags, [0, 1]);
        assert!(cat.courses[1].tags.is_empty());
        assert_eq!(cat.tag_courses[0], [0, 2]);
        assert_eq!(cat.rows, 6);
        assert!(
            cat.courses
                .iter()
                .all(|c| (1..=cat.authors).contains(&c.author))
        );
    }

    #[test]
    fn given_no_tags_at_all_then_building_fails() {
        assert!(Catalog::from_rows(&rows(&[("a", "")]), 1).is_err());
        assert!(Catalog::from_rows(&[], 1).is_err());
    }
}
