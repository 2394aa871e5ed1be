//! The training pipeline: data folder in, encoded model artifacts and a run summary out.
//!
//! Pure computation over the files read by [`crate::ingest`]; publishing is the caller's.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use kindred_core::codec::encode;
use kindred_core::embedding::Embedding;
use kindred_core::manifest::{self, HnswParams, Manifest, PROJECTION};
use kindred_core::projection::{Centring, ProjectedBlock, Projection, Smoothing};
use kindred_core::shard::Shards;
use kindred_core::users::{Feature, Signal, UserSummary, UserTable};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::ingest::{self, Dataset, FileReport};
use crate::matrix::{self, Block, BlockWeighting, Transform};
use crate::svd;
use crate::{eval, index};

/// Names of the matrix blocks, by block index.
pub const BLOCK_NAMES: [&str; 4] = ["views", "interests", "assessments", "courses"];

/// A preset of the whole weighting, for side-by-side comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Kindred's default: the baseline with interests weighted twice, assessments at half
    /// weight (so users with only assessments get neighbours too) and each embedding
    /// smoothed, at weight 2, towards the mean of its nearest neighbours: 2% of the users,
    /// at most 200 (see [`crate::smooth`]).
    Kindred,
    /// The strongest classical baseline we built: tf-idf weighted views (log seconds) and
    /// interests, each block normalised per user with equal weights, truncated SVD, cosine
    /// on U Σ. (Adding assessments lowered its scores on every data set measured.)
    Baseline,
    /// The replaced Python service: mean view seconds per tag (views only), row-mean
    /// centring, rank 50, cosine on U.
    Seed,
}

/// Everything that shapes a model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The preset this configuration started from.
    pub method: Method,
    /// Folder holding the CSVs.
    pub data: PathBuf,
    /// SVD rank (embedding dimension).
    pub rank: usize,
    /// Embeddings are `U Σ^power`.
    pub power: f64,
    /// Weighting of the views block (average seconds per tag).
    pub views: BlockWeighting,
    /// Weighting of the interests block.
    pub interests: BlockWeighting,
    /// Weighting of the assessments block.
    pub assessments: BlockWeighting,
    /// Weighting of the courses block (log total seconds per user and course).
    pub courses: BlockWeighting,
    /// Subtract each row's mean before the SVD (the seed's demeaning).
    pub centre_rows: bool,
    /// Most neighbours averaged into each embedding by [`crate::smooth`] (0: no
    /// smoothing).
    pub smooth_neighbours: usize,
    /// Share of the users smoothed together (all, or a random group at scale) whose mean
    /// is averaged into each embedding, up to [`TrainConfig::smooth_neighbours`] (see
    /// [`crate::smooth::neighbours_for`]).
    #[serde(default = "default_smooth_share")]
    pub smooth_share: f32,
    /// Weight of the neighbours' mean in the smoothing.
    pub smooth_weight: f32,
    /// HNSW parameters.
    pub hnsw: HnswParams,
    /// Number of index shards; `None` derives it from [`TrainConfig::shard_users`].
    pub shards: Option<u32>,
    /// Target users per shard when the shard count is derived.
    pub shard_users: usize,
    /// Users sampled to measure recall@10.
    pub recall_sample: usize,
    /// Worker threads.
    pub threads: usize,
    /// Course tags kept per user summary.
    pub summary_tags: usize,
    /// Interests kept per user summary.
    pub summary_interests: usize,
    /// Strongest features kept per user, for the function's explanations (`because`).
    pub explain_features: usize,
    /// When to measure hold-out recall.
    pub evaluate: Evaluate,
    /// Users sampled for the cohort precision and hold-out measures.
    pub eval_sample: usize,
}

fn default_smooth_share() -> f32 {
    crate::smooth::DEFAULT_SHARE
}

/// Default target of users per index shard: a 250k-user shard builds in about a minute
/// and a half here and loads in well under a second (see the README's scaling section).
pub const DEFAULT_SHARD_USERS: usize = 250_000;

impl TrainConfig {
    /// Shards for a model of `users` users: [`TrainConfig::shards`] if set, else enough
    /// shards of at most [`TrainConfig::shard_users`] users (at least 1).
    pub fn shard_count(&self, users: usize) -> u32 {
        let derived = users.div_ceil(self.shard_users.max(1)).max(1);
        self.shards
            .unwrap_or(derived.min(u32::MAX as usize) as u32)
            .max(1)
    }
}

