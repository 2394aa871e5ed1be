//! 8-bit codes of row-major embeddings, and bounds on how far a coded product can be
//! from the `f32` one. The exact scan ([`crate::search::exact_coded_where`]) computes every
//! row's coded product with the query, keeps the rows whose upper bound reaches the `k`-th
//! best lower bound, and ranks only those in `f32`: the answer is the plain scan's.
//!
//! Coding: row `x ≈ s·c` with `c` in `[-127, 127]` and `s = max|x| / 127`; the query
//! `q ≈ t·d` with `d` in `[-63, 63]`, stored shifted by 64 as unsigned bytes so that one
//! AVX2 `maddubs` (unsigned by signed bytes, pairs summed into 16 bits) never saturates:
//! `2·127·127 < 2^15`. Then `x·q = s·t·(c·d) + s·c·(q - t·d) + (x - s·c)·q`, and by
//! Cauchy-Schwarz the error is at most `s‖c‖·‖q - t·d‖ + ‖x - s·c‖·‖q‖`.
//!
//! Layout: blocks of [`BLOCK`] rows; within a block, for each group of 4 dimensions, the
//! 4 codes of row 0, then of row 1, and so on (64 bytes). One multiply-add of the
//! group's 4 query bytes, broadcast, against those 64 bytes adds a partial product to
//! each of the 16 rows' sums: no sum across lanes is ever needed.

/// Rows per block of codes (and per bound maximum).
pub const BLOCK: usize = 16;

/// Dimensions per group (the bytes one 32-bit lane multiplies and adds).
const GROUP: usize = 4;

/// The shift that makes the query's codes unsigned.
const SHIFT: i32 = 64;

/// Added to every bound: covers the `f32` rounding of the bound's own arithmetic and of
/// the exact product it stands for (at most about `dims · 2^-24` for unit vectors; the
/// slack is [`SLACK`] plus four times that).
const SLACK: f32 = 1e-4;

/// The longest row or query the slack is sized for: unit vectors, with room for their
/// rounding (every embedding of a model, and every query the function makes, is one).
const UNIT: f32 = 1.0 + 1e-3;

/// True when this CPU has a kernel that makes the coded scan faster than the plain one
/// (x86-64 with AVX2; AVX-512 VNNI is used when present). Elsewhere, for example on the
/// arm64 Lambda, the portable kernel is correct but not measured faster, so the exact
/// scan stays in `f32`.
pub fn accelerated() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// 8-bit codes of a row-major array of embeddings, with each row's error terms.
pub struct Codes {
    /// The dimension.
    dims: usize,
    /// Groups of [`GROUP`] dimensions per row (the last padded with zeros).
    groups: usize,
    /// Rows coded.
    rows: usize,
    /// Blocks of [`BLOCK`] rows (the last padded with zero rows), `groups · 64` bytes each.
    codes: Vec<i8>,
    /// Per row, by block (padding rows zero): 64 times the sum of its codes (undoes the
    /// query's shift; exact in `f32`).
    offsets: Vec<[f32; BLOCK]>,
    /// Per row: its scale `s`.
    scales: Vec<[f32; BLOCK]>,
    /// Per row: `s·‖c‖`, the factor of the query's coding error.
    reach: Vec<[f32; BLOCK]>,
    /// Per row: `‖x - s·c‖`, its own coding error.
    residual: Vec<[f32; BLOCK]>,
    /// The longest row's length.
    widest: f32,
    /// Added to every bound ([`SLACK`] plus the rounding of `dims`-long products).
    slack: f32,
}

/// A query coded for one scan.
pub struct CodedQuery {
    /// Per group, its 4 shifted codes as one little-endian word.
    words: Vec<u32>,
    scale: f32,
    /// `‖q - t·d‖`.
    miss: f32,
    /// `‖q‖`.
    norm: f32,
}

/// Bounds of every row's `f32` product with a query, and their maxima per [`BLOCK`].
#[derive(Default)]
pub struct Bounds {
    /// Per row: no more than its product.
    pub lower: Vec<f32>,
    /// Per row: no less than its product.
    pub upper: Vec<f32>,
    /// Per block: the largest `lower`.
    pub block_lower: Vec<f32>,
    /// Per block: the largest `upper`.
    pub block_upper: Vec<f32>,
}

