//! How close `kindred-batch update` comes to a full training (`kindred-batch eval
//! --update-users N`).
//!
//! From one data folder: [`split`] writes a *base* folder without some users' latest rows
//! and a *delta* folder with those users' complete rows (half of them new to the base,
//! half with their latest views held back). [`compare`] trains the base, publishes it,
//! runs the update with the delta (as the command does, through a folder store), and
//! trains the full folder; then it compares the two models' neighbours.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use kindred_core::store::LocalStore;
use kindred_core::{Model, registry};

use crate::config::TrainConfig;
use crate::index::sample_rows;
use crate::train;

/// Share of a changed user's view rows (the latest) held back from the base.
pub const HELD_BACK_SHARE: f64 = 0.3;

/// Which users a split moved, by handle.
#[derive(Clone, Debug, Default)]
pub struct Split {
    /// Users absent from the base, complete in the delta.
    pub new: Vec<u64>,
    /// Users whose latest views the base lacks, complete in the delta.
    pub changed: Vec<u64>,
}

/// Writes `base` (every file of `data` without the moved users' held-back rows) and
/// `delta` (the moved users' complete rows; no course_tags.csv, so the update takes the
/// catalogue from the model) for `users` users drawn with `seed`.
pub fn split(
    data: &Path,
    base: &Path,
    delta: &Path,
    users: usize,
    seed: u64,
) -> anyhow::Result<Split> {
    std::fs::create_dir_all(base)?;
    std::fs::create_dir_all(delta)?;
    let views = read_rows(&data.join("user_course_views.csv"))?;
    let handle_col = column(&views.0, "user_handle")?;
    let date_col = column(&views.0, "view_date")?;
    let mut handles: Vec<u64> = views
        .1
        .iter()
        .filter_map(|r| r.get(handle_col)?.trim().parse().ok())
        .collect();
    handles.sort_unstable();
    handles.dedup();
    let picked: Vec<u64> = sample_rows(handles.len(), users, seed)
        .into_iter()
        .map(|i| handles[i as usize])
        .collect();
    let (new, changed) = picked.split_at(picked.len() / 2);
    let split = Split {
        new: new.to_vec(),
        changed: changed.to_vec(),
    };
    let new: HashSet<u64> = split.new.iter().copied().collect();
    let changed: HashSet<u64> = split.changed.iter().copied().collect();

    // A changed user's latest views (by date) are held back from the base.
    let mut dates: HashMap<u64, Vec<String>> = HashMap::new();
    for r in &views.1 {
        if let Some(h) = handle_of(r, handle_col).filter(|h| changed.contains(h)) {
            dates.entry(h).or_default().push(r[date_col].to_owned());
        }
    }
    let cutoff: HashMap<u64, String> = dates
        .into_iter()
        .map(|(h, mut d)| {
            d.sort_unstable();
            let keep = ((d.len() as f64) * (1.0 - HELD_BACK_SHARE)).floor() as usize;
            (h, d.get(keep).cloned().unwrap_or_default())
        })
        .collect();
    let moved = |h: Option<u64>| h.is_some_and(|h| new.contains(&h) || changed.contains(&h));
    write_split(&views, base, delta, "user_course_views.csv", |r| {
        let h = handle_of(r, handle_col);
        let in_base = match h {
            Some(h) if new.contains(&h) => false,
            Some(h) if changed.contains(&h) => r[date_col] < *cutoff[&h],
            _ => true,
        };
        (in_base, moved(h))
    })?;
    for file in ["user_interests.csv", "user_assessment_scores.csv"] {
        let path = data.join(file);
        if !path.is_file() {
            continue;
        }
        let rows = read_rows(&path)?;
        let col = column(&rows.0, "user_handle")?;
        write_split(&rows, base, delta, file, |r| {
            let h = handle_of(r, col);
            (!h.is_some_and(|h| new.contains(&h)), moved(h))
        })?;
    }
    for file in ["course_tags.csv", "ground_truth.csv"] {
        if data.join(file).is_file() {
            std::fs::copy(data.join(file), base.join(file))?;
        }
    }
    Ok(split)
}

type Rows = (csv::StringRecord, Vec<csv::StringRecord>);

fn read_rows(path: &Path) -> anyhow::Result<Rows> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let header = reader.headers()?.clone();
    let rows = reader.records().collect::<Result<Vec<_>, _>>()?;
    Ok((header, rows))
}

fn column(header: &csv::StringRecord, name: &str) -> anyhow::Result<usize> {
    header
        .iter()
        .position(|h| h.trim() == name)
        .with_context(|| format!("no column {name}"))
}

fn handle_of(r: &csv::StringRecord, col: usize) -> Option<u64> {
    r.get(col)?.trim().parse().ok()
}

/// Writes the rows of one file to the base and the delta; `route(row)` says (into base,
/// into delta).
fn write_split(
    rows: &Rows,
    base: &Path,
    delta: &Path,
    file: &str,
    route: impl Fn(&csv::StringRecord) -> (bool, bool),
) -> anyhow::Result<()> {
    let mut b = csv::Writer::from_path(base.join(file))?;
    let mut d = csv::Writer::from_path(delta.join(file))?;
    b.write_record(&rows.0)?;
    d.write_record(&rows.0)?;
    for r in &rows.1 {
        let (to_base, to_delta) = route(r);
        if to_base {
            b.write_record(r)?;
        }
        if to_delta {
            d.write_record(r)?;
        }
    }
    b.flush()?;
    d.flush()?;
    Ok(())
}

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
        let split = split(&cfg.data, &base_dir, &delta_dir, users, seed)?;
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
            .map(|r| base.users.users[r as usize].handle)
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
    let found = model.shards.nearest(model.embedding(row), 10, Some(row));
    Some(
        found
            .iter()
            .map(|n| model.users.users[n.row as usize].handle)
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
