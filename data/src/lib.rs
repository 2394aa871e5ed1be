//! Deterministic generator of Pluralsight-challenge CSVs with a planted, known
//! structure.
//!
//! The challenge ships four CSVs about 10,000 users (course views, course tags,
//! interests and assessment scores), but only two are public (both are in the
//! repository's `data/pluralsight/`). [`generate`] writes all four in exactly
//! the challenge's schema and formatting, with statistics close to the real
//! files, plus `ground_truth.csv`: every user belongs to a primary and a
//! secondary latent cohort of shared tastes, and some users are "long
//! watchers" whose viewing times are inflated. A similarity model can be
//! scored against that truth.
//!
//! The course catalogue is, by default, the challenge's own `course_tags.csv`,
//! embedded in this crate ([`CHALLENGE_COURSE_TAGS`]); [`CourseTags`] selects
//! another file or a synthetic catalogue instead.
//!
//! Output is a pure function of [`GenConfig`]: the same config (and, with
//! [`CourseTags::File`], the same file) gives byte-identical files. Rows are
//! streamed to disk user by user, so memory stays bounded at any number of
//! users.
//!
//! ```no_run
//! use kindred_datagen::{GenConfig, generate, read_ground_truth};
//! use std::path::Path;
//!
//! let report = generate(&GenConfig { users: 1_000, ..GenConfig::default() }, Path::new("/tmp/gen"))?;
//! assert_eq!(report.users, 1_000);
//! let truth = read_ground_truth(&Path::new("/tmp/gen").join("ground_truth.csv"))?;
//! assert_eq!(truth.len(), 1_000);
//! # anyhow::Ok(())
//! ```

#![warn(missing_docs)]

mod assessments;
mod catalog;
mod cohorts;
mod dates;
mod rng;
pub mod split;
pub mod structure;
mod synth;
mod users;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

pub use cohorts::CohortSummary;
pub use dates::day_number;

use crate::catalog::Catalog;
use crate::rng::{Rng, Stream};

/// File name of the course views.
pub const VIEWS_FILE: &str = "user_course_views.csv";
/// File name of the course tags.
pub const COURSE_TAGS_FILE: &str = "course_tags.csv";
/// File name of the user interests.
pub const INTERESTS_FILE: &str = "user_interests.csv";
/// File name of the assessment scores.
pub const ASSESSMENTS_FILE: &str = "user_assessment_scores.csv";
/// File name of the planted truth, one row per user.
pub const GROUND_TRUTH_FILE: &str = "ground_truth.csv";
/// File name of the JSON record of the config and the report.
pub const MANIFEST_FILE: &str = "generator.json";
/// The challenge's public `course_tags.csv` (`data/pluralsight/course_tags.csv`
/// in the repository), embedded at build time: the default catalogue
/// ([`CourseTags::Challenge`]).
pub const CHALLENGE_COURSE_TAGS: &str = include_str!("../pluralsight/course_tags.csv");

/// Where the course catalogue (`course_tags.csv`) comes from.
///
/// Serialised in `generator.json` as `"challenge"`, `"synthetic"` or
/// `{"file": PATH}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CourseTags {
    /// The challenge's own file, [`CHALLENGE_COURSE_TAGS`], written out byte
    /// for byte (5,942 courses, 998 tags).
    #[default]
    Challenge,
    /// A `course_tags.csv` in the challenge's format, copied byte for byte.
    File(PathBuf),
    /// A catalogue of 5,942 courses synthesised from the seed, shaped like the
    /// challenge's.
    Synthetic,
}

/// The CSV files [`generate`] writes.
pub const CSV_FILES: [&str; 5] = [
    VIEWS_FILE,
    COURSE_TAGS_FILE,
    INTERESTS_FILE,
    ASSESSMENTS_FILE,
    GROUND_TRUTH_FILE,
];

