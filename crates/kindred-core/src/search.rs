//! Nearest neighbours within one index: approximate (HNSW) and exact (scan), and the
//! one ranking every answer uses (descending similarity, ties by row).

use std::cell::RefCell;
use std::cmp::Ordering;

use crate::coded::{BLOCK, Bounds, Codes};
use crate::embedding::{dot, dots};

pub use crate::hnsw::Index;

/// One neighbour of a query: a row of the model and its cosine similarity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbour {
    /// Row in the user table (= point in the index).
    pub row: u32,
    /// Cosine similarity to the query, in [-1, 1].
    pub similarity: f32,
}

thread_local! {
    /// Reused buffer of the exact scan's similarities.
    static SIMILARITIES: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// Reused buffers of the coded scan's lower and upper bounds.
    static BOUNDS: RefCell<Bounds> = RefCell::new(Bounds::default());
}

/// Candidates an HNSW search considers per neighbour asked for, at least: a request for
/// more than half the index's `ef_search` widens the search rather than scanning every
/// user (measured in docs/performance.md).
pub const WIDTH_PER_NEIGHBOUR: usize = 2;

/// The `k` users most similar to `query` by the HNSW index, most similar first,
/// leaving out `exclude` (the query user themself). The search considers the index's
/// `ef_search` candidates, or twice `k` when that is more ([`WIDTH_PER_NEIGHBOUR`]).
pub fn approximate(index: &Index, query: &[f32], k: usize, exclude: Option<u32>) -> Vec<Neighbour> {
    approximate_where(index, query, k, |row| Some(row) != exclude)
}

/// [`approximate`] keeping only the points for which `keep(point)` holds.
pub fn approximate_where(
    index: &Index,
    query: &[f32],
    k: usize,
    keep: impl Fn(u32) -> bool,
) -> Vec<Neighbour> {
    let ef = k.saturating_mul(WIDTH_PER_NEIGHBOUR);
    let mut out: Vec<Neighbour> = index.search(query, ef, |found| {
        found
            .iter()
            .filter(|c| keep(c.pid))
            .take(k)
            .map(|c| Neighbour {
                row: c.pid,
                similarity: 1.0 - c.distance,
            })
            .collect()
    });
    sort_neighbours(&mut out);
    out
}

/// The `k` users most similar to `query` by scanning every point (the ground truth for recall).
pub fn exact(index: &Index, query: &[f32], k: usize, exclude: Option<u32>) -> Vec<Neighbour> {
    exact_where(index, query, k, |row| Some(row) != exclude)
}

/// [`exact`] over the points for which `keep(point)` holds.
pub fn exact_where(
    index: &Index,
    query: &[f32],
    k: usize,
    keep: impl Fn(u32) -> bool,
) -> Vec<Neighbour> {
    let mut best = TopK::new(k);
    if k == 0 {
        return best.into_vec();
    }
    for row in 0..index.len() as u32 {
        if keep(row) {
            best.offer(Neighbour {
                row,
                similarity: index.dot(query, row),
            });
        }
    }
    best.into_vec()
}

/// The `k` best neighbours offered so far, in answer order.
pub struct TopK {
    k: usize,
    best: Vec<Neighbour>,
    floor: f32,
}

impl TopK {
    /// An empty ranking that keeps at most `k` neighbours.
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            best: Vec::with_capacity(k + 1),
            floor: f32::NEG_INFINITY,
        }
    }

    /// True when a neighbour of this similarity could enter the ranking (cheap: one
    /// comparison once it is full).
    #[inline]
    pub fn admits(&self, similarity: f32) -> bool {
        self.best.len() < self.k || similarity >= self.floor
    }

    /// Offers a neighbour: kept when it ranks among the best `k`.
    #[inline]
    pub fn offer(&mut self, candidate: Neighbour) {
        if !self.admits(candidate.similarity) {
            return;
        }
        let at = self
            .best
            .partition_point(|n| cmp_neighbours(n, &candidate) == Ordering::Less);
        if at < self.k {
            self.best.insert(at, candidate);
            self.best.truncate(self.k);
            if self.best.len() == self.k {
                self.floor = self.best[self.k - 1].similarity;
            }
        }
    }

    /// The ranking, most similar first.
    pub fn into_vec(self) -> Vec<Neighbour> {
        self.best
    }
}

