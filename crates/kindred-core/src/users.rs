//! The user table: what a model knows about each user besides their embedding.

use serde::{Deserialize, Serialize};

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

/// One entry of a user's weighted, unit-length training row: the dot product of two
/// users' rows is their similarity before the SVD, and it splits into one term per shared
/// feature, which is what explanations report.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    /// The block.
    pub signal: Signal,
    /// Tag id (index into [`UserTable::tags`]).
    pub tag: u32,
    /// Weight in the user's unit-length row.
    pub weight: f32,
}

/// What the API shows about one user.
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
            Ok(UserTable {
                tags: v1.tags,
                users: v1
                    .users
                    .into_iter()
                    .map(|u| UserSummary {
                        handle: u.handle,
                        top_tags: u.top_tags,
                        courses: u.courses,
                        tags_viewed: u.tags_viewed,
                        interests: u.interests,
                        assessments: u.assessments,
                        features: Vec::new(),
                    })
                    .collect(),
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

/// The per-user metadata of a model; row `i` is point `i` of the [`Index`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserTable {
    /// Tag vocabulary (course tags, interests and assessment tags share it).
    pub tags: Vec<String>,
    /// One summary per user, in index point order.
    pub users: Vec<UserSummary>,
}

/// A user's tag references are in range and their features sorted, unique and finite.
pub(crate) fn check_user(u: &UserSummary, tag_count: u32) -> Result<()> {
    let bad_tag = u
        .top_tags
        .iter()
        .map(|t| t.0)
        .chain(u.interests.iter().copied())
        .chain(u.assessments.iter().map(|a| a.0))
        .chain(u.features.iter().map(|f| f.tag))
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
