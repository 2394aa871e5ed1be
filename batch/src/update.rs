//! `kindred-batch update`: new and changed users folded into a new version between full
//! trainings, without refitting the SVD or rebuilding an index.
//!
//! The delta folder holds, in the training schema, the **complete current rows** of every
//! user to fold in (all their views, interests and assessments, not only the new ones):
//! a user the model knows is replaced by what the folder says, a new user is added. Each
//! row is weighted as training weighted its rows (the stored idf, block weights and
//! recency, from the version's own configuration), projected with the stored basis
//! (`projection.bin`) and smoothed towards its nearest users, as a profile query is.
//!
//! The users go into their shard's delta ([`kindred_core::delta`]): the index and user
//! table of every shard are copied unchanged, the delta retires a changed user's old
//! point and is scanned exactly beside the index. The course table is rebuilt with the
//! folded users' views. The version is published like a trained one (artifacts, then
//! the manifest, then the pointer), but only if the version it was built on is still
//! current: an update never replaces a training published while it ran.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kindred_core::codec::encode;
use kindred_core::courses::CourseTable;
use kindred_core::delta::Delta;
use kindred_core::embedding::Embedding;
use kindred_core::manifest::{self, COURSES, FORMAT_VERSION, Manifest, UpdateRecord};
use kindred_core::projection::Projection;
use kindred_core::registry::{self, Published};
use kindred_core::store::ObjectStore;
use kindred_core::users::UserSummary;
use kindred_core::{Model, query};

use crate::assemble::{entries_by_row, gather};
use crate::config::TrainConfig;
use crate::fast_hash::FastSet;
use crate::ingest::{self, Dataset, FileReport, IngestError};
use crate::summary::{StageTime, Stages};

/// What stops an update.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Nothing to update.
    #[error("no model is published in {0}: run `kindred-batch train` first")]
    NoModel(String),
    /// The current version lacks what folding in needs.
    #[error("version {version} cannot be updated: {why}; run `kindred-batch train` instead")]
    Unsupported {
        /// The current version.
        version: String,
        /// What it lacks.
        why: String,
    },
    /// The delta folder holds no user_course_views.csv: nothing changed (not a failure
    /// for a scheduled run).
    #[error("{0} holds no user_course_views.csv: nothing to update")]
    NoDelta(PathBuf),
    /// The delta folder cannot be used.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// No user of the delta folder has a row the model can fold in.
    #[error(
        "no user in {0} has a row the model can use (every tag unknown to the model, or no rows)"
    )]
    NothingToFold(PathBuf),
    /// The store failed, or a model artifact is wrong.
    #[error(transparent)]
    Core(#[from] kindred_core::Error),
}

/// The new version's parts, computed from the current model and the delta.
pub struct Folding {
    /// Every shard's delta, by shard number (carried forward, with the new users).
    pub deltas: Vec<Delta>,
    /// The course table with the folded users' views.
    pub courses: CourseTable,
    /// Users per shard in the new version.
    pub shard_users: Vec<u64>,
    /// Users new to the model.
    pub new_users: u64,
    /// Users the model knew.
    pub changed_users: u64,
    /// Users of the delta without a usable row (left as they were).
    pub skipped_users: u64,
    /// Share of the folded rows' squared norm inside the stored basis.
    pub basis_fit: f64,
    /// The handles folded in, ascending.
    pub folded: Vec<u64>,
}

/// What a published update did.
pub struct Updated {
    /// The publish.
    pub published: Published,
    /// The record written into the manifest.
    pub record: UpdateRecord,
    /// What was read from the delta folder.
    pub files: Vec<FileReport>,
    /// Stage timings.
    pub stages: Vec<StageTime>,
}

/// The training configuration a version was built with (its manifest's
/// `training.config`), which an update weighs rows by.
pub fn config_of(manifest: &Manifest) -> Result<TrainConfig, UpdateError> {
    let unsupported = |why: String| UpdateError::Unsupported {
        version: manifest.version.clone(),
        why,
    };
    let config = manifest
        .training
        .get("config")
        .ok_or_else(|| unsupported("its manifest records no training configuration".into()))?;
    serde_json::from_value(config.clone())
        .map_err(|e| unsupported(format!("its training configuration does not read: {e}")))
}

/// Reads a delta folder onto the model's tag vocabulary and catalogue.
pub fn read_delta(model: &Model, dir: &Path) -> Result<Dataset, UpdateError> {
    let courses = model.courses().ok_or_else(|| UpdateError::Unsupported {
        version: model.manifest.version.clone(),
        why: "it has no course table (courses.bin)".into(),
    })?;
    let ds = ingest::read_dir_onto(dir, &model.users.tags, &courses.ids, &courses.tags)?;
    // Two model tags one key now merges (an alias added since training) would shift ids.
    let shifted = model
        .users
        .tags
        .iter()
        .enumerate()
        .find(|(id, name)| ds.tag(name) != Some(*id as u32));
    if let Some((_, name)) = shifted {
        return Err(UpdateError::Unsupported {
            version: model.manifest.version.clone(),
            why: format!("its tag {name:?} merges with another under this build's tag rules"),
        });
    }
    Ok(ds)
}

