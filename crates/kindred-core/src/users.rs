//! The user table: what a model knows about each user besides their embedding.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::decode;
use crate::error::{Error, Result};
use crate::manifest::{FORMAT_VERSION, OLDEST_READABLE_FORMAT, USERS};

/// Which block of the training matrix a feature belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Time spent on courses with the tag.
    Views,
    /// The user follows the tag.
    Interests,
    /// The user took an assessment on the tag.
    Assessments,
}

/// The most tags a model's vocabulary may hold: a [`Feature`]'s tag id is 16 bits. (The
/// training's dense tags x tags Gram matrix would take 32 GiB at this size.)
pub const MAX_TAGS: usize = 1 << 16;

/// One entry of a user's weighted, unit-length training row: the dot product of two
/// users' rows is their similarity before the SVD, and it splits into one term per shared
/// feature, which is what explanations report.
///
/// Packed (no padding), so a feature takes 7 bytes: a million users hold about 16
/// million. Its fields are read by value (a reference to one is not allowed).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[repr(C, packed)]
pub struct Feature {
    /// The block.
    pub signal: Signal,
    /// Tag id (index into [`UserTable::tags`]); 16 bits (the vocabulary is at most
    /// [`MAX_TAGS`]). Encoded as a `u32` would be.
    pub tag: u16,
    /// Weight in the user's unit-length row.
    pub weight: f32,
}

/// What the API shows about one user, as stored: `users.bin` holds one per user, and a
/// delta holds those of the users it adds. A loaded [`UserTable`] keeps them as columns
/// and lends out [`User`]s.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSummary {
    /// The user's handle.
    pub handle: u64,
    /// Top course tags by total view time: (tag id, average view seconds per view row).
    pub top_tags: Vec<(u32, f32)>,
    /// Number of distinct courses viewed.
    pub courses: u32,
    /// Number of distinct course tags viewed.
    pub tags_viewed: u32,
    /// Interest tag ids (deduplicated, at most a few dozen).
    pub interests: Vec<u32>,
    /// Assessments: (tag id, score).
    pub assessments: Vec<(u32, u16)>,
    /// The user's strongest features, sorted by (signal, tag); empty in format 1.
    pub features: Vec<Feature>,
}

impl UserSummary {
    /// The summary as a [`User`], borrowing its lists.
    pub fn as_user(&self) -> User<'_> {
        User {
            handle: self.handle,
            top_tags: &self.top_tags,
            courses: self.courses,
            tags_viewed: self.tags_viewed,
            interests: &self.interests,
            assessments: &self.assessments,
            features: &self.features,
        }
    }
}

/// Format 1's user summary (no features), to read models published before format 2.
#[derive(Deserialize)]
struct UserSummaryV1 {
    handle: u64,
    top_tags: Vec<(u32, f32)>,
    courses: u32,
    tags_viewed: u32,
    interests: Vec<u32>,
    assessments: Vec<(u32, u16)>,
}

#[derive(Deserialize)]
struct UserTableV1 {
    tags: Vec<String>,
    users: Vec<UserSummaryV1>,
}

/// Decodes `users.bin` written in `format_version` (any readable version).
pub fn decode_users(format_version: u32, bytes: &[u8]) -> Result<UserTable> {
    match format_version {
        1 => {
            let v1: UserTableV1 = decode(USERS, bytes)?;
            let users = v1.users.into_iter().map(|u| UserSummary {
                handle: u.handle,
                top_tags: u.top_tags,
                courses: u.courses,
                tags_viewed: u.tags_viewed,
                interests: u.interests,
                assessments: u.assessments,
                features: Vec::new(),
            });
            Ok(UserTable {
                tags: v1.tags,
                users: Users::from_summaries(users)?,
            })
        }
        2..=FORMAT_VERSION => decode(USERS, bytes),
        received => Err(Error::UnsupportedFormat {
            oldest: OLDEST_READABLE_FORMAT,
            expected: FORMAT_VERSION,
            received,
        }),
    }
}

/// The per-user metadata of a model, encoded as `users.bin`: the tag vocabulary and one
/// [`UserSummary`] per user; row `i` is point `i` of the [`Index`](crate::search::Index).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserTable {
    /// Tag vocabulary (course tags, interests and assessment tags share it).
    pub tags: Vec<String>,
    /// One user per row, in index point order.
    pub users: Users,
}

