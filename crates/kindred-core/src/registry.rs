//! Publishing model versions and loading the current one.
//!
//! Layout inside a store:
//!
//! ```text
//! current.json                  pointer: {"version", "manifest_sha256", "updated_at", "previous", "rollback"}
//! models/<version>/manifest.json
//! models/<version>/users.bin     (sharded, format 3: users-0000.bin, users-0001.bin, ...)
//! models/<version>/index.bin     (sharded, format 3: index-0000.bin, index-0001.bin, ...)
//! models/<version>/projection.bin
//! models/<version>/courses.bin   (the catalogue and viewed courses, for recommendations)
//! models/<version>/delta.bin     (an updated version, format 4: delta-0000.bin, ... when sharded)
//! history/<time>-rollback.json   one record per rollback (see crate::versions)
//! ```
//!
//! Versions are immutable (written with "if absent") and named so that they sort by
//! creation time. The pointer is written last, conditionally on the pointer the
//! publisher read at the start, and a publish never moves it to an older version: a
//! crash at any point leaves the previous version current, and two concurrent runs
//! cannot roll the pointer back. Only an explicit, recorded
//! [`crate::versions::rollback`] does.

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::codec::{decode, sha256_hex};
use crate::delta::Delta;
use crate::error::{Error, Result};
use crate::manifest::{ArtifactEntry, COURSES, MANIFEST, Manifest, PROJECTION, REPORT};
use crate::model::Model;
use crate::search::Index;
use crate::shard::Selection;
use crate::store::{ObjectStore, Precondition};
use crate::users::{UserTable, decode_users};

/// Key of the pointer object.
pub const POINTER: &str = "current.json";
/// Largest pointer object accepted.
const MAX_POINTER_BYTES: usize = 64 * 1024;

/// The pointer to the current version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pointer {
    /// Current version name.
    pub version: String,
    /// SHA-256 of that version's manifest, checked when loading.
    pub manifest_sha256: String,
    /// When the pointer was written (RFC 3339).
    pub updated_at: String,
    /// The version the pointer named before (absent in pointers written by older releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Set when the pointer was moved by [`crate::versions::rollback`], not a publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<crate::versions::Rollback>,
}

impl Pointer {
    /// The name a version must sort after to become current by a publish: the current
    /// version's, or after a rollback its fence (the rollback's own time), so that a
    /// run started before the rollback cannot undo it.
    pub fn floor(&self) -> &str {
        match &self.rollback {
            Some(r) if r.fence.as_str() > self.version.as_str() => &r.fence,
            _ => &self.version,
        }
    }
}

/// Key of an object inside a version folder.
pub fn version_key(version: &str, name: &str) -> String {
    format!("models/{version}/{name}")
}

/// A new version name: UTC time to the millisecond plus a random suffix, sortable by time.
pub fn new_version_name() -> String {
    version_name_at(unix_millis())
}

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The version name for the instant `millis` after the Unix epoch, with fresh noise.
fn version_name_at(millis: u64) -> String {
    let (date, time) = civil(millis / 1000);
    let noise = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(millis);
        h.write_u32(std::process::id());
        h.finish() as u32
    };
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}{:03}Z-{noise:08x}",
        date.0,
        date.1,
        date.2,
        time.0,
        time.1,
        time.2,
        millis % 1000
    )
}

/// The instant a version name was made, in milliseconds after the Unix epoch.
fn version_millis(name: &str) -> Option<u64> {
    let stamp = name.get(..19)?;
    let num = |range: std::ops::Range<usize>| stamp.get(range)?.parse::<u64>().ok();
    if stamp.as_bytes().get(8) != Some(&b'T') || stamp.as_bytes().get(18) != Some(&b'Z') {
        return None;
    }
    let (y, mo, d) = (num(0..4)? as i64, num(4..6)?, num(6..8)?);
    let (h, mi, se, ms) = (num(9..11)?, num(11..13)?, num(13..15)?, num(15..18)?);
    // Days from the civil date (the inverse of `civil`).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (mo as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) * 1000) + ms)
}

