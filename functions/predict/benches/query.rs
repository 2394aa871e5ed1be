//! Benchmarks of the predict function at 10,000 users:
//!
//! * `predict/in_process`: the whole in-process query path of `POST /predict`, i.e.
//!   request validation and JSON decoding, the nearest-neighbour search and the JSON
//!   encoding of the answer, for random known users (k = 10), at the binary's default
//!   disclosure (`reasons`); `predict/in_process_full` the same at `full`;
//! * `predict/recommend_in_process`: the same path of `POST /recommend` (k = 10 courses
//!   from 50 neighbours), against `predict/in_process` as its anchor;
//! * `predict/profile_fold_in`: the same for a cold-start profile;
//! * `predict/search_served`: the search alone as answers use it (the coded exact scan
//!   up to 50,000 users, the HNSW indexes above); `predict/search_hnsw`: the indexes;
//!   `predict/search_exact_f32`: a plain `f32` scan of every user, the anchor;
//! * `cold_load/local_folder`: reading, verifying and decoding the current version from
//!   a local folder, as the first request does.
//!
//! The model is generated (kindred-datagen's defaults: the challenge's course tags),
//! trained with the default configuration and published to a temporary folder once.
//! Its recall@10 against exact search is printed first. `KINDRED_BENCH_USERS` changes
//! the number of users.
//!
//! Run: `cargo bench -p kindred-predict --bench query`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use criterion::{Criterion, criterion_group, criterion_main};
use kindred_core::store::LocalStore;
use kindred_core::{Model, query, registry};
use kindred_predict::api;

struct Fixture {
    _dir: tempfile::TempDir,
    store: LocalStore,
    model: Model,
    runtime: tokio::runtime::Runtime,
}

fn users() -> u64 {
    std::env::var("KINDRED_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = kindred_datagen::GenConfig {
        users: users(),
        ..Default::default()
    };
    let started = Instant::now();
    kindred_datagen::generate(&config, &data).expect("generate data");
    let trained = kindred_batch::train::train(
        &kindred_batch::config::default_config(data.clone()),
        &registry::new_version_name(),
    )
    .expect("train");
    let store = LocalStore::new(dir.path().join("store"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(registry::publish(
            &store,
            trained.manifest,
            trained.artifacts,
        ))
        .expect("publish");
    let model = runtime
        .block_on(registry::load_current(&store))
        .expect("load");
    eprintln!(
        "model: {} users, {} dimensions, ef_search {}, built in {:.1} s; artifacts {:.1} MB",
        model.len(),
        model.manifest.dimensions,
        model.manifest.hnsw.ef_search,
        started.elapsed().as_secs_f64(),
        model
            .manifest
            .artifacts
            .iter()
            .map(|a| a.bytes)
            .sum::<u64>() as f64
            / 1e6,
    );
    Fixture {
        _dir: dir,
        store,
        model,
        runtime,
    }
}

/// Recall@10 of the HNSW search (merged over shards) against exact search, over every
/// user; ties at the tenth similarity count as found.
fn recall_at_10(model: &Model) -> f64 {
    let rows: Vec<u32> = (0..model.len() as u32).collect();
    model.shards.recall_at_k(&rows, 10)
}

/// A reproducible stream of rows (splitmix64).
fn random_rows(n: usize, count: usize) -> Vec<u32> {
    let mut state = 0x5eed_u64;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % n as u64) as u32
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let model = &f.model;
    let started = Instant::now();
    let recall = recall_at_10(model);
    eprintln!(
        "recall@10 against exact search, all {} users: {recall:.4} (manifest, on a sample: {:.4}); measured in {:.1} s",
        model.len(),
        model.manifest.recall_at_10,
        started.elapsed().as_secs_f64()
    );

    let rows = random_rows(model.len(), 4096);
    let bodies: Vec<(u64, Vec<u8>)> = rows
        .iter()
        .map(|&r| {
            let handle = model.users.users.handle(r);
            (
                handle,
                format!(r#"{{"user_handle": {handle}, "k": 10}}"#).into_bytes(),
            )
        })
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );

    let mut group = c.benchmark_group("predict");
    group.measurement_time(Duration::from_secs(10));
    for (name, disclose) in [
        ("in_process", api::Disclosure::Reasons),
        ("in_process_full", api::Disclosure::Full),
    ] {
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                let (_, body) = &bodies[i % bodies.len()];
                i += 1;
                let q = api::parse_request(&headers, body).expect("valid request");
                let api::Subject::Handle(handle) = q.subject else {
                    unreachable!("the bodies ask for one handle")
                };
                let answer = api::answer_handle(model, handle, q.k, &q.filters, disclose)
                    .expect("known user");
                black_box(serde_json::to_vec(&answer).expect("encode"))
            })
        });
    }
    // POST /recommend for the same users: 50 neighbours searched, their courses scored.
    let mut i = 0usize;
    group.bench_function("recommend_in_process", |b| {
        b.iter(|| {
            let (_, body) = &bodies[i % bodies.len()];
            i += 1;
            let q = api::parse_for(api::Ask::Recommend, &headers, body).expect("valid request");
            let api::Subject::Handle(handle) = q.subject else {
                unreachable!("the bodies ask for one handle")
            };
            let answer =
                api::recommend_handle(model, handle, q.k, &q.filters, api::Disclosure::Reasons)
                    .expect("known user");
            black_box(serde_json::to_vec(&answer).expect("encode"))
        })
    });
    // Cold-start profiles: each sampled user's top tags (seconds) and interests.
    let profiles: Vec<kindred_core::projection::Profile> = rows
        .iter()
        .take(256)
        .map(|&r| {
            let u = &model.users.users.get(r);
            kindred_core::projection::Profile {
                views: u
                    .top_tags
                    .iter()
                    .map(|&(t, s)| (model.tag(t).to_owned(), s))
                    .collect(),
                interests: u
                    .interests
                    .iter()
                    .map(|&t| model.tag(t).to_owned())
                    .collect(),
                assessments: Vec::new(),
                ages: Vec::new(),
            }
        })
        .collect();
    let mut i = 0usize;
    group.bench_function("profile_fold_in", |b| {
        b.iter(|| {
            let p = &profiles[i % profiles.len()];
            i += 1;
            let answer = api::answer_profile(
                model,
                p,
                10,
                &api::Filters::default(),
                api::Disclosure::Full,
            );
            black_box(serde_json::to_vec(&answer.ok()).expect("encode"))
        })
    });
    let mut i = 0usize;
    group.bench_function("search_served", |b| {
        b.iter(|| {
            let row = rows[i % rows.len()];
            i += 1;
            black_box(query::similar_users(model, row, 10))
        })
    });
    let mut i = 0usize;
    group.bench_function("search_hnsw", |b| {
        b.iter(|| {
            let row = rows[i % rows.len()];
            i += 1;
            black_box(
                model
                    .shards
                    .approximate(&model.embedding(row), 10, Some(row)),
            )
        })
    });
    let mut i = 0usize;
    group.bench_function("search_exact_f32", |b| {
        b.iter(|| {
            let row = rows[i % rows.len()];
            i += 1;
            black_box(model.shards.exact(&model.embedding(row), 10, Some(row)))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("cold_load");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("local_folder", |b| {
        b.iter(|| {
            black_box(
                f.runtime
                    .block_on(registry::load_current(&f.store))
                    .expect("load"),
            )
        })
    });
    group.finish();
}

criterion_group!(query_benches, benches);
criterion_main!(query_benches);
