//! The training run split into steps that run as separate processes, possibly on
//! separate machines: `prepare` once, `build-shard` once per shard (in parallel: a Step
//! Functions Distributed Map of ECS tasks, see `infra/`), `publish` once.
//!
//! | step | computes | reads | writes |
//! |---|---|---|---|
//! | `prepare` | ingest, matrix, SVD, embeddings, smoothing (once, for all users) | the CSVs | `models/<v>/projection.bin`, `courses.bin`; `staging/<run>/plan.json`, `shards.json`, one `input-NNNN.bin` per shard |
//! | `build-shard N` | the HNSW index of shard N | the plan and `input-N` | `models/<v>/users-N.bin`, `index-N.bin`; `staging/<run>/done-N.json` |
//! | `publish` | index recall@10 and the report over all shards, as the function will load them | the plan, every `done`, every artifact | `models/<v>/report.html`, `manifest.json`, then the pointer |
//!
//! Every step can be retried: staging objects are overwritten; artifacts are written
//! "if absent" and an identical one already there counts as written (shards build on one
//! thread, so a rebuilt shard is byte for byte the same); a retried `publish` keeps the
//! report, manifest and pointer of an attempt that got that far. The version's name
//! is chosen by `prepare` and kept in the plan, so every step of one run agrees on it;
//! `<run>` is the caller's name for the run (the Step Functions execution name).

use std::path::Path;
use std::time::Instant;

use kindred_core::codec::{decode, encode};
use kindred_core::embedding::Embedding;
use kindred_core::manifest::{
    self, ArtifactEntry, COURSES, HnswParams, INDEX, Manifest, PROJECTION, ShardEntry, USERS,
};
use kindred_core::registry::{self, Published};
use kindred_core::shard::shard_of;
use kindred_core::store::{ObjectStore, Precondition};
use kindred_core::users::{UserSummary, UserTable, Users};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::TrainConfig;
use crate::fast_hash::FastSet;
use crate::measured::Measured;
use crate::pictures::Pictures;
use crate::summary::{self, RunSummary, StageTime, Stages};
use crate::train::{self, TrainError};
use crate::{index, ingest};

/// What a step of a split run can fail on.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The store failed, or an artifact or staging object is wrong.
    #[error(transparent)]
    Core(#[from] kindred_core::Error),
    /// A staging object is missing: an earlier step has not run (or ran for another run).
    #[error("{key} is missing: run `{step}` first")]
    NotPrepared {
        /// The object looked for.
        key: String,
        /// The step that writes it.
        step: &'static str,
    },
    /// The run name cannot be used in object keys.
    #[error("invalid run name {0:?}: use 1 to 80 letters, digits, '-' or '_'")]
    InvalidRun(String),
    /// A staging object does not decode.
    #[error("cannot decode {key}: {message}")]
    Decode {
        /// The object.
        key: String,
        /// Why.
        message: String,
    },
    /// The one-thread pool of a reproducible shard build could not be created.
    #[error("cannot start the shard build's thread: {0}")]
    Thread(String),
    /// The data folder's ground truth could not be read.
    #[error("cannot read ground truth: {0}")]
    GroundTruth(String),
}

/// The plan of a run, written by `prepare` and read by every later step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// The run's name.
    pub run: String,
    /// The version being built.
    pub version: String,
    /// When `prepare` started, RFC 3339.
    pub created_at: String,
    /// The shards and their users.
    pub shards: Vec<ShardEntry>,
    /// Tag vocabulary (every shard's user table carries it).
    pub tags: Vec<String>,
    /// Embedding dimension.
    pub dimensions: u64,
    /// Share of the matrix kept by the SVD.
    pub explained_variance: f64,
    /// Singular values (for the report).
    pub singular_values: Vec<f64>,
    /// Index parameters.
    pub hnsw: HnswParams,
    /// `projection.bin`, already written.
    pub projection: ArtifactEntry,
    /// `courses.bin`, already written (absent in plans staged before recommendations).
    #[serde(default)]
    pub courses: Option<ArtifactEntry>,
    /// The run summary so far (no index figures yet).
    pub summary: RunSummary,
}

/// What `build-shard` wrote for one shard.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardDone {
    /// Shard number.
    pub id: u32,
    /// Users in the shard.
    pub users: u64,
    /// The shard's user table and index.
    pub artifacts: Vec<ArtifactEntry>,
    /// Seconds the index build took.
    pub seconds: f64,
}