impl Codes {
    /// Codes every `dims`-wide row of `flat`.
    pub fn new(flat: &[f32], dims: usize) -> Codes {
        let groups = dims.div_ceil(GROUP);
        let rows = flat.len().checked_div(dims).unwrap_or(0);
        let block_bytes = groups * GROUP * BLOCK;
        let blocks = rows.div_ceil(BLOCK);
        let mut out = Codes {
            dims,
            groups,
            rows,
            codes: vec![0; blocks * block_bytes],
            offsets: vec![[0.0; BLOCK]; blocks],
            scales: vec![[0.0; BLOCK]; blocks],
            reach: vec![[0.0; BLOCK]; blocks],
            residual: vec![[0.0; BLOCK]; blocks],
            widest: 0.0,
            slack: SLACK + dims as f32 * 4.0 * f32::EPSILON / 2.0,
        };
        for (i, row) in flat.chunks_exact(dims.max(1)).take(rows).enumerate() {
            let scale = row.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
            let (mut sum, mut norm, mut residual, mut length) = (0i32, 0.0f64, 0.0f64, 0.0f64);
            let block = &mut out.codes[(i / BLOCK) * block_bytes..][..block_bytes];
            for (j, &v) in row.iter().enumerate() {
                let c = if scale > 0.0 {
                    (v / scale).round().clamp(-127.0, 127.0)
                } else {
                    0.0
                };
                block[(j / GROUP) * GROUP * BLOCK + (i % BLOCK) * GROUP + j % GROUP] = c as i8;
                sum += c as i32;
                norm += f64::from(c) * f64::from(c);
                let r = f64::from(v) - f64::from(scale) * f64::from(c);
                residual += r * r;
                length += f64::from(v) * f64::from(v);
            }
            let (b, j) = (i / BLOCK, i % BLOCK);
            out.offsets[b][j] = (SHIFT * sum) as f32;
            out.scales[b][j] = scale;
            out.reach[b][j] = (f64::from(scale) * norm.sqrt()) as f32;
            out.residual[b][j] = residual.sqrt() as f32;
            out.widest = out.widest.max(length.sqrt() as f32);
        }
        out
    }

    /// Rows coded.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row is coded.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// True when the bounds hold for `query`: it and every row are unit vectors (up to
    /// rounding), the lengths the slack is sized for. Otherwise scan in `f32`.
    pub fn covers(&self, query: &CodedQuery) -> bool {
        query.norm <= UNIT && self.widest <= UNIT
    }

    /// Codes `query` (its first `dims` values) for [`Codes::bounds`].
    pub fn query(&self, query: &[f32]) -> CodedQuery {
        let query = &query[..self.dims.min(query.len())];
        let scale = query.iter().fold(0.0f32, |m, v| m.max(v.abs())) / (SHIFT - 1) as f32;
        let mut units = vec![SHIFT as u8; self.groups * GROUP];
        let (mut miss, mut norm) = (0.0f64, 0.0f64);
        for (u, &v) in units.iter_mut().zip(query) {
            let d = if scale > 0.0 {
                (v / scale)
                    .round()
                    .clamp(-(SHIFT - 1) as f32, (SHIFT - 1) as f32)
            } else {
                0.0
            };
            *u = (d as i32 + SHIFT) as u8;
            let r = f64::from(v) - f64::from(scale) * f64::from(d);
            miss += r * r;
            norm += f64::from(v) * f64::from(v);
        }
        CodedQuery {
            words: units
                .chunks_exact(GROUP)
                .map(|g| u32::from_le_bytes([g[0], g[1], g[2], g[3]]))
                .collect(),
            scale,
            miss: miss.sqrt() as f32,
            norm: norm.sqrt() as f32,
        }
    }

    /// Each row's coded product with `query` and the most it can be off by, as bounds of
    /// the `f32` product, with their maxima per block (`out` is cleared and refilled).
    pub fn bounds(&self, query: &CodedQuery, out: &mut Bounds) {
        out.lower.clear();
        products(&query.words, &self.codes, self.groups, &mut out.lower);
        out.upper.clear();
        out.upper.resize(out.lower.len(), 0.0);
        out.block_lower.clear();
        out.block_upper.clear();
        #[cfg(target_arch = "x86_64")]
        let done = std::arch::is_x86_feature_detected!("avx2") && {
            // SAFETY: the CPU feature the function is compiled for was detected.
            unsafe { self.limits_avx2(query, out) };
            true
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = false;
        if !done {
            self.limits(query, out);
        }
        out.lower.truncate(self.rows);
        out.upper.truncate(self.rows);
    }

    /// [`Codes::limits`] compiled for AVX2 (eight lanes instead of SSE's four).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn limits_avx2(&self, query: &CodedQuery, out: &mut Bounds) {
        self.limits(query, out);
    }

