//! `kindred-datagen`: writes a generated Pluralsight-challenge data set with
//! planted cohorts and a ground-truth file, on the challenge's course catalogue
//! (built in) unless told otherwise.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Parser;
use kindred_datagen::{CourseTags, GenConfig, GenReport, existing_outputs, generate};

const DEFAULT: GenConfig = GenConfig::DEFAULT;

const EXAMPLES: &str = "Examples:
  kindred-datagen --out data/generated
      10,000 users over the challenge's catalogue (5,942 courses, built in)
  kindred-datagen --out /tmp/gen1m --users 1000000
      a million users over the same catalogue
  kindred-datagen --out /tmp/base --delta-users 1000 --delta-out /tmp/delta
      10,000 users, 1,000 of them (complete) in /tmp/delta for kindred-batch update
  kindred-datagen --out /tmp/synth --synthetic-catalogue
      10,000 users over a synthetic catalogue of 5,942 courses drawn from the seed
  kindred-datagen --out /tmp/mine --course-tags my_course_tags.csv
      10,000 users over another catalogue in the challenge's format";

/// Generate the four Pluralsight-challenge CSVs (course views, course tags,
/// interests, assessment scores) with a planted cohort structure.
///
/// The course tags are the challenge's public course_tags.csv (built into the
/// binary and written out byte for byte) unless --course-tags or
/// --synthetic-catalogue says otherwise.
///
/// Output is deterministic: the same options (and --course-tags file) give
/// byte-identical files. Besides the four challenge files it writes
/// ground_truth.csv (each user's primary and secondary cohort, primary share
/// and watch multiplier) and generator.json (the options and a report).
#[derive(Debug, Parser)]
#[command(name = "kindred-datagen", version, about, long_about, after_help = EXAMPLES)]
struct Cli {
    /// Folder to write into (created if missing).
    #[arg(long, value_name = "DIR", env = "KINDRED_DATA_OUT")]
    out: PathBuf,

    /// Overwrite the CSVs if the folder already holds some.
    #[arg(long)]
    force: bool,

    /// Number of users; handles are 1..=N.
    #[arg(long, value_name = "N", env = "KINDRED_GEN_USERS", default_value_t = DEFAULT.users)]
    users: u64,

    /// Seed of all random draws.
    #[arg(long, default_value_t = DEFAULT.seed)]
    seed: u64,

    /// After generating, move this many users into a delta folder for `kindred-batch
    /// update` (half new, half with their latest 30% of views held back from --out);
    /// needs --delta-out.
    #[arg(long, value_name = "N", requires = "delta_out")]
    delta_users: Option<usize>,

    /// Folder for the delta users' complete rows (see --delta-users).
    #[arg(long, value_name = "DIR", requires = "delta_users")]
    delta_out: Option<PathBuf>,

    /// Number of latent cohorts (at least 2).
    #[arg(long, value_name = "N", default_value_t = DEFAULT.cohorts)]
    cohorts: u32,

    /// A course_tags.csv in the challenge's format to copy and build on
    /// [default: the challenge's own, built in].
    #[arg(long, value_name = "FILE", env = "KINDRED_COURSE_TAGS")]
    course_tags: Option<PathBuf>,

    /// Synthesise a catalogue of 5,942 courses from the seed instead of using
    /// the challenge's course_tags.csv.
    #[arg(long, conflicts_with = "course_tags")]
    synthetic_catalogue: bool,

    /// Share of users with course views.
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT.view_share, value_parser = share)]
    view_share: f64,

    /// Share of views, interests and assessments drawn from globally popular
    /// courses and tags rather than the user's cohorts.
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT.popular_noise, value_parser = share)]
    popular_noise: f64,

    /// Lowest weight of a user's primary cohort (the rest goes to the secondary).
    /// The default 0.6-0.9 plants a weaker structure than the real assessments
    /// show; 0.7-1.0 is still weaker, about 0.8-1.0 matches them (README, Quality).
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT.primary_share_min, value_parser = share)]
    primary_share_min: f64,

    /// Highest weight of a user's primary cohort.
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT.primary_share_max, value_parser = share)]
    primary_share_max: f64,

    /// Share of users whose viewing times are multiplied by 3 to 6.
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT.long_watcher_share, value_parser = share)]
    long_watcher_share: f64,

    /// Share of users with assessment scores.
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT.assessment_share, value_parser = share)]
    assessment_share: f64,

    /// Popular-noise share of interests alone (to vary how strong a signal
    /// interests are) [default: --popular-noise].
    #[arg(long, value_name = "SHARE", value_parser = share)]
    interest_noise: Option<f64>,

    /// Share of users whose taste drifts: on 2017-08-01 they move to another primary
    /// cohort, and their activity from then on follows it (ground_truth.csv then has
    /// a drifted_from column: the cohort they left).
    #[arg(long, value_name = "SHARE", default_value_t = DEFAULT.drift_share, value_parser = share)]
    drift_share: f64,
}