/// Wall time of one stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageTime {
    /// Stage name.
    pub stage: String,
    /// Seconds.
    pub seconds: f64,
}

/// What a training run read, built and measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    /// One report per input file.
    pub files: Vec<FileReport>,
    /// Distinct users in any file.
    pub users_seen: usize,
    /// Users with at least one view row.
    pub users_with_views: usize,
    /// Users in the model (with any signal).
    pub users_in_model: usize,
    /// Users per index shard (one entry for an unsharded model).
    pub shard_users: Vec<usize>,
    /// Users seen but without any usable signal (left out of the model).
    pub users_without_signal: usize,
    /// Tag vocabulary size (all files, after case folding).
    pub tags: usize,
    /// Matrix columns, per block.
    pub columns: HashMap<String, usize>,
    /// Matrix non-zeros.
    pub nonzeros: usize,
    /// SVD rank used.
    pub rank: usize,
    /// Share of the squared Frobenius norm kept.
    pub explained_variance: f64,
    /// Leading singular values.
    pub singular_values: Vec<f64>,
    /// Index recall@10 against exact search.
    pub recall_at_10: f64,
    /// Users in the recall sample.
    pub recall_sample: usize,
    /// Quality figures.
    pub quality: Quality,
    /// Stage timings.
    pub stages: Vec<StageTime>,
    /// Peak resident memory of the process so far, MiB (Linux only).
    pub peak_rss_mib: Option<f64>,
    /// The configuration used.
    pub config: TrainConfig,
}

/// A trained model, encoded and ready to publish.
pub struct Trained {
    /// Manifest without artifact entries (the publisher fills them in).
    pub manifest: Manifest,
    /// Encoded artifacts by name.
    pub artifacts: Vec<(String, Vec<u8>)>,
    /// The run summary.
    pub summary: RunSummary,
}

