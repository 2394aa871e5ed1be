//! The exact scan of models small enough to search by brute force: 8-bit codes find the
//! candidates, `f32` ranks them, and the answer is the one a plain `f32` scan gives.
//!
//! Each row `x` is stored twice: as `f32` and as 8-bit codes `c` with a scale `s`, so that
//! `x = s·c + r` with a small residual `r`. A query `q` is coded the same way. The
//! integer product `s_q·s_x·(c_q·c_x)` differs from `q·x` by at most
//! `(‖q‖ + ‖r_q‖)·max‖r_x‖ + ‖r_q‖·max‖x‖` (Cauchy-Schwarz on both residuals), the
//! bound `b`. If the `k`-th largest coded product is `T`, at least `k` rows score `T - b`
//! or more in `f32`, so every row of the true top `k` has a coded product of at least
//! `T - 2b`: those candidates, ranked by their `f32` similarity, are the exact answer.
//! The codes of 10,000 users at 64 dimensions take 640 kB and stay in a core's L2 cache,
//! where the `f32` rows (2.5 MB) do not.

use std::cell::Cell;
use std::cmp::Ordering;

use crate::embedding::dot;
use crate::search::{Neighbour, cmp_neighbours};

/// Slack added to the error bound for the rounding of `f32` arithmetic (a dot product of
/// unit vectors of a few hundred dimensions is off by far less).
const ROUNDING: f32 = 1e-4;

