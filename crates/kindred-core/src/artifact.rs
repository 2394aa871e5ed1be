//! The model format: what one published version holds and how it is verified.
//!
//! A version is a folder `models/<version>/` with three objects:
//!
//! | object | encoding | content |
//! |---|---|---|
//! | `manifest.json` | JSON | [`Manifest`]: format version, parameters, counts, quality figures, size and SHA-256 of every artifact |
//! | `users.bin` | bincode 2 | [`UserTable`]: tag vocabulary and one [`UserSummary`] per user |
//! | `index.bin` | bincode 2 | [`Index`]: the HNSW graph over the users' unit embeddings |
//!
//! Row `i` of the user table is point `i` of the index, so a user's embedding is read
//! from the index itself and stored only once.

use std::collections::HashMap;

use instant_distance::{Hnsw, Point, PointId};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Format version written by this build.
///
/// - 1: users, index, manifest.
/// - 2: each user also carries its strongest [`Feature`]s, for explanations.
pub const FORMAT_VERSION: u32 = 2;
/// Oldest format version this build still reads (loaders refuse anything outside
/// `OLDEST_READABLE_FORMAT..=FORMAT_VERSION`), so a function deployed ahead of the batch
/// keeps serving the model already published.
pub const OLDEST_READABLE_FORMAT: u32 = 1;
/// Largest artifact this build reads (also the bincode decode limit).
pub const MAX_ARTIFACT_BYTES: u64 = 4 << 30;
/// Models with at most this many users also keep their embeddings in one contiguous
/// array and answer queries by an exact scan, which measured as fast as the HNSW search
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
}

impl Manifest {
    /// The entry of artifact `name`.
    pub fn artifact(&self, name: &str) -> Result<&ArtifactEntry> {
        self.artifacts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Error::Inconsistent(format!("manifest lists no artifact {name}")))
    }

    /// Total size of the artifacts a loader reads (`users.bin`, `index.bin` and
    /// `projection.bin`; not the report), as the manifest lists them.
    pub fn artifacts_bytes(&self) -> u64 {
        self.artifacts
            .iter()
            .filter(|a| [USERS, INDEX, crate::projection::PROJECTION].contains(&a.name.as_str()))
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
        Ok(manifest)
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
        FORMAT_VERSION => decode(USERS, bytes),
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

/// A verified, decoded model version ready for queries.
pub struct Model {
    /// The version's manifest.
    pub manifest: Manifest,
    /// Per-user metadata.
    pub users: UserTable,
    /// The HNSW index.
    pub index: Index,
    by_handle: HashMap<u64, u32>,
    /// Row-major copy of the embeddings for the exact scan (small models only).
    flat: Option<Vec<f32>>,
    /// The fold-in projection for profile queries, when the version has one.
    projection: Option<crate::projection::Projection>,
    /// Tag ids by [`crate::tags::key`], built with the projection.
    tag_keys: HashMap<String, u32>,
}

impl Model {
    /// Assembles a model and checks that its parts agree with each other and the manifest.
    pub fn from_parts(manifest: Manifest, users: UserTable, index: Index) -> Result<Model> {
        let n = users.users.len();
        if manifest.users != n as u64 {
            return Err(Error::Inconsistent(format!(
                "manifest says {} users, user table has {n}",
                manifest.users
            )));
        }
        let points = index.iter().count();
        if points != n {
            return Err(Error::Inconsistent(format!(
                "index has {points} points, user table has {n}"
            )));
        }
        if manifest.tags != users.tags.len() as u64 {
            return Err(Error::Inconsistent(format!(
                "manifest says {} tags, user table has {}",
                manifest.tags,
                users.tags.len()
            )));
        }
        let dims = manifest.dimensions as usize;
        for (_, p) in index.iter() {
            if p.0.len() != dims {
                return Err(Error::InvalidVecDimension {
                    expected: dims,
                    received: p.0.len(),
                });
            }
        }
        let tag_count = users.tags.len() as u32;
        let mut by_handle = HashMap::with_capacity(n);
        for (row, u) in users.users.iter().enumerate() {
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
            if by_handle.insert(u.handle, row as u32).is_some() {
                return Err(Error::Inconsistent(format!(
                    "user {} appears twice",
                    u.handle
                )));
            }
        }
        let flat = (n <= EXACT_SCAN_MAX_USERS).then(|| {
            index
                .iter()
                .flat_map(|(_, p)| p.0.iter().copied())
                .collect()
        });
        Ok(Model {
            manifest,
            users,
            index,
            by_handle,
            flat,
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

    /// Row (= index point) of a user, if the model knows them.
    pub fn row_of(&self, handle: u64) -> Option<u32> {
        self.by_handle.get(&handle).copied()
    }

    /// The embedding of the user at `row`.
    pub fn embedding(&self, row: u32) -> &Embedding {
        &self.index[PointId::from(row)]
    }

    /// The embeddings as one row-major array (row `i` at `i * dimensions`), when the model
    /// is small enough to be searched exactly ([`EXACT_SCAN_MAX_USERS`]).
    pub fn flat_embeddings(&self) -> Option<&[f32]> {
        self.flat.as_deref()
    }

    /// Embedding dimension.
    pub fn dimensions(&self) -> usize {
        self.manifest.dimensions as usize
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.users.len()
    }

    /// True when the model has no users.
    pub fn is_empty(&self) -> bool {
        self.users.users.is_empty()
    }

    /// Name of tag `id`.
    pub fn tag(&self, id: u32) -> &str {
        &self.users.tags[id as usize]
    }
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