/// A name for a version about to be trained for `store`: the clock's, or, when the
/// current version's name sorts at or after it (its publisher's clock ran ahead of this
/// one), one millisecond after the current version's. A run started after a version was
/// published so always sorts after it, whatever the two clocks say; only runs in flight
/// together are ordered by their clocks.
pub async fn next_version_name<S: ObjectStore>(store: &S) -> Result<String> {
    let name = new_version_name();
    let Some((current, _)) = read_pointer(store).await? else {
        return Ok(name);
    };
    let floor = current.floor();
    if name.as_str() > floor {
        return Ok(name);
    }
    let millis = version_millis(floor).ok_or_else(|| {
        Error::Inconsistent(format!(
            "the current version or rollback {floor:?} is not named <UTC time>-<hex>"
        ))
    })?;
    Ok(version_name_at(millis + 1))
}

/// Current time as RFC 3339 UTC (`2026-11-28T18:04:32Z`).
pub fn now_rfc3339() -> String {
    let ((y, mo, d), (h, mi, s)) = civil(unix_millis() / 1000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Splits Unix seconds into a civil UTC date and time (Howard Hinnant's algorithm).
fn civil(secs: u64) -> ((i64, u32, u32), (u32, u32, u32)) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        (y, m, d),
        (
            (rem / 3600) as u32,
            (rem % 3600 / 60) as u32,
            (rem % 60) as u32,
        ),
    )
}

/// Reads the pointer and its entity tag; `Ok(None)` when nothing was published.
pub async fn read_pointer<S: ObjectStore>(store: &S) -> Result<Option<(Pointer, String)>> {
    let read = store.get_at_most(POINTER, MAX_POINTER_BYTES as u64).await;
    let obj = match read {
        Ok(Some(obj)) => obj,
        Ok(None) => return Ok(None),
        Err(Error::SizeMismatch { received, .. }) => {
            return Err(Error::TooLarge {
                name: POINTER.into(),
                size: received,
                limit: MAX_POINTER_BYTES as u64,
            });
        }
        Err(e) => return Err(e),
    };
    let pointer = serde_json::from_slice(&obj.bytes).map_err(|e| Error::Decode {
        name: POINTER.into(),
        message: e.to_string(),
    })?;
    Ok(Some((pointer, obj.etag)))
}

/// What a successful publish did.
#[derive(Clone, Debug, Serialize)]
pub struct Published {
    /// The version now current.
    pub version: String,
    /// The version it replaced, if any.
    pub previous: Option<String>,
    /// The manifest as written (with artifact sizes and digests).
    pub manifest: Manifest,
}

/// Publishes a version: every artifact, then the manifest, then the pointer.
///
/// `manifest.artifacts` is filled in here from `artifacts`. Steps that fail leave the
/// previous version current; a version older than the current one is written but not
/// made current ([`Error::StaleVersion`]); a concurrent publisher that moved the pointer
/// first makes this one fail with [`Error::PointerRace`] unless ours is newer.
pub async fn publish<S: ObjectStore, N: AsRef<str>>(
    store: &S,
    mut manifest: Manifest,
    artifacts: Vec<(N, Vec<u8>)>,
) -> Result<Published> {
    let start = read_pointer(store).await?;
    manifest.artifacts = Vec::with_capacity(artifacts.len());
    for (name, bytes) in artifacts {
        let entry = put_artifact(store, &manifest.version, name.as_ref(), bytes).await?;
        manifest.artifacts.push(entry);
    }
    commit_from(store, manifest, start, false).await
}

/// Writes one artifact of `version` (if absent) and describes it. An object already
/// there with the same content counts as written, so a retried step succeeds; different
/// content is [`Error::PreconditionFailed`].
pub async fn put_artifact<S: ObjectStore>(
    store: &S,
    version: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Result<ArtifactEntry> {
    let entry = ArtifactEntry::describe(name, &bytes);
    let key = version_key(version, name);
    match store.put(&key, bytes, Precondition::IfAbsent).await {
        Ok(()) => Ok(entry),
        Err(Error::PreconditionFailed { key }) => already_written(store, key, entry).await,
        Err(e) => Err(e),
    }
}

/// `entry` when the object at `key`, which a write found already there, is its content
/// (a retried step); [`Error::PreconditionFailed`] otherwise.
async fn already_written<S: ObjectStore>(
    store: &S,
    key: String,
    entry: ArtifactEntry,
) -> Result<ArtifactEntry> {
    match store.get(&key).await? {
        Some(obj) if entry.verify(&obj.bytes).is_ok() => Ok(entry),
        _ => Err(Error::PreconditionFailed { key }),
    }
}

/// Copies artifact `entry` of version `from` into version `to` (if absent), unchanged:
/// an update reuses a version's indexes and user tables this way (on S3, without their
/// bytes passing through the updater). A retry that finds the copy already made checks
/// it against `entry`.
pub async fn copy_artifact<S: ObjectStore>(
    store: &S,
    from: &str,
    to: &str,
    entry: &ArtifactEntry,
) -> Result<ArtifactEntry> {
    let target = version_key(to, &entry.name);
    match store.copy(&version_key(from, &entry.name), &target).await {
        Ok(()) => Ok(entry.clone()),
        Err(Error::PreconditionFailed { key }) => already_written(store, key, entry.clone()).await,
        Err(e) => Err(e),
    }
}

/// Publishes a version whose artifacts are already written and listed in
/// `manifest.artifacts` (by [`put_artifact`], possibly from several processes): writes
/// the manifest, then moves the pointer, with the same guarantees as [`publish`].
pub async fn commit<S: ObjectStore>(store: &S, manifest: Manifest) -> Result<Published> {
    let start = read_pointer(store).await?;
    commit_from(store, manifest, start, false).await
}

/// [`commit`] for a version built on `base` (the pointer and its entity tag as read
/// before building, as `kindred-batch update` does): the pointer moves only if it is
/// still that one. Otherwise nothing becomes current and the error is
/// [`Error::BaseChanged`], so an update never replaces a version published while it ran.
pub async fn commit_on<S: ObjectStore>(
    store: &S,
    manifest: Manifest,
    base: (Pointer, String),
) -> Result<Published> {
    commit_from(store, manifest, Some(base), true).await
}

async fn commit_from<S: ObjectStore>(
    store: &S,
    manifest: Manifest,
    start: Option<(Pointer, String)>,
    only_over_start: bool,
) -> Result<Published> {
    let version = manifest.version.clone();
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Encode {
        name: MANIFEST.into(),
        message: e.to_string(),
    })?;
    let manifest_key = version_key(&version, MANIFEST);
    let mut manifest = manifest;
    let mut digest = sha256_hex(&manifest_bytes);
    match store
        .put(&manifest_key, manifest_bytes, Precondition::IfAbsent)
        .await
    {
        Ok(()) => {}
        // A retried commit (the publish step of a split run) finds the manifest its first
        // attempt wrote: that one stands, if it is a manifest of this version with the
        // same artifacts.
        Err(Error::PreconditionFailed { key }) => {
            let existing = store
                .get(&key)
                .await?
                .ok_or(Error::PreconditionFailed { key: key.clone() })?;
            let parsed = Manifest::parse(&existing.bytes)?;
            let same = parsed.version == version
                && parsed
                    .artifacts
                    .iter()
                    .filter(|a| a.name != REPORT)
                    .eq(manifest.artifacts.iter().filter(|a| a.name != REPORT));
            if !same {
                return Err(Error::PreconditionFailed { key });
            }
            digest = sha256_hex(&existing.bytes);
            manifest = parsed;
        }
        Err(e) => return Err(e),
    }
    let mut pointer = Pointer {
        version: version.clone(),
        manifest_sha256: digest,
        updated_at: now_rfc3339(),
        previous: None,
        rollback: None,
    };

    let mut current = start;
    for _attempt in 0..5 {
        let (condition, previous) = match &current {
            None => (Precondition::IfAbsent, None),
            // Already current (a retried commit whose first attempt moved the pointer).
            Some((p, _))
                if p.version == version && p.manifest_sha256 == pointer.manifest_sha256 =>
            {
                return Ok(Published {
                    version,
                    previous: None,
                    manifest,
                });
            }
            Some((p, etag)) => {
                // A training may replace an update folded into an older training than
                // itself, though the update's name sorts later (it ran while the
                // training did); the next update folds its delta into the training.
                let supersedes = manifest.update.is_none()
                    && !only_over_start
                    && p.version >= version
                    && updated_from_before(store, &p.version, &version).await?;
                if p.version >= version && !supersedes {
                    return Err(Error::StaleVersion {
                        current: p.version.clone(),
                        candidate: version,
                    });
                }
                if let Some(r) = p.rollback.as_ref().filter(|r| r.fence >= version) {
                    return Err(Error::StartedBeforeRollback {
                        candidate: version,
                        rollback_at: r.at.clone(),
                    });
                }
                (Precondition::IfMatch(etag.clone()), Some(p.version.clone()))
            }
        };
        pointer.previous = previous.clone();
        let pointer_bytes = serde_json::to_vec_pretty(&pointer).map_err(|e| Error::Encode {
            name: POINTER.into(),
            message: e.to_string(),
        })?;
        match store.put(POINTER, pointer_bytes, condition).await {
            Ok(()) => {
                info!(
                    version,
                    previous = previous.as_deref().unwrap_or("none"),
                    "published"
                );
                return Ok(Published {
                    version,
                    previous,
                    manifest,
                });
            }
            Err(Error::PreconditionFailed { .. }) if only_over_start => {
                return Err(Error::BaseChanged {
                    base: previous.unwrap_or_default(),
                    current: read_pointer(store).await?.map(|c| c.0.version),
                });
            }
            Err(Error::PreconditionFailed { .. }) => {
                // Someone else moved the pointer. If theirs is older, retry on top of it;
                // if newer, `StaleVersion` above ends the loop.
                current = read_pointer(store).await?;
                warn!(version, now = ?current.as_ref().map(|c| &c.0.version), "pointer changed while publishing");
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::PointerRace {
        current: current.map(|c| c.0.version),
    })
}

/// True when `current` is an update (`kindred-batch update`) of a training older than
/// `candidate`.
async fn updated_from_before<S: ObjectStore>(
    store: &S,
    current: &str,
    candidate: &str,
) -> Result<bool> {
    let key = version_key(current, MANIFEST);
    let Some(obj) = store
        .get_at_most(&key, crate::manifest::MAX_MANIFEST_BYTES)
        .await?
    else {
        return Ok(false);
    };
    Ok(Manifest::parse(&obj.bytes)?
        .update
        .is_some_and(|u| u.trained.as_str() < candidate))
}

/// Loads and verifies one version. `manifest_sha256`, when given, must match the manifest.
///
/// Verification: manifest digest and format version, each artifact's size and SHA-256,
/// bincode decoding under a size limit, and consistency between the parts.
pub async fn load_version<S: ObjectStore>(
    store: &S,
    version: &str,
    manifest_sha256: Option<&str>,
) -> Result<Model> {
    load_version_within(store, version, manifest_sha256, None).await
}

/// [`load_version`] with a memory limit: when the artifacts the manifest lists add up to
/// more than `max_model_bytes`, the version is refused with [`Error::ModelTooLarge`]
/// before any artifact is fetched.
pub async fn load_version_within<S: ObjectStore>(
    store: &S,
    version: &str,
    manifest_sha256: Option<&str>,
    max_model_bytes: Option<u64>,
) -> Result<Model> {
    let options = LoadOptions {
        max_model_bytes,
        ..LoadOptions::default()
    };
    load_version_with(store, version, manifest_sha256, &options).await
}

/// What to load of a version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Refuse a version whose selected artifacts add up to more than this many bytes
    /// ([`Error::ModelTooLarge`]) before fetching any of them. The decoded model takes
    /// about as much memory as its artifacts (embeddings and graph are stored as they are
    /// held), so the sum is the estimate; the caller leaves room for the version it
    /// already holds.
    pub max_model_bytes: Option<u64>,
    /// Load only these shards (all when `None`): listed shards must exist in the version
    /// ([`Error::UnknownShard`]; an unsharded version is shard 0), a group takes its share
    /// of whatever count the version has.
    pub shards: Option<Selection>,
    /// Search the HNSW index whatever the model's size, never an exact scan (the exact
    /// scan is the default up to [`crate::model::EXACT_SCAN_MAX_USERS`] users): for
    /// tests and fuzzing of the index path on small models.
    pub index_only: bool,
    /// Hold the index points of shards searched by their graphs as 16-bit fixed point
    /// ([`crate::shard::Shards::compact`]): half the embeddings' memory for a model above
    /// [`crate::model::EXACT_SCAN_MAX_USERS`] users, whose searches and similarities then
    /// come from the rounded points. The predict function sets it unless told otherwise;
    /// the batch job and tools read the stored values.
    pub compact_points: bool,
    /// Drop the learners' profiles once loaded ([`crate::users::Users::drop_profiles`]):
    /// for a process whose answers never show one (about 130 MB less per million users).
    pub drop_profiles: bool,
}

/// Loads and verifies the shards of one version that `options` selects.
pub async fn load_version_with<S: ObjectStore>(
    store: &S,
    version: &str,
    manifest_sha256: Option<&str>,
    options: &LoadOptions,
) -> Result<Model> {
    let key = version_key(version, MANIFEST);
    let obj = store
        .get_at_most(&key, crate::manifest::MAX_MANIFEST_BYTES)
        .await?
        .ok_or(Error::MissingArtifact { key })?;
    if let Some(expected) = manifest_sha256 {
        ArtifactEntry {
            name: MANIFEST.into(),
            bytes: obj.bytes.len() as u64,
            sha256: expected.into(),
        }
        .verify(&obj.bytes)
        .or_else(|e| match e {
            // The pointer does not record the size; only the digest counts.
            Error::SizeMismatch { .. } => Ok(()),
            e => Err(e),
        })?;
    }
    let manifest = Manifest::parse(&obj.bytes)?;
    if manifest.version != version {
        return Err(Error::Inconsistent(format!(
            "manifest of {version} names version {}",
            manifest.version
        )));
    }
    let count = manifest.shard_count();
    let selected = match &options.shards {
        None => None,
        Some(selection) => Some(
            selection
                .resolve(count)
                .map_err(|shard| Error::UnknownShard {
                    version: version.to_owned(),
                    shard,
                    count,
                })?,
        ),
    };
    let selection = selected.as_deref();
    if let Some(limit) = options.max_model_bytes {
        let bytes = manifest.artifacts_bytes(selection);
        if bytes > limit {
            return Err(Error::ModelTooLarge {
                version: version.to_owned(),
                bytes,
                limit,
            });
        }
    }
    let mut model = fetch_model_as(store, manifest, selection, options).await?;
    if options.index_only {
        model.shards.index_only();
    }
    if options.compact_points {
        model.shards.compact();
    }
    if options.drop_profiles {
        // Each shard's went as it was decoded; this also takes a delta's users'.
        model.users.users.drop_profiles();
    }
    Ok(model)
}

/// Fetches, verifies and decodes the shards of `manifest` in `selection` (all when
/// `None`) and its projection: what [`load_version_with`] does once the manifest is
/// trusted. Also used by a publisher to check what it wrote before committing.
pub async fn fetch_model<S: ObjectStore>(
    store: &S,
    manifest: Manifest,
    selection: Option<&[u32]>,
) -> Result<Model> {
    fetch_model_as(store, manifest, selection, &LoadOptions::default()).await
}

/// [`fetch_model`], shard after shard: each shard's artifacts are read and decoded before
/// the next one's are read, so only one shard's bytes are held beside what is decoded.
/// What `options` asks to drop (the `f32` points of a model served by its graphs, the
/// profiles) goes as soon as each shard is decoded (and checked), before the next is read.
async fn fetch_model_as<S: ObjectStore>(
    store: &S,
    manifest: Manifest,
    selection: Option<&[u32]>,
    options: &LoadOptions,
) -> Result<Model> {
    let started = std::time::Instant::now();
    let mut read = std::time::Duration::ZERO;
    // As `Model::from_shards` decides: a small model is scanned and keeps `f32`.
    let compact =
        options.compact_points && manifest.users > crate::model::EXACT_SCAN_MAX_USERS as u64;
    let drop_profiles = options.drop_profiles;
    let (format, dims) = (manifest.format_version, manifest.dimensions as usize);
    let mut tags: Option<Vec<String>> = None;
    let mut parts = Vec::new();
    for (id, users, index_name) in manifest.shard_artifacts(selection) {
        let reading = std::time::Instant::now();
        let users_bytes = fetch_verified(store, &manifest, &users).await?;
        let index_bytes = fetch_verified(store, &manifest, &index_name).await?;
        let delta = match manifest.delta_of(id) {
            Some(name) => Some((fetch_verified(store, &manifest, &name).await?, name)),
            None => None,
        };
        read += reading.elapsed();
        let (table, index, delta) = blocking(move || {
            let mut table: UserTable = decode_users(format, &users_bytes)?;
            drop(users_bytes);
            if drop_profiles {
                // Checked before they go, as `Model::from_shards` checks the rest.
                for u in &table.users {
                    crate::users::check_user(u, table.tags.len() as u32)?;
                }
                table.users.drop_profiles();
            }
            crate::graph::check_index(&index_name, &index_bytes, dims)?;
            let mut index: Index = decode(&index_name, &index_bytes)?;
            drop(index_bytes);
            if compact {
                index.compact();
            }
            let delta: Delta = match delta {
                Some((bytes, name)) => decode(&name, &bytes)?,
                None => Delta::default(),
            };
            Ok((table, index, delta))
        })
        .await?;
        match &tags {
            None => tags = Some(table.tags),
            Some(t) if *t == table.tags => {}
            Some(_) => {
                return Err(Error::Inconsistent(format!(
                    "shard {id} has another tag vocabulary"
                )));
            }
        }
        parts.push((id, table.users, index, delta));
    }
    // Optional: versions published before cold-start queries have no projection, and
    // those published before recommendations no course table.
    let reading = std::time::Instant::now();
    let projection_bytes = fetch_optional(store, &manifest, PROJECTION).await?;
    let courses_bytes = fetch_optional(store, &manifest, COURSES).await?;
    read += reading.elapsed();
    let version = manifest.version.clone();
    let model = blocking(move || {
        let mut model = Model::from_shards(manifest, tags.unwrap_or_default(), parts)?;
        if let Some(bytes) = projection_bytes {
            model = model.with_projection(decode(PROJECTION, &bytes)?)?;
        }
        if let Some(bytes) = courses_bytes {
            model = model.with_courses(decode(COURSES, &bytes)?)?;
        }
        Ok(model)
    })
    .await?;
    // What of a load is the store's (reads and their digests) and what is decoding.
    let read_millis = read.as_millis() as u64;
    tracing::debug!(
        %version,
        read_millis,
        decode_millis = (started.elapsed().as_millis() as u64).saturating_sub(read_millis),
        "model artifacts read and decoded"
    );
    Ok(model)
}

/// Runs decoding work off the async runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Inconsistent(format!("decoder task failed: {e}")))?
}

/// [`fetch_verified`] for an artifact a version may lack: `None` when the manifest does
/// not list it.
async fn fetch_optional<S: ObjectStore>(
    store: &S,
    manifest: &Manifest,
    name: &str,
) -> Result<Option<Vec<u8>>> {
    if manifest.artifacts.iter().any(|a| a.name == name) {
        Ok(Some(fetch_verified(store, manifest, name).await?))
    } else {
        Ok(None)
    }
}

async fn fetch_verified<S: ObjectStore>(
    store: &S,
    manifest: &Manifest,
    name: &str,
) -> Result<Vec<u8>> {
    let entry = manifest.artifact(name)?;
    let key = version_key(&manifest.version, name);
    // An object larger than the manifest says is refused before its body is read.
    let obj = store
        .get_at_most(&key, entry.bytes)
        .await?
        .ok_or(Error::MissingArtifact { key })?;
    entry.verify(&obj.bytes)?;
    Ok(obj.bytes)
}

/// Loads the current version; [`Error::NoModel`] when nothing was published.
pub async fn load_current<S: ObjectStore>(store: &S) -> Result<Model> {
    let (pointer, _) = read_pointer(store).await?.ok_or(Error::NoModel)?;
    load_version(store, &pointer.version, Some(&pointer.manifest_sha256)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil(0), ((1970, 1, 1), (0, 0, 0)));
        // 2026-11-28T18:04:32Z
        assert_eq!(civil(1_795_889_072), ((2026, 11, 28), (18, 4, 32)));
        // A leap day.
        assert_eq!(civil(951_782_400), ((2000, 2, 29), (0, 0, 0)));
    }

    #[test]
    fn a_version_name_gives_back_its_instant() {
        for millis in [0, 1_795_889_072_123, 951_782_400_999, 4_102_444_799_999] {
            let name = version_name_at(millis);
            assert_eq!(version_millis(&name), Some(millis), "{name}");
        }
        assert_eq!(version_millis("not a version"), None);
    }

    #[tokio::test]
    async fn a_run_after_a_version_from_a_clock_ahead_still_sorts_after_it() {
        use crate::store::{LocalStore, Precondition};
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        // Given nothing published, the clock's name;
        let first = next_version_name(&store).await.unwrap();
        let clock = version_millis(&new_version_name()).unwrap();
        assert!(
            clock.abs_diff(version_millis(&first).unwrap()) < 60_000,
            "{first}"
        );
        // given a current version named by a clock a year ahead,
        let ahead = version_name_at(version_millis(&first).unwrap() + 365 * 86_400_000);
        let pointer = serde_json::to_vec(&Pointer {
            version: ahead.clone(),
            manifest_sha256: "0".repeat(64),
            updated_at: now_rfc3339(),
            previous: None,
            rollback: None,
        })
        .unwrap();
        store
            .put(POINTER, pointer, Precondition::None)
            .await
            .unwrap();
        // the next run's name sorts after it, one millisecond later.
        let next = next_version_name(&store).await.unwrap();
        assert!(next > ahead, "{next} !> {ahead}");
        assert_eq!(
            version_millis(&next),
            Some(version_millis(&ahead).unwrap() + 1)
        );
    }

    #[test]
    fn version_names_sort_by_time() {
        let a = new_version_name();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let b = new_version_name();
        assert!(a < b, "{a} !< {b}");
        assert_eq!(a.len(), "20261128T180432123Z-0123abcd".len());
    }
}
