//! `kindred-predict`: the predict function, as an AWS Lambda or a local HTTP server.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kindred_core::registry::LoadOptions;
use kindred_core::shard::Selection;
use kindred_core::store::Store;
use kindred_predict::api::{
    self, AnswerCache, ApiKeys, CallerRate, DEFAULT_ANSWER_CACHE_MB, Disclosure, Settings,
};
use kindred_predict::cache::ModelCache;
use kindred_predict::metrics::Metrics;
use kindred_predict::scatter::{self, Gather};
use tracing::info;

/// Kindred's predict function: POST /predict {"user_handle": 1} answers with the most
/// similar customers, ranked by cosine similarity.
///
/// Runs as an AWS Lambda (API Gateway REST or HTTP API, Function URL) when started by the
/// Lambda runtime or `cargo lambda watch` (AWS_LAMBDA_RUNTIME_API is set), and as a local
/// HTTP server with --listen. The model is loaded from the store on the first request,
/// not at start-up. Logs go to stderr; KINDRED_LOG sets the level filter (default info).
#[derive(Parser, Debug)]
#[command(name = "kindred-predict", version, about, long_about)]
struct Cli {
    /// Model store: a folder, file:///folder or s3://bucket/prefix (S3 uses the standard
    /// AWS configuration and honours AWS_ENDPOINT_URL).
    #[arg(long, env = "KINDRED_STORE", default_value = "./trained_model")]
    store: String,
    /// Serve HTTP on this address instead of running as a Lambda (e.g. 127.0.0.1:5000;
    /// port 0 picks a free port, logged as `address`).
    #[arg(long, env = "KINDRED_LISTEN")]
    listen: Option<SocketAddr>,
    /// Check the store for a new model version at most this often (seconds; 0 checks on
    /// every request). Checks run in the background and never delay a request.
    #[arg(long, env = "KINDRED_REFRESH_SECONDS", default_value_t = 30)]
    refresh_seconds: u64,
    /// Refuse, before downloading it, a model version whose artifacts add up to more than
    /// this many MiB; the version serving keeps serving [default: under Lambda a third of
    /// the function's memory (room for the model serving, the new one and its raw bytes
    /// during a swap), otherwise no limit].
    #[arg(long, env = "KINDRED_MAX_MODEL_MB")]
    max_model_mb: Option<u64>,
    /// Serve only these shards of a sharded model, e.g. `0-3` or `1,5`, or a group `g/G`
    /// (every shard s with s mod G = g, for whatever shard count the model has; a group
    /// beyond the count serves a replica) [default: all]. Handle queries for users of
    /// other shards get a 404 that names their shard.
    #[arg(long, env = "KINDRED_SHARDS", value_parser = Selection::parse)]
    shards: Option<Selection>,
    /// Hold a large model's embeddings as stored, in 32-bit floats. By default a model
    /// above 50,000 users, searched by its HNSW graphs, holds them as 16-bit fixed point:
    /// half the embeddings' memory, with similarities within about 0.0001 of the stored
    /// ones (smaller models are scanned exactly and always keep 32 bits).
    #[arg(long, env = "KINDRED_FULL_PRECISION")]
    full_precision: bool,
    /// Scatter-gather mode: hold no model and answer from these shard-serving
    /// kindred-predict endpoints, each run with --shards, merging their top-k; --store is
    /// then unused. Comma-separated: `http://host:port` base URLs, or `lambda:FUNCTION`
    /// (name, name:alias or ARN; called with the Lambda Invoke API and the standard AWS
    /// configuration; `lambda:FUNCTION@http://127.0.0.1:9000` for a local emulator);
    /// `{0..3}` expands to one endpoint per number.
    #[arg(long, env = "KINDRED_SCATTER", value_delimiter = ',')]
    scatter: Vec<String>,
    /// Scatter-gather: milliseconds to wait for each shard endpoint before answering
    /// without it (the answer is then flagged `partial`).
    #[arg(long, env = "KINDRED_SHARD_TIMEOUT_MS", default_value_t = 1000)]
    shard_timeout_ms: u64,
    /// How much answers reveal about learners: `similarity` (handles, ranks and
    /// similarities), `reasons` (also the shared tags that explain each match), `profiles`
    /// (also each learner's summary, without assessment scores) or `full` (also
    /// assessment scores).
    #[arg(long, env = "KINDRED_DISCLOSE", default_value_t = Disclosure::default())]
    disclose: Disclosure,
    /// Keys a caller must present as `Authorization: Bearer KEY` on /predict (and
    /// /shard/search), comma-separated, each at least 16 characters. Required to listen
    /// beyond loopback. Under Lambda, API Gateway's authorizer guards the API; keys set
    /// here are checked as well.
    #[arg(long, env = "KINDRED_API_KEYS", value_parser = ApiKeys::parse, hide_env_values = true)]
    api_keys: Option<ApiKeys>,
    /// Most requests per second one caller may make to /predict (an API key, an IAM
    /// principal or JWT subject that API Gateway authenticated, else a source address);
    /// more get 429 with Retry-After. Each process (each Lambda instance) keeps its own
    /// count [default: no limit].
    #[arg(long, env = "KINDRED_CALLER_RATE", value_parser = positive_rate)]
    caller_rate: Option<f64>,
    /// Requests one caller may make at once after a quiet spell [default: twice
    /// --caller-rate, at least 1].
    #[arg(long, env = "KINDRED_CALLER_BURST", requires = "caller_rate")]
    caller_burst: Option<u32>,
    /// Scatter-gather: the key to send to HTTP shard endpoints that require one.
    #[arg(long, env = "KINDRED_SHARD_KEY", hide_env_values = true)]
    shard_key: Option<String>,
    /// Keep up to this many MiB of encoded answers, so a user asked about again (same
    /// route, k, no filters) is answered without a search until the model version
    /// changes; 0 turns the cache off [default: 64, under Lambda at most a sixteenth of
    /// the function's memory].
    #[arg(long, env = "KINDRED_ANSWER_CACHE_MB")]
    answer_cache_mb: Option<u64>,
    /// Log format on stderr [default: json under Lambda, text otherwise].
    #[arg(long, env = "KINDRED_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
}