    /// Turns the integer products in `out.lower` (whole blocks) into both bounds and
    /// their maxima per block.
    #[inline(always)]
    fn limits(&self, query: &CodedQuery, out: &mut Bounds) {
        let Bounds {
            lower,
            upper,
            block_lower,
            block_upper,
        } = out;
        let (t, miss, norm, slack) = (query.scale, query.miss, query.norm, self.slack);
        let blocks = lower
            .as_chunks_mut::<BLOCK>()
            .0
            .iter_mut()
            .zip(upper.as_chunks_mut::<BLOCK>().0)
            .zip(self.offsets.iter().zip(&self.scales))
            .zip(self.reach.iter().zip(&self.residual));
        for (((lo, hi), (offset, scale)), (reach, residual)) in blocks {
            for j in 0..BLOCK {
                // `lo[j]` holds the integer product as f32: exact up to about 1,000
                // dimensions (|p| < 2^24), and its rounding beyond far inside the slack.
                let approx = scale[j] * t * (lo[j] - offset[j]);
                let err = reach[j] * miss + residual[j] * norm + slack;
                lo[j] = approx - err;
                hi[j] = approx + err;
            }
            block_lower.push(most(lo));
            block_upper.push(most(hi));
        }
    }
}

impl Bounds {
    /// The rows whose upper bound is at least `floor`, ascending, appended to `out`.
    pub fn reaching(&self, floor: f32, out: &mut Vec<u32>) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU feature the function is compiled for was detected.
                unsafe { self.reaching_avx2(floor, out) };
                return;
            }
        }
        self.reaching_in(floor, out, |upper| mask_at_least(upper, floor));
    }

    /// [`Bounds::reaching`] with AVX2 comparisons: two compares and two sign masks per
    /// block.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn reaching_avx2(&self, floor: f32, out: &mut Vec<u32>) {
        use std::arch::x86_64::*;
        let at_least = _mm256_set1_ps(floor);
        self.reaching_in(floor, out, |upper| {
            // SAFETY: a block is 16 floats; unaligned loads of its two halves.
            let (a, b) = unsafe {
                (
                    _mm256_loadu_ps(upper.as_ptr()),
                    _mm256_loadu_ps(upper.as_ptr().add(8)),
                )
            };
            let a = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(a, at_least)) as u32;
            let b = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(b, at_least)) as u32;
            a | b << 8
        });
    }

    /// Blocks whose maximum reaches `floor` are compared whole into a bit mask by
    /// `mask_of` (bit `j`: row `j` of the block reaches it); the mask's bits are the rows.
    #[inline(always)]
    fn reaching_in(&self, floor: f32, out: &mut Vec<u32>, mask_of: impl Fn(&[f32; BLOCK]) -> u32) {
        let (blocks, rest) = self.upper.as_chunks::<BLOCK>();
        for (b, (upper, &most)) in blocks.iter().zip(&self.block_upper).enumerate() {
            if most < floor {
                continue;
            }
            let mut mask = mask_of(upper);
            while mask != 0 {
                out.push((b * BLOCK) as u32 + mask.trailing_zeros());
                mask &= mask - 1;
            }
        }
        let start = blocks.len() * BLOCK;
        out.extend(
            (start..)
                .zip(rest)
                .filter(|&(_, &u)| u >= floor)
                .map(|(row, _)| row as u32),
        );
    }
}

/// Bit `j` set when `upper[j] >= floor`.
fn mask_at_least(upper: &[f32; BLOCK], floor: f32) -> u32 {
    upper
        .iter()
        .enumerate()
        .fold(0, |mask, (j, &u)| mask | u32::from(u >= floor) << j)
}

/// The largest of a block's values, as a tree of pairwise maxima (vectorised; the values
/// are never NaN).
#[inline(always)]
fn most(v: &[f32; BLOCK]) -> f32 {
    let mut m = *v;
    let mut width = BLOCK / 2;
    while width > 0 {
        for j in 0..width {
            m[j] = if m[j] > m[j + width] {
                m[j]
            } else {
                m[j + width]
            };
        }
        width /= 2;
    }
    m[0]
}

/// The integer products `Σ (d + 64)·c` of every coded row (padding rows included), as
/// `f32` (exact), appended to `out`.
fn products(words: &[u32], codes: &[i8], groups: usize, out: &mut Vec<f32>) {
    let block_bytes = groups * GROUP * BLOCK;
    if block_bytes == 0 {
        return;
    }
    out.reserve(codes.len() / block_bytes * BLOCK);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512f")
        {
            // SAFETY: the CPU features the kernel is compiled for were detected at run time.
            unsafe { products_vnni(words, codes, block_bytes, out) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            unsafe { products_avx2(words, codes, block_bytes, out) };
            return;
        }
    }
    products_portable(words, codes, block_bytes, out);
}