/// One shard's input to `build-shard`: its users and their embeddings, in the same order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardInput {
    /// Shard number.
    pub id: u32,
    /// User summaries.
    pub users: Vec<UserSummary>,
    /// Unit embeddings, `points[i]` for `users[i]`.
    pub points: Vec<Embedding>,
}

/// Key of a staging object of `run`.
pub fn staging_key(run: &str, name: &str) -> String {
    format!("staging/{run}/{name}")
}

fn check_run(run: &str) -> Result<(), PipelineError> {
    let ok = (1..=80).contains(&run.len())
        && run
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PipelineError::InvalidRun(run.to_owned()))
    }
}

async fn put_json<S: ObjectStore, T: Serialize>(
    store: &S,
    key: &str,
    value: &T,
) -> Result<(), PipelineError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| PipelineError::Decode {
        key: key.to_owned(),
        message: e.to_string(),
    })?;
    store.put(key, bytes, Precondition::None).await?;
    Ok(())
}

async fn get_bytes<S: ObjectStore>(
    store: &S,
    key: &str,
    step: &'static str,
) -> Result<Vec<u8>, PipelineError> {
    match store.get(key).await? {
        Some(obj) => Ok(obj.bytes),
        None => Err(PipelineError::NotPrepared {
            key: key.to_owned(),
            step,
        }),
    }
}

