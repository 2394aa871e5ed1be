//! The sparse user x feature matrix the SVD factorises.
//!
//! The core block is the seed's signal: for each user and course tag, the average
//! `view_time_seconds` over the user's view rows of courses carrying that tag. Further
//! blocks (interests, assessments) are stacked beside it. Each block is weighted on its
//! own (value transform, inverse document frequency), L2-normalised per user and scaled
//! by the block's weight, so no block dominates merely through its units.

use kindred_core::projection::ValueTransform;
use serde::{Deserialize, Serialize};

/// A compressed sparse row matrix with `f32` values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Csr {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row `r` holds entries `indptr[r]..indptr[r + 1]`.
    pub indptr: Vec<usize>,
    /// Column of each entry, increasing within a row.
    pub indices: Vec<u32>,
    /// Value of each entry.
    pub values: Vec<f32>,
}

impl Csr {
    /// Builds a matrix from `(row, col, value)` triples sorted by row then column, without repeats.
    pub fn from_sorted_triples(rows: usize, cols: usize, triples: &[(u32, u32, f32)]) -> Csr {
        let mut indptr = vec![0usize; rows + 1];
        for &(r, _, _) in triples {
            indptr[r as usize + 1] += 1;
        }
        for r in 0..rows {
            indptr[r + 1] += indptr[r];
        }
        Csr {
            rows,
            cols,
            indptr,
            indices: triples.iter().map(|t| t.1).collect(),
            values: triples.iter().map(|t| t.2).collect(),
        }
    }

    /// Entries of row `r` as (column, value).
    pub fn row(&self, r: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let span = self.indptr[r]..self.indptr[r + 1];
        self.indices[span.clone()]
            .iter()
            .copied()
            .zip(self.values[span].iter().copied())
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Number of stored entries in row `r`.
    pub fn row_nnz(&self, r: usize) -> usize {
        self.indptr[r + 1] - self.indptr[r]
    }

    /// Sum of squared values (squared Frobenius norm).
    pub fn sq_norm(&self) -> f64 {
        self.values
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum()
    }
}

/// How a block's raw values become matrix values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// The raw value (the seed's choice for view seconds).
    Raw,
    /// `ln(1 + value)`: tames the heavy right tail of view seconds.
    Log1p,
    /// 1 for any present entry.
    Binary,
}

impl Transform {
    fn apply(self, v: f32) -> f32 {
        self.stored().apply(v)
    }

    /// The same transform as stored in a model's projection.
    pub fn stored(self) -> ValueTransform {
        match self {
            Transform::Raw => ValueTransform::Raw,
            Transform::Log1p => ValueTransform::Log1p,
            Transform::Binary => ValueTransform::Binary,
        }
    }
}

/// Weighting of one block.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockWeighting {
    /// Value transform.
    pub transform: Transform,
    /// Multiply each column by `ln(1 + users / users_with_entry)`.
    pub idf: bool,
    /// Scale each user's row of the block to unit length before weighting (the seed
    /// did not: its rows keep their raw scale).
    #[serde(default = "yes")]
    pub normalise: bool,
    /// Scale of the block after per-user L2 normalisation (0 drops the block).
    pub weight: f32,
}

fn yes() -> bool {
    true
}

/// One block of features: entries keyed by (row, tag), before weighting.
#[derive(Clone, Debug)]
pub struct Block {
    /// Name, for reports ("views", "interests", "assessments").
    pub name: &'static str,
    /// `(row, tag, value)` triples, sorted by row then tag, no repeats.
    pub entries: Vec<(u32, u32, f32)>,
    /// Weighting applied.
    pub weighting: BlockWeighting,
    /// Recency factor of each entry (same order as `entries`), applied after the
    /// transform and idf and before the row is normalised; empty: 1 for all.
    pub decay: Vec<f32>,
}

/// What a matrix column stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Column {
    /// Index of the block in the list given to [`assemble`].
    pub block: usize,
    /// Tag id.
    pub tag: u32,
}