/// What to generate. Every field has a default matching the real data set
/// (see [`GenConfig::DEFAULT`]), except the primary shares, whose default
/// plants a weaker structure than the real assessments show (harder data; see
/// [`GenConfig::primary_share_min`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenConfig {
    /// Number of users; handles are `1..=users`.
    pub users: u64,
    /// Seed of every random draw.
    pub seed: u64,
    /// Number of latent cohorts (at least 2).
    pub cohorts: u32,
    /// The course catalogue to build on: by default the challenge's.
    pub course_tags: CourseTags,
    /// Share of users with course views (the rest only have interests).
    pub view_share: f64,
    /// Share of a user's views, interests and assessments drawn from globally
    /// popular courses and tags instead of the user's cohorts.
    pub popular_noise: f64,
    /// Lowest weight of a user's primary cohort; the rest goes to the secondary.
    ///
    /// The primary shares set how strong the planted structure is. By both
    /// measures of [`structure`] (3,000 users each), the default range 0.6-0.9
    /// gives assessments less structure than the real file's (excess
    /// information 0.16-0.18 against 0.33, held-out gain 0.24-0.26 against
    /// 0.34), and so does 0.7-1.0 (0.24-0.28 and 0.31-0.33); ranges from about
    /// 0.78 or 0.87 (by one measure or the other) to 1.0 match it.
    pub primary_share_min: f64,
    /// Highest weight of a user's primary cohort.
    pub primary_share_max: f64,
    /// Share of users whose viewing times are multiplied by 3 to 6.
    pub long_watcher_share: f64,
    /// Share of users with assessment scores.
    pub assessment_share: f64,
    /// Popular-noise share of interests alone, to make interests a weaker (or
    /// stronger) signal than views; `None` uses `popular_noise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interest_noise: Option<f64>,
    /// Share of users whose taste drifts: on [`DRIFT_DATE`] their primary cohort
    /// changes to another one, and their views, interests and assessments from then
    /// on follow the new cohort. Their ground truth is the new (current) cohort, with
    /// the old one in `drifted_from`. 0 (the default) writes exactly what earlier
    /// versions of the generator wrote.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drift_share: f64,
}

/// The day drifting users change cohort (see [`GenConfig::drift_share`]).
pub const DRIFT_DATE: &str = "2017-08-01";

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl GenConfig {
    /// The defaults: 10,000 users shaped like the challenge data, 40 cohorts.
    pub const DEFAULT: GenConfig = GenConfig {
        users: 10_000,
        seed: 42,
        cohorts: 40,
        course_tags: CourseTags::Challenge,
        view_share: 0.88,
        popular_noise: 0.15,
        primary_share_min: 0.6,
        primary_share_max: 0.9,
        long_watcher_share: 0.1,
        assessment_share: 0.3,
        interest_noise: None,
        drift_share: 0.0,
    };

    /// Checks ranges: at least one user, at least two cohorts (a secondary
    /// cohort differs from the primary), shares within `[0, 1]`, and
    /// `primary_share_min <= primary_share_max`.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.users >= 1, "users must be at least 1");
        ensure!(
            self.cohorts >= 2,
            "cohorts must be at least 2 (each user has a primary and a different secondary cohort)"
        );
        for (name, value) in [
            ("view_share", self.view_share),
            ("popular_noise", self.popular_noise),
            ("primary_share_min", self.primary_share_min),
            ("primary_share_max", self.primary_share_max),
            ("long_watcher_share", self.long_watcher_share),
            ("assessment_share", self.assessment_share),
            ("interest_noise", self.interest_noise.unwrap_or(0.0)),
            ("drift_share", self.drift_share),
        ] {
            ensure!(
                (0.0..=1.0).contains(&value),
                "{name} must be between 0 and 1, got {value}"
            );
        }
        ensure!(
            self.primary_share_min <= self.primary_share_max,
            "primary_share_min ({}) exceeds primary_share_max ({})",
            self.primary_share_min,
            self.primary_share_max
        );
        Ok(())
    }
}

