//! The training pipeline: data folder in, encoded model artifacts and a run summary out.
//!
//! Pure computation over the files read by [`crate::ingest`]; publishing is the caller's.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use kindred_core::artifact::{
    self, Embedding, FORMAT_VERSION, Feature, HnswParams, Manifest, Signal, UserSummary, UserTable,
};
use serde::Serialize;
use tracing::info;

use crate::index;
use crate::ingest::{self, Dataset, FileReport};
use crate::matrix::{self, Block, BlockWeighting, Transform};
use crate::svd;

/// Everything that shapes a model.
#[derive(Clone, Debug, Serialize)]
pub struct TrainConfig {
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
    /// HNSW parameters.
    pub hnsw: HnswParams,
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
}

/// Wall time of one stage.
#[derive(Clone, Debug, Serialize)]
pub struct StageTime {
    /// Stage name.
    pub stage: &'static str,
    /// Seconds.
    pub seconds: f64,
}

/// What a training run read, built and measured.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// One report per input file.
    pub files: Vec<FileReport>,
    /// Distinct users in any file.
    pub users_seen: usize,
    /// Users with at least one view row.
    pub users_with_views: usize,
    /// Users in the model (with any signal).
    pub users_in_model: usize,
    /// Users seen but without any usable signal (left out of the model).
    pub users_without_signal: usize,
    /// Tag vocabulary size (all files, after case folding).
    pub tags: usize,
    /// Matrix columns, per block.
    pub columns: HashMap<&'static str, usize>,
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
    pub artifacts: Vec<(&'static str, Vec<u8>)>,
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
struct Stages {
    times: Vec<StageTime>,
    tty: bool,
}

impl Stages {
    fn run<T>(&mut self, stage: &'static str, f: impl FnOnce() -> T) -> T {
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
        self.times.push(StageTime { stage, seconds });
        out
    }
}

/// Trains a model from `cfg.data`; `version` names it.
pub fn train(cfg: &TrainConfig, version: &str) -> Result<Trained, TrainError> {
    let mut stages = Stages {
        times: Vec::new(),
        tty: std::io::stderr().is_terminal(),
    };
    let ds = stages.run("read", || ingest::read_dir(&cfg.data))?;

    let built = stages.run("matrix", || build_matrix(&ds, cfg));
    let Built {
        handles,
        blocks,
        csr,
        columns,
        summaries,
        users_with_views,
    } = built;
    drop(blocks);
    let svd = stages.run("svd", || svd::truncated_svd(&csr, cfg.rank, cfg.threads))?;
    let embeddings = stages.run("embed", || svd::embed(&csr, &svd, cfg.power));

    // Users with an empty row have no signal: keep them out of the index.
    let mut points = Vec::new();
    let mut kept = Vec::new();
    for (row, e) in embeddings.into_iter().enumerate() {
        if csr.row_nnz(row) > 0 {
            points.push(Embedding::normalized(e));
            kept.push(row);
        }
    }
    let users_in_model = points.len();
    let (index, order) = stages.run("index", || index::build(points, &cfg.hnsw));
    let sample = index::sample_rows(users_in_model, cfg.recall_sample, cfg.hnsw.seed ^ 0x5eed);
    let recall = stages.run("recall", || index::recall(&index, &sample, 10, cfg.threads));

    let mut summaries = summaries;
    for &row in &kept {
        summaries[row].features = strongest_features(&csr, &columns, row, cfg.explain_features);
    }
    let users: Vec<UserSummary> = order
        .iter()
        .map(|&i| std::mem::take(&mut summaries[kept[i as usize]]))
        .collect();
    let table = UserTable {
        tags: ds.tags.names.clone(),
        users,
    };
    let artifacts = stages.run("encode", || -> Result<_, kindred_core::Error> {
        Ok(vec![
            (artifact::USERS, artifact::encode(artifact::USERS, &table)?),
            (artifact::INDEX, artifact::encode(artifact::INDEX, &index)?),
        ])
    })?;

    let mut col_counts = HashMap::new();
    for c in &columns {
        *col_counts
            .entry(["views", "interests", "assessments"][c.block])
            .or_default() += 1;
    }
    let summary = RunSummary {
        files: ds.reports.clone(),
        users_seen: handles.len(),
        users_with_views,
        users_in_model,
        users_without_signal: handles.len() - users_in_model,
        tags: ds.tags.len(),
        columns: col_counts,
        nonzeros: csr.nnz(),
        rank: svd.singular_values.len(),
        explained_variance: svd.explained_variance,
        singular_values: svd.singular_values.iter().take(10).copied().collect(),
        recall_at_10: recall,
        recall_sample: sample.len(),
        stages: stages.times,
        peak_rss_mib: peak_rss_mib(),
        config: cfg.clone(),
    };
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        version: version.to_owned(),
        created_at: kindred_core::registry::now_rfc3339(),
        users: users_in_model as u64,
        tags: ds.tags.len() as u64,
        dimensions: svd.singular_values.len() as u64,
        explained_variance: svd.explained_variance,
        recall_at_10: recall,
        hnsw: cfg.hnsw.clone(),
        artifacts: Vec::new(),
        training: serde_json::to_value(&summary).unwrap_or_default(),
    };
    Ok(Trained {
        manifest,
        artifacts,
        summary,
    })
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
    let mut entries: Vec<(u32, f32)> = csr.row(row).collect();
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
    /// One summary per row.
    pub summaries: Vec<UserSummary>,
    /// Users with at least one view row.
    pub users_with_views: usize,
}

/// Assigns rows to users (sorted handles) and builds the weighted matrix and the summaries.
pub fn build_matrix(ds: &Dataset, cfg: &TrainConfig) -> Built {
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
            observations.push((r, t, v.seconds));
        }
    }
    let view_entries = matrix::average_by_row_and_tag(&mut observations);
    drop(observations);
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
    ];
    let (csr, columns) = matrix::assemble(rows, &blocks);
    Built {
        handles,
        blocks,
        csr,
        columns,
        summaries,
        users_with_views,
    }
}

/// The default configuration (as documented in the README) for a data folder.
pub fn default_config(data: PathBuf) -> TrainConfig {
    TrainConfig {
        data,
        rank: 64,
        power: 1.0,
        views: BlockWeighting {
            transform: Transform::Log1p,
            idf: true,
            weight: 1.0,
        },
        interests: BlockWeighting {
            transform: Transform::Binary,
            idf: true,
            weight: 1.0,
        },
        assessments: BlockWeighting {
            transform: Transform::Raw,
            idf: false,
            weight: 0.0,
        },
        hnsw: HnswParams {
            ef_construction: 64,
            ef_search: 64,
            heuristic: false,
            seed: 42,
        },
        recall_sample: 1000,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        summary_tags: 5,
        summary_interests: 20,
        explain_features: 16,
    }
}

/// Peak resident set size of this process in MiB, from `/proc/self/status` (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
