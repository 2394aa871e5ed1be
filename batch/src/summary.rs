//! What a training run read, built and measured: the run summary, its quality figures
//! and stage timings.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::TrainConfig;
use crate::ingest::FileReport;

/// Wall time of one stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageTime {
    /// Stage name.
    pub stage: String,
    /// Seconds.
    pub seconds: f64,
    /// The stage ran on its own thread beside other stages, so its time is not part of
    /// the run's wall time ([`wall_seconds`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub beside: bool,
}

/// The seconds of `stages` one after the other: every stage but those run beside them.
pub fn wall_seconds(stages: &[StageTime]) -> f64 {
    stages.iter().filter(|t| !t.beside).map(|t| t.seconds).sum()
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

/// The quality figures of a run, when measured (see [`crate::eval`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Quality {
    /// Index recall@10 against exact search.
    pub index_recall_at_10: f64,
    /// Cohort precision@10 against the data folder's `ground_truth.csv`, if present.
    pub cohort_precision_at_10: Option<f64>,
    /// Chance level of the cohort precision.
    pub cohort_chance: Option<f64>,
    /// Cohort precision@10 of the users whose taste drifted (every one of them), against
    /// their current cohort; when the ground truth marks drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort_precision_drifted: Option<f64>,
    /// Cohort precision@10 of every user whose taste did not drift, on the same data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort_precision_stable: Option<f64>,
    /// Hold-out recall@10 (share of hidden tags carried by a neighbour), if measured.
    pub holdout_recall_at_10: Option<f64>,
    /// How it was measured (absent in manifests from before the fold-in measure, whose
    /// figures are all refits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_method: Option<HoldoutMethod>,
    /// Hold-out recall of 10 random users instead of the neighbours.
    pub holdout_chance: Option<f64>,
    /// Users whose tags were partly hidden.
    pub holdout_users: usize,
    /// Why a measure was skipped, if one was.
    pub skipped: Vec<String>,
}

/// How hold-out recall was measured (see [`crate::eval`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HoldoutMethod {
    /// The model as trained, each hold-out user's remaining rows folded in as
    /// `kindred-batch update` folds a user in, searched through the model's index.
    FoldIn,
    /// A second fit of the matrix, SVD and smoothing without the hidden tags, searched by
    /// exact scan.
    Refit,
}

impl HoldoutMethod {
    /// The method's name in the manifest and the EMF line.
    pub fn name(self) -> &'static str {
        match self {
            HoldoutMethod::FoldIn => "fold-in",
            HoldoutMethod::Refit => "refit",
        }
    }

    /// How a report names the method, after the figure.
    pub fn label(self) -> &'static str {
        match self {
            HoldoutMethod::FoldIn => "folded in",
            HoldoutMethod::Refit => "refit",
        }
    }
}

impl Quality {
    /// How the hold-out figure was measured, when there is one (a manifest written before
    /// the fold-in measure holds a refit).
    pub fn holdout_measured_by(&self) -> Option<HoldoutMethod> {
        self.holdout_recall_at_10
            .map(|_| self.holdout_method.unwrap_or(HoldoutMethod::Refit))
    }

    /// `", "` and the method's label after a measured hold-out figure; nothing otherwise.
    pub fn holdout_suffix(&self) -> String {
        self.holdout_measured_by()
            .map_or(String::new(), |m| format!(", {}", m.label()))
    }
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

    /// The times of every stage run, ending the timing.
    pub fn into_times(self) -> Vec<StageTime> {
        self.times
    }

    /// Records a stage timed elsewhere (an async step).
    pub fn record(&mut self, stage: &str, seconds: f64) {
        info!(stage, seconds, "stage done");
        self.push(stage, seconds, false);
    }

    /// Records a stage that ran on its own thread beside others (see
    /// [`StageTime::beside`]).
    pub fn record_beside(&mut self, stage: &str, seconds: f64) {
        info!(stage, seconds, beside = true, "stage done");
        self.push(stage, seconds, true);
    }

    fn push(&mut self, stage: &str, seconds: f64, beside: bool) {
        self.times.push(StageTime {
            stage: stage.to_owned(),
            seconds,
            beside,
        });
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
        self.push(stage, seconds, false);
        out
    }
}

/// Peak resident set size of this process in MiB, from `/proc/self/status` (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