/// [`products`] in plain integer arithmetic (the reference, and other CPUs).
fn products_portable(words: &[u32], codes: &[i8], block_bytes: usize, out: &mut Vec<f32>) {
    for block in codes.chunks_exact(block_bytes) {
        let mut acc = [0i32; BLOCK];
        for (word, group) in words.iter().zip(block.chunks_exact(GROUP * BLOCK)) {
            let units = word.to_le_bytes();
            for (sum, codes) in acc.iter_mut().zip(group.chunks_exact(GROUP)) {
                for (&u, &c) in units.iter().zip(codes) {
                    *sum += i32::from(u) * i32::from(c);
                }
            }
        }
        out.extend(acc.map(|v| v as f32));
    }
}

/// [`products`] with AVX2: per group, `maddubs` of the broadcast query word against 8
/// rows' 32 bytes (pairs into 16 bits), `madd` by ones (into each row's 32 bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn products_avx2(words: &[u32], codes: &[i8], block_bytes: usize, out: &mut Vec<f32>) {
    use std::arch::x86_64::*;
    let ones = _mm256_set1_epi16(1);
    for block in codes.chunks_exact(block_bytes) {
        let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for (&word, group) in words.iter().zip(block.chunks_exact(GROUP * BLOCK)) {
            let q = _mm256_set1_epi32(word as i32);
            // SAFETY: `group` is 64 bytes; unaligned loads of its two halves.
            let (a, b) = unsafe {
                (
                    _mm256_loadu_si256(group.as_ptr().cast()),
                    _mm256_loadu_si256(group.as_ptr().add(32).cast()),
                )
            };
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), ones));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_maddubs_epi16(q, b), ones));
        }
        let mut sums = [0.0f32; BLOCK];
        // SAFETY: `sums` holds 16 floats; unaligned stores.
        unsafe {
            _mm256_storeu_ps(sums.as_mut_ptr(), _mm256_cvtepi32_ps(lo));
            _mm256_storeu_ps(sums.as_mut_ptr().add(8), _mm256_cvtepi32_ps(hi));
        }
        out.extend(sums);
    }
}