/// One user of a [`Users`] table, borrowed from its columns: the fields of a
/// [`UserSummary`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct User<'a> {
    /// The user's handle.
    pub handle: u64,
    /// Top course tags by total view time: (tag id, average view seconds per view row).
    pub top_tags: &'a [(u32, f32)],
    /// Number of distinct courses viewed.
    pub courses: u32,
    /// Number of distinct course tags viewed.
    pub tags_viewed: u32,
    /// Interest tag ids.
    pub interests: &'a [u32],
    /// Assessments: (tag id, score).
    pub assessments: &'a [(u32, u16)],
    /// The user's strongest features, sorted by (signal, tag).
    pub features: &'a [Feature],
}

impl User<'_> {
    /// An owned copy.
    pub fn to_summary(&self) -> UserSummary {
        UserSummary {
            handle: self.handle,
            top_tags: self.top_tags.to_vec(),
            courses: self.courses,
            tags_viewed: self.tags_viewed,
            interests: self.interests.to_vec(),
            assessments: self.assessments.to_vec(),
            features: self.features.to_vec(),
        }
    }
}

/// Users' summaries as columns: a user's lists are ranges of four shared arrays, so a
/// table holds no allocation per user. Encoded and decoded as a sequence of
/// [`UserSummary`], each decoded straight into the columns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Users {
    handles: Vec<u64>,
    /// (courses, tags viewed) per user.
    counts: Vec<(u32, u32)>,
    top_tags: Column<(u32, f32)>,
    interests: Column<u32>,
    assessments: Column<(u32, u16)>,
    features: Column<Feature>,
    /// Set by [`Users::drop_profiles`]: `counts`, `top_tags`, `interests` and
    /// `assessments` are empty and stay so.
    without_profiles: bool,
}

/// Lists of values, list `i` being `values[ends[i - 1]..ends[i]]` (from 0 for the first).
#[derive(Clone, Debug, PartialEq)]
struct Column<T> {
    ends: Vec<u32>,
    values: Vec<T>,
}