async fn get_json<S: ObjectStore, T: serde::de::DeserializeOwned>(
    store: &S,
    key: &str,
    step: &'static str,
) -> Result<T, PipelineError> {
    let bytes = get_bytes(store, key, step).await?;
    serde_json::from_slice(&bytes).map_err(|e| PipelineError::Decode {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

/// Step 1: everything computed once. Writes the projection, one input per shard, the
/// plan, and `shards.json` (`[{"shard": 0}, ...]`, the Distributed Map's items).
pub async fn prepare<S: ObjectStore>(
    store: &S,
    cfg: &TrainConfig,
    run: &str,
) -> Result<Plan, PipelineError> {
    check_run(run)?;
    let created_at = registry::now_rfc3339();
    let version = registry::next_version_name(store).await?;
    let job_cfg = cfg.clone();
    let (embedded, tags, mut summary, inputs, courses) =
        tokio::task::spawn_blocking(move || -> Result<_, TrainError> {
            let cfg = job_cfg;
            let mut stages = Stages::new();
            let ds = stages.run("read", || ingest::read_dir(&cfg.data))?;
            let embedded = train::embed(&ds, &cfg, &FastSet::default(), &mut stages)?;
            let count = cfg.shard_count(embedded.points.len());
            let mut inputs: Vec<ShardInput> = (0..count)
                .map(|id| ShardInput {
                    id,
                    users: Vec::new(),
                    points: Vec::new(),
                })
                .collect();
            for (u, p) in embedded.users.iter().zip(&embedded.points) {
                let s = &mut inputs[shard_of(u.handle, count) as usize];
                s.users.push(u.clone());
                s.points.push(p.clone());
            }
            let summary = RunSummary {
                files: ds.reports.clone(),
                users_seen: embedded.handles.len(),
                users_with_views: embedded.users_with_views,
                users_in_model: embedded.users.len(),
                shard_users: inputs.iter().map(|s| s.users.len()).collect(),
                users_without_signal: embedded.handles.len() - embedded.users.len(),
                tags: ds.tags.len(),
                columns: embedded.columns.clone(),
                nonzeros: embedded.nonzeros,
                rank: embedded.svd.singular_values.len(),
                explained_variance: embedded.svd.explained_variance,
                singular_values: embedded
                    .svd
                    .singular_values
                    .iter()
                    .take(10)
                    .copied()
                    .collect(),
                recall_at_10: 0.0,
                recall_sample: 0,
                quality: summary::Quality::default(),
                stages: stages.times().to_vec(),
                peak_rss_mib: summary::peak_rss_mib(),
                config: TrainConfig {
                    // The parameters the index was built with.
                    hnsw: cfg.hnsw_for(embedded.users.len()),
                    ..cfg.clone()
                },
            };
            let courses = crate::assemble::course_table(&ds);
            Ok((embedded, ds.tags.names.clone(), summary, inputs, courses))
        })
        .await
        .map_err(|e| kindred_core::Error::Inconsistent(format!("prepare task failed: {e}")))??;
    let projection = registry::put_artifact(
        store,
        &version,
        PROJECTION,
        encode(PROJECTION, &embedded.projection)?,
    )
    .await?;
    let courses =
        registry::put_artifact(store, &version, COURSES, encode(COURSES, &courses)?).await?;
    let started = Instant::now();
    let mut shards = Vec::with_capacity(inputs.len());
    for input in &inputs {
        let name = format!("input-{:04}.bin", input.id);
        let bytes = encode(&name, input)?;
        store
            .put(&staging_key(run, &name), bytes, Precondition::None)
            .await?;
        shards.push(ShardEntry {
            id: input.id,
            users: input.users.len() as u64,
        });
    }
    summary.stages.push(StageTime {
        stage: "stage inputs".to_owned(),
        seconds: started.elapsed().as_secs_f64(),
        beside: false,
    });
    let plan = Plan {
        run: run.to_owned(),
        version,
        created_at,
        shards,
        tags,
        dimensions: embedded.svd.singular_values.len() as u64,
        explained_variance: embedded.svd.explained_variance,
        singular_values: embedded.svd.singular_values.clone(),
        // As the summary records it: the parameters every shard is built with.
        hnsw: summary.config.hnsw.clone(),
        projection,
        courses: Some(courses),
        summary,
    };
    let items: Vec<serde_json::Value> = plan
        .shards
        .iter()
        .map(|s| serde_json::json!({"shard": s.id}))
        .collect();
    put_json(store, &staging_key(run, "shards.json"), &items).await?;
    put_json(store, &staging_key(run, "plan.json"), &plan).await?;
    info!(run, version = %plan.version, shards = plan.shards.len(), "prepared");
    Ok(plan)
}

/// Step 2, once per shard: builds the shard's index and writes its user table and index.
pub async fn build_shard<S: ObjectStore>(
    store: &S,
    run: &str,
    id: u32,
) -> Result<ShardDone, PipelineError> {
    check_run(run)?;
    let plan: Plan = get_json(store, &staging_key(run, "plan.json"), "prepare").await?;
    if !plan.shards.iter().any(|s| s.id == id) {
        return Err(kindred_core::Error::UnknownShard {
            version: plan.version,
            shard: id,
            count: plan.shards.len() as u32,
        }
        .into());
    }
    let key = staging_key(run, &format!("input-{id:04}.bin"));
    let bytes = get_bytes(store, &key, "prepare").await?;
    let started = Instant::now();
    let (tags, hnsw) = (plan.tags.clone(), plan.hnsw.clone());
    let (users_bytes, index_bytes, users) =
        tokio::task::spawn_blocking(move || -> Result<_, PipelineError> {
            let input: ShardInput = decode(&key, &bytes).map_err(|e| PipelineError::Decode {
                key: key.clone(),
                message: e.to_string(),
            })?;
            drop(bytes);
            let ShardInput { users, points, .. } = input;
            // One thread, so a retried step writes the same bytes (artifacts are immutable).
            let (index, order) = index::build_reproducible(points, &hnsw)
                .map_err(|e| PipelineError::Thread(e.to_string()))?;
            let users = Users::from_users(order.iter().map(|&i| users[i as usize].as_user()))?;
            let n = users.len() as u64;
            let table = UserTable { tags, users };
            Ok((encode(USERS, &table)?, encode(INDEX, &index)?, n))
        })
        .await
        .map_err(|e| kindred_core::Error::Inconsistent(format!("build task failed: {e}")))??;
    let (users_name, index_name) = manifest::artifact_names(id, plan.shards.len() > 1);
    let artifacts = vec![
        registry::put_artifact(store, &plan.version, &users_name, users_bytes).await?,
        registry::put_artifact(store, &plan.version, &index_name, index_bytes).await?,
    ];
    let done = ShardDone {
        id,
        users,
        artifacts,
        seconds: started.elapsed().as_secs_f64(),
    };
    put_json(
        store,
        &staging_key(run, &format!("done-{id:04}.json")),
        &done,
    )
    .await?;
    info!(
        run,
        shard = id,
        users,
        seconds = done.seconds,
        "shard built"
    );
    Ok(done)
}

/// Step 3: checks every shard as the function will load it, measures the index's
/// recall@10 over all shards (and cohort precision when `data` holds a generator's
/// `ground_truth.csv`), writes the report and the manifest, and moves the pointer.
pub async fn publish<S: ObjectStore>(
    store: &S,
    run: &str,
    data: Option<&Path>,
) -> Result<(Published, RunSummary), PipelineError> {
    check_run(run)?;
    let plan: Plan = get_json(store, &staging_key(run, "plan.json"), "prepare").await?;
    let mut artifacts = vec![plan.projection.clone()];
    artifacts.extend(plan.courses.clone());
    let mut build_seconds = 0.0;
    for s in &plan.shards {
        let key = staging_key(run, &format!("done-{:04}.json", s.id));
        let done: ShardDone = get_json(store, &key, "build-shard").await?;
        if done.users != s.users {
            return Err(kindred_core::Error::Inconsistent(format!(
                "shard {} was built with {} users, the plan has {}",
                s.id, done.users, s.users
            ))
            .into());
        }
        build_seconds += done.seconds;
        artifacts.extend(done.artifacts);
    }
    let shards = manifest::entries(&plan.shards.iter().map(|s| s.users).collect::<Vec<_>>());
    let mut manifest = Manifest {
        format_version: Manifest::format_for(&shards),
        version: plan.version.clone(),
        created_at: plan.created_at.clone(),
        users: plan.shards.iter().map(|s| s.users).sum(),
        tags: plan.tags.len() as u64,
        dimensions: plan.dimensions,
        explained_variance: plan.explained_variance,
        recall_at_10: 0.0,
        hnsw: plan.hnsw.clone(),
        artifacts,
        training: serde_json::Value::Null,
        shards,
        update: None,
    };
    let started = Instant::now();
    let model = registry::fetch_model(store, manifest.clone(), None).await?;
    let load_seconds = started.elapsed().as_secs_f64();
    let cfg = plan.summary.config.clone();
    let truth = match data.map(|d| d.join("ground_truth.csv")) {
        Some(path) if path.is_file() => Some(
            kindred_datagen::read_ground_truth(&path)
                .map_err(|e| PipelineError::GroundTruth(format!("{e:#}")))?,
        ),
        _ => None,
    };
    let plan_for_job = plan.clone();
    let (summary, html) = tokio::task::spawn_blocking(move || {
        let plan = plan_for_job;
        let mut stages = Stages::quiet();
        let handles: Vec<u64> = model.users.users.iter().map(|u| u.handle).collect();
        let measured = stages.run("sample", || {
            Measured::of_config(&model.shards, &handles, &cfg)
        });
        let recall = stages.run("recall", || {
            measured.recall(&model.shards, cfg.recall_sample, cfg.threads)
        });
        let mut summary = plan.summary.clone();
        summary.recall_at_10 = recall;
        summary.recall_sample = measured.prefix(cfg.recall_sample);
        summary.quality.index_recall_at_10 = recall;
        summary
            .quality
            .skipped
            .push("hold-out recall: not measured by a split run".to_owned());
        if let Some(truth) = truth {
            let cohort_of: std::collections::HashMap<u64, u32> =
                truth.iter().map(|(h, t)| (*h, t.primary_cohort)).collect();
            let (p, chance) = stages.run("cohorts", || {
                measured.cohort_precision(&handles, &cohort_of, cfg.eval_sample)
            });
            summary.quality.cohort_precision_at_10 = Some(p);
            summary.quality.cohort_chance = Some(chance);
        }
        let pictures = stages.run("pictures", || {
            Pictures::of(
                &model.shards,
                |row| model.users.users.get(row),
                &plan.singular_values,
                measured.similarities(cfg.eval_sample),
            )
        });
        summary.stages.push(StageTime {
            stage: "index (all shards, summed)".to_owned(),
            seconds: build_seconds,
            beside: false,
        });
        summary.stages.push(StageTime {
            stage: "load and verify".to_owned(),
            seconds: load_seconds,
            beside: false,
        });
        summary.stages.extend(stages.times().iter().cloned());
        summary.peak_rss_mib = summary::peak_rss_mib();
        let html = pictures.render(&plan.version, &plan.created_at, &summary, &plan.tags);
        (summary, html)
    })
    .await
    .map_err(|e| kindred_core::Error::Inconsistent(format!("publish task failed: {e}")))?;
    manifest.recall_at_10 = summary.recall_at_10;
    manifest.training = serde_json::to_value(&summary).unwrap_or_default();
    // A retried publish keeps the report its first attempt wrote (it differs only in
    // timings); `commit` likewise keeps that attempt's manifest and pointer.
    let report =
        match registry::put_artifact(store, &plan.version, manifest::REPORT, html.into_bytes())
            .await
        {
            Err(kindred_core::Error::PreconditionFailed { key }) => {
                let obj = store
                    .get(&key)
                    .await?
                    .ok_or(kindred_core::Error::PreconditionFailed { key })?;
                ArtifactEntry::describe(manifest::REPORT, &obj.bytes)
            }
            other => other?,
        };
    manifest.artifacts.push(report);
    let published = registry::commit(store, manifest).await?;
    Ok((published, summary))
}
