//! The model format: what one published version holds and how it is verified.
//!
//! A version is a folder `models/<version>/` with these objects (and `report.html`):
//!
//! | object | encoding | content |
//! |---|---|---|
//! | `manifest.json` | JSON | [`Manifest`]: format version, parameters, counts, quality figures, size and SHA-256 of every artifact |
//! | `users.bin` | bincode 2 | [`UserTable`](crate::users::UserTable): tag vocabulary and one [`UserSummary`](crate::users::UserSummary) per user |
//! | `index.bin` | bincode 2 | [`Index`](crate::search::Index): the HNSW graph over the users' unit embeddings |
//! | `projection.bin` | bincode 2 | [`crate::projection::Projection`]: the fold-in basis for profile queries (optional) |
//! | `courses.bin` | bincode 2 | [`crate::courses::CourseTable`]: the catalogue and each user's viewed courses, for recommendations (optional) |
//!
//! Row `i` of the user table is point `i` of the index, so a user's embedding is read
//! from the index itself and stored only once.
//!
//! A sharded version (format 3, see [`crate::shard`]) has, instead of `users.bin` and
//! `index.bin`, one `users-NNNN.bin` and one `index-NNNN.bin` per shard, listed in the
//! manifest's `shards`; a loader may fetch only the shards it serves.
//!
//! A version written by `kindred-batch update` (format 4) also has a delta per shard
//! (`delta.bin`, or `delta-NNNN.bin` when sharded; see [`crate::delta`]) and records the
//! update in [`Manifest::update`].

use serde::{Deserialize, Serialize};

use crate::codec::{MAX_ARTIFACT_BYTES, sha256_hex};
use crate::error::{Error, Result};

/// Format version written by this build.
///
/// - 1: users, index, manifest.
/// - 2: each user also carries its strongest [`Feature`](crate::users::Feature)s, for explanations.
/// - 3: users split into shards, each with its own user table and index
///   ([`Manifest::shards`]). Unsharded models are still written as format 2, so functions
///   built before sharding keep reading them.
/// - 4: shards may carry a delta of users folded in by `kindred-batch update`
///   ([`delta_artifact`], [`Manifest::update`]). Only updated versions are written as
///   format 4; a function that cannot read deltas refuses them and keeps its model.
pub const FORMAT_VERSION: u32 = 4;
/// Format version of a sharded model without deltas.
pub const SHARDED_FORMAT: u32 = 3;
/// Format version of an unsharded model.
pub const UNSHARDED_FORMAT: u32 = 2;
/// Oldest format version this build still reads (loaders refuse anything outside
/// `OLDEST_READABLE_FORMAT..=FORMAT_VERSION`), so a function deployed ahead of the batch
/// keeps serving the model already published.
pub const OLDEST_READABLE_FORMAT: u32 = 1;
/// Largest manifest this build reads.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Object name of the manifest inside a version folder.
pub const MANIFEST: &str = "manifest.json";
/// Object name of the user table inside a version folder.
pub const USERS: &str = "users.bin";
/// Object name of the index inside a version folder.
pub const INDEX: &str = "index.bin";
/// Object name of the HTML model report inside a version folder (not read by loaders).
pub const REPORT: &str = "report.html";
/// Object name of the fold-in projection inside a version folder (optional).
pub const PROJECTION: &str = "projection.bin";
/// Object name of the course table inside a version folder (optional).
pub const COURSES: &str = "courses.bin";

/// Size and digest of one artifact, as recorded in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    /// Object name inside the version folder.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

