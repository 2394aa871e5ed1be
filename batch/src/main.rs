//! `kindred-batch`: trains and publishes Kindred models.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kindred_batch::config::{Evaluate, Method};
use kindred_batch::matrix::Transform;
use kindred_batch::summary::RunSummary;
use kindred_batch::{config, pipeline, report, train};
use kindred_core::registry::Published;
use kindred_core::store::Store;
use kindred_core::{registry, versions};

/// Kindred's training job: reads the course-view, course-tag, interest and assessment CSVs,
/// builds user embeddings with a truncated SVD, indexes them with HNSW and publishes a
/// versioned model to a local folder or S3.
#[derive(Parser, Debug)]
#[command(name = "kindred-batch", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "KINDRED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model from a data folder and publish it as the store's current version.
    Train(TrainArgs),
    /// Measure quality side by side: train each method on a data folder (publishing
    /// nothing) and report cohort precision@10 (generated data), hold-out recall@10 and
    /// index recall@10, each with its chance level.
    Eval(EvalArgs),
    /// Split run, step 1 of 3 (run once): read the CSVs, factorise, embed and smooth all
    /// users, split them into shards and stage one input per shard in the store under
    /// staging/<run>/ (with shards.json, the list a Step Functions Distributed Map reads).
    Prepare(PrepareArgs),
    /// Split run, step 2 of 3 (once per shard, in parallel): build one shard's HNSW index
    /// and write its user table and index into the version.
    BuildShard {
        /// Model store: a folder or s3://bucket/prefix.
        #[arg(long, env = "KINDRED_STORE", default_value = "./trained_model")]
        store: String,
        /// The run's name, as given to `prepare`.
        #[arg(long, env = "KINDRED_RUN")]
        run: String,
        /// The shard to build.
        #[arg(long, env = "KINDRED_SHARD")]
        shard: u32,
    },
    /// Split run, step 3 of 3 (run once): load every shard as the function will, measure
    /// recall@10 over all of them, write the report and manifest and move the pointer.
    Publish {
        /// Model store: a folder or s3://bucket/prefix.
        #[arg(long, env = "KINDRED_STORE", default_value = "./trained_model")]
        store: String,
        /// The run's name, as given to `prepare`.
        #[arg(long, env = "KINDRED_RUN")]
        run: String,
        /// The data folder, for cohort precision when it holds a generator's
        /// ground_truth.csv (optional).
        #[arg(long, env = "KINDRED_DATA")]
        data: Option<PathBuf>,
    },
    /// Fold new and changed users into the current version without a full training, and
    /// publish the result as a new version. The folder holds each user's complete
    /// current rows in the training schema (user_course_views.csv required;
    /// course_tags.csv, user_interests.csv, user_assessment_scores.csv optional): a
    /// known user is replaced, a new one added. Rows are weighted and projected with the
    /// current version's stored basis; the manifest records how far that basis has
    /// drifted and whether a full training is due. A folder without
    /// user_course_views.csv means nothing changed: no version is published.
    Update {
        /// Folder with the new and changed users' rows.
        #[arg(long, env = "KINDRED_DELTA")]
        data: PathBuf,
        /// Model store: a folder or s3://bucket/prefix (S3 honours AWS_ENDPOINT_URL).
        #[arg(long, env = "KINDRED_STORE", default_value = "./trained_model")]
        store: String,
        /// Also print the update's figures as one CloudWatch Embedded Metric Format line.
        #[arg(long, env = "KINDRED_EMF")]
        emf: bool,
    },
    /// Show the store's current version and its manifest.
    Show {
        /// Model store: a folder or s3://bucket/prefix.
        #[arg(long, env = "KINDRED_STORE", default_value = "./trained_model")]
        store: String,
    },
    /// List the store's versions, oldest first, with date, users, quality and size, the
    /// current and previous ones marked, then every rollback (from, to, when, why).
    Versions {
        /// Model store: a folder or s3://bucket/prefix.
        #[arg(long, env = "KINDRED_STORE", default_value = "./trained_model")]
        store: String,
    },
    /// Make an earlier (or any other) version current again, after verifying it as the
    /// function would load it. The move is recorded; the function follows the pointer
    /// within its refresh interval.
    Rollback {
        /// Model store: a folder or s3://bucket/prefix.
        #[arg(long, env = "KINDRED_STORE", default_value = "./trained_model")]
        store: String,
        /// The version to make current (see `versions`).
        #[arg(long)]
        to: String,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
    },
    /// Remove old versions: every version older than the current one except the --keep
    /// newest complete ones and the previous one. Versions newer than the current one
    /// are never removed.
    Prune {
        /// Model store: a folder or s3://bucket/prefix.
        #[arg(long, env = "KINDRED_STORE", default_value = "./trained_model")]
        store: String,
        /// Complete versions to keep, newest first (the current and previous versions
        /// are kept in any case).
        #[arg(long, env = "KINDRED_PRUNE_KEEP", value_parser = clap::value_parser!(u64).range(1..))]
        keep: u64,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// Folder with the CSVs (and, for cohort precision, a generator's ground_truth.csv).
    #[arg(long, env = "KINDRED_DATA")]
    data: PathBuf,
    /// Methods to compare, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "seed,baseline,kindred"
    )]
    methods: Vec<Method>,
    /// Users sampled for each measure.
    #[arg(long, env = "KINDRED_EVAL_SAMPLE", default_value_t = 1000)]
    eval_sample: usize,
    /// Also write the comparison as Markdown to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Also write every method's run summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Recency half-life in days for every method compared (0: none) [default: each
    /// method's].
    #[arg(long)]
    half_life_days: Option<f32>,
    /// Skip the course recommendation comparison (hold-out course recall@10 and NDCG@10
    /// of Kindred's `/recommend` against popularity and item-kNN; one more training run).
    #[arg(long)]
    skip_courses: bool,
    /// Also measure `kindred-batch update` against a full training: fold this many users
    /// (half new, half with their latest views held back) into a model trained without
    /// them and compare neighbours (two more training runs; 0: skip).
    #[arg(long, default_value_t = 0)]
    update_users: usize,
}

