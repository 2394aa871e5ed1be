//! Each row's candidates above its floor, with its similarities computed and compared
//! in registers: no block of scores is stored and read back.
//!
//! The points are packed once, 32 to a panel ([`Packed`]): a panel holds each
//! dimension's 32 values together, two AVX-512 registers. Eight rows are scored against
//! a panel at a time, in sixteen registers, each similarity summed over the dimensions
//! in order with fused multiply-adds (OpenBLAS's blocking sums some in another order, so
//! a few of its similarities differ from these in the last bit). Each register is then
//! compared with its row's floor, and the similarities above it are compressed to the
//! end of the row's list with their points, so every list is in point order. Panels are
//! taken a chunk at a time (256 kB at 64 dimensions, kept in L2) for every row of the
//! block before the next chunk.
//!
//! Only on CPUs with AVX-512 ([`available`]); elsewhere the caller multiplies with BLAS
//! and compares afterwards.

use std::ops::Range;

use super::{BLOCK, SAMPLE_STRIDE, each_block, floor_of_sample, order_key};

/// Lanes of a register: the points of half a panel.
const LANES: usize = 16;
/// Points a panel: two registers.
const WIDTH: usize = 2 * LANES;
/// Rows scored together: with two registers a row, sixteen registers of sums.
const ROWS: usize = 8;
/// Panels a chunk: each chunk is scored against every row of the block in turn.
const CHUNK_PANELS: usize = 32;

/// Whether this CPU runs the scan.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// The points, packed in panels of [`WIDTH`]: panel `p` holds, for each dimension `d`
/// in turn, the values of points `WIDTH p ..` at `d` (zero past the last point).
pub(super) struct Packed {
    values: Vec<f32>,
    n: usize,
    dims: usize,
}

impl Packed {
    /// Packs the `n` rows of `dims` values of `flat` (row-major).
    pub(super) fn new(flat: &[f32], n: usize, dims: usize) -> Self {
        let mut values = vec![0.0; n.div_ceil(WIDTH) * WIDTH * dims];
        for (j, row) in flat.chunks_exact(dims.max(1)).take(n).enumerate() {
            let panel = &mut values[j / WIDTH * WIDTH * dims..];
            for (d, &v) in row.iter().enumerate() {
                panel[d * WIDTH + j % WIDTH] = v;
            }
        }
        Packed { values, n, dims }
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(WIDTH)
    }
}

/// The candidate lists of a block's rows, reused from block to block.
#[derive(Default)]
pub(super) struct Lists {
    scores: Vec<f32>,
    points: Vec<u32>,
    lens: Vec<usize>,
    /// Room a row: every point's similarity, a whole panel's store at most.
    stride: usize,
}

impl Lists {
    /// The `r`-th row's candidates, as (similarity, point), in point order, but `skip`.
    pub(super) fn of(&self, r: usize, skip: usize) -> impl Iterator<Item = (f32, u32)> + '_ {
        let start = r * self.stride;
        let end = start + self.lens[r];
        self.scores[start..end]
            .iter()
            .zip(&self.points[start..end])
            .filter(move |&(_, &j)| j as usize != skip)
            .map(|(&v, &j)| (v, j))
    }
}

/// The floor of each of the `queries` (`dims` values a query, row-major) for its `k`
/// nearest among the `n` points of `flat` ([`super::sampled_floor`] of its similarities
/// to every [`SAMPLE_STRIDE`]-th point, as scanned: a NaN similarity, above no floor,
/// leaves the sample), over `threads`; `None` when there are too few points for a
/// sample. Call only where [`available`].
pub(super) fn floors(
    queries: &[f32],
    flat: &[f32],
    n: usize,
    dims: usize,
    k: usize,
    threads: usize,
) -> Option<Vec<f32>> {
    if n < 16 * k || dims == 0 {
        return None;
    }
    let sampled: Vec<f32> = flat[..n * dims]
        .chunks_exact(dims)
        .step_by(SAMPLE_STRIDE)
        .flatten()
        .copied()
        .collect();
    let packed = Packed::new(&sampled, n.div_ceil(SAMPLE_STRIDE), dims);
    let count = queries.len() / dims;
    let everything = vec![f32::NEG_INFINITY; count];
    let per_block = each_block(
        count,
        BLOCK,
        threads,
        |(lists, sample): &mut (Lists, Vec<i32>), rows| {
            scan(queries, &packed, rows.clone(), &everything, lists);
            (0..rows.len())
                .map(|r| {
                    sample.clear();
                    sample.extend(lists.of(r, usize::MAX).map(|(v, _)| order_key(v)));
                    floor_of_sample(sample, k)
                })
                .collect()
        },
    );
    per_block.into_iter().collect()
}