impl Default for GenConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenReport {
    /// Users generated (all have interests and a ground-truth row).
    pub users: u64,
    /// Users with at least one course view.
    pub users_with_views: u64,
    /// Users with at least one assessment score.
    pub users_with_assessments: u64,
    /// Users whose viewing times are multiplied (`watch_multiplier > 1`).
    pub long_watchers: u64,
    /// Rows of `user_course_views.csv`.
    pub view_rows: u64,
    /// `"challenge"`, `"synthetic"` or the path of the copied course-tags file.
    pub course_tags_source: String,
    /// Rows of `course_tags.csv`.
    pub course_tag_rows: u64,
    /// Distinct courses.
    pub courses: u64,
    /// Distinct non-empty course tags.
    pub course_tags: u64,
    /// Distinct course authors.
    pub authors: u64,
    /// Rows of `user_interests.csv`, duplicates included.
    pub interest_rows: u64,
    /// Rows of `user_interests.csv` that repeat the row before them exactly.
    pub interest_duplicate_rows: u64,
    /// Distinct interest tags followed.
    pub interest_tags: u64,
    /// Rows of `user_assessment_scores.csv`.
    pub assessment_rows: u64,
    /// Distinct assessment tags taken.
    pub assessment_tags: u64,
    /// Rows of `ground_truth.csv` (one per user).
    pub ground_truth_rows: u64,
    /// The planted cohorts.
    pub cohorts: Vec<CohortSummary>,
}

/// The planted truth about one user (a row of `ground_truth.csv`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// The cohort most of the user's activity comes from (`0..cohorts`).
    pub primary_cohort: u32,
    /// The other cohort the user draws from; never the primary.
    pub secondary_cohort: u32,
    /// Probability that a non-noise draw uses the primary cohort.
    pub primary_share: f64,
    /// Factor on the user's viewing times: 1, or 3 to 6 for long watchers.
    pub watch_multiplier: f64,
    /// For a user whose taste drifted on [`DRIFT_DATE`], the cohort they left
    /// (`primary_cohort` is the one they moved to); `None` for everyone else.
    pub drifted_from: Option<u32>,
}

/// Generates the data set for `cfg` into `out_dir` (created if missing;
/// existing output files are overwritten) and returns what was written.
///
/// Writes [`VIEWS_FILE`], [`COURSE_TAGS_FILE`], [`INTERESTS_FILE`],
/// [`ASSESSMENTS_FILE`], [`GROUND_TRUTH_FILE`] and [`MANIFEST_FILE`]. The
/// course tags are the challenge's file or `cfg.course_tags`' file, written byte
/// for byte, or a synthetic catalogue (see [`CourseTags`]).
pub fn generate(cfg: &GenConfig, out_dir: &Path) -> Result<GenReport> {
    cfg.validate()?;
    fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create output folder {}", out_dir.display()))?;

    let tags_out = out_dir.join(COURSE_TAGS_FILE);
    let (rows, source) = match &cfg.course_tags {
        CourseTags::Challenge => {
            // The same parser as a file's, on the embedded bytes.
            let rows = Catalog::read_rows_from(
                CHALLENGE_COURSE_TAGS.as_bytes(),
                "the embedded challenge course_tags.csv",
            )?;
            fs::write(&tags_out, CHALLENGE_COURSE_TAGS)
                .with_context(|| format!("cannot write {}", tags_out.display()))?;
            (rows, "challenge".to_owned())
        }
        CourseTags::File(path) => {
            let rows = Catalog::read_rows(path)?;
            // Copy unless the source already is the destination.
            let same = fs::canonicalize(path).ok() == fs::canonicalize(&tags_out).ok();
            if !same {
                copy_bytes(path, &tags_out)?;
            }
            (rows, path.display().to_string())
        }
        CourseTags::Synthetic => {
            let rows = synth::synthesize(&mut Rng::stream(cfg.seed, Stream::SyntheticCatalog, 0));
            write_course_tags(&tags_out, &rows)?;
            (rows, "synthetic".to_owned())
        }
    };
    let catalog = Catalog::from_rows(&rows, cfg.seed)?;
    drop(rows);

    let vocab = cohorts::InterestVocab::new(&catalog);
    let cohort_list = cohorts::build_cohorts(&catalog, &vocab, cfg.cohorts, cfg.seed)?;
    let world = users::World::new(cfg, &catalog, &cohort_list, &vocab);
    let tally = world
        .write_all(out_dir)
        .with_context(|| format!("cannot write the data set to {}", out_dir.display()))?;

    let report = GenReport {
        users: cfg.users,
        users_with_views: tally.users_with_views,
        users_with_assessments: tally.users_with_assessments,
        long_watchers: tally.long_watchers,
        view_rows: tally.view_rows,
        course_tags_source: source,
        course_tag_rows: catalog.rows,
        courses: catalog.courses.len() as u64,
        course_tags: catalog.tags.len() as u64,
        authors: u64::from(catalog.authors),
        interest_rows: tally.interest_rows,
        interest_duplicate_rows: tally.interest_duplicate_rows,
        interest_tags: tally.interest_seen.iter().filter(|&&s| s).count() as u64,
        assessment_rows: tally.assessment_rows,
        assessment_tags: tally.assessment_seen.iter().filter(|&&s| s).count() as u64,
        ground_truth_rows: cfg.users,
        cohorts: cohort_list
            .iter()
            .enumerate()
            .map(|(i, c)| c.summary(i as u32, &catalog, tally.primary_users[i]))
            .collect(),
    };
    write_manifest(&out_dir.join(MANIFEST_FILE), cfg, &report)?;
    Ok(report)
}