#[derive(Args, Debug)]
struct PrepareArgs {
    /// A name for this run (letters, digits, '-', '_'): later steps find its staging
    /// objects by it (in AWS, the Step Functions execution name).
    #[arg(long, env = "KINDRED_RUN")]
    run: String,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// Folder with user_course_views.csv and course_tags.csv (required) and
    /// user_interests.csv and user_assessment_scores.csv (optional).
    #[arg(long, env = "KINDRED_DATA")]
    data: PathBuf,
    /// Model store: a folder or s3://bucket/prefix (S3 honours AWS_ENDPOINT_URL).
    #[arg(long, env = "KINDRED_STORE", default_value = "./trained_model")]
    store: String,
    /// Weighting preset; the flags below override parts of it. `seed` is the replaced
    /// Python service's method, `baseline` the classical tf-idf one (see docs/quality.md).
    #[arg(long, env = "KINDRED_METHOD", value_enum, default_value_t = Method::Kindred)]
    method: Method,
    /// SVD rank, i.e. the embedding dimension [default: 64; seed: 50].
    #[arg(long, env = "KINDRED_RANK")]
    rank: Option<usize>,
    /// Embeddings are U Σ^power: 1 keeps the matrix geometry, 0 is the seed's cosine on U
    /// [default: 1; seed: 0].
    #[arg(long, env = "KINDRED_SINGULAR_POWER")]
    power: Option<f64>,
    /// Transform of the average view seconds per tag [default: log1p; seed: raw].
    #[arg(long, env = "KINDRED_VIEW_TRANSFORM", value_enum)]
    view_transform: Option<Transform>,
    /// Disable inverse-document-frequency weighting of view tags.
    #[arg(long, env = "KINDRED_NO_VIEW_IDF")]
    no_view_idf: bool,
    /// Weight of the interests block relative to views; 0 leaves interests out
    /// [default: 2; baseline: 1; seed: 0].
    #[arg(long, env = "KINDRED_INTEREST_WEIGHT")]
    interest_weight: Option<f32>,
    /// Weight of the assessments block relative to views; 0 leaves assessments out
    /// [default: 0.5; baseline and seed: 0].
    #[arg(long, env = "KINDRED_ASSESSMENT_WEIGHT")]
    assessment_weight: Option<f32>,
    /// Weight of the per-course block (log seconds per course) relative to views; 0 leaves
    /// it out [default: 0].
    #[arg(long, env = "KINDRED_COURSE_WEIGHT")]
    course_weight: Option<f32>,
    /// HNSW efConstruction [default: 64; 48 for shards of 200,000 users or more]; for
    /// shards of up to 50,000 users, each point's exact nearest taken as candidates.
    #[arg(long, env = "KINDRED_EF_CONSTRUCTION")]
    ef_construction: Option<usize>,
    /// HNSW ef at search time (also caps how many neighbours one query can return; at
    /// most 65,536, the widest a model may carry).
    #[arg(long, env = "KINDRED_EF_SEARCH", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=kindred_core::graph::MAX_EF_SEARCH))]
    ef_search: u64,
    /// Build the HNSW graph without its neighbour-selection heuristic: recall@10 drops
    /// below 0.99 on smoothed (clustered) embeddings.
    #[arg(long, env = "KINDRED_NO_HNSW_HEURISTIC")]
    no_heuristic: bool,
    /// Most nearest users whose mean is added to each embedding (0 turns smoothing off)
    /// [default: 200; baseline and seed: 0].
    #[arg(long, env = "KINDRED_SMOOTH_NEIGHBOURS")]
    smooth_neighbours: Option<usize>,
    /// Share of the users smoothed together whose mean is added to each embedding, up to
    /// --smooth-neighbours (2% of 1,500 users: 30; of 10,000: 200) [default: 0.02].
    #[arg(long, env = "KINDRED_SMOOTH_SHARE")]
    smooth_share: Option<f32>,
    /// Weight of the neighbours' mean in the smoothing [default: 2].
    #[arg(long, env = "KINDRED_SMOOTH_WEIGHT")]
    smooth_weight: Option<f32>,
    /// Recency half-life in days: older views, interests and assessments weigh less,
    /// falling towards --recency-floor by half the distance every this many days before
    /// the newest event in the data, never the wall clock (0: no recency) [default: 90
    /// for kindred; baseline and seed: none].
    #[arg(long, env = "KINDRED_HALF_LIFE_DAYS")]
    half_life_days: Option<f32>,
    /// The least an old event weighs under recency, 0 to 1 [default: 0.4].
    #[arg(long, env = "KINDRED_RECENCY_FLOOR")]
    recency_floor: Option<f32>,
    /// Index shards: users are split by a stable hash of their handle, each shard gets its
    /// own HNSW index, and the function can serve any subset (default: derived from
    /// --shard-users; 1 writes the unsharded format 2).
    #[arg(long, env = "KINDRED_SHARD_COUNT", value_parser = clap::value_parser!(u32).range(1..=4096))]
    shards: Option<u32>,
    /// Target users per shard when --shards is not given.
    #[arg(long, env = "KINDRED_SHARD_USERS", default_value_t = config::DEFAULT_SHARD_USERS)]
    shard_users: usize,
    /// Seed for the index build and the hold-out measure's draw.
    #[arg(long, env = "KINDRED_SEED", default_value_t = 42)]
    seed: u64,
    /// Users sampled to measure the index's recall@10 against exact search (the first
    /// of the users the quality measures sample, whose neighbours are searched once).
    #[arg(long, env = "KINDRED_RECALL_SAMPLE", default_value_t = 1000)]
    recall_sample: usize,
    /// Worker threads (default: all cores).
    #[arg(long, env = "KINDRED_THREADS")]
    threads: Option<usize>,
    /// Strongest features kept per user for the function's explanations (`because`);
    /// 0 keeps none.
    #[arg(long, env = "KINDRED_EXPLAIN_FEATURES", default_value_t = 16)]
    explain_features: usize,
    /// Whether and how to measure hold-out recall: 20% of some users' tags are hidden and
    /// their rows folded into the trained model (auto: up to 200,000 users; always), or
    /// hidden from a second fit (refit: the exact measure, at the cost of a second matrix,
    /// SVD and smoothing). Cohort precision is measured whenever the data folder holds a
    /// generator's ground_truth.csv.
    #[arg(long, env = "KINDRED_EVALUATE", value_enum, default_value_t = Evaluate::Auto)]
    evaluate: Evaluate,
    /// Users sampled for the quality measures.
    #[arg(long, env = "KINDRED_EVAL_SAMPLE", default_value_t = 1000)]
    eval_sample: usize,
    /// After publishing, prune the store to this many complete versions (the current and
    /// previous ones are always kept; see `prune`). A failed prune is logged, not fatal.
    /// Default: keep every version.
    #[arg(long, env = "KINDRED_KEEP_VERSIONS", value_parser = clap::value_parser!(u64).range(1..))]
    keep_versions: Option<u64>,
    /// Also print the run's stage times and quality as one CloudWatch Embedded Metric
    /// Format line (namespace Kindred) after the report, for CloudWatch to extract.
    #[arg(long, env = "KINDRED_EMF")]
    emf: bool,
    /// Train and report, but publish nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also write the run summary as JSON to this file.
    #[arg(long, env = "KINDRED_SUMMARY_JSON")]
    summary_json: Option<PathBuf>,
}