impl ArtifactEntry {
    /// Describes `bytes` as the artifact `name`.
    pub fn describe(name: &str, bytes: &[u8]) -> Self {
        ArtifactEntry {
            name: name.to_owned(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }

    /// Checks `bytes` against this entry's size and digest.
    pub fn verify(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 != self.bytes {
            return Err(Error::SizeMismatch {
                name: self.name.clone(),
                expected: self.bytes,
                received: bytes.len() as u64,
            });
        }
        let digest = sha256_hex(bytes);
        if digest != self.sha256 {
            return Err(Error::ChecksumMismatch {
                name: self.name.clone(),
                expected: self.sha256.clone(),
                received: digest,
            });
        }
        Ok(())
    }
}

/// Parameters of the HNSW index build.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HnswParams {
    /// `efConstruction`: candidate list size while building.
    pub ef_construction: usize,
    /// `ef`: candidate list size while searching (fixed at build time).
    pub ef_search: usize,
    /// Whether the neighbour-selection heuristic was used.
    pub heuristic: bool,
    /// Random seed of the layer assignment.
    pub seed: u64,
}

/// Everything a loader needs to know about a version before trusting its artifacts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Model format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The version's name (also its folder name).
    pub version: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Number of users (rows of the user table, points of the index).
    pub users: u64,
    /// Size of the tag vocabulary.
    pub tags: u64,
    /// Embedding dimension (SVD rank actually used).
    pub dimensions: u64,
    /// Share of the weighted matrix's squared Frobenius norm kept by the truncated SVD.
    pub explained_variance: f64,
    /// Recall@10 of the index against exact search, on a sample of users.
    pub recall_at_10: f64,
    /// Index build parameters.
    pub hnsw: HnswParams,
    /// Size and SHA-256 of every artifact.
    pub artifacts: Vec<ArtifactEntry>,
    /// The training run's summary (parameters, ingest counts, timings); free-form.
    #[serde(default)]
    pub training: serde_json::Value,
    /// The shards, `0..S` in order (format 3); empty for an unsharded model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardEntry>,
    /// Set when `kindred-batch update` folded users into a trained version (format 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateRecord>,
}

impl Manifest {
    /// The entry of artifact `name`.
    pub fn artifact(&self, name: &str) -> Result<&ArtifactEntry> {
        self.artifacts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Error::Inconsistent(format!("manifest lists no artifact {name}")))
    }

    /// Number of shards (1 for an unsharded model).
    pub fn shard_count(&self) -> u32 {
        (self.shards.len() as u32).max(1)
    }

    /// The names of the user table and index of each shard in `selection` (all shards
    /// when `None`): `users.bin` and `index.bin` for an unsharded model.
    pub fn shard_artifacts(&self, selection: Option<&[u32]>) -> Vec<(u32, String, String)> {
        if self.shards.is_empty() {
            let (users, index) = artifact_names(0, false);
            return vec![(0, users, index)];
        }
        self.shards
            .iter()
            .filter(|s| selection.is_none_or(|sel| sel.contains(&s.id)))
            .map(|s| {
                let (users, index) = artifact_names(s.id, true);
                (s.id, users, index)
            })
            .collect()
    }

    /// The format version a model with these shards is written in: [`UNSHARDED_FORMAT`]
    /// without shards, [`FORMAT_VERSION`] with them.
    pub fn format_for(shards: &[ShardEntry]) -> u32 {
        if shards.is_empty() {
            UNSHARDED_FORMAT
        } else {
            SHARDED_FORMAT
        }
    }

    /// The name of shard `id`'s delta when the manifest lists one.
    pub fn delta_of(&self, id: u32) -> Option<String> {
        let name = delta_artifact(id, !self.shards.is_empty());
        self.artifacts
            .iter()
            .any(|a| a.name == name)
            .then_some(name)
    }

    /// Total size of the artifacts a loader of `selection` reads (the selected shards'
    /// user tables, indexes and deltas, `projection.bin` and `courses.bin`; not the report), as
    /// listed.
    pub fn artifacts_bytes(&self, selection: Option<&[u32]>) -> u64 {
        let mut names = vec![PROJECTION.to_owned(), COURSES.to_owned()];
        for (id, users, index) in self.shard_artifacts(selection) {
            names.push(users);
            names.push(index);
            names.extend(self.delta_of(id));
        }
        self.artifacts
            .iter()
            .filter(|a| names.contains(&a.name))
            .map(|a| a.bytes)
            .sum()
    }

    /// Parses and validates a manifest (format version, size limits).
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::TooLarge {
                name: MANIFEST.into(),
                size: bytes.len() as u64,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        // Read the format version first so that a future format gives a clear error.
        #[derive(Deserialize)]
        struct Head {
            format_version: u32,
        }
        let head: Head = serde_json::from_slice(bytes).map_err(|e| Error::Decode {
            name: MANIFEST.into(),
            message: e.to_string(),
        })?;
        if !(OLDEST_READABLE_FORMAT..=FORMAT_VERSION).contains(&head.format_version) {
            return Err(Error::UnsupportedFormat {
                oldest: OLDEST_READABLE_FORMAT,
                expected: FORMAT_VERSION,
                received: head.format_version,
            });
        }
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| Error::Decode {
            name: MANIFEST.into(),
            message: e.to_string(),
        })?;
        for a in &manifest.artifacts {
            if a.bytes > MAX_ARTIFACT_BYTES {
                return Err(Error::TooLarge {
                    name: a.name.clone(),
                    size: a.bytes,
                    limit: MAX_ARTIFACT_BYTES,
                });
            }
        }
        manifest.check_shards()?;
        Ok(manifest)
    }

    /// Shards are numbered `0..S` in order, their users add up, and only format 3 has them.
    fn check_shards(&self) -> Result<()> {
        if self.shards.is_empty() {
            return Ok(());
        }
        if self.format_version < SHARDED_FORMAT {
            return Err(Error::Inconsistent(format!(
                "format {} manifest lists shards",
                self.format_version
            )));
        }
        if let Some((at, s)) = self
            .shards
            .iter()
            .enumerate()
            .find(|(i, s)| s.id != *i as u32)
        {
            return Err(Error::Inconsistent(format!(
                "shard {} listed at position {at}",
                s.id
            )));
        }
        let total: u64 = self.shards.iter().map(|s| s.users).sum();
        if total != self.users {
            return Err(Error::Inconsistent(format!(
                "manifest says {} users, its shards add up to {total}",
                self.users
            )));
        }
        Ok(())
    }
}

