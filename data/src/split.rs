//! Splitting a data folder into a *base* and a *delta*, to exercise and measure
//! `kindred-batch update` (`kindred-datagen --delta-users N --delta-out DIR`).
//!
//! Of `users` users drawn from the views, half are **new** (absent from the base) and
//! half **changed** (the base lacks their latest [`HELD_BACK_SHARE`] of view rows, by
//! date). The delta holds every row of each of them, as the update expects: a user's
//! complete current rows. It has no course_tags.csv, so the update takes the catalogue
//! from the model. The files are streamed, so a folder of a million users splits in
//! little memory.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// Share of a changed user's view rows (the latest) held back from the base.
pub const HELD_BACK_SHARE: f64 = 0.3;

/// Which users a split moved, by handle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// Users absent from the base, complete in the delta.
    pub new: Vec<u64>,
    /// Users whose latest views the base lacks, complete in the delta.
    pub changed: Vec<u64>,
}

const VIEWS: &str = "user_course_views.csv";
const PER_USER: [&str; 2] = ["user_interests.csv", "user_assessment_scores.csv"];

/// Splits the folder `data` into `base` (which may be `data` itself: its files are
/// replaced) and `delta`, moving `users` users drawn with `seed`.
pub fn split_delta(
    data: &Path,
    base: &Path,
    delta: &Path,
    users: usize,
    seed: u64,
) -> Result<Split> {
    fs::create_dir_all(base)?;
    fs::create_dir_all(delta)?;
    let views = data.join(VIEWS);
    let (handle_col, date_col) = {
        let header = reader(&views)?.headers()?.clone();
        (
            column(&header, "user_handle")?,
            column(&header, "view_date")?,
        )
    };
    // Pass 1: every user with views; draw the moved ones.
    let mut handles: Vec<u64> = Vec::new();
    for r in reader(&views)?.records() {
        if let Some(h) = handle_of(&r?, handle_col) {
            handles.push(h);
        }
    }
    handles.sort_unstable();
    handles.dedup();
    let picked = draw(&handles, users, seed);
    let (new, changed) = picked.split_at(picked.len() / 2);
    let split = Split {
        new: new.to_vec(),
        changed: changed.to_vec(),
    };
    let new: HashSet<u64> = split.new.iter().copied().collect();
    let changed: HashSet<u64> = split.changed.iter().copied().collect();
    // Pass 2: each changed user's cutoff date (views on or after it are held back).
    let mut dates: HashMap<u64, Vec<String>> = HashMap::new();
    for r in reader(&views)?.records() {
        let r = r?;
        let date = r.get(date_col);
        if let (Some(h), Some(date)) = (handle_of(&r, handle_col), date)
            && changed.contains(&h)
        {
            dates.entry(h).or_default().push(date.to_owned());
        }
    }
    let cutoff: HashMap<u64, String> = dates
        .into_iter()
        .map(|(h, mut d)| {
            d.sort_unstable();
            // Views on or after the cutoff are held back; at least the first date's stay,
            // so a changed user is never new (a user with one date keeps everything).
            let keep = ((d.len() as f64) * (1.0 - HELD_BACK_SHARE)).floor() as usize;
            let cutoff = d[keep.min(d.len() - 1)..]
                .iter()
                .find(|x| **x > d[0])
                .cloned()
                .unwrap_or_else(|| "\u{10FFFF}".to_owned());
            (h, cutoff)
        })
        .collect();
    // Pass 3: route every row.
    let moved = |h: Option<u64>| h.is_some_and(|h| new.contains(&h) || changed.contains(&h));
    route(data, base, delta, VIEWS, |r| {
        let h = handle_of(r, handle_col);
        let in_base = match h {
            Some(h) if new.contains(&h) => false,
            Some(h) if changed.contains(&h) => r
                .get(date_col)
                .is_some_and(|d| cutoff.get(&h).is_none_or(|c| d < c.as_str())),
            _ => true,
        };
        (in_base, moved(h))
    })?;
    for file in PER_USER {
        if !data.join(file).is_file() {
            continue;
        }
        let col = column(reader(&data.join(file))?.headers()?, "user_handle")?;
        route(data, base, delta, file, |r| {
            let h = handle_of(r, col);
            (!h.is_some_and(|h| new.contains(&h)), moved(h))
        })?;
    }
    if !same_folder(data, base)? {
        for file in ["course_tags.csv", "ground_truth.csv"] {
            if data.join(file).is_file() {
                fs::copy(data.join(file), base.join(file))?;
            }
        }
    }
    Ok(split)
}

/// `count` distinct handles drawn from `handles` by a seeded partial shuffle.
fn draw(handles: &[u64], count: usize, seed: u64) -> Vec<u64> {
    let mut pool = handles.to_vec();
    let mut state = seed;
    let count = count.min(pool.len());
    for i in 0..count {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let j = i + (z % (pool.len() - i) as u64) as usize;
        pool.swap(i, j);
    }
    pool.truncate(count);
    pool
}

fn same_folder(a: &Path, b: &Path) -> Result<bool> {
    Ok(fs::canonicalize(a)? == fs::canonicalize(b)?)
}

fn reader(path: &Path) -> Result<csv::Reader<fs::File>> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))
}

fn column(header: &csv::StringRecord, name: &str) -> Result<usize> {
    header
        .iter()
        .position(|h| h.trim() == name)
        .with_context(|| format!("no column {name}"))
}

fn handle_of(r: &csv::StringRecord, col: usize) -> Option<u64> {
    r.get(col)?.trim().parse().ok()
}

/// Streams `file` of `data` into `base` and `delta`; `to(row)` says (into base, into
/// delta). The base file is written beside its target and renamed into place, so `base`
/// may be `data`.
fn route(
    data: &Path,
    base: &Path,
    delta: &Path,
    file: &str,
    to: impl Fn(&csv::StringRecord) -> (bool, bool),
) -> Result<()> {
    let mut input = reader(&data.join(file))?;
    let tmp = base.join(format!(".{file}.split"));
    let mut b = csv::Writer::from_path(&tmp)?;
    let mut d = csv::Writer::from_path(delta.join(file))?;
    let header = input.headers()?.clone();
    b.write_record(&header)?;
    d.write_record(&header)?;
    for r in input.records() {
        let r = r?;
        let (to_base, to_delta) = to(&r);
        if to_base {
            b.write_record(&r)?;
        }
        if to_delta {
            d.write_record(&r)?;
        }
    }
    b.flush()?;
    d.flush()?;
    drop(b);
    fs::rename(&tmp, base.join(file))?;
    Ok(())
}