impl<T> Default for Column<T> {
    fn default() -> Self {
        Column {
            ends: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<T: Copy> Column<T> {
    /// List `i`; none from a column emptied by [`Users::drop_profiles`].
    fn get(&self, i: usize) -> &[T] {
        if self.ends.is_empty() {
            return &[];
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.values[start..self.ends[i] as usize]
    }

    /// Appends one list; false (and nothing appended) when the column would pass 2³²
    /// values.
    fn push(&mut self, list: &[T]) -> bool {
        let Some(end) = u32::try_from(self.values.len() + list.len()).ok() else {
            return false;
        };
        self.values.extend_from_slice(list);
        self.ends.push(end);
        true
    }

    fn shrink_to_fit(&mut self) {
        self.ends.shrink_to_fit();
        self.values.shrink_to_fit();
    }

    /// Room for the lists of `others` as well, exactly.
    fn reserve_for<'a>(&mut self, others: impl Iterator<Item = &'a Column<T>> + Clone)
    where
        T: 'a,
    {
        self.ends
            .reserve_exact(others.clone().map(|c| c.ends.len()).sum());
        self.values
            .reserve_exact(others.map(|c| c.values.len()).sum());
    }
}

impl Users {
    /// The users of `summaries`, in order.
    pub fn from_summaries(summaries: impl IntoIterator<Item = UserSummary>) -> Result<Users> {
        let mut users = Users::default();
        for u in summaries {
            users.push(&u)?;
        }
        users.shrink_to_fit();
        Ok(users)
    }

    /// The users lent by `users`, copied in order.
    pub fn from_users<'a>(users: impl IntoIterator<Item = User<'a>>) -> Result<Users> {
        let mut table = Users::default();
        for u in users {
            table.push_user(u)?;
        }
        table.shrink_to_fit();
        Ok(table)
    }

    /// Appends a user as the last row; `Err` when the lists of all users pass 2³² values
    /// of one kind.
    pub fn push(&mut self, u: &UserSummary) -> Result<()> {
        self.push_user(u.as_user())
    }

    fn push_user(&mut self, u: User<'_>) -> Result<()> {
        let fits = u32::try_from(self.values_after(&u)).is_ok();
        if !fits {
            return Err(Error::Inconsistent(
                "more than 2^32 list entries of one kind in a user table".into(),
            ));
        }
        self.handles.push(u.handle);
        // Each push fits: checked above for all four at once, so no column gets ahead.
        self.features.push(u.features);
        if !self.without_profiles {
            self.counts.push((u.courses, u.tags_viewed));
            self.top_tags.push(u.top_tags);
            self.interests.push(u.interests);
            self.assessments.push(u.assessments);
        }
        Ok(())
    }

    /// The largest column's length once `u` is appended.
    fn values_after(&self, u: &User<'_>) -> usize {
        [
            self.top_tags.values.len() + u.top_tags.len(),
            self.interests.values.len() + u.interests.len(),
            self.assessments.values.len() + u.assessments.len(),
            self.features.values.len() + u.features.len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    /// The users of every table, table after table. A lone non-empty table is returned
    /// as it is (a model's only shard); otherwise the first one's columns grow once to
    /// their final size and the others are copied into them.
    pub fn concat(tables: Vec<Users>) -> Result<Users> {
        let mut tables = tables.into_iter().filter(|t| !t.is_empty()).peekable();
        let mut users = tables.next().unwrap_or_default();
        if tables.peek().is_none() {
            return Ok(users);
        }
        let rest: Vec<Users> = tables.collect();
        let n = rest.iter().map(Users::len).sum();
        users.handles.reserve_exact(n);
        users.counts.reserve_exact(n);
        users.top_tags.reserve_for(rest.iter().map(|t| &t.top_tags));
        users
            .interests
            .reserve_for(rest.iter().map(|t| &t.interests));
        users
            .assessments
            .reserve_for(rest.iter().map(|t| &t.assessments));
        users.features.reserve_for(rest.iter().map(|t| &t.features));
        for table in rest {
            for u in table.iter() {
                users.push_user(u)?;
            }
        }
        Ok(users)
    }

    /// Drops the learners' profiles (top tags, course and tag counts, interests,
    /// assessments), keeping handles and features: a process whose answers never show a
    /// profile need not hold one. From then on [`Users::get`] lends empty lists and zero
    /// counts, and users pushed keep no profile either.
    pub fn drop_profiles(&mut self) {
        self.without_profiles = true;
        self.counts = Vec::new();
        self.top_tags = Column::default();
        self.interests = Column::default();
        self.assessments = Column::default();
    }

    /// False once [`Users::drop_profiles`] has run.
    pub fn has_profiles(&self) -> bool {
        !self.without_profiles
    }

    /// Releases spare capacity.
    pub fn shrink_to_fit(&mut self) {
        self.handles.shrink_to_fit();
        self.counts.shrink_to_fit();
        self.top_tags.shrink_to_fit();
        self.interests.shrink_to_fit();
        self.assessments.shrink_to_fit();
        self.features.shrink_to_fit();
    }

    /// Users in the table.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// True when the table has no user.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The handle of the user at `row` (panics when out of range).
    pub fn handle(&self, row: u32) -> u64 {
        self.handles[row as usize]
    }

    /// The user at `row` (panics when out of range).
    pub fn get(&self, row: u32) -> User<'_> {
        let i = row as usize;
        let (courses, tags_viewed) = self.counts.get(i).copied().unwrap_or_default();
        User {
            handle: self.handles[i],
            top_tags: self.top_tags.get(i),
            courses,
            tags_viewed,
            interests: self.interests.get(i),
            assessments: self.assessments.get(i),
            features: self.features.get(i),
        }
    }

    /// Every user, in row order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            users: self,
            rows: 0..self.len() as u32,
        }
    }
}

impl<'a> IntoIterator for &'a Users {
    type Item = User<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The users of a [`Users`] table in row order ([`Users::iter`]).
pub struct Iter<'a> {
    users: &'a Users,
    rows: std::ops::Range<u32>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = User<'a>;

