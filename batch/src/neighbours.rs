//! Every point's exact nearest neighbours, found a block of points at a time: the
//! similarities of a block to every point are one matrix product (each point's row is
//! then read once per block instead of once per point), and each row's `k` largest are
//! kept by `largest`. Smoothing and the exact-neighbour graph builder both use it.
//! Where the CPU has AVX-512, the product is never stored: each similarity is compared
//! with its row's floor in registers (`scan`; at 10k points a quarter less time than
//! BLAS's product and the comparisons after it). When a point keeps no more neighbours
//! than it has dimensions, each similarity is computed once for both of its points
//! instead (`half`).

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use kindred_core::embedding::{Embedding, dot, row_major};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2, s};

mod half;
mod scan;

/// Query rows whose similarities to every point are computed together, as one matrix
/// product (`BLOCK x n` scores: 5 MB for a 10k-point model, 10 MB for a 20k group).
/// Blocks start at multiples of it whatever the number of threads, so the results do
/// not depend on the threads.
const BLOCK: usize = 128;

/// `f(i, best)` for every point `i`, with `best` holding its `k` most similar other
/// points as (cosine similarity, index), in no particular order (`f` may reorder it).
/// The results are in point order; the work is spread over `threads` scoped threads.
pub fn map_nearest<T: Send>(
    points: &[Embedding],
    k: usize,
    threads: usize,
    f: impl Fn(usize, &mut Vec<(f32, u32)>) -> T + Sync,
) -> Vec<T> {
    let n = points.len();
    let dims = points.first().map_or(0, |p| p.0.len());
    let flat = row_major(points);
    let all = ArrayView2::from_shape((n, dims), &flat).expect("n rows of dims values");
    let k = k.min(n.saturating_sub(1));
    // Half the products cost more in gathering candidates than they save when a point
    // keeps more neighbours than it has dimensions: at 10k points of 64 dimensions, the
    // graph's 64 took 15% less time, smoothing's 200 the same time and 40 MB more.
    let half = k > 0 && k <= dims;
    let scans = k > 0 && scan::available();
    let floors = if scans {
        scan::floors(&flat, &flat, n, dims, k, threads)
    } else if half {
        half::floors(all, k, threads)
    } else {
        None
    };
    if let Some(floors) = floors {
        if half {
            let candidates = half::candidates(all, &floors, threads);
            return each_block(n, BLOCK, threads, |best: &mut Vec<(f32, u32)>, rows| {
                rows.map(|i| {
                    best.clear();
                    best.extend_from_slice(candidates.of(i));
                    keep_nearest(all, all.row(i), i, k, best);
                    f(i, best)
                })
                .collect()
            });
        }
        return scan_nearest(all, &flat, &floors, |i| i, k, threads, f);
    }
    each_block(n, BLOCK, threads, |scratch: &mut Scratch, rows| {
        // The block's product is written over the previous block's, so no block pays for
        // a fresh allocation of zeroed (and faulted-in) pages.
        let len = rows.len();
        scratch.scores.resize(len * n, 0.0);
        let mut scores = ArrayViewMut2::from_shape((len, n), &mut scratch.scores[..len * n])
            .expect("len rows of n scores");
        general_mat_mul(
            1.0,
            &all.slice(s![rows.clone(), ..]),
            &all.t(),
            0.0,
            &mut scores,
        );
        rows.zip(scores.rows())
            .map(|(i, row)| {
                let row = row.to_slice().expect("the block's scores are row-major");
                largest(row, i, k, &mut scratch.best, &mut scratch.sample);
                f(i, &mut scratch.best)
            })
            .collect()
    })
}

/// Keeps in `best`, the candidates above `query`'s floor, the `k` nearest; when fewer
/// than `k` are above it (a sample is only a sample), the `k` nearest of all the points
/// of `all` but `skip`.
fn keep_nearest(
    all: ArrayView2<f32>,
    query: ArrayView1<f32>,
    skip: usize,
    k: usize,
    best: &mut Vec<(f32, u32)>,
) {
    if best.len() >= k {
        best.select_nth_unstable_by(k - 1, nearest_first);
        best.truncate(k);
    } else {
        let row = all.dot(&query);
        let row = row.as_slice().expect("a fresh vector");
        largest(row, skip, k, best, &mut Vec::new());
    }
}