/// Orders neighbours by descending similarity, ties by row, so answers are stable.
fn cmp_neighbours(a: &Neighbour, b: &Neighbour) -> Ordering {
    b.similarity
        .total_cmp(&a.similarity)
        .then(a.row.cmp(&b.row))
}

fn sort_neighbours(v: &mut [Neighbour]) {
    v.sort_by(cmp_neighbours);
}

/// The `k` users most similar to `query` by scanning a row-major array of `dims`-wide
/// embeddings (row `i` is user row `i`), leaving out `exclude`.
pub fn exact_flat(
    flat: &[f32],
    dims: usize,
    query: &[f32],
    k: usize,
    exclude: Option<u32>,
) -> Vec<Neighbour> {
    exact_flat_where(flat, dims, query, k, |row| Some(row) != exclude)
}

/// [`exact_flat`] over the rows for which `keep(row)` holds.
pub fn exact_flat_where(
    flat: &[f32],
    dims: usize,
    query: &[f32],
    k: usize,
    keep: impl Fn(u32) -> bool,
) -> Vec<Neighbour> {
    let mut best = TopK::new(k);
    if k == 0 || dims == 0 {
        return best.into_vec();
    }
    let similarities = SIMILARITIES.with(|buf| {
        let mut buf = buf.take();
        buf.clear();
        dots(query, flat, dims, &mut buf);
        buf
    });
    for (row, &similarity) in similarities.iter().enumerate() {
        let row = row as u32;
        if best.admits(similarity) && keep(row) {
            best.offer(Neighbour { row, similarity });
        }
    }
    SIMILARITIES.with(|buf| buf.replace(similarities));
    best.into_vec()
}

/// [`exact_flat_where`] narrowed by 8-bit `codes` of the same rows: a row whose coded
/// product's upper bound falls below the `k`-th best lower bound cannot be in the answer;
/// the rest are ranked by their `f32` products. The answer equals [`exact_flat_where`]'s.
pub fn exact_coded_where(
    flat: &[f32],
    codes: &Codes,
    dims: usize,
    query: &[f32],
    k: usize,
    keep: impl Fn(u32) -> bool,
) -> Vec<Neighbour> {
    let mut best = TopK::new(k);
    if k == 0 || dims == 0 {
        return best.into_vec();
    }
    let coded = codes.query(query);
    if !codes.covers(&coded) {
        return exact_flat_where(flat, dims, query, k, keep);
    }
    BOUNDS.with(|bounds| {
        let mut bounds = bounds.borrow_mut();
        codes.bounds(&coded, &mut bounds);
        let floor = kth_lower_bound(&bounds, k, &keep);
        // Rows whose upper bound reaches the floor are ranked by their f32 products: all
        // products first, then the ranking. (Offering each as it is computed, or
        // computing them inside the filtering iterator, measured 4-5% slower.)
        let mut rows: Vec<u32> = Vec::with_capacity(4 * k + 64);
        bounds.reaching(floor, &mut rows);
        let mut candidates: Vec<Neighbour> = rows
            .into_iter()
            .filter(|&row| keep(row))
            .map(|row| Neighbour {
                row,
                similarity: 0.0,
            })
            .collect();
        for c in &mut candidates {
            let at = c.row as usize * dims;
            c.similarity = dot(query, &flat[at..at + dims]);
        }
        for candidate in candidates {
            best.offer(candidate);
        }
    });
    best.into_vec()
}