impl Cli {
    fn config(&self) -> GenConfig {
        GenConfig {
            users: self.users,
            seed: self.seed,
            cohorts: self.cohorts,
            course_tags: match (&self.course_tags, self.synthetic_catalogue) {
                (_, true) => CourseTags::Synthetic,
                (Some(path), false) => CourseTags::File(path.clone()),
                (None, false) => CourseTags::Challenge,
            },
            view_share: self.view_share,
            popular_noise: self.popular_noise,
            primary_share_min: self.primary_share_min,
            primary_share_max: self.primary_share_max,
            long_watcher_share: self.long_watcher_share,
            assessment_share: self.assessment_share,
            interest_noise: self.interest_noise,
            drift_share: self.drift_share,
        }
    }
}

/// Parses a share: a number from 0 to 1.
fn share(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&x) {
        Ok(x)
    } else {
        Err(format!("{x} is not between 0 and 1"))
    }
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kindred-datagen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    let cfg = cli.config();
    cfg.validate()?;
    let existing = existing_outputs(&cli.out);
    if !existing.is_empty() && !cli.force {
        let names: Vec<String> = existing
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        bail!(
            "{} already contains {}; pass --force to overwrite",
            cli.out.display(),
            names.join(", ")
        );
    }
    let started = Instant::now();
    let report = generate(&cfg, &cli.out)?;
    let mut printed = print_summary(&cfg, &report, cli, started.elapsed().as_secs_f64());
    if let (Some(users), Some(delta)) = (cli.delta_users, &cli.delta_out) {
        let split =
            kindred_datagen::split::split_delta(&cli.out, &cli.out, delta, users, cfg.seed)?;
        printed = printed.and_then(|()| {
            writeln!(
                io::stdout(),
                "moved {} new and {} changed users' complete rows to {} (the latter's latest views held back from {})",
                split.new.len(),
                split.changed.len(),
                delta.display(),
                cli.out.display()
            )
        });
    }
    match printed {
        // The data is written; a closed stdout (`| head`) is not an error.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Prints what was written, one line per file.
fn print_summary(cfg: &GenConfig, r: &GenReport, cli: &Cli, seconds: f64) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let pct = |part: u64, whole: u64| 100.0 * part as f64 / whole.max(1) as f64;
    writeln!(
        out,
        "kindred-datagen: {} users (seed {}, {} cohorts) written to {} in {seconds:.1} s",
        thousands(r.users),
        cfg.seed,
        cfg.cohorts,
        cli.out.display()
    )?;
    writeln!(
        out,
        "  user_course_views.csv       {:>12} rows  {} users with views ({:.1}%), {} long watchers",
        thousands(r.view_rows),
        thousands(r.users_with_views),
        pct(r.users_with_views, r.users),
        thousands(r.long_watchers)
    )?;
    writeln!(
        out,
        "  course_tags.csv             {:>12} rows  {} courses, {} tags, {} authors ({})",
        thousands(r.course_tag_rows),
        thousands(r.courses),
        thousands(r.course_tags),
        thousands(r.authors),
        r.course_tags_source
    )?;
    writeln!(
        out,
        "  user_interests.csv          {:>12} rows  {} tags, {:.1}% duplicate rows",
        thousands(r.interest_rows),
        thousands(r.interest_tags),
        pct(r.interest_duplicate_rows, r.interest_rows)
    )?;
    writeln!(
        out,
        "  user_assessment_scores.csv  {:>12} rows  {} users ({:.1}%), {} tags",
        thousands(r.assessment_rows),
        thousands(r.users_with_assessments),
        pct(r.users_with_assessments, r.users),
        r.assessment_tags
    )?;
    writeln!(
        out,
        "  ground_truth.csv            {:>12} rows",
        thousands(r.ground_truth_rows)
    )?;
    Ok(())
}

/// `1234567` -> `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let head = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        r => r,
    };
    let mut out = digits[..head].to_owned();
    for group in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).expect("ASCII digits"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn given_the_cli_definition_then_clap_accepts_it() {
        Cli::command().debug_assert();
    }

    #[test]
    fn given_numbers_when_grouping_then_commas_separate_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(249_238), "249,238");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn given_shares_when_parsing_then_out_of_range_values_are_rejected() {
        assert_eq!(share("0.5"), Ok(0.5));
        assert!(share("1.5").is_err());
        assert!(share("x").is_err());
    }
}