/// One shard as listed in a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// Shard number, `0..count`.
    pub id: u32,
    /// Users in the shard.
    pub users: u64,
}

/// Object name of shard `id`'s user table inside a version folder.
pub fn users_artifact(id: u32) -> String {
    format!("users-{id:04}.bin")
}

/// Object name of shard `id`'s index inside a version folder.
pub fn index_artifact(id: u32) -> String {
    format!("index-{id:04}.bin")
}

/// Object name of shard `id`'s delta: `delta.bin` in an unsharded model,
/// `delta-NNNN.bin` in a sharded one.
pub fn delta_artifact(id: u32, sharded: bool) -> String {
    if sharded {
        format!("delta-{id:04}.bin")
    } else {
        "delta.bin".to_owned()
    }
}

/// The user-table and index names of shard `id`: `users.bin` and `index.bin` in an
/// unsharded model, [`users_artifact`] and [`index_artifact`] in a sharded one.
pub fn artifact_names(id: u32, sharded: bool) -> (String, String) {
    if sharded {
        (users_artifact(id), index_artifact(id))
    } else {
        (USERS.to_owned(), INDEX.to_owned())
    }
}

/// The manifest's shard list for shards of these sizes: empty for one shard (an
/// unsharded model).
pub fn entries(users_per_shard: &[u64]) -> Vec<ShardEntry> {
    if users_per_shard.len() <= 1 {
        return Vec::new();
    }
    users_per_shard
        .iter()
        .enumerate()
        .map(|(id, &users)| ShardEntry {
            id: id as u32,
            users,
        })
        .collect()
}

/// What `kindred-batch update` recorded in a version's manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// The fully trained version whose basis and indexes this version reuses.
    pub trained: String,
    /// The version this update started from (`trained` or an earlier update).
    pub previous: String,
    /// Users in the delta folder who were new to the model.
    pub new_users: u64,
    /// Users in the delta folder whom the model knew (their rows were replaced).
    pub changed_users: u64,
    /// Users in the delta folder without a usable row (unknown tags only, or no rows).
    pub skipped_users: u64,
    /// Users folded in since `trained`, over all updates (the deltas' users).
    pub folded_users: u64,
    /// `folded_users` as a share of the model's users.
    pub folded_share: f64,
    /// Share of the folded rows' squared norm that the stored basis keeps, this update.
    pub basis_fit: f64,
    /// The same share over the training matrix (the trained model's explained variance).
    pub trained_fit: f64,
    /// True when a full training is due: see [`UpdateRecord::advice`].
    pub retrain_advised: bool,
    /// Why (or why not), in words.
    pub advice: String,
}

