//! `kindred-bench`: measures model quality for several weightings side by side.
//!
//! Used to choose the defaults of `kindred-batch train` by measurement. On generated data
//! (with `ground_truth.csv`) it reports cohort precision@10 against the planted cohorts,
//! the index's recall@10, the explained variance and the training time of each variant.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use kindred_batch::matrix::{BlockWeighting, Transform};
use kindred_batch::{eval, index, train};
use kindred_core::Model;
use kindred_core::artifact::{self, Index, UserTable};

/// Compare weightings of the training matrix on a generated data set with ground truth.
#[derive(Parser, Debug)]
#[command(name = "kindred-bench", version, about)]
struct Cli {
    /// Generated data folder (with ground_truth.csv), e.g. from kindred-datagen.
    #[arg(long, env = "KINDRED_DATA")]
    data: PathBuf,
    /// Variants to run, by number in the printed table (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Users sampled for the precision measure.
    #[arg(long, default_value_t = 2000)]
    sample: usize,
}

/// A named change to the default configuration.
type Variant = (&'static str, Box<dyn Fn(&mut train::TrainConfig)>);

fn variants() -> Vec<Variant> {
    let views = |t, idf| BlockWeighting {
        transform: t,
        idf,
        weight: 1.0,
    };
    // Every variant starts from the default configuration (views log1p + idf, interests 1.0).
    vec![
        (
            "seed-like: views raw, U, rank 50",
            Box::new(move |c: &mut train::TrainConfig| {
                c.views = views(Transform::Raw, false);
                c.interests.weight = 0.0;
                c.power = 0.0;
                c.rank = 50;
            }),
        ),
        (
            "views raw, U Σ",
            Box::new(move |c| {
                c.views = views(Transform::Raw, false);
                c.interests.weight = 0.0;
            }),
        ),
        (
            "views log1p, U Σ",
            Box::new(move |c| {
                c.views = views(Transform::Log1p, false);
                c.interests.weight = 0.0;
            }),
        ),
        (
            "views log1p + idf, U",
            Box::new(move |c| {
                c.interests.weight = 0.0;
                c.power = 0.0;
            }),
        ),
        (
            "views log1p + idf, U Σ^0.5",
            Box::new(move |c| {
                c.interests.weight = 0.0;
                c.power = 0.5;
            }),
        ),
        (
            "views log1p + idf, U Σ",
            Box::new(move |c| c.interests.weight = 0.0),
        ),
        (
            "views binary + idf, U Σ",
            Box::new(move |c| {
                c.views = views(Transform::Binary, true);
                c.interests.weight = 0.0;
            }),
        ),
        (
            "views + interests 0.5",
            Box::new(move |c| c.interests.weight = 0.5),
        ),
        ("views + interests 1.0 (default)", Box::new(|_| {})),
        (
            "views + interests 2.0",
            Box::new(move |c| c.interests.weight = 2.0),
        ),
        (
            "default + assessments 0.5",
            Box::new(move |c| c.assessments.weight = 0.5),
        ),
    ]
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let truth = kindred_datagen::read_ground_truth(&cli.data.join("ground_truth.csv"))?;
    let cohort_of: HashMap<u64, u32> = truth.iter().map(|(h, t)| (*h, t.primary_cohort)).collect();
    println!(
        "data: {} ({} users in ground truth)",
        cli.data.display(),
        truth.len()
    );
    println!(
        "{:<46} {:>9} {:>7} {:>9} {:>8} {:>8}",
        "variant", "prec@10", "chance", "recall@10", "expl.var", "train s"
    );
    for (i, (name, apply)) in variants().into_iter().enumerate() {
        if !cli.only.is_empty() && !cli.only.iter().any(|o| o == &i.to_string()) {
            continue;
        }
        let mut cfg = train::default_config(cli.data.clone());
        apply(&mut cfg);
        let start = Instant::now();
        let trained = train::train(&cfg, "bench")?;
        let secs = start.elapsed().as_secs_f64();
        let users: UserTable = artifact::decode(artifact::USERS, &trained.artifacts[0].1)?;
        let idx: Index = artifact::decode(artifact::INDEX, &trained.artifacts[1].1)?;
        let mut manifest = trained.manifest;
        manifest.artifacts.clear();
        let model = Model::from_parts(manifest, users, idx)?;
        let rows = index::sample_rows(model.len(), cli.sample, 11);
        let (precision, chance) = eval::cohort_precision(&model, &cohort_of, &rows, 10);
        println!(
            "{:<46} {:>9.3} {:>7.3} {:>9.4} {:>8.3} {:>8.2}",
            name,
            precision,
            chance,
            trained.summary.recall_at_10,
            trained.summary.explained_variance,
            secs
        );
    }
    Ok(())
}