/// `f(q, best)` for each of the query `rows` (`dims` values a row, as `all`'s points),
/// `best` holding its `k` nearest points of `all` but `skip(q)`, from the [`scan`]'s
/// candidates above `floors[q]` (or its whole row, when fewer are); in query order, over
/// `threads`. Call only where [`scan::available`].
fn scan_nearest<T: Send>(
    all: ArrayView2<f32>,
    rows: &[f32],
    floors: &[f32],
    skip: impl Fn(usize) -> usize + Sync,
    k: usize,
    threads: usize,
    f: impl Fn(usize, &mut Vec<(f32, u32)>) -> T + Sync,
) -> Vec<T> {
    let (n, dims) = all.dim();
    let points = all.as_slice().expect("the points are row-major");
    let packed = scan::Packed::new(points, n, dims);
    each_block(
        floors.len(),
        BLOCK,
        threads,
        |scratch: &mut Scanned, block| {
            scan::scan(rows, &packed, block.clone(), floors, &mut scratch.lists);
            let start = block.start;
            block
                .map(|q| {
                    let (skip, best) = (skip(q), &mut scratch.best);
                    best.clear();
                    best.extend(scratch.lists.of(q - start, skip));
                    let query = ArrayView1::from(&rows[q * dims..][..dims]);
                    keep_nearest(all, query, skip, k, best);
                    f(q, best)
                })
                .collect()
        },
    )
}

/// A scanning worker's buffers ([`scan`]), reused from block to block.
#[derive(Default)]
struct Scanned {
    lists: scan::Lists,
    best: Vec<(f32, u32)>,
}

/// Most scores a block of [`nearest_to`] holds at once (25 MB): fewer queries a block
/// among many points.
const BLOCK_SCORES: usize = BLOCK * 50_000;

/// The `k` points of `flat` (`dims` values a point, row-major) most similar to each of
/// `queries` (`dims` values each), never the query's own index when it names one, as
/// (similarity, index) nearest first; by blocks of matrix products (scanned in registers where
/// the CPU has AVX-512) over `threads`. The exact answers recall is measured against,
/// and the training's other measures' up to the models served by a scan.
pub fn nearest_to(
    flat: &[f32],
    dims: usize,
    queries: &[(&[f32], Option<u32>)],
    k: usize,
    threads: usize,
) -> Vec<Vec<(f32, u32)>> {
    let n = flat.len() / dims.max(1);
    if n == 0 || dims == 0 {
        return vec![Vec::new(); queries.len()];
    }
    let all = ArrayView2::from_shape((n, dims), &flat[..n * dims]).expect("n rows of dims values");
    let k = k.min(n);
    if k > 0 && scan::available() {
        let rows: Vec<f32> = queries
            .iter()
            .flat_map(|&(q, _)| q[..dims].iter().copied())
            .collect();
        if let Some(floors) = scan::floors(&rows, flat, n, dims, k, threads) {
            let skip = |q: usize| queries[q].1.map_or(usize::MAX, |s| s as usize);
            return scan_nearest(all, &rows, &floors, skip, k, threads, |_, best| {
                let mut best = best.clone();
                best.sort_unstable_by(nearest_first);
                best
            });
        }
    }
    let block = (BLOCK_SCORES / n).clamp(1, BLOCK);
    each_block(
        queries.len(),
        block,
        threads,
        |scratch: &mut Scratch, rows| {
            let len = rows.len();
            let mut block_queries = Vec::with_capacity(len * dims);
            for &(q, _) in &queries[rows.clone()] {
                block_queries.extend_from_slice(q);
            }
            let block_queries =
                ArrayView2::from_shape((len, dims), &block_queries).expect("len queries of dims");
            scratch.scores.resize(len * n, 0.0);
            let mut scores = ArrayViewMut2::from_shape((len, n), &mut scratch.scores[..len * n])
                .expect("len rows of n scores");
            general_mat_mul(1.0, &block_queries, &all.t(), 0.0, &mut scores);
            rows.zip(scores.rows())
                .map(|(q, row)| {
                    let row = row.to_slice().expect("the block's scores are row-major");
                    let skip = queries[q].1.map_or(usize::MAX, |s| s as usize);
                    largest(row, skip, k, &mut scratch.best, &mut scratch.sample);
                    let mut best = scratch.best.clone();
                    best.sort_unstable_by(nearest_first);
                    best
                })
                .collect()
        },
    )
}

/// One worker's buffers, reused from block to block.
#[derive(Default)]
struct Scratch {
    /// The block's similarities to every point, row after row.
    scores: Vec<f32>,
    /// The row's largest similarities, as (score, point).
    best: Vec<(f32, u32)>,
    /// The row's sampled scores' keys ([`sampled_floor`]).
    sample: Vec<i32>,
}