thread_local! {
    /// Reused buffer of the coded products of one scan.
    static CODED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Row-major embeddings with their 8-bit codes, searched exactly.
pub struct Scan {
    dims: usize,
    flat: Vec<f32>,
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// The largest residual norm `‖x - s·c‖` of any row.
    residual: f32,
    /// The largest norm of any row.
    norm: f32,
}

/// `values` as 8-bit codes: the scale and the codes (`values ≈ scale·codes`).
fn encode(values: &[f32], codes: &mut Vec<i8>) -> f32 {
    let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if !(max > 0.0 && max.is_finite()) {
        codes.extend(std::iter::repeat_n(0, values.len()));
        return 0.0;
    }
    let scale = max / 127.0;
    codes.extend(
        values
            .iter()
            .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
    );
    scale
}

/// `‖values - scale·codes‖`.
fn residual(values: &[f32], codes: &[i8], scale: f32) -> f32 {
    values
        .iter()
        .zip(codes)
        .map(|(v, &c)| {
            let d = v - scale * f32::from(c);
            d * d
        })
        .sum::<f32>()
        .sqrt()
}

impl Scan {
    /// Codes `flat`, row-major rows of `dims` values each.
    pub fn new(flat: Vec<f32>, dims: usize) -> Scan {
        let rows = flat.len().checked_div(dims).unwrap_or(0);
        let mut codes = Vec::with_capacity(rows * dims);
        let mut scales = Vec::with_capacity(rows);
        let (mut worst, mut norm) = (0.0f32, 0.0f32);
        for row in flat.chunks_exact(dims.max(1)).take(rows) {
            let start = codes.len();
            let scale = encode(row, &mut codes);
            scales.push(scale);
            worst = worst.max(residual(row, &codes[start..], scale));
            norm = norm.max(dot(row, row).sqrt());
        }
        Scan {
            dims,
            flat,
            codes,
            scales,
            residual: worst,
            norm,
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// True when no row is held.
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// The `f32` rows, row-major.
    pub fn rows(&self) -> &[f32] {
        &self.flat
    }

    /// Bytes held: the `f32` rows, the codes and the scales.
    pub fn bytes(&self) -> usize {
        self.flat.len() * 4 + self.codes.len() + self.scales.len() * 4
    }

    /// The `k` rows most similar to `query` (most similar first, ties by row), never
    /// `exclude`: exactly what a scan of every `f32` row ranks first.
    pub fn nearest(&self, query: &[f32], k: usize, exclude: Option<u32>) -> Vec<Neighbour> {
        if k == 0 || self.dims == 0 || self.is_empty() || query.len() != self.dims {
            return crate::search::exact_flat(&self.flat, self.dims, query, k, exclude);
        }
        let mut coded_query = Vec::with_capacity(self.dims);
        let query_scale = encode(query, &mut coded_query);
        let query_residual = residual(query, &coded_query, query_scale);
        let query_norm = dot(query, query).sqrt();
        let bound =
            (query_norm + query_residual) * self.residual + query_residual * self.norm + ROUNDING;
        if !bound.is_finite() {
            return crate::search::exact_flat(&self.flat, self.dims, query, k, exclude);
        }

        let mut coded = CODED.with(Cell::take);
        coded.clear();
        coded_products(&coded_query, &self.codes, self.dims, &mut coded);
        for (p, s) in coded.iter_mut().zip(&self.scales) {
            *p *= s * query_scale;
        }
        let kth = kth_largest(&coded, k, exclude);
        let floor = kth - 2.0 * bound;
        let mut found: Vec<Neighbour> = Vec::new();
        for (row, &p) in coded.iter().enumerate() {
            let row = row as u32;
            if p >= floor && Some(row) != exclude {
                let at = row as usize * self.dims;
                found.push(Neighbour {
                    row,
                    similarity: dot(query, &self.flat[at..at + self.dims]),
                });
            }
        }
        CODED.with(|c| c.replace(coded));
        found.sort_by(cmp_neighbours);
        found.truncate(k);
        found
    }
}

/// The `k`-th largest value of `values` leaving out index `exclude` (minus infinity when
/// there are fewer than `k` others).
fn kth_largest(values: &[f32], k: usize, exclude: Option<u32>) -> f32 {
    let mut best: Vec<f32> = Vec::with_capacity(k + 1);
    let mut floor = f32::NEG_INFINITY;
    for (row, &v) in values.iter().enumerate() {
        if (best.len() == k && v <= floor) || Some(row as u32) == exclude {
            continue;
        }
        let at = best.partition_point(|b| b.total_cmp(&v) == Ordering::Greater);
        best.insert(at, v);
        best.truncate(k);
        if best.len() == k {
            floor = best[k - 1];
        }
    }
    if best.len() == k {
        floor
    } else {
        f32::NEG_INFINITY
    }
}

/// Integer dot products of `query` with every `dims`-wide row of `codes`, as `f32`,
/// appended to `out`. Compiled for AVX2 when the CPU has it (the loop vectorises to
/// 16-bit multiply-adds).
fn coded_products(query: &[i8], codes: &[i8], dims: usize, out: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU features the function is compiled for were detected.
            unsafe { coded_products_avx2(query, codes, dims, out) };
            return;
        }
    }
    coded_products_portable(query, codes, dims, out);
}

#[inline(always)]
fn coded_products_portable(query: &[i8], codes: &[i8], dims: usize, out: &mut Vec<f32>) {
    out.extend(codes.chunks_exact(dims).map(|row| {
        row.iter()
            .zip(query)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum::<i32>() as f32
    }));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn coded_products_avx2(query: &[i8], codes: &[i8], dims: usize, out: &mut Vec<f32>) {
    coded_products_portable(query, codes, dims, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::Embedding;
    use crate::search::exact_flat;

    /// Seeded unit rows around `clusters` centres, with exact duplicates mixed in (ties).
    fn rows(n: usize, dims: usize, clusters: usize, spread: f32, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        let mut unif = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
        };
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| (0..dims).map(|_| unif()).collect())
            .collect();
        let mut out: Vec<f32> = Vec::with_capacity(n * dims);
        for i in 0..n {
            if i % 17 == 5 {
                let copy = out[(i - 1) * dims..i * dims].to_vec();
                out.extend(copy);
                continue;
            }
            let c = &centres[i % clusters];
            let v = c.iter().map(|x| x + spread * unif()).collect();
            out.extend(Embedding::normalized(v).0);
        }
        out
    }

    #[test]
    fn the_coded_scan_ranks_exactly_as_the_f32_scan() {
        // Given clustered unit rows (tight and loose clusters, duplicate rows, 7 to 64
        // dimensions),
        for (n, dims, spread, seed) in [
            (3000, 64, 0.05, 1),
            (3000, 64, 0.5, 2),
            (500, 7, 0.2, 3),
            (40, 16, 1.0, 4),
        ] {
            let flat = rows(n, dims, 12, spread, seed);
            let scan = Scan::new(flat.clone(), dims);
            assert_eq!(scan.len(), n);
            // when rows and off-grid queries are searched for any k, with or without an
            // excluded row,
            for q in (0..n).step_by(n / 20 + 1) {
                let query = &flat[q * dims..(q + 1) * dims];
                let shifted: Vec<f32> = query.iter().map(|v| v * 0.7 + 0.01).collect();
                for k in [1, 10, 50, n + 3] {
                    for exclude in [None, Some(q as u32)] {
                        // then the answer is the plain scan's, row for row and bit for bit.
                        assert_eq!(
                            scan.nearest(query, k, exclude),
                            exact_flat(&flat, dims, query, k, exclude),
                            "n {n} dims {dims} row {q} k {k}"
                        );
                        assert_eq!(
                            scan.nearest(&shifted, k, exclude),
                            exact_flat(&flat, dims, &shifted, k, exclude),
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn zero_rows_and_zero_queries_are_searched_like_any_other() {
        let dims = 8;
        let mut flat = rows(50, dims, 3, 0.3, 9);
        flat[8..16].fill(0.0);
        let scan = Scan::new(flat.clone(), dims);
        let zero = vec![0.0; dims];
        assert_eq!(
            scan.nearest(&zero, 5, None),
            exact_flat(&flat, dims, &zero, 5, None)
        );
        let q = flat[16..24].to_vec();
        assert_eq!(
            scan.nearest(&q, 60, Some(2)),
            exact_flat(&flat, dims, &q, 60, Some(2))
        );
        assert!(scan.nearest(&q, 0, None).is_empty());
    }

    #[test]
    fn codes_stay_within_their_bound() {
        let values = [0.5, -0.25, 0.0, 0.125, -0.5];
        let mut codes = Vec::new();
        let scale = encode(&values, &mut codes);
        assert_eq!(codes, [127, -64, 0, 32, -127]);
        assert!(residual(&values, &codes, scale) <= scale * (values.len() as f32).sqrt() / 2.0);
    }
}
