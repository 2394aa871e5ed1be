//! How close `kindred-batch update` comes to a full training (`kindred-batch eval
//! --update-users N`).
//!
//! From one data folder, [`kindred_datagen::split::split_delta`] writes a *base* folder
//! without some users' latest rows and a *delta* folder with those users' complete rows
//! (half of them new to the base, half with their latest views held back). [`compare`]
//! trains the base, publishes it,
//! runs the update with the delta (as the command does, through a folder store), and
//! trains the full folder; then it compares the two models' neighbours.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use kindred_core::store::LocalStore;
use kindred_core::{Model, registry};
use kindred_datagen::split::split_delta;

use crate::config::TrainConfig;
use crate::index::sample_rows;
use crate::train;

/// Agreement of an updated model with a full training on the same data.
#[derive(Clone, Debug)]
pub struct UpdateQuality {
    /// Users folded in (new, changed).
    pub new: usize,
    /// Users whose rows changed.
    pub changed: usize,
    /// Mean overlap@10 of the folded users' neighbours with a full training's.
    pub overlap_folded: f64,
    /// The same for a sample of users the update left alone.
    pub overlap_untouched: f64,
    /// Mean overlap@10, for the same untouched users, of the base model (before the
    /// update) with the full training: how far any retrain moves neighbours.
    pub overlap_base_untouched: f64,
    /// Cohort precision@10 of the folded users in the updated model, in the full
    /// training, and (changed users) in the base model (generated data only).
    pub precision: Option<(f64, f64, f64)>,
    /// The basis fit the update recorded, and the training's.
    pub basis_fit: (f64, f64),
    /// Seconds the update took (load, read, fold, write, publish).
    pub update_seconds: f64,
}

/// Splits `cfg.data`, trains the base, updates it with the delta and trains the full data;
/// measures over `users` folded users and as many untouched ones.
pub fn compare(cfg: &TrainConfig, users: usize, seed: u64) -> anyhow::Result<UpdateQuality> {
    let work = scratch()?;
    let (base_dir, delta_dir) = (work.join("base"), work.join("delta"));
    let result = (|| {
        let split = split_delta(&cfg.data, &base_dir, &delta_dir, users, seed)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let base_store = LocalStore::new(work.join("store"));
        let full_store = LocalStore::new(work.join("full"));
        let mut base_cfg = cfg.clone();
        base_cfg.data = base_dir.clone();
        let trained = train::train(&base_cfg, "base")?;
        let full = train::train(cfg, "full")?;
        runtime.block_on(async {
            let base_name = registry::next_version_name(&base_store).await?;
            let mut m = trained.manifest;
            m.version = base_name;
            registry::publish(&base_store, m, trained.artifacts).await?;
            let mut m = full.manifest;
            m.version = registry::next_version_name(&full_store).await?;
            registry::publish(&full_store, m, full.artifacts).await?;
            anyhow::Ok(())
        })?;
        let base = runtime.block_on(registry::load_current(&base_store))?;
        let started = Instant::now();
        let updated = runtime.block_on(crate::update::update(&base_store, &delta_dir))?;
        let update_seconds = started.elapsed().as_secs_f64();
        let after = runtime.block_on(registry::load_current(&base_store))?;
        let full = runtime.block_on(registry::load_current(&full_store))?;

        let folded: Vec<u64> = split.new.iter().chain(&split.changed).copied().collect();
        let moved: HashSet<u64> = folded.iter().copied().collect();
        let untouched: Vec<u64> = sample_rows(base.users.users.len(), users, seed ^ 0x77)
            .into_iter()
            .map(|r| base.users.users.handle(r))
            .filter(|h| !moved.contains(h))
            .collect();
        let precision = match kindred_datagen::read_ground_truth(&cfg.data.join("ground_truth.csv"))
        {
            Ok(truth) => {
                let cohort: HashMap<u64, u32> =
                    truth.iter().map(|(h, t)| (*h, t.primary_cohort)).collect();
                Some((
                    cohort_precision(&after, &folded, &cohort),
                    cohort_precision(&full, &folded, &cohort),
                    cohort_precision(&base, &split.changed, &cohort),
                ))
            }
            Err(_) => None,
        };
        Ok(UpdateQuality {
            new: split.new.len(),
            changed: split.changed.len(),
            overlap_folded: overlap(&after, &full, &folded),
            overlap_untouched: overlap(&after, &full, &untouched),
            overlap_base_untouched: overlap(&base, &full, &untouched),
            precision,
            basis_fit: (updated.record.basis_fit, updated.record.trained_fit),
            update_seconds,
        })
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// A fresh folder under the system's temporary folder.
fn scratch() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "kindred-update-eval-{}-{}",
        std::process::id(),
        registry::unix_millis()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The handles of a user's 10 nearest neighbours in `model`.
fn neighbours(model: &Model, handle: u64) -> Option<HashSet<u64>> {
    let row = model.row_of(handle)?;
    let found = model.shards.nearest(&model.embedding(row), 10, Some(row));
    Some(
        found
            .iter()
            .map(|n| model.users.users.handle(n.row))
            .collect(),
    )
}

/// Mean share of `users`' 10 nearest neighbours that two models have in common (users
/// missing from either model are skipped).
pub fn overlap(a: &Model, b: &Model, users: &[u64]) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for &h in users {
        if let (Some(x), Some(y)) = (neighbours(a, h), neighbours(b, h)) {
            sum += x.intersection(&y).count() as f64 / 10.0;
            n += 1;
        }
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Cohort precision@10 of `users` in `model`.
fn cohort_precision(model: &Model, users: &[u64], cohort: &HashMap<u64, u32>) -> f64 {
    let (mut hits, mut total) = (0usize, 0usize);
    for &h in users {
        let (Some(c), Some(found)) = (cohort.get(&h), neighbours(model, h)) else {
            continue;
        };
        total += found.len();
        hits += found.iter().filter(|n| cohort.get(n) == Some(c)).count();
    }
    if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    }
}