fn main() -> ExitCode {
    // BLAS on the calling thread only: OpenBLAS's own pool would spin beside the read.
    // SAFETY: first thing in the process, before any other thread or BLAS call.
    unsafe { kindred_batch::blas::stop_pool() };
    keep_freed_memory_mapped();
    let cli = Cli::parse();
    init_logs(cli.log_format);
    tracing::debug!(kernels = %kindred_batch::blas::kernels(), "OpenBLAS");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Makes glibc's allocator keep 64 MiB of slack at the top of each heap it grows (one
/// heap per arena, and an arena per thread that allocates at the same time as others).
/// By default it returns freed memory to the kernel as soon as it can, and training frees
/// and allocates megabytes at a time on several threads (blocks of similarities, the
/// hold-out refit's matrices): each return and fresh page cost a system call, page faults
/// and a TLB flush on every core. Setting the pad also turns off glibc's adaptive mmap
/// threshold, so a block above 128 KiB that the slack cannot hold is mapped and unmapped
/// each time. The net effect, measured in docs/performance.md (c35e8e9): a default 10k
/// run about 8% faster, its kernel time halved, for tens of MiB more peak memory. The
/// slack is held until the process exits: at most 64 MiB per allocating thread.
fn keep_freed_memory_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        /// glibc's `M_TOP_PAD`.
        const M_TOP_PAD: std::ffi::c_int = -2;
        // SAFETY: a setter of the process's allocator, called before any other thread
        // exists; a refused value only leaves the default.
        unsafe {
            mallopt(M_TOP_PAD, 64 << 20);
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KINDRED_LOG").unwrap_or_else(|_| {
        // Stage logs when nobody watches a spinner (CI, containers); quiet on a terminal.
        let level = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            "warn"
        } else {
            "info"
        };
        tracing_subscriber::EnvFilter::new(level)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Train(args) => run_train(args).await,
        Command::Prepare(args) => {
            anyhow::ensure!(!args.train.dry_run, "--dry-run does not apply to prepare");
            let cfg = config_from(&args.train)?;
            let store = Store::open(&args.train.store).await?;
            let plan = pipeline::prepare(&store, &cfg, &args.run).await?;
            println!(
                "prepared run {} for version {}: {} shard(s) of {} users in total",
                plan.run,
                plan.version,
                plan.shards.len(),
                plan.shards.iter().map(|s| s.users).sum::<u64>()
            );
            Ok(())
        }
        Command::BuildShard { store, run, shard } => {
            let store = Store::open(&store).await?;
            let done = pipeline::build_shard(&store, &run, shard).await?;
            println!(
                "built shard {} of run {run}: {} users in {:.1} s",
                done.id, done.users, done.seconds
            );
            Ok(())
        }
        Command::Publish { store, run, data } => {
            let store = Store::open(&store).await?;
            let (published, summary) = pipeline::publish(&store, &run, data.as_deref()).await?;
            let location = kindred_core::ObjectStore::location(&store);
            print!(
                "{}",
                report::render(
                    &summary,
                    Some((published.version.as_str(), location.as_str()))
                )
            );
            Ok(())
        }
        Command::Update { data, store, emf } => {
            let store = Store::open(&store).await?;
            let updated = match kindred_batch::update::update(&store, &data).await {
                // An hourly run with nothing exported is not a failure.
                Err(e @ kindred_batch::update::UpdateError::NoDelta(_)) => {
                    println!("{e}; the current version stays");
                    return Ok(());
                }
                other => other?,
            };
            let location = kindred_core::ObjectStore::location(&store);
            print!("{}", report::render_update(&updated, &location));
            if emf {
                println!("{}", report::update_emf(&updated, registry::unix_millis()));
            }
            Ok(())
        }
        Command::Versions { store } => {
            let store = Store::open(&store).await?;
            let (list, pointer) = versions::list(&store).await?;
            let history = versions::history(&store).await?;
            print!(
                "{}",
                kindred_batch::versions::render(&list, pointer.as_ref(), &history)
            );
            Ok(())
        }
        Command::Rollback { store, to, reason } => {
            let store = Store::open(&store).await?;
            let done = versions::rollback(&store, &to, &reason).await?;
            println!(
                "rolled back from {} to {} at {}",
                done.from, done.to, done.at
            );
            Ok(())
        }
        Command::Prune {
            store,
            keep,
            dry_run,
        } => {
            let store = Store::open(&store).await?;
            let pruned = versions::prune(&store, keep as usize, dry_run).await?;
            let verb = if dry_run { "would remove" } else { "removed" };
            println!(
                "{verb} {} version(s), {} object(s); kept {}",
                pruned.removed.len(),
                pruned.objects,
                pruned.kept.len()
            );
            for v in &pruned.removed {
                println!("  {v}");
            }
            Ok(())
        }
        Command::Eval(args) => tokio::task::spawn_blocking(move || run_eval(args)).await?,
        Command::Show { store } => {
            let store = Store::open(&store).await?;
            match registry::read_pointer(&store).await? {
                None => println!(
                    "no model published in {}",
                    kindred_core::ObjectStore::location(&store)
                ),
                Some((pointer, _)) => {
                    let model = registry::load_version(
                        &store,
                        &pointer.version,
                        Some(&pointer.manifest_sha256),
                    )
                    .await?;
                    let mut manifest = serde_json::to_value(&model.manifest)?;
                    if let Some(m) = manifest.as_object_mut() {
                        m.remove("training");
                    }
                    println!(
                        "current: {} (verified, {} users)",
                        pointer.version,
                        model.len()
                    );
                    println!("{}", serde_json::to_string_pretty(&manifest)?);
                }
            }
            Ok(())
        }
    }
}

fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &method in &args.methods {
        let mut cfg = config::config_for(method, args.data.clone());
        if let Some(h) = args.half_life_days {
            cfg.half_life_days = (h > 0.0).then_some(h);
        }
        cfg.evaluate = Evaluate::Refit;
        cfg.eval_sample = args.eval_sample;
        eprintln!("training {method:?} ...");
        let trained = train::train(&cfg, "eval")?;
        rows.push((method, trained.summary));
    }
    let mut table = report::comparison(&args.data, &rows);
    if !args.skip_courses {
        eprintln!("measuring course recommendations ...");
        let ds = kindred_batch::ingest::read_dir(&args.data)?;
        let mut cfg = config::config_for(Method::Kindred, args.data.clone());
        if let Some(h) = args.half_life_days {
            cfg.half_life_days = (h > 0.0).then_some(h);
        }
        cfg.eval_sample = args.eval_sample;
        let courses = kindred_batch::course_eval::compare(&ds, &cfg, args.eval_sample)?;
        table.push_str(&report::course_comparison(&courses));
    }
    if args.update_users > 0 {
        eprintln!("measuring updates between retrains ...");
        let mut cfg = config::config_for(Method::Kindred, args.data.clone());
        if let Some(h) = args.half_life_days {
            cfg.half_life_days = (h > 0.0).then_some(h);
        }
        cfg.eval_sample = args.eval_sample;
        let q = kindred_batch::update_eval::compare(&cfg, args.update_users, 0x5eed)?;
        table.push_str(&report::update_comparison(&q));
    }
    print!("{table}");
    if let Some(path) = &args.report {
        std::fs::write(path, &table)?;
    }
    if let Some(path) = &args.summary_json {
        let all: Vec<_> = rows.iter().map(|(_, s)| s).collect();
        std::fs::write(path, serde_json::to_vec_pretty(&all)?)?;
    }
    Ok(())
}