/// A view observation: (row, tag, seconds, recency factor).
pub type Observation = (u32, u32, u32, f32);

/// Averages `(row, tag, seconds, decay)` observations per (row, tag): the mean seconds
/// (the seed's value) and the mean recency factor. The input is sorted in place.
pub fn average_by_row_and_tag(
    observations: &mut [Observation],
) -> (Vec<(u32, u32, f32)>, Vec<f32>) {
    sort_by_row_and_column(observations, |o| (o.0, o.1));
    average_sorted(observations.iter().copied())
}

/// [`average_by_row_and_tag`] of the observations of two lists each sorted by row and
/// tag (as [`sort_by_row_and_column`] sorts), averaged as they are merged (no merged
/// copy: at 1M users the observations are about 0.8 GB).
pub fn average_merged(a: &[Observation], b: &[Observation]) -> (Vec<(u32, u32, f32)>, Vec<f32>) {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    let merged = std::iter::from_fn(|| match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if (y.0, y.1) < (x.0, x.1) => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    });
    average_sorted(merged.copied())
}

/// [`average_by_row_and_tag`] of observations sorted by row and tag.
fn average_sorted(
    observations: impl Iterator<Item = Observation>,
) -> (Vec<(u32, u32, f32)>, Vec<f32>) {
    let mut out: Vec<(u32, u32, f32)> = Vec::new();
    let mut decays = Vec::new();
    let mut observations = observations.peekable();
    while let Some(&(r, t, _, _)) = observations.peek() {
        let (mut sum, mut decay, mut n) = (0u64, 0f64, 0u64);
        while let Some((_, _, seconds, factor)) = observations.next_if(|o| o.0 == r && o.1 == t) {
            sum += u64::from(seconds);
            decay += f64::from(factor);
            n += 1;
        }
        out.push((r, t, (sum as f64 / n as f64) as f32));
        decays.push((decay / n as f64) as f32);
    }
    (out, decays)
}

/// The recency factor of an event `age_days` before the newest event:
/// `floor + (1 - floor) * 0.5^(age / half_life)`, so it falls from 1 towards `floor`,
/// halving the distance every `half_life_days` (1 without a half-life).
pub fn decay(age_days: f32, half_life_days: Option<f32>, floor: f32) -> f32 {
    match half_life_days {
        Some(half_life_days) if half_life_days > 0.0 => kindred_core::projection::Recency {
            half_life_days,
            floor,
        }
        .factor(age_days),
        _ => 1.0,
    }
}

