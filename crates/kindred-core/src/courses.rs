//! The course table (`courses.bin`): the catalogue (course ids and their tags) and, per
//! user, the courses they viewed and for how long. Recommendations read it; a version
//! published before recommendations existed has none.
//!
//! The table is one artifact for every shard: users are found by handle, so it does not
//! depend on the order of the shards' rows.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One course a user viewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewed {
    /// Course id (index into [`CourseTable::ids`]).
    pub course: u32,
    /// Seconds spent on the course over all the user's view rows.
    pub seconds: u32,
}

/// The catalogue and every user's viewed courses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CourseTable {
    /// Course ids as in the data files, by course id.
    pub ids: Vec<String>,
    /// Tag ids of each course (into the model's tag vocabulary), by course id.
    pub tags: Vec<Vec<u32>>,
    /// Users with views, ascending.
    pub handles: Vec<u64>,
    /// User `i`'s courses are `viewed[offsets[i]..offsets[i + 1]]`; one more entry than
    /// `handles`.
    pub offsets: Vec<u32>,
    /// Every user's viewed courses, each user's sorted by course id.
    pub viewed: Vec<Viewed>,
}

impl CourseTable {
    /// Builds the table from (handle, course, seconds) rows in any order; rows of the
    /// same user and course are summed.
    pub fn build(ids: Vec<String>, tags: Vec<Vec<u32>>, mut rows: Vec<(u64, u32, u32)>) -> Self {
        rows.sort_unstable_by_key(|&(h, c, _)| (h, c));
        let mut table = CourseTable {
            ids,
            tags,
            handles: Vec::new(),
            offsets: vec![0],
            viewed: Vec::with_capacity(rows.len()),
        };
        for (h, course, seconds) in rows {
            if table.handles.last() != Some(&h) {
                if !table.handles.is_empty() {
                    table.offsets.push(table.viewed.len() as u32);
                }
                table.handles.push(h);
            } else if let Some(last) = table.viewed.last_mut().filter(|v| v.course == course) {
                last.seconds = last.seconds.saturating_add(seconds);
                continue;
            }
            table.viewed.push(Viewed { course, seconds });
        }
        if !table.handles.is_empty() {
            table.offsets.push(table.viewed.len() as u32);
        }
        table
    }

    /// The courses `handle` viewed, sorted by course id (empty for a user without views).
    pub fn viewed_by(&self, handle: u64) -> &[Viewed] {
        match self.handles.binary_search(&handle) {
            Ok(i) => &self.viewed[self.offsets[i] as usize..self.offsets[i + 1] as usize],
            Err(_) => &[],
        }
    }

    /// Every (handle, course, seconds) of the table, by handle then course: what
    /// [`CourseTable::build`] takes.
    pub fn rows(&self) -> impl Iterator<Item = (u64, u32, u32)> + '_ {
        self.handles.iter().enumerate().flat_map(move |(i, &h)| {
            self.viewed[self.offsets[i] as usize..self.offsets[i + 1] as usize]
                .iter()
                .map(move |v| (h, v.course, v.seconds))
        })
    }

    /// Course ids by their name in the data files.
    pub fn index(&self) -> std::collections::HashMap<String, u32> {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i as u32))
            .collect()
    }

    /// Number of courses in the catalogue.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the catalogue is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Checks the table's internal references against a vocabulary of `tag_count` tags:
    /// one tag list per course, tags in range, handles ascending and unique, offsets
    /// ascending and ending at the last course, each user's courses in range, sorted and
    /// unique.
    pub fn validate(&self, tag_count: usize) -> Result<()> {
        let bad = |what: String| Err(Error::Inconsistent(format!("courses.bin: {what}")));
        if self.tags.len() != self.ids.len() {
            return bad(format!(
                "{} courses but {} tag lists",
                self.ids.len(),
                self.tags.len()
            ));
        }
        if self.tags.iter().flatten().any(|&t| t as usize >= tag_count) {
            return bad("a course refers to an unknown tag".into());
        }
        if !self.handles.windows(2).all(|w| w[0] < w[1]) {
            return bad("handles not ascending and unique".into());
        }
        let expected_offsets = if self.handles.is_empty() {
            self.offsets.len() <= 1
        } else {
            self.offsets.len() == self.handles.len() + 1
        };
        if !expected_offsets
            || self.offsets.first().is_some_and(|&o| o != 0)
            || self.offsets.last().map_or(0, |&o| o as usize) != self.viewed.len()
            || !self.offsets.windows(2).all(|w| w[0] <= w[1])
        {
            return bad("offsets do not cover the viewed courses".into());
        }
        for w in self.offsets.windows(2) {
            let user = &self.viewed[w[0] as usize..w[1] as usize];
            let sorted = user.windows(2).all(|p| p[0].course < p[1].course);
            if !sorted || user.iter().any(|v| v.course as usize >= self.ids.len()) {
                return bad("a user's courses are unsorted, repeated or unknown".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> CourseTable {
        CourseTable::build(
            vec!["a".into(), "b".into(), "c".into()],
            vec![vec![0], vec![0, 1], vec![]],
            vec![(7, 2, 10), (3, 1, 5), (7, 0, 1), (7, 2, 20), (3, 0, 2)],
        )
    }

    #[test]
    fn a_built_table_sums_repeated_views_and_finds_users_by_handle() {
        let t = table();
        assert_eq!(t.handles, [3, 7]);
        assert_eq!(
            t.viewed_by(7),
            [
                Viewed {
                    course: 0,
                    seconds: 1
                },
                Viewed {
                    course: 2,
                    seconds: 30
                }
            ]
        );
        assert_eq!(t.viewed_by(3).len(), 2);
        assert!(t.viewed_by(4).is_empty());
        assert_eq!(t.index().get("b"), Some(&1));
        t.validate(2).unwrap();
        CourseTable::default().validate(0).unwrap();
    }

    #[test]
    fn validation_refuses_tables_whose_references_do_not_hold() {
        let t = table();
        assert!(t.validate(1).is_err(), "tag 1 outside a 1-tag vocabulary");
        let mut unsorted = t.clone();
        unsorted.viewed.swap(0, 1);
        assert!(unsorted.validate(2).is_err());
        let mut short = t.clone();
        short.offsets.pop();
        assert!(short.validate(2).is_err());
        let mut unknown = t.clone();
        unknown.viewed[3].course = 9;
        assert!(unknown.validate(2).is_err());
        let mut twice = t;
        twice.handles = vec![3, 3];
        assert!(twice.validate(2).is_err());
    }
}