/// Folds the users of `delta` (read by [`read_delta`]) into `model`, weighed by `cfg`
/// (the model's [`config_of`]). The model must hold every shard.
pub fn fold_in(model: &Model, delta: &Dataset, cfg: &TrainConfig) -> Result<Folding, UpdateError> {
    let version = &model.manifest.version;
    let unsupported = |why: &str| UpdateError::Unsupported {
        version: version.clone(),
        why: why.to_owned(),
    };
    let projection = model
        .projection()
        .ok_or_else(|| unsupported("it has no fold-in projection (projection.bin)"))?;
    let old_courses = model
        .courses()
        .ok_or_else(|| unsupported("it has no course table (courses.bin)"))?;
    if !model.holds_all_shards() {
        return Err(unsupported("this process holds only some of its shards"));
    }
    let tag_count = model.users.tags.len() as u32;
    let built = gather(delta, cfg, &FastSet::default());
    let rows = entries_by_row(&built.blocks, built.handles.len(), tag_count);
    let scales = projection.basis_scales();

    // Fold, smooth and place each user.
    let count = model.manifest.shard_count();
    let mut fresh: Vec<Vec<(UserSummary, Embedding)>> = vec![Vec::new(); count as usize];
    let mut retire: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); count as usize];
    let (mut new_users, mut changed_users, mut skipped_users) = (0u64, 0u64, 0u64);
    let (mut kept, mut total) = (0f64, 0f64);
    let mut folded = Vec::new();
    for (r, (&handle, entries)) in built.handles.iter().zip(&rows).enumerate() {
        let f = projection.fold_entries(entries);
        if f.features.is_empty() || f.embedding.0.iter().all(|&x| x == 0.0) {
            skipped_users += 1;
            continue;
        }
        kept += f64::from(Projection::kept_norm_sq(&f, &scales));
        total += f64::from(f.row_norm_sq);
        let old = model.row_of(handle);
        let embedding = query::smoothed(model, f.embedding.clone(), old);
        let shard = model.shard_of(handle);
        match old {
            Some(row) => {
                changed_users += 1;
                let s = model.shards.shard_of_row(row);
                let local = row - s.offset;
                if (local as usize) < s.base_len() {
                    retire[shard as usize].insert(local);
                }
            }
            None => new_users += 1,
        }
        let mut summary = known_tags_only(built.summaries[r].clone(), tag_count);
        summary.features = strongest(f.features, cfg.explain_features);
        fresh[shard as usize].push((summary, embedding));
        folded.push(handle);
    }
    if folded.is_empty() {
        return Err(UpdateError::NothingToFold(cfg.data.clone()));
    }

    // Carry each shard's delta forward, without the users folded again.
    let refolded: HashSet<u64> = folded.iter().copied().collect();
    let mut deltas = Vec::with_capacity(count as usize);
    let mut shard_users = Vec::with_capacity(count as usize);
    for s in model.shards.shards() {
        let id = s.id as usize;
        let mut retired: BTreeSet<u32> = s.retired().into_iter().collect();
        retired.extend(&retire[id]);
        let mut users: Vec<(UserSummary, Embedding)> = (s.base_len()..s.len())
            .map(|local| s.offset + local as u32)
            .map(|row| {
                (
                    model.users.users.get(row).to_summary(),
                    Embedding(model.embedding(row).to_vec()),
                )
            })
            .filter(|(u, _)| !refolded.contains(&u.handle))
            .collect();
        users.append(&mut fresh[id]);
        users.sort_by_key(|(u, _)| u.handle);
        shard_users.push((s.base_len() - retired.len() + users.len()) as u64);
        let (users, points) = users.into_iter().unzip();
        deltas.push(Delta {
            retired: retired.into_iter().collect(),
            users,
            points,
        });
    }

    // The course table: the folded users' views replace theirs; new courses join.
    let mut course_rows: Vec<(u64, u32, u32)> = old_courses
        .rows()
        .filter(|(h, _, _)| !refolded.contains(h))
        .collect();
    course_rows.extend(
        delta
            .views
            .iter()
            .filter(|v| refolded.contains(&v.user))
            .map(|v| (v.user, v.course, v.seconds)),
    );
    let course_tags = delta
        .course_tags
        .iter()
        .map(|t| t.iter().copied().filter(|&t| t < tag_count).collect())
        .collect();
    let courses = CourseTable::build(delta.courses.names.clone(), course_tags, course_rows);

    Ok(Folding {
        deltas,
        courses,
        shard_users,
        new_users,
        changed_users,
        skipped_users,
        basis_fit: if total > 0.0 { kept / total } else { 1.0 },
        folded,
    })
}

/// A summary without the tags the model's vocabulary lacks.
fn known_tags_only(mut u: UserSummary, tag_count: u32) -> UserSummary {
    u.top_tags.retain(|t| t.0 < tag_count);
    u.interests.retain(|&t| t < tag_count);
    u.assessments.retain(|a| a.0 < tag_count);
    u
}

