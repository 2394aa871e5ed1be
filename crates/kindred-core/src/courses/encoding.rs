//! `courses.bin`'s encoding, as a struct of five fields: course ids, each course's tags,
//! the handles of the users with views, an offset per user into the viewed courses (one
//! more than the users), and every user's viewed courses back to back as [`Viewed`].
//!
//! A table is written from its packed courses and read back into them one course at a
//! time, so a loaded model never holds the 8-byte array.

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{CourseTable, Viewed};

const FIELDS: [&str; 5] = ["ids", "tags", "handles", "offsets", "viewed"];

impl Serialize for CourseTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("CourseTable", FIELDS.len())?;
        s.serialize_field("ids", &self.ids)?;
        s.serialize_field("tags", &self.tags)?;
        s.serialize_field("handles", &self.handles)?;
        s.serialize_field("offsets", &Offsets(self))?;
        s.serialize_field("viewed", &All(self))?;
        s.end()
    }
}

/// Each user's first course's position among all viewed courses, and the end.
struct Offsets<'a>(&'a CourseTable);

impl Serialize for Offsets<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let table = self.0;
        let mut seq = serializer.serialize_seq(Some(table.starts.len()))?;
        let mut offset = 0u32;
        for (i, _) in table.starts.iter().enumerate() {
            seq.serialize_element(&offset)?;
            if i < table.handles.len() {
                offset += table.viewed_at(i).count() as u32;
            }
        }
        seq.end()
    }
}

/// Every user's viewed courses, back to back.
struct All<'a>(&'a CourseTable);

impl Serialize for All<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let table = self.0;
        let mut seq = serializer.serialize_seq(Some(table.entries))?;
        for i in 0..table.handles.len() {
            for v in table.viewed_at(i) {
                seq.serialize_element(&v)?;
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for CourseTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableVisitor;
        impl<'de> Visitor<'de> for TableVisitor {
            type Value = CourseTable;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a course table")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CourseTable, A::Error> {
                let missing = |i| de::Error::invalid_length(i, &"a course table of 5 fields");
                let ids: Vec<String> = seq.next_element()?.ok_or_else(|| missing(0))?;
                let tags: Vec<Vec<u32>> = seq.next_element()?.ok_or_else(|| missing(1))?;
                let handles: Vec<u64> = seq.next_element()?.ok_or_else(|| missing(2))?;
                let offsets: Vec<u32> = seq.next_element()?.ok_or_else(|| missing(3))?;
                let mut table = CourseTable {
                    ids,
                    tags,
                    handles,
                    starts: Vec::with_capacity(offsets.len()),
                    ..CourseTable::default()
                };
                seq.next_element_seed(Pack {
                    table: &mut table,
                    offsets: &offsets,
                })?
                .ok_or_else(|| missing(4))?;
                Ok(table)
            }
        }
        deserializer.deserialize_struct("CourseTable", &FIELDS, TableVisitor)
    }
}

/// Decodes the viewed courses into `table`'s packed bytes, recording where each of
/// `offsets` falls; refuses offsets that do not ascend from 0 to the number of courses.
struct Pack<'a> {
    table: &'a mut CourseTable,
    offsets: &'a [u32],
}

impl<'de> DeserializeSeed<'de> for Pack<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Pack<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("viewed courses")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Pack { table, offsets } = self;
        let uncovered = || de::Error::custom("offsets do not cover the viewed courses");
        if offsets.first().is_some_and(|&o| o != 0) {
            return Err(uncovered());
        }
        let mut next = 0;
        let mut mark = |table: &mut CourseTable, at: usize| {
            while next < offsets.len() && offsets[next] as usize == at {
                table.starts.push(table.packed.len() as u64);
                next += 1;
            }
        };
        while let Some(v) = seq.next_element::<Viewed>()? {
            mark(table, table.entries);
            table.push(v);
        }
        mark(table, table.entries);
        let last = offsets.last().map_or(0, |&o| o as usize);
        if table.starts.len() != offsets.len() || last != table.entries {
            return Err(uncovered());
        }
        table.packed.shrink_to_fit();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    /// The table as it was stored before it was packed in memory: the format.
    #[derive(Clone, Serialize)]
    struct Stored {
        ids: Vec<String>,
        tags: Vec<Vec<u32>>,
        handles: Vec<u64>,
        offsets: Vec<u32>,
        viewed: Vec<Viewed>,
    }

    fn stored() -> Stored {
        let v = |course, seconds| Viewed { course, seconds };
        Stored {
            ids: vec!["a".into(), "b".into(), "c".into()],
            tags: vec![vec![0], vec![0, 1], vec![]],
            handles: vec![3, 7, 9],
            offsets: vec![0, 2, 4, 5],
            viewed: vec![v(0, 2), v(1, 5), v(0, 1), v(2, 70_000), v(1, 200)],
        }
    }

    fn read(s: &Stored) -> crate::error::Result<CourseTable> {
        decode("courses.bin", &encode("courses.bin", s).unwrap())
    }

    #[test]
    fn a_table_reads_and_writes_the_bytes_of_the_array_it_is_packed_from() {
        let s = stored();
        let table = read(&s).unwrap();
        table.validate(2).unwrap();
        assert_eq!(table.viewed_by(7), s.viewed[2..4]);
        assert_eq!(table.viewed_by(9), s.viewed[4..]);
        assert_eq!(
            encode("courses.bin", &table).unwrap(),
            encode("courses.bin", &s).unwrap()
        );
        let built = CourseTable::build(s.ids.clone(), s.tags.clone(), table.rows().collect());
        assert_eq!(built, table);
        for empty in [
            CourseTable::default(),
            CourseTable::build(vec![], vec![], vec![]),
        ] {
            let bytes = encode("courses.bin", &empty).unwrap();
            assert_eq!(decode::<CourseTable>("courses.bin", &bytes).unwrap(), empty);
        }
    }

    #[test]
    fn offsets_that_do_not_ascend_from_zero_to_the_last_course_are_refused_when_read() {
        for offsets in [
            vec![0, 2, 4],
            vec![1, 2, 4, 5],
            vec![0, 4, 2, 5],
            vec![0, 2, 4, 6],
        ] {
            let s = Stored {
                offsets: offsets.clone(),
                ..stored()
            };
            let err = read(&s).unwrap_err().to_string();
            assert!(err.contains("offsets do not cover"), "{offsets:?}: {err}");
        }
    }

    #[test]
    fn tables_whose_references_do_not_hold_are_refused_by_validation() {
        assert!(
            read(&stored()).unwrap().validate(1).is_err(),
            "tag 1 of 1 tag"
        );
        let mut unsorted = stored();
        unsorted.viewed.swap(0, 1);
        let mut unknown = stored();
        unknown.viewed[3].course = 9;
        let mut twice = stored();
        twice.handles = vec![3, 3, 9];
        let mut short = stored();
        short.handles.pop();
        for (what, s) in [
            ("unsorted", unsorted),
            ("unknown", unknown),
            ("twice", twice),
            ("short", short),
        ] {
            assert!(read(&s).unwrap().validate(2).is_err(), "{what}");
        }
    }
}