/// Reads `ground_truth.csv` into a map from user handle to truth.
pub fn read_ground_truth(path: &Path) -> Result<HashMap<u64, GroundTruth>> {
    #[derive(Deserialize)]
    struct Row {
        user_handle: u64,
        primary_cohort: u32,
        secondary_cohort: u32,
        primary_share: f64,
        watch_multiplier: f64,
        #[serde(default)]
        drifted_from: Option<u32>,
    }
    let mut reader = csv::Reader::from_path(path)
        .with_context(|| format!("cannot open ground truth {}", path.display()))?;
    let mut truth = HashMap::new();
    for (i, row) in reader.deserialize::<Row>().enumerate() {
        let row = row.with_context(|| format!("bad row {} in {}", i + 2, path.display()))?;
        let value = GroundTruth {
            primary_cohort: row.primary_cohort,
            secondary_cohort: row.secondary_cohort,
            primary_share: row.primary_share,
            watch_multiplier: row.watch_multiplier,
            drifted_from: row.drifted_from,
        };
        if truth.insert(row.user_handle, value).is_some() {
            bail!(
                "user {} appears twice in {}",
                row.user_handle,
                path.display()
            );
        }
    }
    Ok(truth)
}

/// The generator's CSV files that already exist in `dir` (to avoid clobbering
/// a data set by accident).
pub fn existing_outputs(dir: &Path) -> Vec<PathBuf> {
    CSV_FILES
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists())
        .collect()
}

/// Copies the bytes of `from` into a new file `to` (unlike `fs::copy`, without
/// the source's permissions, so a read-only input gives a writable output).
fn copy_bytes(from: &Path, to: &Path) -> Result<()> {
    let context = || format!("cannot copy {} to {}", from.display(), to.display());
    let mut src = File::open(from).with_context(context)?;
    let mut dst = File::create(to).with_context(context)?;
    io::copy(&mut src, &mut dst).with_context(context)?;
    Ok(())
}

/// Writes synthetic `(course_id, tag)` rows in the challenge's format.
fn write_course_tags(path: &Path, rows: &[(String, String)]) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    writeln!(out, "\"course_id\",\"course_tags\"")?;
    for (course, tag) in rows {
        writeln!(out, "{},{}", users::Quoted(course), users::Quoted(tag))?;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `generator.json`: generator name and version, config, report.
fn write_manifest(path: &Path, cfg: &GenConfig, report: &GenReport) -> Result<()> {
    #[derive(Serialize)]
    struct Manifest<'a> {
        generator: &'static str,
        version: &'static str,
        config: &'a GenConfig,
        report: &'a GenReport,
    }
    let manifest = Manifest {
        generator: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        config: cfg,
        report,
    };
    let mut json = serde_json::to_string_pretty(&manifest)?;
    json.push('\n');
    fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
}
