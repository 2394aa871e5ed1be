//! The HNSW index as served: instant-distance's graph, decoded from the bytes it stores
//! and searched here.
//!
//! The batch builds the graph with instant-distance (or lays one out in its format,
//! [`crate::graph::assemble`]), and `index.bin` holds it as instant-distance encodes its
//! `Hnsw`. [`Index`] decodes the same bytes field for field (the search width, the points,
//! layer zero with [`ZERO_SLOTS`] neighbour slots per point, the upper layers with
//! [`UPPER_SLOTS`]) and encodes them back unchanged, so the format is instant-distance's
//! (a compacted index, [`Index::compact`], writes its rounded points and layer zero's
//! lists in id order).
//!
//! The search is instant-distance's algorithm: greedy descent through the upper layers
//! from point 0, then a best-first beam of width `ef_search` on layer zero. It differs in
//! how it reads memory: each step asks for all the embeddings it will compare before
//! comparing any, so that at a million users the reads overlap instead of waiting one
//! after another. (One other difference: on an upper layer it moves only to a strictly
//! nearer node, so among exact duplicates it may enter layer zero elsewhere.)

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::embedding::Embedding;
use crate::graph::{UPPER_SLOTS, ZERO_SLOTS};

mod layout;

use layout::{Lists, Points};

/// An HNSW index over user embeddings; point `i` is shard row `i`.
///
/// The fields are instant-distance's `Hnsw`, in its order: the encoded bytes are the same
/// until the index is compacted.
/// In memory the points are one row-major array, not a vector each, and each layer keeps
/// only the slots that name a neighbour (see `layout`).
#[derive(Serialize, Deserialize)]
pub struct Index {
    ef_search: usize,
    points: Points,
    zero: Lists<ZERO_SLOTS>,
    layers: Vec<Lists<UPPER_SLOTS>>,
}

/// A point met by a search: its distance (`1 - cosine`) to the query and its id.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    /// `1 - cosine similarity` to the query.
    pub distance: f32,
    /// The point (shard row).
    pub pid: u32,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.pid.cmp(&other.pid))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A search's working memory, kept per thread and reused.
#[derive(Default)]
struct Scratch {
    /// `visited[p] == stamp`: point `p` was met in the current search.
    visited: Vec<u32>,
    stamp: u32,
    /// Points whose neighbours are still to be read, nearest first.
    frontier: BinaryHeap<Reverse<Candidate>>,
    /// The best `ef` met so far, nearest first.
    nearest: Vec<Candidate>,
}