/// The `k`-th largest lower bound of kept rows (negative infinity when fewer are kept):
/// no row of the answer has a product below it.
///
/// First a guess from the blocks alone: the `k + 1` largest block maxima come from as
/// many blocks, each holding a row at least that high, so the smallest of them (`guess`)
/// is usually below the answer even with the query's own row left out. Only blocks
/// reaching `guess` are read. If they hold `k` kept rows at or above it, the `k`-th of
/// those is the answer (every row not read is below `guess`); otherwise every block is
/// read.
fn kth_lower_bound(bounds: &Bounds, k: usize, keep: impl Fn(u32) -> bool) -> f32 {
    let mut maxima: Vec<f32> = Vec::with_capacity(k + 2);
    for &most in &bounds.block_lower {
        if maxima.len() <= k || most > maxima[k] {
            keep_largest(&mut maxima, most, k + 1);
        }
    }
    if maxima.len() == k + 1 {
        let guess = maxima[k];
        let floor = largest_lower_bounds(bounds, k, guess, &keep);
        if floor >= guess {
            return floor;
        }
    }
    largest_lower_bounds(bounds, k, f32::NEG_INFINITY, &keep)
}

/// The `k`-th largest lower bound among kept rows at or above `least`, reading only the
/// blocks that reach it (negative infinity when fewer than `k` are found).
fn largest_lower_bounds(bounds: &Bounds, k: usize, least: f32, keep: impl Fn(u32) -> bool) -> f32 {
    let mut lows: Vec<f32> = Vec::with_capacity(k + 1);
    let mut floor = f32::NEG_INFINITY;
    for (block, &most) in bounds.block_lower.iter().enumerate() {
        if most < least || (lows.len() == k && most <= floor) {
            continue;
        }
        let start = block * BLOCK;
        for (i, &low) in bounds.lower[start..].iter().take(BLOCK).enumerate() {
            if low >= least && (lows.len() < k || low > floor) && keep((start + i) as u32) {
                keep_largest(&mut lows, low, k);
                if lows.len() == k {
                    floor = lows[k - 1];
                }
            }
        }
    }
    floor
}

/// Inserts `value` into `largest` (descending), keeping at most `n` values.
fn keep_largest(largest: &mut Vec<f32>, value: f32, n: usize) {
    let at = largest.partition_point(|&v| v >= value);
    largest.insert(at, value);
    largest.truncate(n);
}

