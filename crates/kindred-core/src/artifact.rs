//! The model format: what one published version holds and how it is verified.
//!
//! A version is a folder `models/<version>/` with these objects (and `report.html`):
//!
//! | object | encoding | content |
//! |---|---|---|
//! | `manifest.json` | JSON | [`Manifest`]: format version, parameters, counts, quality figures, size and SHA-256 of every artifact |
//! | `users.bin` | bincode 2 | [`UserTable`]: tag vocabulary and one [`UserSummary`] per user |
//! | `index.bin` | bincode 2 | [`Index`]: the HNSW graph over the users' unit embeddings |
//! | `projection.bin` | bincode 2 | [`crate::projection::Projection`]: the fold-in basis for profile queries (optional) |
//!
//! Row `i` of the user table is point `i` of the index, so a user's embedding is read
//! from the index itself and stored only once.
//!
//! A sharded version (format 3, see [`crate::shard`]) has, instead of `users.bin` and
//! `index.bin`, one `users-NNNN.bin` and one `index-NNNN.bin` per shard, listed in the
//! manifest's `shards`; a loader may fetch only the shards it serves.

use std::collections::HashMap;

use instant_distance::{Hnsw, Point};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::shard::{self, ShardEntry, Shards};

/// Format version written by this build.
///
/// - 1: users, index, manifest.
/// - 2: each user also carries its strongest [`Feature`]s, for explanations.
/// - 3: users split into shards, each with its own user table and index
///   ([`Manifest::shards`]). Unsharded models are still written as format 2, so functions
///   built before sharding keep reading them.
pub const FORMAT_VERSION: u32 = 3;
/// Format version of an unsharded model.
pub const UNSHARDED_FORMAT: u32 = 2;
/// Oldest format version this build still reads (loaders refuse anything outside
/// `OLDEST_READABLE_FORMAT..=FORMAT_VERSION`), so a function deployed ahead of the batch
/// keeps serving the model already published.
pub const OLDEST_READABLE_FORMAT: u32 = 1;
/// Largest artifact this build reads (also the bincode decode limit).
pub const MAX_ARTIFACT_BYTES: u64 = 4 << 30;
/// Models with at most this many users (over all shards) also keep their embeddings in
/// contiguous arrays and answer queries by an exact scan, which measured as fast as the HNSW search
/// at 10k users (see the README) and has perfect recall. Larger models use the index.
pub const EXACT_SCAN_MAX_USERS: usize = 50_000;
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

/// A unit-length user embedding; distance is `1 - cosine`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Embedding(pub Vec<f32>);

impl Embedding {
    /// Builds an embedding scaled to unit length (a zero vector stays zero).
    pub fn normalized(mut values: Vec<f32>) -> Self {
        let norm = dot(&values, &values).sqrt();
        if norm > 0.0 {
            values.iter_mut().for_each(|v| *v /= norm);
        }
        Embedding(values)
    }

    /// Cosine similarity with another unit embedding.
    pub fn cosine(&self, other: &Embedding) -> f32 {
        dot(&self.0, &other.0)
    }
}

impl Point for Embedding {
    fn distance(&self, other: &Self) -> f32 {
        1.0 - dot(&self.0, &other.0)
    }
}

/// Dot product of two equal-length slices, with an AVX2 + FMA kernel when the CPU has it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU features the kernel is compiled for were detected at run time.
            return unsafe { dot_avx2_fma(a, b) };
        }
    }
    dot_portable(a, b)
}

/// Portable dot product written so the compiler vectorises it (eight independent lanes).
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// The same sum with AVX2 fused multiply-adds (two 8-lane accumulators).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: every load reads 8 floats at offsets below `n`, inside both slices.
    unsafe {
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
    }
    let acc = _mm256_add_ps(acc0, acc1);
    let s = _mm_add_ps(_mm256_extractf128_ps(acc, 1), _mm256_castps256_ps128(acc));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    let mut total = _mm_cvtss_f32(s);
    for j in i..n {
        total += a[j] * b[j];
    }
    total
}