    fn next(&mut self) -> Option<User<'a>> {
        self.rows.next().map(|row| self.users.get(row))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rows.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl Serialize for Users {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Users, D::Error> {
        struct UsersVisitor;
        impl<'de> Visitor<'de> for UsersVisitor {
            type Value = Users;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence of user summaries")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Users, A::Error> {
                let mut users = Users::default();
                // Trusted up to 2^16 users (1 MiB); a larger table grows as it is
                // decoded.
                let announced = seq.size_hint().unwrap_or(0).min(1 << 16);
                users.handles.reserve(announced);
                users.counts.reserve(announced);
                // One summary at a time, copied into the columns: decoding never holds
                // more than one user's vectors.
                while let Some(u) = seq.next_element::<UserSummary>()? {
                    users.push(&u).map_err(de::Error::custom)?;
                }
                users.shrink_to_fit();
                Ok(users)
            }
        }
        deserializer.deserialize_seq(UsersVisitor)
    }
}

/// A user's tag references are in range and their features sorted, unique and finite.
pub(crate) fn check_user(u: User<'_>, tag_count: u32) -> Result<()> {
    let bad_tag = u
        .top_tags
        .iter()
        .map(|t| t.0)
        .chain(u.interests.iter().copied())
        .chain(u.assessments.iter().map(|a| a.0))
        .chain(u.features.iter().map(|f| u32::from(f.tag)))
        .any(|t| t >= tag_count);
    if bad_tag {
        return Err(Error::Inconsistent(format!(
            "user {} refers to an unknown tag",
            u.handle
        )));
    }
    let sorted = u
        .features
        .windows(2)
        .all(|w| (w[0].signal, w[0].tag) < (w[1].signal, w[1].tag));
    if !sorted || u.features.iter().any(|f| !f.weight.is_finite()) {
        return Err(Error::Inconsistent(format!(
            "user {} has unsorted, repeated or non-finite features",
            u.handle
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;

    fn summary(handle: u64, n: usize) -> UserSummary {
        UserSummary {
            handle,
            top_tags: (0..n as u32).map(|t| (t, t as f32 * 1.5)).collect(),
            courses: 3 * n as u32,
            tags_viewed: n as u32 + 1,
            interests: (0..(n as u32 % 3)).collect(),
            assessments: (0..(n as u32 % 2))
                .map(|t| (t + 4, 120 + t as u16))
                .collect(),
            features: (0..n as u32)
                .map(|t| Feature {
                    signal: Signal::Views,
                    tag: t as u16,
                    weight: 0.25,
                })
                .collect(),
        }
    }

    #[test]
    fn a_table_of_columns_encodes_as_a_list_of_summaries_and_decodes_to_the_same_users() {
        // Given summaries with lists of every length, empty ones included,
        let summaries: Vec<UserSummary> = (0..50).map(|h| summary(h * 7, h as usize % 6)).collect();
        #[derive(Serialize)]
        struct Stored<'a> {
            tags: &'a [String],
            users: &'a [UserSummary],
        }
        let tags: Vec<String> = (0..8).map(|t| format!("tag-{t}")).collect();
        let stored = encode(
            USERS,
            &Stored {
                tags: &tags,
                users: &summaries,
            },
        )
        .unwrap();
        // when the table is built from them, or decoded from their encoding,
        let built = UserTable {
            tags: tags.clone(),
            users: Users::from_summaries(summaries.clone()).unwrap(),
        };
        let decoded = decode_users(FORMAT_VERSION, &stored).unwrap();
        // then both lend out every user as it was, in order,
        assert_eq!(decoded, built);
        assert_eq!(decoded.users.len(), 50);
        for (row, s) in summaries.iter().enumerate() {
            assert_eq!(decoded.users.get(row as u32).to_summary(), *s);
            assert_eq!(decoded.users.handle(row as u32), s.handle);
        }
        // and the table encodes to the bytes a list of summaries encodes to.
        assert_eq!(encode(USERS, &built).unwrap(), stored);
        // Tables put one after another keep their users in order.
        let parts = [&summaries[..20], &[], &summaries[20..45], &summaries[45..]]
            .map(|p| Users::from_summaries(p.to_vec()).unwrap());
        assert_eq!(Users::concat(parts.to_vec()).unwrap(), built.users);
        assert_eq!(Users::concat(Vec::new()).unwrap(), Users::default());
    }

    #[test]
    fn a_table_without_profiles_keeps_handles_and_features_only() {
        let summaries: Vec<UserSummary> =
            (0..5).map(|i| summary(100 + i, i as usize + 2)).collect();
        let mut users = Users::from_summaries(summaries.clone()).unwrap();
        assert!(users.has_profiles());
        users.drop_profiles();
        users.push(&summary(200, 4)).unwrap();
        assert!(!users.has_profiles());
        assert_eq!(users.len(), 6);
        for (row, s) in summaries.iter().chain([&summary(200, 4)]).enumerate() {
            let u = users.get(row as u32);
            assert_eq!((u.handle, u.features), (s.handle, &s.features[..]));
            assert!(u.top_tags.is_empty() && u.interests.is_empty() && u.assessments.is_empty());
            assert_eq!((u.courses, u.tags_viewed), (0, 0));
        }
    }
}
