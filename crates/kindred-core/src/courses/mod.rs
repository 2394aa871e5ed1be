//! The course table (`courses.bin`): the catalogue (course ids and their tags) and, per
//! user, the courses they viewed and for how long. Recommendations read it; a version
//! published before recommendations existed has none.
//!
//! The table is one artifact for every shard: users are found by handle, so it does not
//! depend on the order of the shards' rows.
//!
//! In memory each user's courses are packed as variable-length integers (a course id and
//! its seconds, about 4.8 bytes a course together instead of 8): at a million users
//! about 52 MB instead of 86 MB. The encoding (the `encoding` module) is unchanged: an
//! array of [`Viewed`] and an offset per user, as before.

mod encoding;

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
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CourseTable {
    /// Course ids as in the data files, by course id.
    pub ids: Vec<String>,
    /// Tag ids of each course (into the model's tag vocabulary), by course id.
    pub tags: Vec<Vec<u32>>,
    /// Users with views, ascending.
    handles: Vec<u64>,
    /// User `i`'s courses are `packed[starts[i]..starts[i + 1]]`: one more entry than
    /// `handles` (a table built from no rows has one, a default table none).
    starts: Vec<u64>,
    /// Every user's viewed courses, each user's sorted by course id, each course as two
    /// LEB128 integers (course id, seconds).
    packed: Vec<u8>,
    /// Viewed courses in `packed`.
    entries: usize,
}

/// A user's viewed courses, decoded one by one.
#[derive(Clone, Debug)]
pub struct Courses<'a> {
    bytes: &'a [u8],
}

impl Iterator for Courses<'_> {
    type Item = Viewed;

    #[inline]
    fn next(&mut self) -> Option<Viewed> {
        if self.bytes.is_empty() {
            return None;
        }
        let course = take(&mut self.bytes);
        let seconds = take(&mut self.bytes);
        Some(Viewed { course, seconds })
    }
}

/// Appends `v` as LEB128: 7 bits a byte, low bits first, the high bit set on all bytes
/// but the last.
fn put(bytes: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        bytes.push(v as u8 | 0x80);
        v >>= 7;
    }
    bytes.push(v as u8);
}

/// Reads one LEB128 integer written by [`put`] and advances past it.
#[inline]
fn take(bytes: &mut &[u8]) -> u32 {
    let mut v = 0u32;
    let mut shift = 0;
    loop {
        let b = bytes[0];
        *bytes = &bytes[1..];
        v |= u32::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

impl CourseTable {
    /// Builds the table from (handle, course, seconds) rows in any order; rows of the
    /// same user and course are summed.
    pub fn build(ids: Vec<String>, tags: Vec<Vec<u32>>, mut rows: Vec<(u64, u32, u32)>) -> Self {
        rows.sort_unstable_by_key(|&(h, c, _)| (h, c));
        let mut table = CourseTable {
            ids,
            tags,
            starts: vec![0],
            ..CourseTable::default()
        };
        let mut at = 0;
        while at < rows.len() {
            let (h, course, mut seconds) = rows[at];
            at += 1;
            while at < rows.len() && rows[at].0 == h && rows[at].1 == course {
                seconds = seconds.saturating_add(rows[at].2);
                at += 1;
            }
            if table.handles.last() != Some(&h) {
                if !table.handles.is_empty() {
                    table.starts.push(table.packed.len() as u64);
                }
                table.handles.push(h);
            }
            table.push(Viewed { course, seconds });
        }
        if !table.handles.is_empty() {
            table.starts.push(table.packed.len() as u64);
        }
        table.packed.shrink_to_fit();
        table
    }

    fn push(&mut self, v: Viewed) {
        put(&mut self.packed, v.course);
        put(&mut self.packed, v.seconds);
        self.entries += 1;
    }

    /// The courses `handle` viewed, sorted by course id (empty for a user without views).
    pub fn viewed_by(&self, handle: u64) -> Vec<Viewed> {
        match self.handles.binary_search(&handle) {
            Ok(i) => self.viewed_at(i).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The courses of the table's `i`-th user (by ascending handle, below
    /// [`CourseTable::users`]), sorted by course id.
    pub fn viewed_at(&self, i: usize) -> Courses<'_> {
        Courses {
            bytes: &self.packed[self.starts[i] as usize..self.starts[i + 1] as usize],
        }
    }

    /// Number of users with views.
    pub fn users(&self) -> usize {
        self.handles.len()
    }

    /// Every (handle, course, seconds) of the table, by handle then course: what
    /// [`CourseTable::build`] takes.
    pub fn rows(&self) -> impl Iterator<Item = (u64, u32, u32)> + '_ {
        self.handles
            .iter()
            .enumerate()
            .flat_map(move |(i, &h)| self.viewed_at(i).map(move |v| (h, v.course, v.seconds)))
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
    /// one tag list per course, tags in range, handles ascending and unique, an offset
    /// per user, each user's courses in range, sorted and unique.
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
        // Decoding already refused offsets that do not ascend from 0 to the last course.
        let expected_offsets = if self.handles.is_empty() {
            self.starts.len() <= 1
        } else {
            self.starts.len() == self.handles.len() + 1
        };
        if !expected_offsets {
            return bad("offsets do not cover the viewed courses".into());
        }
        for i in 0..self.handles.len() {
            let mut last = None;
            for v in self.viewed_at(i) {
                if last.is_some_and(|c| c >= v.course) || v.course as usize >= self.ids.len() {
                    return bad("a user's courses are unsorted, repeated or unknown".into());
                }
                last = Some(v.course);
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
}