/// Fills `best` with the `k` largest of `scores` other than `scores[skip]`, as
/// (score, index), in no particular order (of equal scores, the lowest indices).
/// Scores above a floor from a sample ([`sampled_floor`]) are collected in one pass;
/// when fewer than `k` exceed it, or there is no sample, the floor rises instead:
/// scores above it are collected and whenever `2k` are, the `k` largest are selected
/// and the floor rises to the smallest of them, so most scores cost one comparison.
fn largest(
    scores: &[f32],
    skip: usize,
    k: usize,
    best: &mut Vec<(f32, u32)>,
    sample: &mut Vec<i32>,
) {
    best.clear();
    if k == 0 {
        return;
    }
    if let Some(floor) = sampled_floor(scores, k, sample) {
        collect_above(scores, floor, skip, best);
        // At least `k` above the floor: the `k` largest are among them.
        if best.len() >= k {
            best.select_nth_unstable_by(k - 1, nearest_first);
            best.truncate(k);
            return;
        }
        best.clear();
    }
    let mut floor = f32::NEG_INFINITY;
    for (j, &v) in scores.iter().enumerate() {
        if v > floor && j != skip {
            best.push((v, j as u32));
            if best.len() == 2 * k {
                best.select_nth_unstable_by(k - 1, nearest_first);
                best.truncate(k);
                floor = best[k - 1].0;
            }
        }
    }
    if best.len() > k {
        best.select_nth_unstable_by(k - 1, nearest_first);
        best.truncate(k);
    }
}

/// Scores compared with the floor together: the comparisons of a chunk become a bit mask
/// (one AVX-512 register, or [`above`]).
const CHUNK: usize = 16;

/// Appends to `best` every (score, index) of `scores` above `floor`, except `skip`'s,
/// in index order. Each chunk's comparisons make a bit mask: one AVX-512 comparison,
/// whose selected lanes are compressed and stored whole, where the CPU has it; else
/// [`above`], whose set bits are visited.
fn collect_above(scores: &[f32], floor: f32, skip: usize, best: &mut Vec<(f32, u32)>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU feature the function is compiled for was detected.
        unsafe { collect_above_avx512(scores, floor, skip, best) };
        return;
    }
    collect_above_by(scores, floor, skip, best, above);
}

/// [`collect_above`] without a branch a chunk: each chunk's comparison with the floor is
/// one AVX-512 mask (ordered: false for NaN, as `>` is), and the scores and indices it
/// selects are compressed to the front of a register, stored whole and counted in. The
/// visit of each set bit mispredicted about one chunk in two, and took half of the
/// selection's time at 10k users.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn collect_above_avx512(scores: &[f32], floor: f32, skip: usize, best: &mut Vec<(f32, u32)>) {
    use std::arch::x86_64::*;
    thread_local! {
        /// The selected scores and indices, with room for a whole chunk past the last.
        static SELECTED: std::cell::RefCell<(Vec<f32>, Vec<u32>)> = Default::default();
    }
    SELECTED.with_borrow_mut(|(values, indices)| {
        let room = scores.len() + CHUNK;
        if values.len() < room {
            values.resize(room, 0.0);
            indices.resize(room, 0);
        }
        let at = _mm512_set1_ps(floor);
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let (chunks, tail) = scores.as_chunks::<CHUNK>();
        let mut len = 0;
        for (c, chunk) in chunks.iter().enumerate() {
            // SAFETY: a chunk is 16 floats; `len + 16 <= room` (at most 16 a chunk
            // before the last), so both stores stay inside the buffers.
            unsafe {
                let v = _mm512_loadu_ps(chunk.as_ptr());
                let mask = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, at);
                let index = _mm512_add_epi32(lanes, _mm512_set1_epi32((c * CHUNK) as i32));
                _mm512_storeu_ps(
                    values.as_mut_ptr().add(len),
                    _mm512_maskz_compress_ps(mask, v),
                );
                _mm512_storeu_si512(
                    indices.as_mut_ptr().add(len).cast(),
                    _mm512_maskz_compress_epi32(mask, index),
                );
                len += mask.count_ones() as usize;
            }
        }
        best.extend(
            values[..len]
                .iter()
                .zip(&indices[..len])
                .filter(|&(_, &j)| j as usize != skip)
                .map(|(&v, &j)| (v, j)),
        );
        let start = chunks.len() * CHUNK;
        for (j, &v) in (start..).zip(tail) {
            if v > floor && j != skip {
                best.push((v, j as u32));
            }
        }
    });
}