/// Dot products of `query` with every `dims`-wide row of `flat`, appended to `out`.
/// The CPU check happens once per call, not once per row.
pub fn dots(query: &[f32], flat: &[f32], dims: usize, out: &mut Vec<f32>) {
    if dims == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU features the kernel is compiled for were detected at run time.
            unsafe { dots_avx2_fma(query, flat, dims, out) };
            return;
        }
    }
    out.extend(flat.chunks_exact(dims).map(|row| dot_portable(query, row)));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dots_avx2_fma(query: &[f32], flat: &[f32], dims: usize, out: &mut Vec<f32>) {
    out.extend(flat.chunks_exact(dims).map(|row| dot_avx2_fma(query, row)));
}

/// The HNSW index over user embeddings; point `i` is row `i` of the [`UserTable`].
pub type Index = Hnsw<Embedding>;

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
            let (users, index) = shard::artifact_names(0, false);
            return vec![(0, users, index)];
        }
        self.shards
            .iter()
            .filter(|s| selection.is_none_or(|sel| sel.contains(&s.id)))
            .map(|s| {
                let (users, index) = shard::artifact_names(s.id, true);
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
            FORMAT_VERSION
        }
    }

    /// Total size of the artifacts a loader of `selection` reads (the selected shards'
    /// user tables and indexes, and `projection.bin`; not the report), as listed.
    pub fn artifacts_bytes(&self, selection: Option<&[u32]>) -> u64 {
        let mut names = vec![crate::projection::PROJECTION.to_owned()];
        for (_, users, index) in self.shard_artifacts(selection) {
            names.push(users);
            names.push(index);
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
        if self.format_version < 3 {
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
        2 | 3 => decode(USERS, bytes),
        received => Err(Error::UnsupportedFormat {
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

/// A verified, decoded model version ready for queries: all its shards, or the ones this
/// process serves, in one row space.
pub struct Model {
    /// The version's manifest.
    pub manifest: Manifest,
    /// Per-user metadata of the shards held, shard after shard (row `i` is point `i` of
    /// [`Model::shards`]).
    pub users: UserTable,
    /// The HNSW indexes of the shards held.
    pub shards: Shards,
    by_handle: HashMap<u64, u32>,
    /// The fold-in projection for profile queries, when the version has one.
    projection: Option<crate::projection::Projection>,
    /// Tag ids by [`crate::tags::key`], built with the projection.
    tag_keys: HashMap<String, u32>,
}

/// One shard's decoded parts: its number, user summaries and index (point `i` is user `i`).
pub type ShardParts = (u32, Vec<UserSummary>, Index);

impl Model {
    /// Assembles an unsharded model and checks that its parts agree with each other and
    /// the manifest.
    pub fn from_parts(manifest: Manifest, users: UserTable, index: Index) -> Result<Model> {
        Model::from_shards(manifest, users.tags, vec![(0, users.users, index)])
    }

    /// Assembles a model from some or all of its shards (in the given order) and checks
    /// them: counts against the manifest, dimensions, tag references, feature order,
    /// unique handles, and that every user sits in the shard its handle hashes to.
    pub fn from_shards(
        manifest: Manifest,
        tags: Vec<String>,
        parts: Vec<ShardParts>,
    ) -> Result<Model> {
        if manifest.tags != tags.len() as u64 {
            return Err(Error::Inconsistent(format!(
                "manifest says {} tags, user table has {}",
                manifest.tags,
                tags.len()
            )));
        }
        let count = manifest.shard_count();
        let whole = parts.len() as u32 == count;
        let total: usize = parts.iter().map(|p| p.1.len()).sum();
        if whole && manifest.users != total as u64 {
            return Err(Error::Inconsistent(format!(
                "manifest says {} users, user table has {total}",
                manifest.users
            )));
        }
        let tag_count = tags.len() as u32;
        let mut by_handle = HashMap::with_capacity(total);
        let mut users = Vec::with_capacity(total);
        let mut indexes = Vec::with_capacity(parts.len());
        for (id, shard_users, index) in parts {
            let listed = manifest.shards.get(id as usize).map(|s| s.users);
            if listed.is_some_and(|n| n != shard_users.len() as u64) || id >= count {
                return Err(Error::Inconsistent(format!(
                    "shard {id} has {} users, the manifest lists {listed:?}",
                    shard_users.len()
                )));
            }
            let points = index.iter().count();
            if points != shard_users.len() {
                return Err(Error::Inconsistent(format!(
                    "index has {points} points, user table has {}",
                    shard_users.len()
                )));
            }
            for u in shard_users {
                check_user(&u, tag_count)?;
                if count > 1 && shard::shard_of(u.handle, count) != id {
                    return Err(Error::Inconsistent(format!(
                        "user {} is in shard {id}, its handle belongs to shard {}",
                        u.handle,
                        shard::shard_of(u.handle, count)
                    )));
                }
                if by_handle.insert(u.handle, users.len() as u32).is_some() {
                    return Err(Error::Inconsistent(format!(
                        "user {} appears twice",
                        u.handle
                    )));
                }
                users.push(u);
            }
            indexes.push((id, index));
        }
        let exact = manifest.users <= EXACT_SCAN_MAX_USERS as u64;
        let shards = Shards::new(indexes, manifest.dimensions as usize, exact)?;
        Ok(Model {
            manifest,
            users: UserTable { tags, users },
            shards,
            by_handle,
            projection: None,
            tag_keys: HashMap::new(),
        })
    }

    /// Attaches the fold-in projection after checking it against the model.
    pub fn with_projection(mut self, projection: crate::projection::Projection) -> Result<Model> {
        projection.validate(self.users.tags.len(), self.dimensions())?;
        self.tag_keys = crate::projection::key_index(&self.users.tags);
        self.projection = Some(projection);
        Ok(self)
    }

    /// The fold-in projection, if this version has one.
    pub fn projection(&self) -> Option<&crate::projection::Projection> {
        self.projection.as_ref()
    }

    /// Folds a profile into the embedding space; `None` when the version has no projection.
    pub fn fold(&self, profile: &crate::projection::Profile) -> Option<crate::projection::Folded> {
        Some(self.projection.as_ref()?.fold(profile, &self.tag_keys))
    }

    /// Row (= index point) of a user, if the shards held know them.
    pub fn row_of(&self, handle: u64) -> Option<u32> {
        self.by_handle.get(&handle).copied()
    }

    /// The shard a handle belongs to, by [`shard::shard_of`].
    pub fn shard_of(&self, handle: u64) -> u32 {
        shard::shard_of(handle, self.manifest.shard_count())
    }

    /// True when this process holds every shard of the version.
    pub fn holds_all_shards(&self) -> bool {
        self.shards.shards().len() as u32 == self.manifest.shard_count()
    }

    /// The numbers of the shards held.
    pub fn shards_held(&self) -> Vec<u32> {
        self.shards.shards().iter().map(|s| s.id).collect()
    }

    /// The embedding of the user at `row`.
    pub fn embedding(&self, row: u32) -> &Embedding {
        self.shards.embedding(row)
    }

    /// Embedding dimension.
    pub fn dimensions(&self) -> usize {
        self.manifest.dimensions as usize
    }

    /// Number of users held.
    pub fn len(&self) -> usize {
        self.users.users.len()
    }

    /// True when the model holds no users.
    pub fn is_empty(&self) -> bool {
        self.users.users.is_empty()
    }

    /// Name of tag `id`.
    pub fn tag(&self, id: u32) -> &str {
        &self.users.tags[id as usize]
    }
}

/// A user's tag references are in range and their features sorted, unique and finite.
fn check_user(u: &UserSummary, tag_count: u32) -> Result<()> {
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

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_ARTIFACT_BYTES as usize }>()
}

/// How much memory decoding may claim per input byte. bincode counts what it allocates
/// (a length-prefixed byte string claims its length before it is read) and the in-memory
/// size of each value it reads (a one-byte varint becomes an 8-byte integer), so real
/// artifacts stay far under 8 times their size; 32 leaves a wide margin. The limit is
/// this times the input size rounded up to a power of two (at least 1 MiB, at most
/// [`MAX_ARTIFACT_BYTES`]), so at most 64 bytes per input byte above 32 KiB of input.
pub const DECODE_EXPANSION: usize = 32;

/// Encodes an artifact with bincode 2.
pub fn encode<T: Serialize>(name: &str, value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, bincode_config()).map_err(|e| Error::Encode {
        name: name.into(),
        message: e.to_string(),
    })
}

fn decode_within<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> std::result::Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard().with_limit::<LIMIT>())
}

/// Decodes an artifact with bincode 2; trailing bytes are an error.
///
/// The decoder may claim at most [`DECODE_EXPANSION`] times the input's size, rounded up
/// to a power of two between 1 MiB and [`MAX_ARTIFACT_BYTES`], so a corrupt or hostile
/// length prefix in a few bytes cannot make it allocate gigabytes (found by fuzzing:
/// `fuzz/regressions/artifact/`).
pub fn decode<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T> {
    let budget = bytes
        .len()
        .saturating_mul(DECODE_EXPANSION)
        .clamp(1 << 20, MAX_ARTIFACT_BYTES as usize)
        .next_power_of_two();
    macro_rules! within {
        ($($shift:literal)*) => {
            match budget.trailing_zeros() {
                $($shift => decode_within::<T, { 1 << $shift }>(bytes),)*
                _ => decode_within::<T, { MAX_ARTIFACT_BYTES as usize }>(bytes),
            }
        };
    }
    let decoded = within!(20 21 22 23 24 25 26 27 28 29 30 31);
    let (value, used) = decoded.map_err(|e| Error::Decode {
        name: name.into(),
        message: e.to_string(),
    })?;
    if used != bytes.len() {
        return Err(Error::Decode {
            name: name.into(),
            message: format!("{} trailing bytes", bytes.len() - used),
        });
    }
    Ok(value)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_prefix_far_beyond_the_input_is_refused_before_allocating() {
        // Given 7 bytes whose varint length prefix announces a 2 GB byte string (the
        // input libFuzzer found: fuzz/regressions/artifact/),
        let bytes = [0x25, 0xfc, 0xff, 0x80, 0xdb, 0x84, 0x00];
        // when they are decoded as a string, then the decoder refuses at its limit
        // (1 MiB for so small an input) instead of allocating and then running out of input.
        let err = decode::<String>("fuzzed", &bytes[1..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("LimitExceeded"), "{err}");
        // A string that is really there still decodes.
        let ok = encode("s", &"x".repeat(100_000)).unwrap();
        assert_eq!(decode::<String>("s", &ok).unwrap().len(), 100_000);
    }

    #[test]
    fn dot_matches_naive_sum_for_odd_lengths() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.1).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
    }

    #[test]
    fn the_simd_kernel_agrees_with_the_portable_one() {
        for len in [0, 1, 7, 16, 31, 64, 100] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            assert!(
                (dot(&a, &b) - dot_portable(&a, &b)).abs() < 1e-4,
                "length {len}"
            );
        }
    }

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
                received: 99
            })
        ));
    }

    #[test]
    fn decode_refuses_trailing_bytes() {
        let mut bytes = encode("t", &vec![1u32, 2, 3]).unwrap();
        assert_eq!(decode::<Vec<u32>>("t", &bytes).unwrap(), vec![1, 2, 3]);
        bytes.push(0);
        assert!(decode::<Vec<u32>>("t", &bytes).is_err());
    }
}
