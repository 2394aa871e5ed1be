//! Compares how much shared-taste structure files of user tags carry, without
//! ground truth: the real assessments against generated ones, for example.
//!
//! ```text
//! cargo run --release -p kindred-datagen --example structure -- \
//!     real=data/pluralsight/user_assessment_scores.csv \
//!     defaults=data/generated/user_assessment_scores.csv
//! ```
//!
//! Prints one Markdown row per file; see `kindred_datagen::structure` for what
//! the figures mean.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use kindred_datagen::structure::{UserTags, excess_on_halves, measure};

/// Measures the structure of user-tag files: the mutual information between
/// two tags of one user, minus the same with tags shuffled across users
/// (excess, in nats; 0 means users pick tags independently), and how much
/// better a hidden tag is predicted from the user's other tags than from
/// popularity (held-out gain, nats per tag). Prints a Markdown table, one row
/// per file.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Files to measure, each `LABEL=PATH` or just a path (the label is then the path).
    #[arg(required = true, value_name = "[LABEL=]FILE")]
    files: Vec<String>,
    /// The tag column: `assessment_tag` (user_assessment_scores.csv) or
    /// `interest_tag` (user_interests.csv).
    #[arg(long, default_value = "assessment_tag")]
    column: String,
    /// Shuffled copies averaged for the no-structure level.
    #[arg(long, default_value_t = 5)]
    shuffles: u32,
    /// Random halves of the users measured again, to show the spread.
    #[arg(long, default_value_t = 10)]
    halves: u32,
    /// Seed of the shuffles, halves and samples.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Measure at most this many users of each file (a random sample): both
    /// measures grow with the number of users, so compare files at one size.
    #[arg(long, value_name = "N")]
    max_users: Option<usize>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "| file | users | with 2+ tags | tags | top-5 share | information | shuffled | **excess** | excess on half-size samples (biased low): median (min-max) | **held-out gain** |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for spec in &args.files {
        let (label, path) = match spec.split_once('=') {
            Some((label, path)) => (label.to_owned(), PathBuf::from(path)),
            None => (spec.clone(), PathBuf::from(spec)),
        };
        let mut users = UserTags::read_csv(&path, &args.column)?;
        if let Some(n) = args.max_users {
            users = users.sample(n, args.seed);
        }
        let s = measure(&users, args.shuffles, args.seed);
        let mut halves = excess_on_halves(&users, args.halves, args.shuffles, args.seed);
        halves.sort_by(f64::total_cmp);
        let spread = match (halves.first(), halves.last()) {
            (Some(lo), Some(hi)) => format!("{:.3} ({lo:.3}-{hi:.3})", halves[halves.len() / 2]),
            _ => "-".to_owned(),
        };
        println!(
            "| {label} | {} | {} | {} | {:.3} | {:.3} | {:.3} | **{:.3}** | {spread} | **{:.3}** |",
            s.users,
            s.users_with_pairs,
            s.tags,
            s.top5_share,
            s.pair_information,
            s.shuffled_information,
            s.excess_information(),
            s.held_out_gain,
        );
    }
    Ok(())
}