/// [`collect_above`] with each whole chunk's mask from `mask_of`.
#[inline(always)]
fn collect_above_by(
    scores: &[f32],
    floor: f32,
    skip: usize,
    best: &mut Vec<(f32, u32)>,
    mask_of: impl Fn(&[f32; CHUNK], f32) -> u32,
) {
    let (chunks, tail) = scores.as_chunks::<CHUNK>();
    for (c, chunk) in chunks.iter().enumerate() {
        let mut mask = mask_of(chunk, floor);
        while mask != 0 {
            let lane = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let j = c * CHUNK + lane;
            if j != skip {
                best.push((chunk[lane], j as u32));
            }
        }
    }
    let start = chunks.len() * CHUNK;
    for (j, &v) in (start..).zip(tail) {
        if v > floor && j != skip {
            best.push((v, j as u32));
        }
    }
}

/// The bit mask of `chunk`'s scores above `floor`: bit `lane` for `chunk[lane]`, false
/// for NaN: [`collect_above`]'s masks where the CPU has no AVX-512. On x86-64, four SSE
/// comparisons and their sign masks: the compiler made a comparison and a flag a score
/// of the plain loop, which took a fifth of the smoothing's time.
#[inline]
fn above(chunk: &[f32; CHUNK], floor: f32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_cmpgt_ps, _mm_loadu_ps, _mm_movemask_ps, _mm_set1_ps};
        let mut mask = 0u32;
        // SAFETY: SSE is part of x86-64, and each load reads the 4 floats of `four`.
        unsafe {
            let floor = _mm_set1_ps(floor);
            for (q, four) in chunk.as_chunks::<4>().0.iter().enumerate() {
                let v = _mm_loadu_ps(four.as_ptr());
                mask |= (_mm_movemask_ps(_mm_cmpgt_ps(v, floor)) as u32) << (4 * q);
            }
        }
        mask
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut mask = 0u32;
        for (lane, &v) in chunk.iter().enumerate() {
            mask |= u32::from(v > floor) << lane;
        }
        mask
    }
}

/// Orders (score, index) pairs largest score first, ties by index.
pub fn nearest_first(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Every this many scores is sampled by [`sampled_floor`].
const SAMPLE_STRIDE: usize = 8;

/// A floor that about `1.5 k` of `scores` exceed: the sample of every
/// [`SAMPLE_STRIDE`]-th score is expected to hold `k / SAMPLE_STRIDE` of the `k` largest,
/// so the floor is the sample's `1.5 k / SAMPLE_STRIDE + 5`-th largest (the margin covers
/// the sample's spread and the point's own score). One pass collecting what exceeds it
/// then costs a rarely taken branch per score, where [`largest`]'s rising floor takes
/// many while it rises. `None` when the scores are too few for a sample to say much.
fn sampled_floor(scores: &[f32], k: usize, sample: &mut Vec<i32>) -> Option<f32> {
    if scores.len() < 16 * k {
        return None;
    }
    sample.clear();
    sample.extend(scores.iter().step_by(SAMPLE_STRIDE).map(|&v| order_key(v)));
    floor_of_sample(sample, k)
}

/// [`sampled_floor`]'s floor of the sampled scores, given by their [`order_key`]s
/// (reordered).
fn floor_of_sample(sample: &mut [i32], k: usize) -> Option<f32> {
    let rank = (3 * k).div_ceil(2 * SAMPLE_STRIDE) + 5;
    if rank >= sample.len() {
        return None;
    }
    // Selected as integers: with the floats compared by `total_cmp` instead, the 10k
    // bench set's smoothing stage took 0.118 s, against 0.104 s (medians of 11).
    let at = sample.len() - rank;
    let (_, floor, _) = sample.select_nth_unstable(at);
    Some(from_order_key(*floor))
}

/// A score as the integer `f32::total_cmp` orders it by: the same order.
fn order_key(v: f32) -> i32 {
    let bits = v.to_bits() as i32;
    bits ^ (((bits >> 31) as u32) >> 1) as i32
}

/// The score whose [`order_key`] is `key`.
fn from_order_key(key: i32) -> f32 {
    f32::from_bits(order_key(f32::from_bits(key as u32)) as u32)
}

/// [`map_nearest`] with each point's neighbours sought among its `candidates(i)` only
/// (indices of `points`; `i` itself and repeats are left out): `f(i, best)` with `best`
/// the `k` most similar of them, in no particular order. Costs a product per candidate
/// instead of one per point.
pub fn map_among<'c, T: Send>(
    points: &[Embedding],
    candidates: impl Fn(usize) -> &'c [u32] + Sync,
    k: usize,
    threads: usize,
    f: impl Fn(usize, &mut Vec<(f32, u32)>) -> T + Sync,
) -> Vec<T> {
    each_block(
        points.len(),
        BLOCK,
        threads,
        |best: &mut Vec<(f32, u32)>, rows| {
            rows.map(|i| {
                let own = &points[i].0;
                let fill = |best: &mut Vec<(f32, u32)>| {
                    best.clear();
                    best.extend(
                        candidates(i)
                            .iter()
                            .filter(|&&j| j as usize != i)
                            .map(|&j| (dot(own, &points[j as usize].0), j)),
                    );
                };
                fill(best);
                let offered = best.len();
                // The k nearest selected before they are sorted (at 10k users, 64 of 200:
                // a third of the index stage's time went to sorting all 200).
                if k > 0 && offered > k {
                    best.select_nth_unstable_by(k - 1, nearest_first);
                    best.truncate(k);
                }
                best.sort_unstable_by(nearest_first);
                best.dedup_by_key(|c| c.1);
                if best.len() < k.min(offered) {
                    // A repeated candidate took a place among the k: all of them, sorted.
                    fill(best);
                    best.sort_unstable_by(nearest_first);
                    best.dedup_by_key(|c| c.1);
                }
                best.truncate(k);
                f(i, best)
            })
            .collect()
        },
    )
}