/// Variables the Lambda runtime client needs (it panics without them).
const LAMBDA_VARIABLES: [&str; 3] = [
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

fn main() -> ExitCode {
    kindred_predict::memory::limit_arenas();
    let cli = Cli::parse();
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let json = cli.log_format.as_deref().map_or(in_lambda, |f| f == "json");
    let filter = tracing_subscriber::EnvFilter::try_from_env("KINDRED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        logs.json().without_time().init();
    } else {
        logs.init();
    }
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
    match runtime.block_on(run(cli, in_lambda)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, in_lambda: bool) -> anyhow::Result<()> {
    if cli.listen.is_none() && !in_lambda {
        anyhow::bail!(
            "not running under AWS Lambda (AWS_LAMBDA_RUNTIME_API is not set): pass --listen ADDRESS to serve HTTP locally"
        );
    }
    if let Some(addr) = cli.listen
        && !addr.ip().is_loopback()
        && cli.api_keys.is_none()
    {
        anyhow::bail!(
            "refusing to listen on {addr} without authentication: answers describe learners. Give callers keys with --api-keys (KINDRED_API_KEYS), or listen on loopback (127.0.0.1)"
        );
    }
    let keys = cli.api_keys.clone().unwrap_or_default();
    let caller_rate = cli.caller_rate.map(|per_second| CallerRate {
        per_second,
        burst: cli
            .caller_burst
            .unwrap_or_else(|| (per_second * 2.0).ceil().clamp(1.0, f64::from(u32::MAX)) as u32),
    });
    let app = if cli.scatter.is_empty() {
        model_router(&cli, keys, caller_rate).await?
    } else {
        let timeout = Duration::from_millis(cli.shard_timeout_ms.max(1));
        let gather = Gather::new(cli.scatter.clone(), timeout)
            .await
            .map_err(|e| anyhow::anyhow!(e))?
            .with_disclosure(cli.disclose)
            .with_shard_key(cli.shard_key.clone())
            .with_metrics(std::sync::Arc::new(Metrics::new(cli.listen.is_none())));
        info!(endpoints = ?gather.endpoints(), timeout_ms = cli.shard_timeout_ms, disclose = %cli.disclose, authenticated = !keys.is_empty(), "scatter-gather mode");
        scatter::router_with(std::sync::Arc::new(gather), keys, caller_rate)
    };
    serve(&cli, app).await
}

/// The router of a process that loads a model (or some of its shards).
async fn model_router(
    cli: &Cli,
    keys: ApiKeys,
    caller_rate: Option<CallerRate>,
) -> anyhow::Result<axum::Router> {
    let store = Store::open(&cli.store).await?;
    let max_model_bytes = match cli.max_model_mb {
        Some(mb) => Some(
            mb.checked_mul(1 << 20)
                .ok_or_else(|| anyhow::anyhow!("--max-model-mb {mb} is too large"))?,
        ),
        None => lambda_memory_mb().map(|mb| mb.saturating_mul(1 << 20) / 3),
    };
    let options = LoadOptions {
        max_model_bytes,
        shards: cli.shards.clone(),
        compact_points: !cli.full_precision,
        // Answers below `profiles` never show one: the process need not hold them.
        drop_profiles: !cli.disclose.profiles(),
        ..LoadOptions::default()
    };
    let answer_cache_mb = match cli.answer_cache_mb {
        Some(mb) if mb > 1 << 30 => anyhow::bail!("--answer-cache-mb {mb} is too large"),
        Some(mb) => mb,
        None => lambda_memory_mb().map_or(DEFAULT_ANSWER_CACHE_MB, |mb| {
            (mb / 16).min(DEFAULT_ANSWER_CACHE_MB)
        }),
    };
    let settings = Settings {
        disclosure: cli.disclose,
        keys,
        shard_mode: cli.shards.is_some(),
        caller_rate,
        // In Lambda (no --listen), one EMF line per answer on stdout.
        metrics: std::sync::Arc::new(Metrics::new(cli.listen.is_none())),
        answers: std::sync::Arc::new(AnswerCache::with_budget(answer_cache_mb << 20)),
    };
    info!(store = %cli.store, refresh_seconds = cli.refresh_seconds, max_model_bytes, answer_cache_mb, shards = options.shards.as_ref().map(ToString::to_string), compact_points = options.compact_points, drop_profiles = options.drop_profiles, disclose = %settings.disclosure, authenticated = !settings.keys.is_empty(), "model store");
    let cache = ModelCache::with_options(store, Duration::from_secs(cli.refresh_seconds), options);
    Ok(api::router_with(cache, settings))
}

async fn serve(cli: &Cli, app: axum::Router) -> anyhow::Result<()> {
    match cli.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            info!(address = %listener.local_addr()?, store = %cli.store, "serving");
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?;
            info!("stopped");
            Ok(())
        }
        None => {
            let missing: Vec<&str> = LAMBDA_VARIABLES
                .into_iter()
                .filter(|v| std::env::var_os(v).is_none())
                .collect();
            if !missing.is_empty() {
                anyhow::bail!(
                    "AWS_LAMBDA_RUNTIME_API is set, but not {}: not a complete Lambda environment",
                    missing.join(", ")
                );
            }
            info!("running as a Lambda function");
            lambda_http::run(app).await.map_err(|e| anyhow::anyhow!(e))
        }
    }
}

/// A per-second rate above zero.
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate above zero (requests per second)"
        )),
    }
}

/// The function's memory size under Lambda (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, MiB).
fn lambda_memory_mb() -> Option<u64> {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API")?;
    std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .ok()?
        .parse()
        .ok()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