/// The `n` largest features by magnitude, sorted by (signal, tag), as training keeps them.
fn strongest(
    mut features: Vec<kindred_core::users::Feature>,
    n: usize,
) -> Vec<kindred_core::users::Feature> {
    features.sort_by(|a, b| {
        b.weight
            .abs()
            .total_cmp(&a.weight.abs())
            .then((a.signal, a.tag).cmp(&(b.signal, b.tag)))
    });
    features.truncate(n);
    features.sort_by_key(|f| (f.signal, f.tag));
    features
}

/// Folds the delta folder `data` into the store's current version and publishes the
/// result as a new version.
pub async fn update<S: ObjectStore>(store: &S, data: &Path) -> Result<Updated, UpdateError> {
    if !data.join(ingest::VIEWS).is_file() {
        return Err(UpdateError::NoDelta(data.to_owned()));
    }
    let mut stages = Stages::new();
    let started = Instant::now();
    let (pointer, etag) = registry::read_pointer(store)
        .await?
        .ok_or_else(|| UpdateError::NoModel(store.location()))?;
    let version = registry::next_version_name(store).await?;
    let model =
        registry::load_version(store, &pointer.version, Some(&pointer.manifest_sha256)).await?;
    stages.record("load current version", started.elapsed().as_secs_f64());
    let mut cfg = config_of(&model.manifest)?;
    cfg.data = data.to_owned();
    let job = tokio::task::spawn_blocking(move || -> Result<_, UpdateError> {
        let ds = stages.run("read delta", || read_delta(&model, &cfg.data))?;
        let folding = stages.run("fold in", || fold_in(&model, &ds, &cfg))?;
        let encoded = stages.run("encode", || encode_parts(&model.manifest, &folding))?;
        Ok((model, ds.reports, folding, encoded, stages))
    });
    let (model, files, folding, encoded, mut stages) = job
        .await
        .map_err(|e| kindred_core::Error::Inconsistent(format!("update task failed: {e}")))??;

    let started = Instant::now();
    let base = &model.manifest;
    let replaced: Vec<&str> = encoded.iter().map(|(n, _)| n.as_str()).collect();
    let mut artifacts = Vec::with_capacity(base.artifacts.len() + 1);
    for entry in base
        .artifacts
        .iter()
        .filter(|a| !replaced.contains(&a.name.as_str()) && !is_delta(&a.name))
    {
        artifacts.push(registry::copy_artifact(store, &base.version, &version, entry).await?);
    }
    for (name, bytes) in encoded {
        artifacts.push(registry::put_artifact(store, &version, &name, bytes).await?);
    }
    stages.record("write artifacts", started.elapsed().as_secs_f64());

    let users: u64 = folding.shard_users.iter().sum();
    let earlier = base.update.as_ref();
    let folded_users: u64 = folding.deltas.iter().map(|d| d.users.len() as u64).sum();
    let mut record = UpdateRecord {
        trained: earlier.map_or_else(|| base.version.clone(), |u| u.trained.clone()),
        previous: base.version.clone(),
        new_users: folding.new_users,
        changed_users: folding.changed_users,
        skipped_users: folding.skipped_users,
        folded_users,
        folded_share: folded_users as f64 / users.max(1) as f64,
        basis_fit: folding.basis_fit,
        trained_fit: earlier.map_or(base.explained_variance, |u| u.trained_fit),
        retrain_advised: false,
        advice: String::new(),
    };
    record.advise();
    let mut shards = base.shards.clone();
    for (s, &n) in shards.iter_mut().zip(&folding.shard_users) {
        s.users = n;
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        version: version.clone(),
        created_at: registry::now_rfc3339(),
        users,
        artifacts,
        shards,
        update: Some(record.clone()),
        ..base.clone()
    };
    let started = Instant::now();
    // Only over the version folded into: a training published meanwhile stays current.
    let published = registry::commit_on(store, manifest, (pointer, etag)).await?;
    stages.record("publish", started.elapsed().as_secs_f64());
    Ok(Updated {
        published,
        record,
        files,
        stages: stages.into_times(),
    })
}

/// True for a delta artifact's name (`delta.bin`, `delta-NNNN.bin`).
fn is_delta(name: &str) -> bool {
    name == "delta.bin" || (name.starts_with("delta-") && name.ends_with(".bin"))
}

/// The encoded artifacts an update writes: every non-empty shard delta and the course
/// table.
fn encode_parts(
    base: &Manifest,
    folding: &Folding,
) -> Result<Vec<(String, Vec<u8>)>, kindred_core::Error> {
    let sharded = !base.shards.is_empty();
    let mut out = Vec::new();
    for (id, delta) in folding.deltas.iter().enumerate() {
        if !delta.is_empty() {
            let name = manifest::delta_artifact(id as u32, sharded);
            out.push((name.clone(), encode(&name, delta)?));
        }
    }
    out.push((COURSES.to_owned(), encode(COURSES, &folding.courses)?));
    Ok(out)
}