/// [`products`] with AVX-512 VNNI: one `dpbusd` per group multiplies the broadcast query
/// word by 16 rows' 4 bytes and adds each row's sum into its 32-bit lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn products_vnni(words: &[u32], codes: &[i8], block_bytes: usize, out: &mut Vec<f32>) {
    use std::arch::x86_64::*;
    for block in codes.chunks_exact(block_bytes) {
        // Four accumulators: a `dpbusd` waits for the one before it on the same register.
        let (mut a0, mut a1, mut a2, mut a3) = (
            _mm512_setzero_si512(),
            _mm512_setzero_si512(),
            _mm512_setzero_si512(),
            _mm512_setzero_si512(),
        );
        let step = |acc, word: u32, group: &[i8]| {
            // SAFETY: `group` is 64 bytes; an unaligned load.
            let c = unsafe { _mm512_loadu_si512(group.as_ptr().cast()) };
            _mm512_dpbusd_epi32(acc, _mm512_set1_epi32(word as i32), c)
        };
        let mut quads = block.chunks_exact(4 * GROUP * BLOCK);
        let mut rest = words.chunks_exact(4);
        for (w, q) in (&mut rest).zip(&mut quads) {
            let (g0, g) = q.split_at(GROUP * BLOCK);
            let (g1, g) = g.split_at(GROUP * BLOCK);
            let (g2, g3) = g.split_at(GROUP * BLOCK);
            a0 = step(a0, w[0], g0);
            a1 = step(a1, w[1], g1);
            a2 = step(a2, w[2], g2);
            a3 = step(a3, w[3], g3);
        }
        for (&w, g) in rest
            .remainder()
            .iter()
            .zip(quads.remainder().chunks_exact(GROUP * BLOCK))
        {
            a0 = step(a0, w, g);
        }
        let acc = _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3));
        let mut sums = [0.0f32; BLOCK];
        // SAFETY: `sums` holds 16 floats; an unaligned store.
        unsafe { _mm512_storeu_ps(sums.as_mut_ptr(), _mm512_cvtepi32_ps(acc)) };
        out.extend(sums);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::{Embedding, dot};

    fn rows(n: usize, dims: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .flat_map(|_| {
                let v: Vec<f32> = (0..dims)
                    .map(|_| {
                        state = crate::shard::mix64(state.wrapping_add(1));
                        (state % 2001) as f32 / 1000.0 - 1.0
                    })
                    .collect();
                Embedding::normalized(v).0
            })
            .collect()
    }

    #[test]
    fn every_f32_product_lies_within_its_bounds() {
        for dims in [1, 7, 50, 64, 100] {
            let flat = rows(37, dims, dims as u64);
            let codes = Codes::new(&flat, dims);
            assert_eq!(codes.len(), 37);
            let mut b = Bounds::default();
            for q in flat.chunks_exact(dims).take(5) {
                codes.bounds(&codes.query(q), &mut b);
                assert_eq!((b.lower.len(), b.block_upper.len()), (37, 3));
                for (i, row) in flat.chunks_exact(dims).enumerate() {
                    let p = dot(q, row);
                    assert!(b.lower[i] <= p && p <= b.upper[i], "dims {dims} row {i}");
                    assert!(b.block_lower[i / BLOCK] >= b.lower[i]);
                    assert!(b.block_upper[i / BLOCK] >= b.upper[i]);
                    // Tight enough to narrow a scan: well under the spread of cosines.
                    assert!(b.upper[i] - b.lower[i] < 0.1, "dims {dims} row {i}");
                }
            }
        }
    }

    #[test]
    fn the_simd_kernels_agree_with_the_portable_sum() {
        for dims in [3, 64, 70] {
            let flat = rows(53, dims, 3);
            let codes = Codes::new(&flat, dims);
            let q = codes.query(&flat[..dims]);
            let block_bytes = codes.groups * GROUP * BLOCK;
            let mut slow = Vec::new();
            products_portable(&q.words, &codes.codes, block_bytes, &mut slow);
            let mut fast = Vec::new();
            products(&q.words, &codes.codes, codes.groups, &mut fast);
            assert_eq!(fast, slow, "dims {dims}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut avx2 = Vec::new();
                // SAFETY: the feature was detected.
                unsafe { products_avx2(&q.words, &codes.codes, block_bytes, &mut avx2) };
                assert_eq!(avx2, slow, "dims {dims}");
            }
            // And the portable sum is the plain integer product of each row's codes.
            let units: Vec<i32> = q
                .words
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .map(i32::from)
                .collect();
            for (i, row) in flat.chunks_exact(dims).enumerate() {
                let c: Vec<i32> = (0..dims)
                    .map(|j| {
                        let at = (i / BLOCK) * block_bytes + (j / GROUP) * GROUP * BLOCK;
                        i32::from(codes.codes[at + (i % BLOCK) * GROUP + j % GROUP])
                    })
                    .collect();
                assert_eq!(
                    (SHIFT * c.iter().sum::<i32>()) as f32,
                    codes.offsets[i / BLOCK][i % BLOCK]
                );
                let p: i32 = c.iter().zip(&units).map(|(c, u)| c * u).sum();
                assert_eq!(slow[i], p as f32);
                let s = codes.scales[i / BLOCK][i % BLOCK];
                assert!(
                    row.iter()
                        .zip(&c)
                        .all(|(x, &c)| (x - s * c as f32).abs() <= s)
                );
            }
        }
    }

    #[test]
    fn the_rows_reaching_a_floor_are_those_a_plain_filter_keeps() {
        let flat = rows(45, 8, 9);
        let codes = Codes::new(&flat, 8);
        let mut b = Bounds::default();
        codes.bounds(&codes.query(&flat[..8]), &mut b);
        for floor in [-2.0, -0.3, 0.0, 0.2, 0.9, 2.0] {
            let plain: Vec<u32> = (0..45).filter(|&r| b.upper[r as usize] >= floor).collect();
            let mut got = Vec::new();
            b.reaching(floor, &mut got);
            assert_eq!(got, plain, "floor {floor}");
            let mut portable = Vec::new();
            b.reaching_in(floor, &mut portable, |upper| mask_at_least(upper, floor));
            assert_eq!(portable, plain, "floor {floor}");
        }
    }

    #[test]
    fn zero_rows_and_queries_are_coded_without_dividing_by_zero() {
        let codes = Codes::new(&[0.0; 8], 4);
        let mut b = Bounds::default();
        codes.bounds(&codes.query(&[0.0; 4]), &mut b);
        assert_eq!(b.lower.len(), 2);
        assert!(
            b.lower
                .iter()
                .chain(&b.upper)
                .all(|v| v.is_finite() && v.abs() <= codes.slack)
        );
    }
}
