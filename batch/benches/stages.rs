//! Benchmarks of the training stages at 10,000 users, each on the output of the stage
//! before it:
//!
//! * `train/read`: reading and checking the four CSV files ([`ingest::read_dir`]);
//! * `train/embed`: the matrix, the truncated SVD, the embeddings and their smoothing
//!   ([`train::embed`], run twice by a default training: once more for the hold-out
//!   measure);
//! * `train/nearest_200` and `train/nearest_64`: every point's exact 200 (smoothing's
//!   count at 10k users) and 64 (the graph's candidates) nearest, by blocks of matrix
//!   products ([`neighbours::map_nearest`]);
//! * `train/index`: the HNSW graph of the smoothed embeddings ([`index::build_sharded`]:
//!   from exact neighbours at this size).
//!
//! The data is generated once (kindred-datagen's defaults); `KINDRED_BENCH_USERS`
//! changes the number of users. The whole run against the replaced Python pipeline is
//! `./dev bench`'s; these name the stage a change moves.
//!
//! Run: `cargo bench -p kindred-batch --bench stages`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kindred_batch::fast_hash::FastSet;
use kindred_batch::summary::Stages;
use kindred_batch::{config, index, ingest, neighbours, train};

fn users() -> u64 {
    std::env::var("KINDRED_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let generator = kindred_datagen::GenConfig {
        users: users(),
        ..Default::default()
    };
    kindred_datagen::generate(&generator, &data).expect("generate data");
    let cfg = config::default_config(data.clone());
    let ds = ingest::read_dir(&data).expect("read");
    let none = FastSet::default();
    let embedded = train::embed(&ds, &cfg, &none, &mut Stages::quiet()).expect("embed");
    let handles: Vec<u64> = embedded.users.iter().map(|u| u.handle).collect();
    let unsmoothed = {
        let mut plain = cfg.clone();
        plain.smooth_weight = 0.0;
        train::embed(&ds, &plain, &none, &mut Stages::quiet())
            .expect("embed")
            .points
    };

    let mut group = c.benchmark_group("train");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("read", |b| {
        b.iter(|| black_box(ingest::read_dir(&data).expect("read")))
    });
    group.bench_function("embed", |b| {
        b.iter(|| black_box(train::embed(&ds, &cfg, &none, &mut Stages::quiet()).expect("embed")))
    });
    for k in [200, 64] {
        group.bench_function(format!("nearest_{k}"), |b| {
            b.iter(|| {
                black_box(neighbours::map_nearest(
                    &unsmoothed,
                    k,
                    cfg.threads,
                    |_, best| best.len(),
                ))
            })
        });
    }
    group.bench_function("index", |b| {
        b.iter(|| {
            let hnsw = cfg.hnsw_for(embedded.points.len());
            black_box(index::build_sharded(
                embedded.points.clone(),
                &handles,
                1,
                &hnsw,
                cfg.threads,
                embedded.near.as_deref(),
            ))
        })
    });
    group.finish();
}

criterion_group!(stage_benches, benches);
criterion_main!(stage_benches);
