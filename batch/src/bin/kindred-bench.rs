//! `kindred-bench`: measures model quality for several weightings side by side.
//!
//! Used to choose the defaults of `kindred-batch train` by measurement. On generated data
//! (with `ground_truth.csv`) it reports cohort precision@10 against the planted cohorts,
//! the index's recall@10, the explained variance and the training time of each variant.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use kindred_batch::matrix::Transform;
use kindred_batch::{config, eval, index, train};
use kindred_core::codec::decode;
use kindred_core::manifest::{INDEX, USERS};
use kindred_core::search::Index;
use kindred_core::users::UserTable;

/// Compare weightings of the training matrix on a generated data set with ground truth.
#[derive(Parser, Debug)]
#[command(name = "kindred-bench", version)]
struct Cli {
    /// Generated data folder (with ground_truth.csv), e.g. from kindred-datagen.
    #[arg(long, env = "KINDRED_DATA")]
    data: PathBuf,
    /// Variants to run, by number in the printed table (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also print precision by planted primary share and by whether the user has views.
    #[arg(long)]
    breakdown: bool,
    /// Users sampled for the precision measure.
    #[arg(long, default_value_t = 2000)]
    sample: usize,
}

/// A named subset of the sampled users, by index point.
type Filter<'a> = Box<dyn Fn(u32) -> bool + 'a>;

/// A named change to the default configuration.
type Variant = (&'static str, Box<dyn Fn(&mut config::TrainConfig)>);

fn variants() -> Vec<Variant> {
    use config::Method;
    let preset =
        |m: Method| move |c: &mut config::TrainConfig| *c = config::config_for(m, c.data.clone());
    // Every other variant changes one thing of the default (`--method kindred`).
    vec![
        ("seed (--method seed)", Box::new(preset(Method::Seed))),
        (
            "baseline (--method baseline)",
            Box::new(preset(Method::Baseline)),
        ),
        ("kindred (default)", Box::new(|_| {})),
        (
            "kindred, no smoothing",
            Box::new(|c| c.smooth_neighbours = 0),
        ),
        (
            "kindred, interests weight 1",
            Box::new(|c| c.interests.weight = 1.0),
        ),
        (
            "kindred, smoothing weight 5",
            Box::new(|c| c.smooth_weight = 5.0),
        ),
        (
            "kindred, smoothing 50 users at weight 1",
            Box::new(|c| {
                c.smooth_share = 1.0;
                c.smooth_neighbours = 50;
                c.smooth_weight = 1.0;
            }),
        ),
        (
            "kindred, HNSW without heuristic",
            Box::new(|c| c.hnsw.heuristic = false),
        ),
        (
            "kindred + assessments 0.5",
            Box::new(|c| c.assessments.weight = 0.5),
        ),
        ("kindred + courses 1", Box::new(|c| c.courses.weight = 1.0)),
        (
            "kindred, views only",
            Box::new(|c| c.interests.weight = 0.0),
        ),
        (
            "kindred, views binary",
            Box::new(|c| c.views.transform = Transform::Binary),
        ),
        ("kindred, rank 32", Box::new(|c| c.rank = 32)),
        ("kindred, U (power 0)", Box::new(|c| c.power = 0.0)),
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
        "{:<40} {:>8} {:>7} {:>8} {:>7} {:>9} {:>8} {:>8}",
        "variant", "prec@10", "chance", "holdout", "chance", "recall@10", "expl.var", "train s"
    );
    for (i, (name, apply)) in variants().into_iter().enumerate() {
        if !cli.only.is_empty() && !cli.only.iter().any(|o| o == &i.to_string()) {
            continue;
        }
        let mut cfg = config::default_config(cli.data.clone());
        apply(&mut cfg);
        cfg.eval_sample = cli.sample;
        cfg.evaluate = config::Evaluate::Refit;
        let start = Instant::now();
        let trained = train::train(&cfg, "bench")?;
        let secs = start.elapsed().as_secs_f64();
        let q = &trained.summary.quality;
        if cli.breakdown {
            let users: UserTable = decode(USERS, &trained.artifacts[0].1)?;
            anyhow::ensure!(
                trained.artifacts[1].0 == INDEX,
                "--breakdown reads an unsharded model"
            );
            let idx: Index = decode(INDEX, &trained.artifacts[1].1)?;
            let dims = trained.manifest.dimensions as usize;
            let idx = kindred_core::shard::Shards::new(vec![(0, idx)], dims, false)?;
            let handles: Vec<u64> = users.users.iter().map(|u| u.handle).collect();
            let rows = index::sample_rows(handles.len(), cli.sample, 11);
            let share = |r: u32| truth[&handles[r as usize]].primary_share;
            let groups: [(&str, Filter); 5] = [
                ("share < 0.7", Box::new(|r| share(r) < 0.7)),
                (
                    "share 0.7-0.8",
                    Box::new(|r| (0.7..0.8).contains(&share(r))),
                ),
                ("share >= 0.8", Box::new(|r| share(r) >= 0.8)),
                ("with views", Box::new(|r| users.users.get(r).courses > 0)),
                ("no views", Box::new(|r| users.users.get(r).courses == 0)),
            ];
            for (label, keep) in &groups {
                let sub: Vec<u32> = rows.iter().copied().filter(|&r| keep(r)).collect();
                let (p, _) =
                    eval::cohort_precision(&idx, &handles, &cohort_of, &sub, 10, cfg.threads);
                println!("    {label:<20} {:>6} users  prec@10 {p:.3}", sub.len());
            }
        }
        println!(
            "{:<40} {:>8.3} {:>7.3} {:>8.3} {:>7.3} {:>9.4} {:>8.3} {:>8.2}",
            name,
            q.cohort_precision_at_10.unwrap_or(f64::NAN),
            q.cohort_chance.unwrap_or(f64::NAN),
            q.holdout_recall_at_10.unwrap_or(f64::NAN),
            q.holdout_chance.unwrap_or(f64::NAN),
            trained.summary.recall_at_10,
            trained.summary.explained_variance,
            secs
        );
    }
    Ok(())
}
