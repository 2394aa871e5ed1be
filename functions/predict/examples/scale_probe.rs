//! Measures a published model as the function serves it: the cold load of the whole
//! model and of each shard alone, the in-process latency of `POST /predict` answers
//! at `full` disclosure (search, explanations and JSON encoding; one thread) and the
//! recall@k of the search merged over shards against exact search (`--k`, 10 unless
//! given).
//!
//! Run: `cargo run --release -p kindred-predict --example scale_probe -- --store DIR`.

use std::time::Instant;

use clap::Parser;
use kindred_core::registry::{self, LoadOptions};
use kindred_core::store::Store;
use kindred_predict::api::{self, Filters};

/// Cold load, query latency and recall of the current model of a store.
#[derive(Parser, Debug)]
struct Cli {
    /// Model store: a folder or s3://bucket/prefix.
    #[arg(long, env = "KINDRED_STORE")]
    store: String,
    /// Queries timed.
    #[arg(long, default_value_t = 5000)]
    queries: usize,
    /// Users whose recall@k is measured (each costs an exact scan of all users).
    #[arg(long, default_value_t = 500)]
    recall_sample: usize,
    /// Neighbours per query (the latency's and the recall's k).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    k: u32,
    /// Hold the embeddings in 32 bits, as `kindred-predict --full-precision` does (by
    /// default a model above 50,000 users holds them as 16-bit fixed point, as the
    /// function does).
    #[arg(long)]
    full_precision: bool,
}

/// The `q`-quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// A reproducible stream of indices below `n` (SplitMix64).
fn rows(n: usize, count: usize, seed: u64) -> Vec<u32> {
    (0..count as u64)
        .map(|i| (kindred_core::shard::mix64(seed ^ i) % n as u64) as u32)
        .collect()
}

/// Mean recall@k of `model`'s searches against exact search in `stored`, the same
/// version holding its embeddings as stored: the share of each row's exact k nearest
/// that the answer holds.
fn recall_against(
    model: &kindred_core::Model,
    stored: &kindred_core::Model,
    rows: &[u32],
    k: usize,
) -> f64 {
    let (mut found, mut wanted) = (0usize, 0usize);
    for batch in rows.chunks(64) {
        let embeddings: Vec<_> = batch.iter().map(|&r| stored.embedding(r)).collect();
        let queries: Vec<(&[f32], Option<u32>)> = embeddings
            .iter()
            .zip(batch)
            .map(|(e, &r)| (&**e, Some(r)))
            .collect();
        for (&row, truth) in batch.iter().zip(stored.shards.exact_batch(&queries, k)) {
            let got = model
                .shards
                .approximate(&model.embedding(row), k, Some(row));
            wanted += truth.len();
            found += got
                .iter()
                .filter(|a| truth.iter().any(|t| t.row == a.row))
                .count();
        }
    }
    found as f64 / wanted.max(1) as f64
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    let store = rt.block_on(Store::open(&cli.store))?;
    let (pointer, _) = rt
        .block_on(registry::read_pointer(&store))?
        .ok_or_else(|| anyhow::anyhow!("no model in {}", cli.store))?;
    let load_as = |shards: Option<Vec<u32>>, compact_points: bool| {
        let options = LoadOptions {
            max_model_bytes: None,
            shards: shards.map(Into::into),
            compact_points,
            ..LoadOptions::default()
        };
        let started = Instant::now();
        let model = rt.block_on(registry::load_version_with(
            &store,
            &pointer.version,
            Some(&pointer.manifest_sha256),
            &options,
        ));
        model.map(|m| (m, started.elapsed().as_secs_f64()))
    };
    let load = |shards: Option<Vec<u32>>| load_as(shards, !cli.full_precision);

    // Cold loads: each shard alone (three times, median), then the whole model.
    let (whole, whole_secs) = load(None)?;
    let count = whole.manifest.shard_count();
    let artifacts: u64 = whole.manifest.artifacts_bytes(None);
    drop(whole);
    let mut shard_secs = Vec::new();
    for id in 0..count {
        let runs: Vec<f64> = (0..3)
            .map(|_| load(Some(vec![id])).map(|(_, s)| s))
            .collect::<Result<_, _>>()?;
        shard_secs.push(median(runs));
    }
    let (model, _) = load(None)?;
    println!(
        "model {}: {} users, {} shard(s), {} dimensions, artifacts {:.1} MB",
        model.manifest.version,
        model.len(),
        count,
        model.dimensions(),
        artifacts as f64 / 1e6
    );
    println!("cold load, whole model: {whole_secs:.2} s");
    let mut sorted = shard_secs.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "cold load, one shard alone: median {:.2} s, slowest {:.2} s",
        quantile(&sorted, 0.5),
        sorted[sorted.len() - 1]
    );

    // Query latency: random known users, k neighbours, answer encoded as JSON.
    // (Rows of the user table: an updated model's delta users are last, and a retired
    // row's handle finds its user's new row.)
    let sample = rows(model.users.users.len(), cli.queries, 0x51);
    let mut micros = Vec::with_capacity(sample.len());
    let mut bytes = 0usize;
    for &row in &sample {
        let handle = model.users.users.handle(row);
        let started = Instant::now();
        let answer = api::answer_handle(
            &model,
            handle,
            cli.k,
            &Filters::default(),
            api::Disclosure::Full,
        )
        .map_err(|e| anyhow::anyhow!("{}", e.body()))?;
        bytes += serde_json::to_vec(&answer)?.len();
        micros.push(started.elapsed().as_secs_f64() * 1e6);
    }
    micros.sort_by(f64::total_cmp);
    println!(
        "query (in process, k = {}, {} queries): p50 {:.0} us, p99 {:.0} us, mean answer {} bytes",
        cli.k,
        micros.len(),
        quantile(&micros, 0.5),
        quantile(&micros, 0.99),
        bytes / sample.len().max(1)
    );

    // Recall@k of the merged HNSW search against an exact scan of the stored 32-bit
    // embeddings (a second copy of the model when this one holds 16-bit codes).
    let started = Instant::now();
    let recall_rows = rows(model.users.users.len(), cli.recall_sample, 0x52);
    let recall = if model.shards.shards().iter().any(|s| s.index.is_compact()) {
        let (stored, _) = load_as(None, false)?;
        recall_against(&model, &stored, &recall_rows, cli.k as usize)
    } else {
        model.shards.recall_at_k(&recall_rows, cli.k as usize)
    };
    println!(
        "recall@{} against exact search: {recall:.4} ({} users, {:.1} s)",
        cli.k,
        recall_rows.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "{}",
        serde_json::json!({
            "users": model.len(),
            "shards": count,
            "artifacts_bytes": artifacts,
            "cold_load_whole_s": whole_secs,
            "cold_load_shard_median_s": quantile(&sorted, 0.5),
            "cold_load_shard_max_s": sorted[sorted.len() - 1],
            "query_p50_us": quantile(&micros, 0.5),
            "query_p99_us": quantile(&micros, 0.99),
            "k": cli.k,
            "recall_at_k": recall,
        })
    );
    Ok(())
}