/// Sorts neighbours from several sources into one ranking (descending similarity, ties
/// by row) and keeps the first `k`.
pub fn merge_ranked(all: &mut Vec<Neighbour>, k: usize) {
    sort_neighbours(all);
    all.truncate(k);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::Embedding;

    fn tiny_index() -> Index {
        let pts = vec![
            Embedding::normalized(vec![1.0, 0.0]),
            Embedding::normalized(vec![0.9, 0.1]),
            Embedding::normalized(vec![0.0, 1.0]),
            Embedding::normalized(vec![-1.0, 0.0]),
        ];
        Index::from_instant_distance(
            instant_distance::Builder::default()
                .seed(1)
                .build_hnsw(pts)
                .0,
        )
        .unwrap()
    }

    #[test]
    fn exact_search_ranks_by_cosine_and_excludes_the_query() {
        let index = tiny_index();
        // Point order inside the index may differ from insertion; find the [1, 0] point.
        let (pid, q) = index.iter().find(|(_, p)| **p == [1.0, 0.0]).unwrap();
        let got = exact(&index, &q, 3, Some(pid));
        assert_eq!(got.len(), 3);
        assert!(got.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        assert!(got.iter().all(|n| n.row != pid));
        assert!((got[0].similarity - Embedding::normalized(vec![0.9, 0.1]).0[0]).abs() < 1e-6);
        assert!((got[2].similarity + 1.0).abs() < 1e-6);
    }

    #[test]
    fn the_flat_scan_agrees_with_the_index_scan() {
        let index = tiny_index();
        let flat: Vec<f32> = index.iter().flat_map(|(_, p)| p.to_vec()).collect();
        assert_eq!(flat, index.values().unwrap());
        for row in 0..4u32 {
            let q = index.point(row);
            assert_eq!(
                exact_flat(&flat, 2, &q, 3, Some(row)),
                exact(&index, &q, 3, Some(row))
            );
        }
    }

    #[test]
    fn the_coded_scan_answers_exactly_as_the_plain_scan_ties_and_exclusions_included() {
        // Given clustered unit rows, some duplicated (tied similarities) and some zero,
        let dims = 24;
        let mut state = 7u64;
        let mut next = || {
            state = crate::shard::mix64(state.wrapping_add(1));
            (state % 10_000) as f32 / 10_000.0 - 0.5
        };
        let centres: Vec<Vec<f32>> = (0..5)
            .map(|_| (0..dims).map(|_| next()).collect())
            .collect();
        let mut flat = Vec::new();
        for i in 0..900 {
            let row: Vec<f32> = match i % 10 {
                0 if i > 0 => flat[(i - 1) * dims..i * dims].to_vec(),
                9 => vec![0.0; dims],
                _ => centres[i % 5].iter().map(|c| c + 0.1 * next()).collect(),
            };
            flat.extend(Embedding::normalized(row).0);
        }
        let codes = Codes::new(&flat, dims);
        // when rows are queried for several k, leaving out the row itself and every 7th,
        for q in (0..900).step_by(37) {
            let query = &flat[q * dims..(q + 1) * dims];
            for k in [1, 10, 50, 899, 1000] {
                let keep = |row: u32| row as usize != q && row % 7 != 3;
                // then the answer is the plain scan's: the same rows, order and similarities,
                assert_eq!(
                    exact_coded_where(&flat, &codes, dims, query, k, keep),
                    exact_flat_where(&flat, dims, query, k, keep),
                    "query {q}, k {k}"
                );
                // also when the best blocks hold no row that may be returned (the floor's
                // guess from block maxima fails and every block is read).
                let far = |row: u32| (row as usize).abs_diff(q) > 300;
                assert_eq!(
                    exact_coded_where(&flat, &codes, dims, query, k, far),
                    exact_flat_where(&flat, dims, query, k, far),
                    "query {q}, k {k}, far rows only"
                );
            }
        }
    }

    #[test]
    fn queries_longer_than_unit_length_are_scanned_in_f32_and_answer_the_same() {
        // Given a zero row among unit rows, and queries far from unit length (a keyed
        // caller of /shard/search may send one), the bounds' slack does not cover them,
        let flat = [0.0, 0.0, 0.0, 0.0, 0.6, 0.8, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let codes = Codes::new(&flat, 4);
        for query in [
            [3e38, -3e38, 1.0, 0.0],
            [1e4, -1e4, 1.0, 0.0],
            [0.5, 0.5, 0.5, 0.5],
        ] {
            let keep = |_| true;
            // so the answer is still the plain scan's.
            assert_eq!(
                exact_coded_where(&flat, &codes, 4, &query, 3, keep),
                exact_flat_where(&flat, 4, &query, 3, keep),
                "{query:?}"
            );
        }
        let huge = codes.query(&[3e38, -3e38, 1.0, 0.0]);
        assert!(!codes.covers(&huge));
        assert!(codes.covers(&codes.query(&[0.5, 0.5, 0.5, 0.5])));
    }

    #[test]
    fn approximate_agrees_with_exact_on_a_tiny_index() {
        let index = tiny_index();
        for (row, q) in index.iter() {
            let (a, e) = (
                approximate(&index, &q, 2, Some(row)),
                exact(&index, &q, 2, Some(row)),
            );
            // The same rows; the index reports 1 - distance, so the last bit may differ.
            let rows = |v: &[Neighbour]| v.iter().map(|n| n.row).collect::<Vec<_>>();
            assert_eq!(rows(&a), rows(&e));
            assert!(
                a.iter()
                    .zip(&e)
                    .all(|(x, y)| (x.similarity - y.similarity).abs() < 1e-6)
            );
        }
    }
}
