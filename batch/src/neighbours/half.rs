//! Every point's candidates above its floor, from half of the similarity matrix.
//!
//! The similarities are symmetric, so each pair is computed once: the strip of a block
//! of rows holds the block's similarities to itself and to every later point. A score
//! in it is a candidate of its row when above the row's floor, and of its column when
//! above the column's floor. Each row's floor comes first, from the similarities to
//! every [`SAMPLE_STRIDE`]-th point alone (an eighth of the products), as
//! [`sampled_floor`](super::sampled_floor) draws it from a whole row.
//!
//! Candidates are gathered strip by strip and then ordered by the strip they came from,
//! so each point's list is in the order of the other point's index, whatever the
//! threads: the order a scan of the point's whole row gives them.
//!
//! The price is memory: every candidate is held twice (12 bytes as found, 8 once
//! ordered), about `8 (3k/16 + 5)` candidates a point, so about 140 MB for 50,000 points
//! at `k` 64, where the whole-row scan holds a block of scores per worker (25 MB).

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};

use super::{BLOCK, CHUNK, SAMPLE_STRIDE, floor_of_sample, order_key};

/// A strip's candidate: (point, similarity, other point).
type Entry = (u32, f32, u32);

/// Each point's candidates, as (similarity, other point), in the other point's order.
pub(super) struct Candidates {
    /// Point `i` holds `entries[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
    entries: Vec<(f32, u32)>,
}

impl Candidates {
    /// Point `i`'s candidates.
    pub(super) fn of(&self, i: usize) -> &[(f32, u32)] {
        &self.entries[self.offsets[i]..self.offsets[i + 1]]
    }
}

/// The floor of every point of `all` for its `k` nearest ([`super::sampled_floor`] on the
/// similarities to every [`SAMPLE_STRIDE`]-th point), or `None` when there are too few
/// points for a sample.
pub(super) fn floors(all: ArrayView2<f32>, k: usize, threads: usize) -> Option<Vec<f32>> {
    let n = all.nrows();
    if n < 16 * k {
        return None;
    }
    let sampled: Array2<f32> = all.slice(s![..;SAMPLE_STRIDE, ..]).to_owned();
    let per_block = super::each_block(n, super::BLOCK, threads, |scratch: &mut Vec<f32>, rows| {
        let len = rows.len();
        scratch.resize(len * sampled.nrows(), 0.0);
        let mut scores = ArrayViewMut2::from_shape((len, sampled.nrows()), &mut scratch[..])
            .expect("len rows of sampled scores");
        general_mat_mul(
            1.0,
            &all.slice(s![rows, ..]),
            &sampled.t(),
            0.0,
            &mut scores,
        );
        let mut sample = Vec::new();
        scores
            .rows()
            .into_iter()
            .map(|row| {
                sample.clear();
                sample.extend(row.iter().map(|&v| order_key(v)));
                floor_of_sample(&mut sample, k)
            })
            .collect()
    });
    per_block.into_iter().collect()
}

/// Every point's similarities above its floor (`floors`, one per row of `all`), itself
/// excluded, from the strips of [`BLOCK`] rows spread over `threads`.
pub(super) fn candidates(all: ArrayView2<f32>, floors: &[f32], threads: usize) -> Candidates {
    let n = all.nrows();
    let strips = n.div_ceil(BLOCK);
    let next = AtomicUsize::new(0);
    // (strip, its (point, similarity, other point) entries), strips taken in turn.
    let mut found: Vec<(usize, Vec<Entry>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.clamp(1, strips.max(1)))
            .map(|_| {
                let next = &next;
                scope.spawn(move || {
                    let mut scores = Vec::new();
                    let mut done = Vec::new();
                    loop {
                        let strip = next.fetch_add(1, Ordering::Relaxed);
                        if strip >= strips {
                            return done;
                        }
                        let rows = strip * BLOCK..((strip + 1) * BLOCK).min(n);
                        done.push((strip, scan_strip(all, floors, rows, &mut scores)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("neighbour worker panicked"))
            .collect()
    });
    found.sort_unstable_by_key(|(strip, _)| *strip);
    // A counting sort by point, stable in strip order.
    let mut offsets = vec![0usize; n + 1];
    for (_, entries) in &found {
        for &(point, _, _) in entries {
            offsets[point as usize + 1] += 1;
        }
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut entries = vec![(0.0f32, 0u32); offsets[n]];
    for (_, strip) in found.drain(..) {
        for (point, similarity, other) in strip {
            let slot = &mut fill[point as usize];
            entries[*slot] = (similarity, other);
            *slot += 1;
        }
    }
    Candidates { offsets, entries }
}

/// The entries of the strip of `rows`: its scores against every point from the strip's
/// first on, each kept for its row above the row's floor and, beyond the strip's own
/// block, for its column above the column's floor.
fn scan_strip(
    all: ArrayView2<f32>,
    floors: &[f32],
    rows: Range<usize>,
    buffer: &mut Vec<f32>,
) -> Vec<Entry> {
    let (n, start, own) = (all.nrows(), rows.start, rows.len());
    let width = n - start;
    buffer.resize(own * width, 0.0);
    let mut scores = ArrayViewMut2::from_shape((own, width), &mut buffer[..own * width])
        .expect("own rows of width scores");
    general_mat_mul(
        1.0,
        &all.slice(s![rows.clone(), ..]),
        &all.slice(s![start.., ..]).t(),
        0.0,
        &mut scores,
    );
    let mut out = Vec::new();
    let mut row_entries = Vec::new();
    for (i, row) in rows.zip(scores.rows()) {
        let row = row.to_slice().expect("the strip's scores are row-major");
        // As its row: every score above the row's floor, but its own.
        row_entries.clear();
        super::collect_above(row, floors[i], i - start, &mut row_entries);
        out.extend(
            row_entries
                .iter()
                .map(|&(v, jj)| (i as u32, v, (start + jj as usize) as u32)),
        );
        // As its column, past the strip's own block: above the column's floor.
        collect_columns(&row[own..], &floors[start + own..], |jj, v| {
            out.push(((start + own + jj) as u32, v, i as u32));
        });
    }
    out
}

/// `push(j, scores[j])` for every `scores[j] > floors[j]`, in order, compared
/// [`CHUNK`] at a time.
fn collect_columns(scores: &[f32], floors: &[f32], mut push: impl FnMut(usize, f32)) {
    let (chunks, tail) = scores.as_chunks::<CHUNK>();
    let (floor_chunks, floor_tail) = floors.as_chunks::<CHUNK>();
    for (c, (chunk, floor)) in chunks.iter().zip(floor_chunks).enumerate() {
        let mut mask = 0u32;
        for lane in 0..CHUNK {
            mask |= u32::from(chunk[lane] > floor[lane]) << lane;
        }
        while mask != 0 {
            let lane = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            push(c * CHUNK + lane, chunk[lane]);
        }
    }
    let start = chunks.len() * CHUNK;
    for (j, (&v, &floor)) in (start..).zip(tail.iter().zip(floor_tail)) {
        if v > floor {
            push(j, v);
        }
    }
}