/// Errors that stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The input cannot be used.
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    /// The decomposition failed.
    #[error(transparent)]
    Svd(#[from] svd::SvdError),
    /// Encoding failed.
    #[error(transparent)]
    Core(#[from] kindred_core::Error),
}

/// Times stages and shows a spinner while one runs, when stderr is a terminal.
pub struct Stages {
    times: Vec<StageTime>,
    tty: bool,
}

impl Stages {
    /// Stage timing with a spinner when stderr is a terminal.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Stages {
        Stages {
            times: Vec::new(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Stage timing without a spinner (for nested runs).
    pub fn quiet() -> Stages {
        Stages {
            times: Vec::new(),
            tty: false,
        }
    }

    /// Times of the stages run so far.
    pub fn times(&self) -> &[StageTime] {
        &self.times
    }

    /// Runs one stage, timing it.
    pub fn run<T>(&mut self, stage: &'static str, f: impl FnOnce() -> T) -> T {
        let bar = self.tty.then(|| {
            let bar = indicatif::ProgressBar::new_spinner().with_message(stage);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        let start = Instant::now();
        let out = f();
        let seconds = start.elapsed().as_secs_f64();
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        info!(stage, seconds, "stage done");
        self.times.push(StageTime {
            stage: stage.to_owned(),
            seconds,
        });
        out
    }
}

/// A fitted model before encoding: the index and the user table in index order.
pub struct Fitted {
    /// All handles seen, by matrix row.
    pub handles: Vec<u64>,
    /// The HNSW index shards; row `i` is `users[i]`.
    pub shards: Shards,
    /// User summaries in index order.
    pub users: Vec<UserSummary>,
    /// The decomposition.
    pub svd: svd::Svd,
    /// Matrix non-zeros.
    pub nonzeros: usize,
    /// Matrix columns per block.
    pub columns: HashMap<String, usize>,
    /// Users with at least one view row.
    pub users_with_views: usize,
    /// The fold-in projection for profile queries.
    pub projection: Projection,
}

impl Fitted {
    /// Handles of the index's points, in index order.
    pub fn point_handles(&self) -> Vec<u64> {
        self.users.iter().map(|u| u.handle).collect()
    }
}

/// Builds the matrix, factorises it and computes the (smoothed) embeddings, with the
/// (handle, tag) pairs in `hidden` left out of the data.
pub fn embed(
    ds: &Dataset,
    cfg: &TrainConfig,
    hidden: &HashSet<(u64, u32)>,
    stages: &mut Stages,
) -> Result<Embedded, TrainError> {
    let built = stages.run("matrix", || build_matrix_hiding(ds, cfg, hidden));
    let Built {
        handles,
        blocks,
        csr,
        columns,
        idf,
        summaries,
        users_with_views,
    } = built;
    drop(blocks);
    let svd = stages.run("svd", || {
        svd::truncated_svd(&csr, cfg.rank, cfg.threads, cfg.centre_rows)
    })?;
    let embeddings = stages.run("embed", || svd::embed(&csr, &svd, cfg.power));
    let projection = projection(cfg, &columns, &idf, &svd);

    // Users with an empty row have no signal: keep them out of the index.
    let mut points = Vec::new();
    let mut kept = Vec::new();
    for (row, e) in embeddings.into_iter().enumerate() {
        if csr.row_nnz(row) > 0 {
            points.push(Embedding::normalized(e));
            kept.push(row);
        }
    }
    let neighbours =
        crate::smooth::effective_neighbours(points.len(), cfg.smooth_share, cfg.smooth_neighbours);
    // A folded-in profile gets the same step, towards at most `ef_search` of its nearest
    // (smoothed) users: more would leave the HNSW path for an exact scan of every user at
    // query time. Their mean is about the same, the smoothed users being concentrated
    // already: on the six 10k-user data sets of the README, a user's own data folded in
    // this way finds neighbours as good with 64 as with 200 (cohort precision@10 within
    // 0.002, one data set 0.010 lower) and is among its own 10 nearest 99% of the time.
    let mut projection = projection;
    projection.smoothing.neighbours = neighbours.min(cfg.hnsw.ef_search) as u32;
    if neighbours > 0 {
        points = stages.run("smooth", || {
            crate::smooth::smooth(
                &points,
                cfg.smooth_neighbours,
                cfg.smooth_share,
                cfg.smooth_weight,
                cfg.threads,
            )
        });
    }
    let mut summaries = summaries;
    let users: Vec<UserSummary> = kept
        .iter()
        .map(|&row| {
            let mut u = std::mem::take(&mut summaries[row]);
            u.features = strongest_features(&csr, &columns, row, cfg.explain_features);
            u
        })
        .collect();
    let mut col_counts = HashMap::new();
    for c in &columns {
        *col_counts
            .entry(BLOCK_NAMES[c.block].to_owned())
            .or_default() += 1;
    }
    Ok(Embedded {
        handles,
        points,
        users,
        svd,
        nonzeros: csr.nnz(),
        columns: col_counts,
        users_with_views,
        projection,
    })
}

/// Everything a fit computes before the index: the once-per-run work of a sharded
/// training (see [`crate::pipeline`]).
pub struct Embedded {
    /// All handles seen, by matrix row.
    pub handles: Vec<u64>,
    /// Unit (smoothed) embeddings of the users with any signal.
    pub points: Vec<Embedding>,
    /// Their summaries, `users[i]` for `points[i]`.
    pub users: Vec<UserSummary>,
    /// The decomposition.
    pub svd: svd::Svd,
    /// Matrix non-zeros.
    pub nonzeros: usize,
    /// Matrix columns per block.
    pub columns: HashMap<String, usize>,
    /// Users with at least one view row.
    pub users_with_views: usize,
    /// The fold-in projection for profile queries.
    pub projection: Projection,
}

/// Builds the matrix, factorises it and indexes the embeddings, with the (handle, tag)
/// pairs in `hidden` left out of the data (for the hold-out measure).
pub fn fit(
    ds: &Dataset,
    cfg: &TrainConfig,
    hidden: &HashSet<(u64, u32)>,
    stages: &mut Stages,
) -> Result<Fitted, TrainError> {
    let Embedded {
        handles,
        points,
        mut users,
        svd,
        nonzeros,
        columns,
        users_with_views,
        projection,
    } = embed(ds, cfg, hidden, stages)?;
    let point_handles: Vec<u64> = users.iter().map(|u| u.handle).collect();
    let shard_count = cfg.shard_count(points.len());
    let (shards, order) = stages.run("index", || {
        index::build_sharded(points, &point_handles, shard_count, &cfg.hnsw, cfg.threads)
    });
    let users: Vec<UserSummary> = order
        .iter()
        .map(|&i| std::mem::take(&mut users[i as usize]))
        .collect();
    Ok(Fitted {
        handles,
        shards,
        users,
        svd,
        nonzeros,
        columns,
        users_with_views,
        projection,
    })
}

/// Trains a model from `cfg.data`; `version` names it.
pub fn train(cfg: &TrainConfig, version: &str) -> Result<Trained, TrainError> {
    let mut stages = Stages::new();
    let ds = stages.run("read", || ingest::read_dir(&cfg.data))?;
    let fitted = fit(&ds, cfg, &HashSet::new(), &mut stages)?;
    let users_in_model = fitted.users.len();
    let sample = index::sample_rows(users_in_model, cfg.recall_sample, cfg.hnsw.seed ^ 0x5eed);
    let recall = stages.run("recall", || {
        index::recall(&fitted.shards, &sample, 10, cfg.threads)
    });
    let quality = evaluate(&ds, cfg, &fitted, recall, &mut stages)?;
    let pictures = stages.run("pictures", || {
        Pictures::of(
            &fitted.shards,
            &fitted.users,
            &fitted.svd.singular_values,
            cfg.eval_sample,
        )
    });

    let Fitted {
        handles,
        shards,
        users,
        svd,
        nonzeros,
        columns,
        users_with_views,
        projection,
    } = fitted;
    let tags = ds.tags.names.clone();
    let shard_users: Vec<usize> = shards.shards().iter().map(|s| s.len()).collect();
    let sharded = shard_users.len() > 1;
    let artifacts = stages.run("encode", || -> Result<_, kindred_core::Error> {
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        for s in shards.shards() {
            let table = UserTable {
                tags: tags.clone(),
                users: users[s.offset as usize..s.offset as usize + s.len()].to_vec(),
            };
            let (users_name, index_name) = manifest::artifact_names(s.id, sharded);
            out.push((users_name.clone(), encode(&users_name, &table)?));
            out.push((index_name.clone(), encode(&index_name, &s.index)?));
        }
        out.push((PROJECTION.to_owned(), encode(PROJECTION, &projection)?));
        Ok(out)
    })?;
    drop(users);

    let summary = RunSummary {
        files: ds.reports.clone(),
        users_seen: handles.len(),
        users_with_views,
        users_in_model,
        shard_users: shard_users.clone(),
        users_without_signal: handles.len() - users_in_model,
        tags: ds.tags.len(),
        columns,
        nonzeros,
        rank: svd.singular_values.len(),
        explained_variance: svd.explained_variance,
        singular_values: svd.singular_values.iter().take(10).copied().collect(),
        recall_at_10: recall,
        recall_sample: sample.len(),
        quality,
        stages: stages.times,
        peak_rss_mib: peak_rss_mib(),
        config: cfg.clone(),
    };
    let mut artifacts = artifacts;
    let created_at = kindred_core::registry::now_rfc3339();
    let html = pictures.render(version, &created_at, &summary, &tags);
    artifacts.push((REPORT.to_owned(), html.into_bytes()));
    let shard_entries =
        manifest::entries(&shard_users.iter().map(|&n| n as u64).collect::<Vec<_>>());
    let manifest = Manifest {
        format_version: Manifest::format_for(&shard_entries),
        version: version.to_owned(),
        created_at,
        users: users_in_model as u64,
        tags: ds.tags.len() as u64,
        dimensions: svd.singular_values.len() as u64,
        explained_variance: svd.explained_variance,
        recall_at_10: recall,
        hnsw: cfg.hnsw.clone(),
        artifacts: Vec::new(),
        training: serde_json::to_value(&summary).unwrap_or_default(),
        shards: shard_entries,
    };
    Ok(Trained {
        manifest,
        artifacts,
        summary,
    })
}

/// Object name of the HTML model report inside a version folder.
pub const REPORT: &str = manifest::REPORT;
/// Users drawn on the report's map.
const MAP_USERS: usize = 3000;

/// What the HTML model report plots, gathered from a fit.
pub struct Pictures {
    singular_values: Vec<f64>,
    similarities: Vec<f32>,
    map: Vec<crate::model_report::MapPoint>,
}

impl Pictures {
    /// Gathers the pictures of a model: `users[i]` is row `i` of `shards`.
    pub fn of(
        shards: &Shards,
        users: &[UserSummary],
        singular_values: &[f64],
        eval_sample: usize,
    ) -> Pictures {
        let n = users.len();
        let sample = index::sample_rows(n, eval_sample, 23);
        let mut similarities = Vec::with_capacity(sample.len() * 10);
        for &row in &sample {
            let q = shards.embedding(row);
            similarities.extend(
                shards
                    .approximate(q, 10, Some(row))
                    .iter()
                    .map(|n| n.similarity),
            );
        }
        // Components 2 and 3: the first mostly says how much of the popular tags a
        // user has (the matrix is not centred), the next two separate tastes.
        let (cx, cy) = if singular_values.len() >= 3 {
            (1, 2)
        } else {
            (0, 1)
        };
        // Colour by tag: the 10 tags that are most often a sampled user's strongest
        // feature, and each user's strongest feature among those 10 (grey if none).
        let rows = index::sample_rows(n, MAP_USERS, 29);
        let by_weight = |row: u32| {
            let mut f: Vec<&Feature> = users[row as usize].features.iter().collect();
            f.sort_by(|a, b| b.weight.total_cmp(&a.weight));
            f
        };
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for &row in &rows {
            if let Some(f) = by_weight(row).first() {
                *counts.entry(f.tag).or_default() += 1;
            }
        }
        let mut common: Vec<(usize, u32)> = counts.into_iter().map(|(t, c)| (c, t)).collect();
        common.sort_unstable_by(|a, b| b.cmp(a));
        let common: Vec<u32> = common.iter().take(10).map(|&(_, t)| t).collect();
        let map = rows
            .into_iter()
            .filter_map(|row| {
                let e = &shards.embedding(row).0;
                let group = by_weight(row)
                    .iter()
                    .map(|f| f.tag)
                    .find(|t| common.contains(t))
                    .unwrap_or(crate::model_report::UNGROUPED);
                Some(crate::model_report::MapPoint {
                    x: *e.get(cx)?,
                    y: *e.get(cy)?,
                    group,
                    handle: users[row as usize].handle,
                })
            })
            .collect();
        Pictures {
            singular_values: singular_values.to_vec(),
            similarities,
            map,
        }
    }

    /// The HTML model report.
    pub fn render(
        &self,
        version: &str,
        created_at: &str,
        s: &RunSummary,
        tags: &[String],
    ) -> String {
        let q = &s.quality;
        let opt =
            |v: Option<f64>| v.map_or_else(|| "not measured".to_owned(), |v| format!("{v:.3}"));
        let figures = vec![
            (
                "method".to_owned(),
                format!("{:?}", s.config.method).to_lowercase(),
            ),
            (
                "index recall@10".to_owned(),
                format!("{:.4}", s.recall_at_10),
            ),
            (
                "cohort precision@10 (chance)".to_owned(),
                format!(
                    "{} ({})",
                    opt(q.cohort_precision_at_10),
                    opt(q.cohort_chance)
                ),
            ),
            (
                "hold-out recall@10 (chance)".to_owned(),
                format!(
                    "{} ({})",
                    opt(q.holdout_recall_at_10),
                    opt(q.holdout_chance)
                ),
            ),
            ("matrix non-zeros".to_owned(), s.nonzeros.to_string()),
            (
                "training time".to_owned(),
                format!("{:.1} s", s.stages.iter().map(|t| t.seconds).sum::<f64>()),
            ),
        ];
        let notes = vec![
            "The map places a sample of users by their second and third embedding components, \
             coloured by the strongest of their features among the ten tags that most often \
             lead a user's features (grey: none of them)."
                .to_owned(),
            crate::report::render(s, None)
                .lines()
                .filter(|l| !l.trim_start().starts_with("published:"))
                .collect::<Vec<_>>()
                .join("\n"),
        ];
        crate::model_report::render(&crate::model_report::ReportInput {
            version,
            created_at,
            users: s.users_in_model,
            tags: s.tags,
            dimensions: s.rank,
            explained_variance: s.explained_variance,
            singular_values: &self.singular_values,
            neighbour_similarities: &self.similarities,
            map: &self.map,
            groups: tags,
            figures: &figures,
            notes: &notes,
        })
    }
}

/// The quality figures of a run, when measured (see [`crate::eval`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Quality {
    /// Index recall@10 against exact search.
    pub index_recall_at_10: f64,
    /// Cohort precision@10 against the data folder's `ground_truth.csv`, if present.
    pub cohort_precision_at_10: Option<f64>,
    /// Chance level of the cohort precision.
    pub cohort_chance: Option<f64>,
    /// Hold-out recall@10 (share of hidden tags carried by a neighbour), if measured.
    pub holdout_recall_at_10: Option<f64>,
    /// Hold-out recall of 10 random users instead of the neighbours.
    pub holdout_chance: Option<f64>,
    /// Users whose tags were partly hidden.
    pub holdout_users: usize,
    /// Why a measure was skipped, if one was.
    pub skipped: Vec<String>,
}

/// Measures the model's quality as configured by `cfg.evaluate`.
fn evaluate(
    ds: &Dataset,
    cfg: &TrainConfig,
    fitted: &Fitted,
    recall: f64,
    stages: &mut Stages,
) -> Result<Quality, TrainError> {
    let mut q = Quality {
        index_recall_at_10: recall,
        ..Default::default()
    };
    let truth_path = cfg.data.join("ground_truth.csv");
    if truth_path.is_file() {
        match kindred_datagen::read_ground_truth(&truth_path) {
            Ok(truth) => {
                let cohort_of: HashMap<u64, u32> =
                    truth.iter().map(|(h, t)| (*h, t.primary_cohort)).collect();
                let handles = fitted.point_handles();
                let rows = index::sample_rows(handles.len(), cfg.eval_sample, 11);
                let (p, chance) = stages.run("cohorts", || {
                    eval::cohort_precision(&fitted.shards, &handles, &cohort_of, &rows, 10)
                });
                q.cohort_precision_at_10 = Some(p);
                q.cohort_chance = Some(chance);
            }
            Err(e) => q.skipped.push(format!("cohort precision: {e:#}")),
        }
    }
    let run_holdout = match cfg.evaluate {
        Evaluate::Always => true,
        Evaluate::Never => false,
        Evaluate::Auto => fitted.users.len() <= AUTO_HOLDOUT_MAX_USERS,
    };
    if run_holdout {
        let plan = eval::HoldoutPlan::draw(ds, cfg.eval_sample, HOLDOUT_SHARE, cfg.hnsw.seed);
        let mut inner = Stages::quiet();
        let refit = stages.run("holdout", || fit(ds, cfg, &plan.hidden, &mut inner))?;
        let (r, chance) = eval::holdout_recall(&plan, &refit.shards, &refit.point_handles(), 10);
        q.holdout_recall_at_10 = Some(r);
        q.holdout_chance = Some(chance);
        q.holdout_users = plan.users.len();
    } else if cfg.evaluate == Evaluate::Never {
        q.skipped
            .push("hold-out recall: not asked for (--evaluate never)".to_owned());
    } else {
        q.skipped.push(format!(
            "hold-out recall: {} users is above the automatic limit of {AUTO_HOLDOUT_MAX_USERS} (use --evaluate always)",
            fitted.users.len()
        ));
    }
    Ok(q)
}

/// Share of a hold-out user's tags hidden.
pub const HOLDOUT_SHARE: f64 = 0.2;
/// Largest model for which `--evaluate auto` retrains for the hold-out measure.
pub const AUTO_HOLDOUT_MAX_USERS: usize = 200_000;

/// When the training run measures hold-out recall (which costs a second fit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Evaluate {
    /// Up to 200,000 users.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// A row's `n` largest entries as explanation features, scaled to a unit-length row and
/// sorted by (signal, tag).
pub fn strongest_features(
    csr: &matrix::Csr,
    columns: &[matrix::Column],
    row: usize,
    n: usize,
) -> Vec<Feature> {
    let norm = csr.row(row).map(|(_, v)| v * v).sum::<f32>().sqrt();
    if norm == 0.0 || n == 0 {
        return Vec::new();
    }
    // Course columns have no tag to name: explanations speak of tags only.
    let mut entries: Vec<(u32, f32)> = csr
        .row(row)
        .filter(|(c, _)| columns[*c as usize].block < 3)
        .collect();
    entries.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
    entries.truncate(n);
    let mut features: Vec<Feature> = entries
        .into_iter()
        .map(|(col, v)| {
            let c = &columns[col as usize];
            Feature {
                signal: [Signal::Views, Signal::Interests, Signal::Assessments][c.block],
                tag: c.tag,
                weight: v / norm,
            }
        })
        .collect();
    features.sort_by_key(|f| (f.signal, f.tag));
    features
}

/// The matrix stage's output.
pub struct Built {
    /// User handles by row (sorted).
    pub handles: Vec<u64>,
    /// The blocks before weighting (views hold the seed's mean seconds per tag).
    pub blocks: Vec<Block>,
    /// The weighted, stacked matrix.
    pub csr: matrix::Csr,
    /// What each column stands for.
    pub columns: Vec<matrix::Column>,
    /// Each column's idf factor.
    pub idf: Vec<f32>,
    /// One summary per row.
    pub summaries: Vec<UserSummary>,
    /// Users with at least one view row.
    pub users_with_views: usize,
}

/// Assigns rows to users (sorted handles) and builds the weighted matrix and the summaries.
pub fn build_matrix(ds: &Dataset, cfg: &TrainConfig) -> Built {
    build_matrix_hiding(ds, cfg, &HashSet::new())
}

/// [`build_matrix`] with the (handle, tag) pairs in `hidden` left out of every block (and
/// a hidden tag's courses left out of the courses block).
pub fn build_matrix_hiding(ds: &Dataset, cfg: &TrainConfig, hidden: &HashSet<(u64, u32)>) -> Built {
    let is_hidden = |user: u64, tag: u32| !hidden.is_empty() && hidden.contains(&(user, tag));
    let mut handles: Vec<u64> = ds
        .views
        .iter()
        .map(|v| v.user)
        .chain(ds.interests.iter().map(|i| i.0))
        .chain(ds.assessments.iter().map(|a| a.0))
        .collect();
    handles.sort_unstable();
    handles.dedup();
    let row_of: HashMap<u64, u32> = handles
        .iter()
        .enumerate()
        .map(|(r, &h)| (h, r as u32))
        .collect();
    let rows = handles.len();

    // Views: one observation per (view row, tag of its course); courses per user.
    let mut observations: Vec<(u32, u32, u32)> = Vec::with_capacity(ds.views.len() * 2);
    let mut user_courses: Vec<(u32, u32)> = Vec::with_capacity(ds.views.len());
    for v in &ds.views {
        let r = row_of[&v.user];
        user_courses.push((r, v.course));
        for &t in &ds.course_tags[v.course as usize] {
            if !is_hidden(v.user, t) {
                observations.push((r, t, v.seconds));
            }
        }
    }
    let view_entries = matrix::average_by_row_and_tag(&mut observations);
    drop(observations);
    // Courses: total seconds per (user, course).
    let course_entries: Vec<(u32, u32, f32)> = if cfg.courses.weight != 0.0 {
        let mut per_course: Vec<(u32, u32, u32)> = ds
            .views
            .iter()
            .filter(|v| {
                !ds.course_tags[v.course as usize]
                    .iter()
                    .any(|&t| is_hidden(v.user, t))
            })
            .map(|v| (row_of[&v.user], v.course, v.seconds))
            .collect();
        per_course.sort_unstable_by_key(|o| (o.0, o.1));
        let mut out: Vec<(u32, u32, f32)> = Vec::new();
        for (r, c, secs) in per_course {
            match out.last_mut() {
                Some(last) if last.0 == r && last.1 == c => last.2 += secs as f32,
                _ => out.push((r, c, secs as f32)),
            }
        }
        out
    } else {
        Vec::new()
    };
    user_courses.sort_unstable();
    user_courses.dedup();

    let mut summaries: Vec<UserSummary> = handles
        .iter()
        .map(|&handle| UserSummary {
            handle,
            ..Default::default()
        })
        .collect();
    for &(r, _) in &user_courses {
        summaries[r as usize].courses += 1;
    }
    let users_with_views = summaries.iter().filter(|s| s.courses > 0).count();
    for &(r, t, avg) in &view_entries {
        let s = &mut summaries[r as usize];
        s.tags_viewed += 1;
        s.top_tags.push((t, avg));
    }
    for s in &mut summaries {
        s.top_tags
            .sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        s.top_tags.truncate(cfg.summary_tags);
    }

    let interest_entries: Vec<(u32, u32, f32)> = {
        let mut e: Vec<_> = ds
            .interests
            .iter()
            .filter(|&&(u, t)| !is_hidden(u, t))
            .map(|&(u, t)| (row_of[&u], t, 1.0))
            .collect();
        e.sort_unstable_by_key(|x| (x.0, x.1));
        e
    };
    for &(r, t, _) in &interest_entries {
        let s = &mut summaries[r as usize];
        if s.interests.len() < cfg.summary_interests {
            s.interests.push(t);
        }
    }
    let assessment_entries: Vec<(u32, u32, f32)> = {
        let mut e: Vec<_> = ds
            .assessments
            .iter()
            .filter(|&&(u, t, _)| !is_hidden(u, t))
            .map(|&(u, t, s)| (row_of[&u], t, f32::from(s)))
            .collect();
        e.sort_unstable_by_key(|x| (x.0, x.1));
        e
    };
    for &(r, t, score) in &assessment_entries {
        summaries[r as usize].assessments.push((t, score as u16));
    }

    let blocks = vec![
        Block {
            name: "views",
            entries: view_entries,
            weighting: cfg.views,
        },
        Block {
            name: "interests",
            entries: interest_entries,
            weighting: cfg.interests,
        },
        Block {
            name: "assessments",
            entries: assessment_entries,
            weighting: cfg.assessments,
        },
        Block {
            name: "courses",
            entries: course_entries,
            weighting: cfg.courses,
        },
    ];
    let (csr, columns, idf) = matrix::assemble(rows, &blocks);
    Built {
        handles,
        blocks,
        csr,
        columns,
        idf,
        summaries,
        users_with_views,
    }
}

/// The fold-in projection of a fit: per tag block, the weighting and the rows of
/// `V Σ^(p-1)` (the courses block has no tags to fold in and is left out).
pub fn projection(
    cfg: &TrainConfig,
    columns: &[matrix::Column],
    idf: &[f32],
    svd: &svd::Svd,
) -> Projection {
    let k = svd.singular_values.len();
    let scale = svd.scale(cfg.power);
    let basis_row = |col: usize| -> Vec<f32> {
        (0..k)
            .map(|j| (svd.v[[col, j]] * scale[j]) as f32)
            .collect()
    };
    let weightings = [cfg.views, cfg.interests, cfg.assessments];
    let signals = [Signal::Views, Signal::Interests, Signal::Assessments];
    let blocks = (0..3)
        .map(|b| {
            let w = weightings[b];
            let mut block = ProjectedBlock {
                signal: signals[b],
                transform: w.transform.stored(),
                normalise: w.normalise,
                weight: w.weight,
                tags: Vec::new(),
                idf: Vec::new(),
                basis: Vec::new(),
            };
            let mut cols: Vec<(u32, usize)> = columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.block == b)
                .map(|(i, c)| (c.tag, i))
                .collect();
            cols.sort_unstable();
            for (tag, col) in cols {
                block.tags.push(tag);
                block.idf.push(idf[col]);
                block.basis.extend(basis_row(col));
            }
            block
        })
        .filter(|b| !b.tags.is_empty())
        .collect();
    let centring = svd.centring.as_ref().map(|c| Centring {
        columns: columns.len() as u32,
        basis_column_sums: c
            .v_colsums
            .iter()
            .zip(&scale)
            .map(|(s, f)| (s * f) as f32)
            .collect(),
    });
    Projection {
        dimensions: k as u32,
        blocks,
        centring,
        // The neighbour count used (a share of the users) is set once they are known.
        smoothing: Smoothing {
            neighbours: cfg.smooth_neighbours as u32,
            weight: cfg.smooth_weight,
        },
    }
}

/// The default configuration (as documented in the README) for a data folder.
pub fn default_config(data: PathBuf) -> TrainConfig {
    config_for(Method::Kindred, data)
}

/// The configuration of a method preset for a data folder.
pub fn config_for(method: Method, data: PathBuf) -> TrainConfig {
    let tfidf = |transform, weight| BlockWeighting {
        transform,
        idf: true,
        normalise: true,
        weight,
    };
    let mut cfg = TrainConfig {
        method,
        data,
        rank: 64,
        power: 1.0,
        views: tfidf(Transform::Log1p, 1.0),
        interests: tfidf(Transform::Binary, 2.0),
        assessments: tfidf(Transform::Raw, 0.5),
        courses: tfidf(Transform::Log1p, 0.0),
        centre_rows: false,
        smooth_neighbours: 200,
        smooth_share: crate::smooth::DEFAULT_SHARE,
        smooth_weight: 2.0,
        hnsw: HnswParams {
            ef_construction: 64,
            ef_search: 64,
            heuristic: true,
            seed: 42,
        },
        shards: None,
        shard_users: DEFAULT_SHARD_USERS,
        recall_sample: 1000,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        summary_tags: 5,
        summary_interests: 20,
        explain_features: 16,
        evaluate: Evaluate::Auto,
        eval_sample: 1000,
    };
    match method {
        Method::Kindred => {}
        Method::Baseline => {
            cfg.interests.weight = 1.0;
            cfg.assessments.weight = 0.0;
            cfg.smooth_neighbours = 0;
        }
        Method::Seed => {
            cfg.views = BlockWeighting {
                transform: Transform::Raw,
                idf: false,
                normalise: false,
                weight: 1.0,
            };
            cfg.interests.weight = 0.0;
            cfg.assessments.weight = 0.0;
            cfg.courses.weight = 0.0;
            cfg.centre_rows = true;
            cfg.smooth_neighbours = 0;
            cfg.rank = 50;
            cfg.power = 0.0;
        }
    }
    cfg
}

/// Peak resident set size of this process in MiB, from `/proc/self/status` (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