/// Fills `lists` with each of `rows`' similarities (rows of `flat`, `dims` values a
/// row) to every packed point, above the row's floor (`floors[i]` for row `i`), in
/// point order, itself included. Call only where [`available`].
pub(super) fn scan(
    flat: &[f32],
    packed: &Packed,
    rows: Range<usize>,
    floors: &[f32],
    lists: &mut Lists,
) {
    let padded = rows.len().div_ceil(ROWS) * ROWS;
    lists.stride = packed.panels() * WIDTH;
    let room = padded * lists.stride;
    if lists.scores.len() < room {
        // Fresh zeroed pages, faulted in only where a list reaches: a row's list takes
        // a few hundred of its `stride` slots.
        lists.scores = vec![0.0; room];
        lists.points = vec![0; room];
    }
    lists.lens.clear();
    lists.lens.resize(padded, 0);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: callers only scan where `available` found AVX-512.
    unsafe {
        scan_avx512(flat, packed, rows, floors, lists)
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the scan runs only where AVX-512 is available: {flat:?} {rows:?} {floors:?}");
}

/// [`scan`]'s sums and comparisons.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn scan_avx512(
    flat: &[f32],
    packed: &Packed,
    rows: Range<usize>,
    floors: &[f32],
    lists: &mut Lists,
) {
    use std::arch::x86_64::*;
    let (dims, n, stride) = (packed.dims, packed.n, lists.stride);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    // The block's rows a group and a dimension at a time (one pointer for a group's
    // broadcasts), and their floors. A short last group repeats the block's last row,
    // with a floor nothing exceeds.
    let groups = rows.len().div_ceil(ROWS);
    let row_of = |at: usize| (rows.start + at).min(rows.end - 1);
    let across: Vec<f32> = (0..groups * dims * ROWS)
        .map(|x| {
            let (g, d, r) = (x / (dims * ROWS), x / ROWS % dims, x % ROWS);
            flat[row_of(g * ROWS + r) * dims + d]
        })
        .collect();
    let floor_of = |at: usize| {
        if rows.start + at < rows.end {
            floors[rows.start + at]
        } else {
            f32::INFINITY
        }
    };
    for chunk in (0..packed.panels()).step_by(CHUNK_PANELS) {
        for g in 0..groups {
            let floor: [__m512; ROWS] =
                std::array::from_fn(|r| _mm512_set1_ps(floor_of(g * ROWS + r)));
            let group = &across[g * dims * ROWS..][..dims * ROWS];
            for p in chunk..(chunk + CHUNK_PANELS).min(packed.panels()) {
                let panel = packed.values[p * WIDTH * dims..][..WIDTH * dims].as_ptr();
                let mut sums = [[_mm512_setzero_ps(); 2]; ROWS];
                for d in 0..dims {
                    // SAFETY: a panel holds `WIDTH` values a dimension, two registers, and
                    // `group` holds `ROWS` a dimension.
                    unsafe {
                        let at = panel.add(d * WIDTH);
                        let (low, high) = (_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(LANES)));
                        let values = group.as_ptr().add(d * ROWS);
                        for (r, [first, second]) in sums.iter_mut().enumerate() {
                            let v = _mm512_set1_ps(*values.add(r));
                            *first = _mm512_fmadd_ps(v, low, *first);
                            *second = _mm512_fmadd_ps(v, high, *second);
                        }
                    }
                }
                let base = p * WIDTH;
                let past = n - base;
                let valid = |half: usize| -> u16 {
                    match past.saturating_sub(half * LANES) {
                        0 => 0,
                        m if m >= LANES => u16::MAX,
                        m => (1u16 << m) - 1,
                    }
                };
                for r in 0..ROWS {
                    let list = (g * ROWS + r) * stride;
                    for (half, &sum) in sums[r].iter().enumerate() {
                        let mask = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(sum, floor[r]) & valid(half);
                        let index = _mm512_add_epi32(
                            lanes,
                            _mm512_set1_epi32((base + half * LANES) as i32),
                        );
                        let len = &mut lists.lens[g * ROWS + r];
                        // SAFETY: a row holds at most 16 a register scored before this
                        // one, so `*len + 16 <= stride`: both stores stay in the row.
                        unsafe {
                            _mm512_storeu_ps(
                                lists.scores.as_mut_ptr().add(list + *len),
                                _mm512_maskz_compress_ps(mask, sum),
                            );
                            _mm512_storeu_si512(
                                lists.points.as_mut_ptr().add(list + *len).cast(),
                                _mm512_maskz_compress_epi32(mask, index),
                            );
                        }
                        *len += mask.count_ones() as usize;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::clustered;

    #[test]
    fn the_scan_keeps_each_similarity_above_its_rows_floor_summed_in_dimension_order() {
        if !available() {
            return;
        }
        // Sizes off every multiple: a short last panel, a short last group of rows.
        for (n, dims) in [(1000, 64), (203, 13), (37, 1)] {
            let points = clustered(n, dims, 5, n as u64);
            let flat = kindred_core::embedding::row_major(&points);
            // Each similarity summed in dimension order, one fused multiply-add a term.
            let similarity = |i: usize, j: usize| {
                (0..dims).fold(0.0f32, |sum, d| {
                    flat[i * dims + d].mul_add(flat[j * dims + d], sum)
                })
            };
            // Floors from none kept to all kept, one row's a NaN.
            let floors: Vec<f32> = (0..n)
                .map(|i| match i % 7 {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    2 => 2.0,
                    m => m as f32 / 7.0 - 0.3,
                })
                .collect();
            let packed = Packed::new(&flat, n, dims);
            let mut lists = Lists::default();
            for rows in [0..n, 3..n.min(14), n - 1..n] {
                scan(&flat, &packed, rows.clone(), &floors, &mut lists);
                for (r, i) in rows.enumerate() {
                    let got: Vec<(u32, u32)> =
                        lists.of(r, i).map(|(v, j)| (v.to_bits(), j)).collect();
                    let want: Vec<(u32, u32)> = (0..n)
                        .filter(|&j| j != i && similarity(i, j) > floors[i])
                        .map(|j| (similarity(i, j).to_bits(), j as u32))
                        .collect();
                    assert_eq!(got, want, "row {i} of {n} at {dims} dimensions");
                }
            }
        }
    }
}