/// `f(scratch, block)` for the blocks of at most `block` points of `0..n`, their
/// results concatenated in order, the blocks shared out over `threads` scoped threads,
/// each with its own `scratch`.
fn each_block<T: Send, S: Default>(
    n: usize,
    block: usize,
    threads: usize,
    f: impl Fn(&mut S, Range<usize>) -> Vec<T> + Sync,
) -> Vec<T> {
    let block = block.max(1);
    let blocks = n.div_ceil(block);
    // Each worker takes the next block not taken, so a worker slowed down (a busy core)
    // holds up the others by one block at most rather than by its share of them.
    let next = AtomicUsize::new(0);
    let (f, next) = (&f, &next);
    let mut done: Vec<(usize, Vec<T>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.clamp(1, blocks.max(1)))
            .map(|_| {
                scope.spawn(move || {
                    let mut scratch = S::default();
                    let mut done = Vec::new();
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= blocks {
                            return done;
                        }
                        let start = b * block;
                        done.push((b, f(&mut scratch, start..(start + block).min(n))));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("neighbour worker panicked"))
            .collect()
    });
    done.sort_unstable_by_key(|&(b, _)| b);
    done.into_iter().flat_map(|(_, results)| results).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::clustered;

    /// Scores a comparison can get wrong: NaN, both zeros, both infinities, and ordinary
    /// ones either side of zero.
    const SPECIALS: [f32; 8] = [
        f32::NAN,
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.5,
        -0.5,
        1.0,
    ];

    #[test]
    fn a_chunks_mask_is_the_plain_comparison_of_each_score() {
        // Given chunks holding NaN, both zeros, both infinities and ordinary scores,
        for floor in [
            0.0,
            -0.0,
            0.5,
            -1.0,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NAN,
        ] {
            for shift in 0..SPECIALS.len() {
                let chunk: [f32; CHUNK] =
                    std::array::from_fn(|lane| SPECIALS[(lane * 3 + shift) % SPECIALS.len()]);
                // when the chunk's mask is taken,
                let mask = above(&chunk, floor);
                // then bit `lane` is set exactly when `chunk[lane] > floor`.
                for (lane, &v) in chunk.iter().enumerate() {
                    assert_eq!(mask >> lane & 1 == 1, v > floor, "{v} > {floor}");
                }
            }
        }
    }

    #[test]
    fn the_scores_collected_above_a_floor_are_those_a_plain_filter_keeps() {
        // Given rows of every length up to three chunks and a tail, holding NaN, both
        // zeros, both infinities and ordinary scores,
        for len in 0..3 * CHUNK + 5 {
            let scores: Vec<f32> = (0..len).map(|j| SPECIALS[(j * 5 + len) % 8]).collect();
            for floor in [0.0, 0.6, -1.0, f32::NEG_INFINITY, f32::NAN] {
                for skip in [0, len / 2, len.saturating_sub(1), usize::MAX] {
                    // when the scores above the floor are collected,
                    let mut got = vec![(1.0, 99)];
                    collect_above(&scores, floor, skip, &mut got);
                    // then they are appended, in index order, exactly where `>` holds and
                    // the index is not skipped,
                    let want: Vec<(f32, u32)> = std::iter::once((1.0, 99))
                        .chain(
                            (0..len)
                                .filter(|&j| scores[j] > floor && j != skip)
                                .map(|j| (scores[j], j as u32)),
                        )
                        .collect();
                    assert_eq!(
                        format!("{got:?}"),
                        format!("{want:?}"),
                        "{len} {floor} {skip}"
                    );
                    // and the portable masks collect the same.
                    let mut portable = vec![(1.0, 99)];
                    collect_above_by(&scores, floor, skip, &mut portable, above);
                    assert_eq!(format!("{portable:?}"), format!("{want:?}"));
                }
            }
        }
    }

    #[test]
    fn the_nearest_are_those_of_a_plain_scan_whatever_the_threads() {
        // Given 300 seeded points of 8 dimensions (more than two blocks),
        let pts = clustered(300, 8, 10, 11);
        // when each point's 7 nearest (from half the products) and 12 nearest (from
        // every row) are found on 1 and on 3 threads,
        for k in [7, 12] {
            let sorted = |i: usize, best: &mut Vec<(f32, u32)>| {
                best.sort_by(|a, b| b.0.total_cmp(&a.0));
                (i, best.iter().map(|&(_, j)| j).collect::<Vec<u32>>())
            };
            let one = map_nearest(&pts, k, 1, sorted);
            let three = map_nearest(&pts, k, 3, sorted);
            // then both equal a plain scan's, in point order, never the point itself,
            assert_eq!(one, three);
            for (i, near) in &one {
                let mut all: Vec<(f32, u32)> = (0..300u32)
                    .filter(|&j| j as usize != *i)
                    .map(|j| (pts[*i].cosine(&pts[j as usize]), j))
                    .collect();
                all.sort_by(|a, b| b.0.total_cmp(&a.0));
                let want: Vec<u32> = all[..k].iter().map(|&(_, j)| j).collect();
                assert_eq!(near, &want, "point {i}, k {k}");
            }
            // and each point's neighbours reach `f` in the same order whatever the threads.
            let raw = |threads| map_nearest(&pts, k, threads, |_, best| best.clone());
            assert_eq!(raw(1), raw(3), "k {k}");
        }
        // and k is capped at the other points.
        let two = map_nearest(&pts[..3], 10, 2, |_, best| best.len());
        assert_eq!(two, vec![2, 2, 2]);
    }

    #[test]
    fn order_keys_order_scores_as_total_cmp_does_and_give_them_back() {
        let mut scores = vec![
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            1.0,
            -1.0,
        ];
        let mut state = 7u32;
        for _ in 0..200 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            scores.push(f32::from_bits(state));
        }
        for &a in &scores {
            assert_eq!(from_order_key(order_key(a)).to_bits(), a.to_bits());
            for &b in &scores {
                assert_eq!(order_key(a).cmp(&order_key(b)), a.total_cmp(&b), "{a} {b}");
            }
        }
    }

    #[test]
    fn the_largest_are_those_of_a_sort_with_ties_and_either_floor() {
        // Given scores with many ties, some rows where the sampled floor holds and some
        // where it cannot (k too large for a sample), and a row that does not end on a
        // whole chunk of scores,
        let mut state = 5u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (n, k) in [
            (2000, 10),
            (2007, 10),
            (2000, 64),
            (2000, 200),
            (500, 40),
            (64, 63),
        ] {
            let scores: Vec<f32> = (0..n).map(|_| (next() % 50) as f32 / 50.0).collect();
            let skip = (next() % n as u64) as usize;
            let mut best = Vec::new();
            largest(&scores, skip, k, &mut best, &mut Vec::new());
            best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            // then they equal the first k of a sort by score, ties by index.
            let mut all: Vec<(f32, u32)> = (0..n as u32)
                .filter(|&j| j as usize != skip)
                .map(|j| (scores[j as usize], j))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            assert_eq!(best, all[..k.min(n - 1)].to_vec(), "{n} scores, k {k}");
        }
    }
}