/// Folded users above this share of the model advise a full training.
pub const RETRAIN_FOLDED_SHARE: f64 = 0.2;
/// A basis fit below this ratio of the trained fit advises a full training.
pub const RETRAIN_FIT_RATIO: f64 = 0.8;

impl UpdateRecord {
    /// Sets [`UpdateRecord::retrain_advised`] and [`UpdateRecord::advice`] from the
    /// figures: a full training is due when folded users exceed
    /// [`RETRAIN_FOLDED_SHARE`] of the model, or when the stored basis keeps less than
    /// [`RETRAIN_FIT_RATIO`] of what it kept of the training rows (the new data lies
    /// outside the space the SVD found).
    pub fn advise(&mut self) {
        let ratio = if self.trained_fit > 0.0 {
            self.basis_fit / self.trained_fit
        } else {
            1.0
        };
        let mut reasons = Vec::new();
        if self.folded_share > RETRAIN_FOLDED_SHARE {
            reasons.push(format!(
                "{:.1}% of users were folded in since {} (limit {:.0}%)",
                self.folded_share * 100.0,
                self.trained,
                RETRAIN_FOLDED_SHARE * 100.0
            ));
        }
        if ratio < RETRAIN_FIT_RATIO {
            reasons.push(format!(
                "the stored basis keeps {:.3} of the new rows against {:.3} of the training rows (ratio {ratio:.2}, limit {RETRAIN_FIT_RATIO})",
                self.basis_fit, self.trained_fit
            ));
        }
        self.retrain_advised = !reasons.is_empty();
        self.advice = if reasons.is_empty() {
            format!(
                "no full training due: {:.1}% of users folded in, basis fit ratio {ratio:.2}",
                self.folded_share * 100.0
            )
        } else {
            format!("full training advised: {}", reasons.join("; "))
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_detects_a_flipped_byte_and_truncation() {
        let bytes = b"kindred artifact".to_vec();
        let entry = ArtifactEntry::describe("x.bin", &bytes);
        assert!(entry.verify(&bytes).is_ok());
        let mut flipped = bytes.clone();
        flipped[3] ^= 1;
        assert!(matches!(
            entry.verify(&flipped),
            Err(Error::ChecksumMismatch { .. })
        ));
        assert!(matches!(
            entry.verify(&bytes[..5]),
            Err(Error::SizeMismatch {
                expected: 16,
                received: 5,
                ..
            })
        ));
    }

    #[test]
    fn manifest_with_another_format_version_is_refused() {
        let json = br#"{"format_version": 99, "anything": true}"#;
        assert!(matches!(
            Manifest::parse(json),
            Err(Error::UnsupportedFormat {
                expected: FORMAT_VERSION,
                received: 99,
                ..
            })
        ));
    }

    #[test]
    fn advice_follows_the_folded_share_and_the_basis_fit() {
        let mut r = UpdateRecord {
            trained: "t".into(),
            previous: "t".into(),
            new_users: 10,
            changed_users: 5,
            skipped_users: 0,
            folded_users: 15,
            folded_share: 0.01,
            basis_fit: 0.5,
            trained_fit: 0.55,
            retrain_advised: true,
            advice: String::new(),
        };
        r.advise();
        assert!(!r.retrain_advised, "{}", r.advice);
        r.folded_share = 0.25;
        r.advise();
        assert!(
            r.retrain_advised && r.advice.contains("25.0%"),
            "{}",
            r.advice
        );
        r.folded_share = 0.01;
        r.basis_fit = 0.3;
        r.advise();
        assert!(
            r.retrain_advised && r.advice.contains("ratio 0.55"),
            "{}",
            r.advice
        );
    }
}