/// Applies each block's weighting and stacks the blocks side by side.
///
/// Only tags that occur in a block get a column in it. Returns the matrix, what each
/// column stands for and each column's idf factor (1 where the block has no idf). The
/// blocks are weighed on threads of their own (`weigh`; at 10k users stacking them
/// took 20 ms on one thread, a quarter of the matrix stage), then stacked row by row.
pub fn assemble(rows: usize, blocks: &[Block]) -> (Csr, Vec<Column>, Vec<f32>) {
    let used = |block: &&Block| block.weighting.weight != 0.0 && !block.entries.is_empty();
    let weighed: Vec<(usize, Weighed)> = std::thread::scope(|scope| {
        let handles: Vec<_> = blocks
            .iter()
            .enumerate()
            .filter(|(_, block)| used(block))
            .map(|(b, block)| scope.spawn(move || (b, weigh(block))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("weighing a block panicked"))
            .collect()
    });
    let mut columns = Vec::new();
    let mut idfs: Vec<f32> = Vec::new();
    let mut firsts = Vec::with_capacity(weighed.len());
    for (b, w) in &weighed {
        firsts.push(columns.len() as u32);
        columns.extend(w.tags.iter().map(|&tag| Column { block: *b, tag }));
        idfs.extend(&w.idf);
    }
    // Each row's entries, block after block: a block's columns all follow the earlier
    // blocks', and each block's rows are in column order already.
    let mut starts = vec![0usize; rows + 1];
    for (_, w) in &weighed {
        for &(r, _, _) in &w.entries {
            starts[r as usize + 1] += 1;
        }
    }
    for r in 0..rows {
        starts[r + 1] += starts[r];
    }
    let mut triples = vec![(0u32, 0u32, 0f32); starts[rows]];
    let mut next = starts;
    for ((_, w), &first) in weighed.iter().zip(&firsts) {
        for &(r, c, v) in &w.entries {
            let slot = &mut next[r as usize];
            triples[*slot] = (r, first + c, v);
            *slot += 1;
        }
    }
    let csr = Csr::from_sorted_triples(rows, columns.len(), &triples);
    (csr, columns, idfs)
}

/// One block weighed: its tags in column order (first appearance), each column's idf
/// factor, and its non-zero entries as (row, column within the block, value), in row
/// then column order.
struct Weighed {
    tags: Vec<u32>,
    idf: Vec<f32>,
    entries: Vec<(u32, u32, f32)>,
}

/// A block's columns and its entries weighed: per row, transform, idf, recency, L2
/// normalisation and the block's weight.
fn weigh(block: &Block) -> Weighed {
    // Compact the block's tags into consecutive columns.
    let max_tag = block.entries.iter().map(|e| e.1).max().unwrap_or(0) as usize;
    let mut col_of = vec![u32::MAX; max_tag + 1];
    let mut tags = Vec::new();
    for &(_, t, _) in &block.entries {
        if col_of[t as usize] == u32::MAX {
            col_of[t as usize] = tags.len() as u32;
            tags.push(t);
        }
    }
    let mut df = vec![0u32; tags.len()];
    for &(_, t, _) in &block.entries {
        df[col_of[t as usize] as usize] += 1;
    }
    let block_rows = {
        let mut rows_seen: Vec<u32> = block.entries.iter().map(|e| e.0).collect();
        rows_seen.dedup();
        rows_seen.len() as f32
    };
    let w = block.weighting;
    let idf: Vec<f32> = df
        .iter()
        .map(|&d| {
            if w.idf {
                (1.0 + block_rows / d as f32).ln()
            } else {
                1.0
            }
        })
        .collect();
    let mut entries = Vec::with_capacity(block.entries.len());
    let mut vals: Vec<(u32, f32)> = Vec::new();
    let mut start = 0;
    while start < block.entries.len() {
        let r = block.entries[start].0;
        let mut end = start;
        while end < block.entries.len() && block.entries[end].0 == r {
            end += 1;
        }
        vals.clear();
        vals.extend(
            block.entries[start..end]
                .iter()
                .enumerate()
                .map(|(i, &(_, t, v))| {
                    let c = col_of[t as usize];
                    let recency = block.decay.get(start + i).copied().unwrap_or(1.0);
                    (c, w.transform.apply(v) * idf[c as usize] * recency)
                }),
        );
        let norm = if w.normalise {
            vals.iter().map(|v| v.1 * v.1).sum::<f32>().sqrt()
        } else {
            1.0
        };
        if norm > 0.0 {
            // (A row's tags are sorted, its columns are not: columns number tags in
            // order of first appearance.)
            vals.sort_unstable_by_key(|v| v.0);
            entries.extend(
                vals.iter()
                    .filter(|v| v.1 != 0.0)
                    .map(|&(c, v)| (r, c, v / norm * w.weight)),
            );
        }
        start = end;
    }
    Weighed { tags, idf, entries }
}

/// Sorts `items` by their `(row, column)` keys, as `sort_unstable_by_key` would (the order
/// of equal keys unspecified), in time linear in the rows: a counting sort by row, then
/// each row's few items sorted by column. Rows are matrix rows, numbered densely from 0:
/// it allocates a counter for every row up to the largest. At 10k users, a third of the time of a
/// comparison sort of the half million view observations or matrix entries.
pub fn sort_by_row_and_column<T: Copy>(items: &mut [T], key: impl Fn(&T) -> (u32, u32)) {
    let Some(rows) = items.iter().map(|t| key(t).0 as usize + 1).max() else {
        return;
    };
    // starts[r]..starts[r + 1]: row r's place in the sorted order.
    let mut starts = vec![0usize; rows + 1];
    for t in items.iter() {
        starts[key(t).0 as usize + 1] += 1;
    }
    for r in 0..rows {
        starts[r + 1] += starts[r];
    }
    let mut next = starts.clone();
    let mut sorted = items.to_vec();
    for t in items.iter() {
        let slot = &mut next[key(t).0 as usize];
        sorted[*slot] = *t;
        *slot += 1;
    }
    for span in starts.windows(2) {
        sorted[span[0]..span[1]].sort_unstable_by_key(|t| key(t).1);
    }
    items.copy_from_slice(&sorted);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded generator of numbers below its argument (a 64-bit LCG's high bits).
    fn below(seed: u64) -> impl FnMut(u64) -> u32 {
        let mut state = seed;
        move |below: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % below) as u32
        }
    }

    #[test]
    fn sorting_by_row_and_column_orders_as_a_comparison_sort_does() {
        // Given items with repeated keys, rows without items and a payload to tell
        // repeats apart,
        let mut next = below(7);
        let items: Vec<(u32, u32, u32)> =
            (0..5_000).map(|i| (next(300) * 2, next(40), i)).collect();
        // when sorted by (row, column) in linear time,
        let mut linear = items.clone();
        sort_by_row_and_column(&mut linear, |t| (t.0, t.1));
        // then the keys are in a comparison sort's order and no item is lost or repeated.
        let mut compared = items.clone();
        compared.sort_unstable_by_key(|t| (t.0, t.1));
        let keys = |v: &[(u32, u32, u32)]| v.iter().map(|t| (t.0, t.1)).collect::<Vec<_>>();
        assert_eq!(keys(&linear), keys(&compared));
        let mut payloads: Vec<u32> = linear.iter().map(|t| t.2).collect();
        payloads.sort_unstable();
        assert_eq!(payloads, (0..5_000).collect::<Vec<_>>());
        let mut empty: Vec<(u32, u32)> = Vec::new();
        sort_by_row_and_column(&mut empty, |&t| t);
        assert!(empty.is_empty());
    }

    #[test]
    fn two_sorted_halves_average_as_the_whole_does() {
        // Given observations with repeated (row, tag) pairs, some split between halves,
        let mut next = below(3);
        let all: Vec<Observation> = (0..2_000)
            .map(|_| (next(50), next(8), next(1000), next(100) as f32 / 100.0))
            .collect();
        let whole = average_by_row_and_tag(&mut all.clone());
        for split in [0, 1, 999, 1_000, 2_000] {
            // when each half is sorted on its own and the two are averaged merged,
            let (mut a, mut b) = (all[..split].to_vec(), all[split..].to_vec());
            sort_by_row_and_column(&mut a, |o| (o.0, o.1));
            sort_by_row_and_column(&mut b, |o| (o.0, o.1));
            // then the averages are those of the whole.
            assert_eq!(average_merged(&a, &b), whole, "split at {split}");
        }
    }

    #[test]
    fn the_seed_value_is_the_mean_seconds_per_user_and_tag() {
        // Given user 0 watched two python courses (100 s and 300 s) and one sql course (50 s),
        // and user 1 watched one python course for 10 s,
        // (the first python view a half-life ago),
        let mut obs = vec![
            (0, 7, 100, 0.5),
            (1, 7, 10, 1.0),
            (0, 3, 50, 1.0),
            (0, 7, 300, 1.0),
        ];
        // when averaged,
        let (avg, decays) = average_by_row_and_tag(&mut obs);
        // then each (user, tag) holds its mean seconds and mean recency.
        assert_eq!(avg, vec![(0, 3, 50.0), (0, 7, 200.0), (1, 7, 10.0)]);
        assert_eq!(decays, vec![1.0, 0.75, 1.0]);
    }

    #[test]
    fn recency_halves_every_half_life_and_shifts_weight_to_recent_tags() {
        assert_eq!(decay(100.0, None, 0.0), 1.0);
        assert!((decay(30.0, Some(30.0), 0.0) - 0.5).abs() < 1e-6);
        assert!((decay(90.0, Some(30.0), 0.0) - 0.125).abs() < 1e-6);
        assert_eq!(decay(0.0, Some(30.0), 0.3), 1.0);
        // With a floor, the old never weigh less than it.
        assert!((decay(30.0, Some(30.0), 0.3) - 0.65).abs() < 1e-6);
        assert!((decay(1e6, Some(30.0), 0.3) - 0.3).abs() < 1e-6);
        // Two equal tags, one seen a half-life ago: after normalising, the recent one
        // weighs twice the old one.
        let block = Block {
            name: "interests",
            entries: vec![(0, 1, 1.0), (0, 2, 1.0)],
            weighting: BlockWeighting {
                transform: Transform::Binary,
                idf: false,
                normalise: true,
                weight: 1.0,
            },
            decay: vec![0.5, 1.0],
        };
        let (m, _, _) = assemble(1, &[block]);
        let r: Vec<f32> = m.row(0).map(|e| e.1).collect();
        assert!((r[1] / r[0] - 2.0).abs() < 1e-5);
        assert!((r[0] * r[0] + r[1] * r[1] - 1.0).abs() < 1e-5);
    }

    #[test]
    fn assemble_normalises_each_block_per_row_and_stacks_columns() {
        let raw = BlockWeighting {
            transform: Transform::Raw,
            idf: false,
            normalise: true,
            weight: 1.0,
        };
        let views = Block {
            name: "views",
            entries: vec![(0, 5, 3.0), (0, 9, 4.0), (1, 9, 2.0)],
            weighting: raw,
            decay: Vec::new(),
        };
        let interests = Block {
            name: "interests",
            entries: vec![(1, 5, 1.0), (1, 6, 1.0)],
            weighting: BlockWeighting {
                transform: Transform::Binary,
                idf: false,
                normalise: true,
                weight: 0.5,
            },
            decay: Vec::new(),
        };
        let (m, cols, idf) = assemble(3, &[views, interests]);
        assert_eq!(idf, vec![1.0; 4]);
        assert_eq!(m.cols, 4);
        assert_eq!(
            cols,
            vec![
                Column { block: 0, tag: 5 },
                Column { block: 0, tag: 9 },
                Column { block: 1, tag: 5 },
                Column { block: 1, tag: 6 },
            ]
        );
        // Row 0: (3, 4) / 5.
        assert_eq!(m.row(0).collect::<Vec<_>>(), vec![(0, 0.6), (1, 0.8)]);
        // Row 1: views (2)/2 = 1; interests (1, 1)/sqrt(2) * 0.5.
        let r1: Vec<_> = m.row(1).collect();
        assert_eq!(r1[0], (1, 1.0));
        assert!((r1[1].1 - 0.5 / 2f32.sqrt()).abs() < 1e-6 && r1[1].0 == 2);
        // Row 2 has no entries.
        assert_eq!(m.row_nnz(2), 0);
    }

    #[test]
    fn idf_downweights_a_tag_everyone_has() {
        let w = BlockWeighting {
            transform: Transform::Binary,
            idf: true,
            normalise: true,
            weight: 1.0,
        };
        let b = Block {
            name: "interests",
            entries: vec![(0, 1, 1.0), (0, 2, 1.0), (1, 1, 1.0)],
            weighting: w,
            decay: Vec::new(),
        };
        let (m, _, _) = assemble(2, &[b]);
        let r0: Vec<_> = m.row(0).collect();
        // Tag 1 is in both rows (idf ln 2), tag 2 in one (idf ln 3).
        assert!(r0[0].1 < r0[1].1);
    }
}