impl Scratch {
    /// Starts a search over `points` points: nothing is visited.
    fn start(&mut self, points: usize) {
        if self.visited.len() < points {
            self.visited.resize(points, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.visited.fill(0);
            self.stamp = 1;
        }
        self.frontier.clear();
        self.nearest.clear();
    }

    /// Marks `pid` visited; false when it already was.
    #[inline]
    fn visit(&mut self, pid: u32) -> bool {
        let slot = &mut self.visited[pid as usize];
        let new = *slot != self.stamp;
        *slot = self.stamp;
        new
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Index {
    /// Points in the index.
    pub fn len(&self) -> usize {
        self.points.len
    }

    /// True when the index has no points.
    pub fn is_empty(&self) -> bool {
        self.points.len == 0
    }

    /// Values per point (0 for an empty index).
    pub fn dimensions(&self) -> usize {
        self.points.dims
    }

    /// The candidates a search considers at least (the stored `ef_search`).
    pub fn ef_search(&self) -> usize {
        self.ef_search
    }

    /// Point `pid`'s embedding (panics when out of range): borrowed, or decoded once
    /// [`Index::compact`]ed.
    pub fn point(&self, pid: u32) -> Cow<'_, [f32]> {
        self.points.get(pid)
    }

    /// `query · point pid` (panics when `pid` is out of range), with the point as held.
    pub fn dot(&self, query: &[f32], pid: u32) -> f32 {
        self.points.dot(query, pid)
    }

    /// Every point's embedding, row-major: point `i` is `values[i * d..(i + 1) * d]`
    /// for `d` = [`Index::dimensions`]; `None` once [`Index::compact`]ed.
    pub fn values(&self) -> Option<&[f32]> {
        self.points.full()
    }

    /// Every point with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, Cow<'_, [f32]>)> {
        (0..self.points.len as u32).map(|pid| (pid, self.points.get(pid)))
    }

    /// Holds the points as 16-bit fixed point ([`crate::fixed16`]) from now on: half
    /// their memory. Each value moves by at most 1/65,534 of its point's largest, so
    /// searches and the similarities they report are those of the rounded points, close
    /// to but not those of the stored `f32` points; encoding writes the rounded values.
    /// Layer zero's neighbour lists are held sorted by id and delta-coded, about 2 bytes a
    /// neighbour instead of 3: a search meets the same neighbours in another order, which
    /// changes nothing unless distances tie (then it may expand and keep other tied
    /// points), and encoding writes them in that order. Together about 40% less memory.
    pub fn compact(&mut self) {
        self.points.compact();
        self.zero.sort();
    }

    /// True once [`Index::compact`]ed (an index without points never is).
    pub fn is_compact(&self) -> bool {
        self.points.is_compact()
    }

    /// The index instant-distance built: the same graph, through its encoding (the
    /// built index is dropped before the copy is decoded).
    pub fn from_instant_distance(built: instant_distance::Hnsw<Embedding>) -> crate::Result<Index> {
        let bytes = crate::codec::encode("index", &built)?;
        drop(built);
        crate::codec::decode("index", &bytes)
    }

    /// The index of a graph laid out as instant-distance stores it (see
    /// [`crate::graph::Layers`]), built without encoding it; `Err` says what is malformed.
    /// Its neighbour ids are not checked here ([`crate::graph::assemble`] does).
    pub(crate) fn from_layers(layers: &crate::graph::Layers) -> std::result::Result<Index, String> {
        let points = Points::from_rows(layers.points)
            .ok_or_else(|| "points of different lengths".to_owned())?;
        let zero = Lists::from_slots(layers.zero)
            .map_err(|node| format!("layer 0 node {node} has a neighbour after an empty slot"))?;
        let layers_above = layers
            .upper
            .iter()
            .enumerate()
            .map(|(l, slots)| {
                Lists::from_slots(slots).map_err(|node| {
                    format!(
                        "layer {} node {node} has a neighbour after an empty slot",
                        l + 1
                    )
                })
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(Index {
            ef_search: layers.ef_search,
            points,
            zero,
            layers: layers_above,
        })
    }

    /// The `ef` points nearest to `query` that the graph leads to, or the stored
    /// `ef_search` when that is more (fewer when the graph reaches fewer), nearest first,
    /// passed to `found`. The list lives in this thread's reused search memory, so
    /// `found` must not search again.
    pub fn search<T>(&self, query: &[f32], ef: usize, found: impl FnOnce(&[Candidate]) -> T) -> T {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            self.search_with(query, ef.max(self.ef_search).max(1), &mut scratch);
            found(&scratch.nearest)
        })
    }

    fn distance(&self, query: &[f32], pid: u32) -> f32 {
        1.0 - self.points.dot(query, pid)
    }

    fn search_with(&self, query: &[f32], ef: usize, s: &mut Scratch) {
        s.start(self.points.len);
        if self.points.len == 0 {
            return;
        }
        // Greedy descent: on each upper layer, move to the nearest neighbour while one is
        // nearer than the current point.
        let mut at = Candidate {
            distance: self.distance(query, 0),
            pid: 0,
        };
        for layer in self.layers.iter().rev() {
            loop {
                let mut best = at;
                layer.for_each(at.pid, |pid| {
                    let c = Candidate {
                        distance: self.distance(query, pid),
                        pid,
                    };
                    if c < best {
                        best = c;
                    }
                });
                // By id: a NaN distance (from a query that is not finite) equals nothing.
                if best.pid == at.pid {
                    break;
                }
                at = best;
            }
        }
        // Layer zero: best-first search, keeping the `ef` nearest met.
        s.visit(at.pid);
        s.nearest.push(at);
        s.frontier.push(Reverse(at));
        while let Some(Reverse(c)) = s.frontier.pop() {
            if s.nearest.len() >= ef && s.nearest.last().is_some_and(|f| c.distance > f.distance) {
                break;
            }
            // The unvisited neighbours' embeddings are requested from memory together
            // before any is read: at a million users they are far apart, and waiting for
            // each in turn is most of a search's time.
            let mut fresh = [0u32; ZERO_SLOTS];
            let mut n = 0;
            self.zero.for_each(c.pid, |pid| {
                if s.visit(pid) {
                    fresh[n] = pid;
                    n += 1;
                }
            });
            for &pid in &fresh[..n] {
                self.points.prefetch(pid);
            }
            for &pid in &fresh[..n] {
                let new = Candidate {
                    distance: self.distance(query, pid),
                    pid,
                };
                if s.nearest.len() >= ef && s.nearest.last().is_some_and(|f| new >= *f) {
                    continue;
                }
                let at = s.nearest.partition_point(|n| *n < new);
                s.nearest.insert(at, new);
                s.nearest.truncate(ef);
                s.frontier.push(Reverse(new));
                // Its neighbour list is likely read next.
                prefetch(self.zero.bytes(pid));
            }
        }
    }
}

/// Asks the CPU to bring every 64-byte cache line `values` touches into cache (a hint:
/// nothing is read). Elsewhere than x86-64 (the arm64 Lambda) it does nothing.
#[inline(always)]
fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = values.as_ptr() as usize & !63;
        let end = values.as_ptr() as usize + std::mem::size_of_val(values);
        for line in (start..end).step_by(64) {
            // SAFETY: a prefetch reads nothing and cannot fault, whatever the address; SSE
            // is baseline on x86-64.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

#[cfg(test)]
mod tests {
    use super::*;
    use instant_distance::{Builder, Search};

    /// `n` unit points in 8 dimensions, from a seeded generator.
    fn points(n: usize, seed: u64) -> Vec<Embedding> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        (0..n)
            .map(|_| Embedding::normalized((0..8).map(|_| next()).collect()))
            .collect()
    }

    #[test]
    fn the_index_encodes_as_instant_distance_does_and_finds_what_it_finds() {
        // Given an index instant-distance built over 2,000 points,
        let (theirs, _) = Builder::default()
            .seed(7)
            .ef_search(24)
            .build_hnsw(points(2_000, 3));
        let bytes = crate::codec::encode("i", &theirs).unwrap();
        let mut search = Search::default();
        let queries: Vec<Embedding> = points(200, 11)
            .into_iter()
            .chain(theirs.iter().take(50).map(|(_, p)| p.clone()))
            .collect();
        let expected: Vec<Vec<(u32, f32)>> = queries
            .iter()
            .map(|q| {
                theirs
                    .search(q, &mut search)
                    .map(|item| (item.pid.into_inner(), item.distance))
                    .collect()
            })
            .collect();
        // when it is decoded as served,
        let ours = Index::from_instant_distance(theirs).unwrap();
        // then it encodes back to the same bytes,
        assert_eq!(crate::codec::encode("i", &ours).unwrap(), bytes);
        assert_eq!((ours.len(), ours.ef_search()), (2_000, 24));
        // and a search returns instant-distance's candidates, in its order, for queries
        // inside and outside the index,
        let answers = |index: &Index| -> Vec<Vec<(u32, f32)>> {
            queries
                .iter()
                .map(|q| {
                    index.search(&q.0, 0, |found| {
                        found.iter().map(|c| (c.pid, c.distance)).collect()
                    })
                })
                .collect()
        };
        assert_eq!(answers(&ours), expected);
        // also over layer zero's lists sorted by id: without ties, the order a node's
        // neighbours are met in changes nothing.
        let mut sorted = ours;
        assert!(sorted.zero.sort());
        assert_eq!(answers(&sorted), expected);
    }

    #[test]
    fn a_search_returns_ef_search_candidates_or_more_nearest_first_with_their_distances() {
        let (theirs, _) = Builder::default()
            .seed(5)
            .ef_search(16)
            .build_hnsw(points(3_000, 9));
        let index = Index::from_instant_distance(theirs).unwrap();
        let q = &points(1, 99)[0];
        let found: Vec<Candidate> = index.search(&q.0, 1, |f| f.to_vec());
        assert_eq!(found.len(), 16);
        let wide: Vec<Candidate> = index.search(&q.0, 100, |f| f.to_vec());
        assert_eq!(wide.len(), 100);
        assert!(wide.windows(2).all(|w| w[0] < w[1]));
        // The wider beam finds the narrow one's nearest at least.
        assert!(wide[0] <= found[0]);
        assert!(found.windows(2).all(|w| w[0] < w[1]));
        for c in &found {
            let distance = 1.0 - crate::embedding::dot(&q.0, &index.point(c.pid));
            assert!((c.distance - distance).abs() < 1e-6);
        }
    }

    #[test]
    fn a_query_that_is_not_finite_ends_its_search() {
        // A NaN distance equals nothing: the descent must still stop.
        let (theirs, _) = Builder::default().seed(2).build_hnsw(points(2_000, 4));
        let index = Index::from_instant_distance(theirs).unwrap();
        for bad in [f32::NAN, f32::INFINITY] {
            let mut q = vec![0.1; 8];
            q[3] = bad;
            assert!(index.search(&q, 0, |f| f.len()) <= index.ef_search());
        }
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        let (theirs, _) = Builder::default().build_hnsw(Vec::<Embedding>::new());
        let index = Index::from_instant_distance(theirs).unwrap();
        assert!(index.is_empty());
        assert!(index.search(&[1.0; 8], 10, |f| f.is_empty()));
    }
}