/// The training configuration the flags describe.
fn config_from(args: &TrainArgs) -> anyhow::Result<config::TrainConfig> {
    let mut cfg = config::config_for(args.method, args.data.clone());
    if let Some(rank) = args.rank {
        cfg.rank = rank;
    }
    if let Some(power) = args.power {
        cfg.power = power;
    }
    if let Some(t) = args.view_transform {
        cfg.views.transform = t;
    }
    if args.no_view_idf {
        cfg.views.idf = false;
    }
    if let Some(w) = args.interest_weight {
        cfg.interests.weight = w;
    }
    if let Some(w) = args.assessment_weight {
        cfg.assessments.weight = w;
    }
    if let Some(w) = args.course_weight {
        cfg.courses.weight = w;
    }
    cfg.ef_construction = args.ef_construction;
    cfg.hnsw.ef_search = args.ef_search as usize;
    if args.no_heuristic {
        cfg.hnsw.heuristic = false;
    }
    if let Some(n) = args.smooth_neighbours {
        cfg.smooth_neighbours = n;
    }
    if let Some(share) = args.smooth_share {
        cfg.smooth_share = share;
    }
    if let Some(w) = args.smooth_weight {
        cfg.smooth_weight = w;
    }
    if let Some(h) = args.half_life_days {
        cfg.half_life_days = (h > 0.0).then_some(h);
    }
    if let Some(f) = args.recency_floor {
        anyhow::ensure!(
            (0.0..=1.0).contains(&f),
            "--recency-floor must be between 0 and 1, got {f}"
        );
        cfg.recency_floor = f;
    }
    cfg.hnsw.seed = args.seed;
    cfg.shards = args.shards;
    anyhow::ensure!(args.shard_users >= 1, "--shard-users must be at least 1");
    cfg.shard_users = args.shard_users;
    cfg.recall_sample = args.recall_sample;
    cfg.explain_features = args.explain_features;
    cfg.evaluate = args.evaluate;
    cfg.eval_sample = args.eval_sample;
    if let Some(t) = args.threads {
        cfg.threads = t.max(1);
    }
    anyhow::ensure!(cfg.rank >= 1, "--rank must be at least 1");
    Ok(cfg)
}

async fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let cfg = config_from(&args)?;
    // Open the store before the long computation so a bad location fails fast.
    let store = if args.dry_run {
        None
    } else {
        Some(Store::open(&args.store).await?)
    };

    // Named after the current version even when its publisher's clock ran ahead.
    let version = match &store {
        Some(store) => registry::next_version_name(store).await?,
        None => registry::new_version_name(),
    };
    let Some(store) = &store else {
        let trained = tokio::task::spawn_blocking(move || train::train(&cfg, &version)).await??;
        write_summary(&args, &trained.summary)?;
        return finish_train(&args, &trained.summary, None).await;
    };
    // Each artifact is written as soon as training hands it over, while the model is
    // still measured; the report, the manifest and the pointer follow.
    let (handed, mut received) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let training = tokio::task::spawn_blocking({
        let version = version.clone();
        move || {
            let sink = move |name: String, bytes: Vec<u8>| {
                // The writer stops only on an error, reported once training has ended;
                // what it would have written is dropped meanwhile.
                let _ = handed.send((name, bytes));
            };
            train::train_handing_over(&cfg, &version, &sink)
        }
    });
    // Owns the receiver, so a failed write drops it and later artifacts are not kept.
    let named = version.as_str();
    let writing = async move {
        let mut entries = Vec::new();
        while let Some((name, bytes)) = received.recv().await {
            entries.push(registry::put_artifact(store, named, &name, bytes).await?);
        }
        Ok::<_, kindred_core::Error>(entries)
    };
    let (trained, written) = tokio::join!(training, writing);
    let trained = trained??;
    write_summary(&args, &trained.summary)?;
    let mut manifest = trained.manifest;
    manifest.artifacts = written?;
    for (name, bytes) in trained.artifacts {
        let entry = registry::put_artifact(store, &version, &name, bytes).await?;
        manifest.artifacts.push(entry);
    }
    let published = registry::commit(store, manifest).await?;
    finish_train(&args, &trained.summary, Some((published, store))).await
}

/// Writes the run summary to `--summary-json`, if asked for.
fn write_summary(args: &TrainArgs, summary: &RunSummary) -> anyhow::Result<()> {
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_vec_pretty(summary)?)?;
    }
    Ok(())
}

/// Prints the run's report and prunes old versions.
async fn finish_train(
    args: &TrainArgs,
    summary: &RunSummary,
    published: Option<(Published, &Store)>,
) -> anyhow::Result<()> {
    let store = published.as_ref().map(|(_, store)| *store);
    let published = published.map(|(p, store)| (p, kindred_core::ObjectStore::location(store)));
    print!(
        "{}",
        report::render(
            summary,
            published
                .as_ref()
                .map(|(p, s)| (p.version.as_str(), s.as_str()))
        )
    );
    if let Some((p, _)) = &published {
        for a in &p.manifest.artifacts {
            println!(
                "    {:<16} {:>12} bytes  sha256 {}",
                a.name, a.bytes, a.sha256
            );
        }
    }
    if args.emf {
        let version = published.as_ref().map(|(p, _)| p.version.as_str());
        println!("{}", report::emf(summary, version, registry::unix_millis()));
    }
    if let (Some(store), Some(keep)) = (store, args.keep_versions) {
        match versions::prune(store, keep as usize, false).await {
            Ok(pruned) => println!(
                "pruned: {} old version(s) removed, {} kept",
                pruned.removed.len(),
                pruned.kept.len()
            ),
            Err(e) => {
                tracing::warn!(error = %e, "pruning old versions failed; the new version is published")
            }
        }
    }
    Ok(())
}
