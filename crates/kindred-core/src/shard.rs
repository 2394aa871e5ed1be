//! Sharding: which shard a user lives in, and searching several HNSW shards as one index.
//!
//! A sharded model splits its users into `S` shards by a stable hash of the handle
//! ([`shard_of`]); each shard has its own user table and its own HNSW index. A process
//! may hold all shards or only some ([`Shards`] keeps them in one row space: shard
//! after shard, each at its `offset`). A query searches every held shard and merges the
//! per-shard top-k, which is exactly the top-k of the union: the answer equals that of
//! one index over the same users, up to each shard's ANN recall.

use std::borrow::Cow;

use rayon::prelude::*;

use crate::coded::{self, Codes};
use crate::delta::Delta;
use crate::embedding::dot;
use crate::error::{Error, Result};
use crate::search::{self, Index, Neighbour, TopK, merge_ranked};

/// The shard of a handle among `count` shards: SplitMix64's finaliser of the handle,
/// modulo `count`. Stable across builds, platforms and versions (the format depends on it).
pub fn shard_of(handle: u64, count: u32) -> u32 {
    (mix64(handle) % u64::from(count.max(1))) as u32
}

/// SplitMix64's output function: a bijective, well-spread 64-bit mix.
pub fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One shard as listed in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// These shard numbers; each must exist in the version.
    Listed(Vec<u32>),
    /// Group `group` of `groups`: every shard `s` with `s mod groups == group`, whatever
    /// the version's shard count, so `groups` processes together always serve every shard
    /// even when the batch derives another count. When the version has fewer shards than
    /// `group + 1`, the group serves shard `group mod count` (a replica) instead of
    /// nothing.
    Group {
        /// This process's group, below `groups`.
        group: u32,
        /// How many groups share the shards.
        groups: u32,
    },
}

impl Selection {
    /// Parses `0,2,5-7` (listed shards) or `1/4` (group 1 of 4).
    pub fn parse(text: &str) -> std::result::Result<Selection, String> {
        match text.split_once('/') {
            Some((g, n)) => {
                let number = |s: &str| {
                    s.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("{s:?} in {text:?} is not a number"))
                };
                let (group, groups) = (number(g)?, number(n)?);
                if groups == 0 || group >= groups {
                    return Err(format!(
                        "group {group} of {groups}: the group must be below the number of groups"
                    ));
                }
                Ok(Selection::Group { group, groups })
            }
            None => parse_selection(text).map(Selection::Listed),
        }
    }

    /// The shard numbers selected of a version with `count` shards (sorted); `Err` names
    /// a listed shard the version does not have.
    pub fn resolve(&self, count: u32) -> std::result::Result<Vec<u32>, u32> {
        match self {
            Selection::Listed(list) => match list.iter().find(|&&s| s >= count) {
                Some(&s) => Err(s),
                None => Ok(list.clone()),
            },
            // Only `parse` checks this; a hand-built group out of range selects nothing.
            Selection::Group { group, groups } if group >= groups => Err(*group),
            Selection::Group { group, groups } if *group < count => {
                Ok((*group..count).step_by(*groups as usize).collect())
            }
            Selection::Group { group, .. } => Ok(vec![group % count.max(1)]),
        }
    }
}

impl From<Vec<u32>> for Selection {
    fn from(list: Vec<u32>) -> Selection {
        Selection::Listed(list)
    }
}

impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selection::Listed(list) => {
                let parts: Vec<String> = list.iter().map(u32::to_string).collect();
                f.write_str(&parts.join(","))
            }
            Selection::Group { group, groups } => write!(f, "{group}/{groups}"),
        }
    }
}

/// Parses a shard list such as `0,2,5-7` (sorted, deduplicated).
pub fn parse_selection(text: &str) -> std::result::Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let number = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("{s:?} is not a shard number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("range {part:?} runs backwards"));
                }
                if b - a > 65_536 {
                    return Err(format!("range {part:?} is too long"));
                }
                out.extend(a..=b);
            }
            None => out.push(number(part)?),
        }
    }
    if out.is_empty() {
        return Err("no shard given".into());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// One loaded shard: its index, its delta, and where its rows start in the model's row
/// space (the index's points first, then the delta's users).
pub struct Shard {
    /// Shard number in the model.
    pub id: u32,
    /// Model row of the shard's point 0.
    pub offset: u32,
    /// The shard's HNSW index.
    pub index: Index,
    /// Rows: the index's points plus the delta's users.
    len: u32,
    /// The index's points (rows `0..base` of the shard).
    base: u32,
    /// Set when queries scan the index's points exactly (small models only).
    flat: Option<Flat>,
    /// Users folded in since training and the index points they retire.
    fresh: Option<Fresh>,
}

/// What an exact scan of a shard's index points ([`Index::values`]) uses besides them:
/// where the CPU makes them pay ([`coded::accelerated`]), their 8-bit codes, which
/// narrow [`Shards::nearest`]'s scan to the rows that can rank.
struct Flat {
    codes: Option<Codes>,
}

/// A shard's delta as searched: always scanned exactly.
struct Fresh {
    /// The delta users' embeddings, row-major.
    flat: Vec<f32>,
    /// The delta's users.
    users: u32,
    /// `retired[p]`: index point `p` is superseded.
    retired: Vec<bool>,
    retired_count: u32,
}

impl Fresh {
    /// The embedding of the delta's user `i`.
    fn point(&self, i: u32, dims: usize) -> &[f32] {
        let start = i as usize * dims;
        &self.flat[start..start + dims]
    }
}

/// Which search a shard runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The exact scan when the shard is scanned ([`Shards::is_exact`]), the index otherwise.
    Nearest,
    /// The index only.
    Approximate,
    /// A scan of every point.
    Exact,
}

impl Shard {
    /// Rows in the shard (index points and delta users, retired points included).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the shard has no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Users a search can return: rows less retired points.
    pub fn live(&self) -> usize {
        self.len as usize - self.fresh.as_ref().map_or(0, |f| f.retired_count as usize)
    }

    /// Index points (rows `0..base_len()` of the shard; the delta's users follow).
    pub fn base_len(&self) -> usize {
        self.base as usize
    }

    /// The index points the delta retires, ascending (shard-local).
    pub fn retired(&self) -> Vec<u32> {
        self.fresh.as_ref().map_or_else(Vec::new, |f| {
            (0..self.base).filter(|&p| f.retired[p as usize]).collect()
        })
    }

    /// True when shard-local row `local` is an index point retired by the delta.
    pub fn is_retired(&self, local: u32) -> bool {
        self.fresh
            .as_ref()
            .is_some_and(|f| f.retired.get(local as usize).copied().unwrap_or(false))
    }

    fn local(&self, row: Option<u32>) -> Option<u32> {
        row.and_then(|r| r.checked_sub(self.offset))
            .filter(|&l| l < self.len)
    }

    fn globalise(&self, found: Vec<Neighbour>) -> impl Iterator<Item = Neighbour> + '_ {
        found.into_iter().map(|n| Neighbour {
            row: n.row + self.offset,
            similarity: n.similarity,
        })
    }

    /// The shard's `k` best rows (shard-local) for `query`, never `excluded` nor a
    /// retired point: the index searched or its points scanned, by `mode`; the delta scanned.
    fn search(
        &self,
        dims: usize,
        query: &[f32],
        k: usize,
        excluded: Option<u32>,
        mode: Mode,
    ) -> Vec<Neighbour> {
        let keep = |row: u32| Some(row) != excluded && !self.is_retired(row);
        // A scanned shard's points are never compacted.
        let flat = self.flat.as_ref().zip(self.index.values());
        let mut found = match (mode, flat) {
            (Mode::Approximate, _) => search::approximate_where(&self.index, query, k, keep),
            (Mode::Exact, Some((_, values)))
            | (Mode::Nearest, Some((Flat { codes: None }, values))) => {
                search::exact_flat_where(values, dims, query, k, keep)
            }
            (Mode::Nearest, Some((Flat { codes: Some(codes) }, values))) => {
                search::exact_coded_where(values, codes, dims, query, k, keep)
            }
            (Mode::Exact, None) => search::exact_where(&self.index, query, k, keep),
            (Mode::Nearest, None) => {
                let found = search::approximate_where(&self.index, query, k, keep);
                // The search considers `ef_search` candidates or twice `k`, fewer usable
                // ones when some are retired: a shortfall is made up by a scan.
                let retired = self.fresh.as_ref().map_or(0, |f| f.retired_count as usize);
                let excluded_here = excluded.is_some_and(|e| e < self.base && !self.is_retired(e));
                let possible = k.min(self.base as usize - retired - usize::from(excluded_here));
                if found.len() < possible {
                    search::exact_where(&self.index, query, k, keep)
                } else {
                    found
                }
            }
        };
        if let Some(fresh) = &self.fresh {
            let base = self.base;
            let extra = search::exact_flat_where(&fresh.flat, dims, query, k, |r| {
                Some(r + base) != excluded
            });
            found.extend(extra.into_iter().map(|n| Neighbour {
                row: n.row + base,
                similarity: n.similarity,
            }));
            merge_ranked(&mut found, k);
        }
        found
    }

    /// Every live (shard-local row, embedding), in row order: the index points less the
    /// retired ones, then the delta's users.
    fn live_points(&self, dims: usize) -> impl Iterator<Item = (u32, Cow<'_, [f32]>)> + '_ {
        let fresh = self.fresh.iter().flat_map(move |f| {
            (0..f.users).map(move |i| (self.base + i, Cow::Borrowed(f.point(i, dims))))
        });
        self.index
            .iter()
            .filter(move |&(local, _)| !self.is_retired(local))
            .chain(fresh)
    }

    /// Exact answers (shard-local rows) to several queries in one pass over the shard's
    /// live rows: each row is read once for all of them, so a batch costs arithmetic
    /// rather than one read of every embedding per query. `queries` pair an embedding
    /// with the model row it must not return.
    fn exact_batch(
        &self,
        dims: usize,
        queries: &[(&[f32], Option<u32>)],
        k: usize,
    ) -> Vec<Vec<Neighbour>> {
        let excluded: Vec<Option<u32>> = queries.iter().map(|&(_, e)| self.local(e)).collect();
        let mut tops: Vec<TopK> = queries.iter().map(|_| TopK::new(k)).collect();
        let mut visit = |row: u32, point: &[f32]| {
            for ((query, _), (top, &excluded)) in queries.iter().zip(tops.iter_mut().zip(&excluded))
            {
                let similarity = dot(query, point);
                if top.admits(similarity) && Some(row) != excluded {
                    top.offer(Neighbour { row, similarity });
                }
            }
        };
        for (row, point) in self.live_points(dims) {
            visit(row, &point);
        }
        tops.into_iter().map(TopK::into_vec).collect()
    }
}

/// The shards a process holds, searched as one index over one row space.
pub struct Shards {
    shards: Vec<Shard>,
    len: usize,
    dims: usize,
}

impl Shards {
    /// Puts shards into one row space, in the given order. With `exact`,
    /// [`Shards::nearest`] scans each shard's points (and their 8-bit codes, built here)
    /// instead of searching its index.
    pub fn new(parts: Vec<(u32, Index)>, dims: usize, exact: bool) -> Result<Shards> {
        let parts = parts
            .into_iter()
            .map(|(id, index)| (id, index, Delta::default()))
            .collect();
        Shards::with_deltas(parts, dims, exact)
    }

    /// [`Shards::new`] for shards with deltas ([`Delta`], checked here): each shard's rows
    /// are its index points, then its delta's users.
    pub fn with_deltas(
        parts: Vec<(u32, Index, Delta)>,
        dims: usize,
        exact: bool,
    ) -> Result<Shards> {
        let mut shards = Vec::with_capacity(parts.len());
        let mut offset: u64 = 0;
        for (id, index, delta) in parts {
            if !index.is_empty() && index.dimensions() != dims {
                return Err(Error::InvalidVecDimension {
                    expected: dims,
                    received: index.dimensions(),
                });
            }
            let base = u32::try_from(index.len())
                .map_err(|_| Error::Inconsistent("more than 2^32 users".into()))?;
            delta.validate_points(base as usize, dims)?;
            let flat = index.values().filter(|_| exact).map(|values| Flat {
                codes: coded::accelerated().then(|| Codes::new(values, dims)),
            });
            let len = u64::from(base) + delta.points.len() as u64;
            if offset + len > u64::from(u32::MAX) {
                return Err(Error::Inconsistent("more than 2^32 users".into()));
            }
            let fresh = (!delta.retired.is_empty() || !delta.points.is_empty()).then(|| {
                let mut retired = vec![false; base as usize];
                for &r in &delta.retired {
                    retired[r as usize] = true;
                }
                Fresh {
                    flat: crate::embedding::row_major(&delta.points),
                    users: delta.points.len() as u32,
                    retired,
                    retired_count: delta.retired.len() as u32,
                }
            });
            shards.push(Shard {
                id,
                offset: offset as u32,
                index,
                len: len as u32,
                base,
                flat,
                fresh,
            });
            offset += len;
        }
        Ok(Shards {
            shards,
            len: offset as usize,
            dims,
        })
    }

    /// The shards, in row order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Rows over all shards (retired index points included: see [`Shard::live`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no shard holds a row.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Embedding dimension.
    pub fn dimensions(&self) -> usize {
        self.dims
    }

    /// Stops scanning (drops the 8-bit codes), so that queries search the HNSW indexes at any size
    /// (deltas are still scanned).
    pub fn index_only(&mut self) {
        for s in &mut self.shards {
            s.flat = None;
        }
    }

    /// True when queries scan embeddings exactly instead of searching the indexes.
    pub fn is_exact(&self) -> bool {
        self.shards.iter().all(|s| s.flat.is_some())
    }

    /// The shard holding `row`.
    pub fn shard_of_row(&self, row: u32) -> &Shard {
        let i = self.shards.partition_point(|s| s.offset <= row);
        &self.shards[i.saturating_sub(1)]
    }

    /// True when `row` is an index point retired by its shard's delta.
    pub fn is_retired(&self, row: u32) -> bool {
        let s = self.shard_of_row(row);
        s.is_retired(row - s.offset)
    }

    /// The embedding at model row `row` (panics when out of range): borrowed, or decoded
    /// from 16-bit codes ([`Shards::compact`]).
    pub fn embedding(&self, row: u32) -> Cow<'_, [f32]> {
        let s = self.shard_of_row(row);
        let local = row - s.offset;
        match &s.fresh {
            Some(f) if local >= s.base => Cow::Borrowed(f.point(local - s.base, self.dims)),
            _ => s.index.point(local),
        }
    }

    /// Holds the index points of every shard searched by its graph as 16-bit fixed point
    /// ([`Index::compact`]): half the embeddings' memory for a large model, whose searches
    /// then rank by the rounded points. Shards scanned exactly, and the users a delta
    /// adds, keep their `f32` values.
    pub fn compact(&mut self) {
        for s in &mut self.shards {
            if s.flat.is_none() {
                s.index.compact();
            }
        }
    }

    /// Every live (row, embedding), in row order: retired index points are left out.
    pub fn iter(&self) -> impl Iterator<Item = (u32, Cow<'_, [f32]>)> + '_ {
        self.shards.iter().flat_map(|s| {
            s.live_points(self.dims)
                .map(move |(local, p)| (local + s.offset, p))
        })
    }

    /// The `k` rows most similar to `query`, never `exclude`: an exact scan when the
    /// shards are scanned, the HNSW indexes otherwise; per-shard results merged.
    /// A shard whose index returns fewer than it could (retired points among its
    /// candidates, or a graph that reaches too few) is scanned exactly instead, so the
    /// merge never misses what one index would have fallen back to. Deltas are scanned.
    pub fn nearest(&self, query: &[f32], k: usize, exclude: Option<u32>) -> Vec<Neighbour> {
        self.merge(k, |s| {
            s.search(self.dims, query, k, s.local(exclude), Mode::Nearest)
        })
    }

    /// The `k` rows most similar to `query` by the HNSW indexes (never a flat scan; the
    /// deltas are scanned).
    pub fn approximate(&self, query: &[f32], k: usize, exclude: Option<u32>) -> Vec<Neighbour> {
        self.merge(k, |s| {
            s.search(self.dims, query, k, s.local(exclude), Mode::Approximate)
        })
    }

    /// The `k` rows most similar to `query` by scanning every point (the ground truth).
    pub fn exact(&self, query: &[f32], k: usize, exclude: Option<u32>) -> Vec<Neighbour> {
        self.merge(k, |s| {
            s.search(self.dims, query, k, s.local(exclude), Mode::Exact)
        })
    }

    /// [`Shards::exact`] for several queries at once, each paired with the row it must
    /// not return; the same answers, with every embedding read once per batch instead of
    /// once per query (for measuring recall over a sample).
    pub fn exact_batch(&self, queries: &[(&[f32], Option<u32>)], k: usize) -> Vec<Vec<Neighbour>> {
        let per_shard: Vec<Vec<Vec<Neighbour>>> = self
            .shards
            .par_iter()
            .map(|s| {
                let found = s.exact_batch(self.dims, queries, k);
                found
                    .into_iter()
                    .map(|f| s.globalise(f).collect())
                    .collect()
            })
            .collect();
        (0..queries.len())
            .map(|q| {
                let mut all: Vec<Neighbour> = per_shard
                    .iter()
                    .flat_map(|s| s[q].iter().copied())
                    .collect();
                merge_ranked(&mut all, k);
                all
            })
            .collect()
    }

    /// Top `k` of the union of every shard's answer, ranked as one answer. Several
    /// shards are searched in parallel on rayon's pool (a query's latency is then about
    /// that of the slowest shard, given as many cores as shards).
    fn merge(&self, k: usize, search: impl Fn(&Shard) -> Vec<Neighbour> + Sync) -> Vec<Neighbour> {
        if self.shards.len() == 1 {
            let s = &self.shards[0];
            return s.globalise(search(s)).collect();
        }
        let mut all: Vec<Neighbour> = self
            .shards
            .par_iter()
            .map(|s| s.globalise(search(s)).collect::<Vec<_>>())
            .flatten_iter()
            .collect();
        merge_ranked(&mut all, k);
        all
    }

    /// Mean recall@k of [`Shards::approximate`] against [`Shards::exact`] over `rows`;
    /// answers tied with the k-th exact similarity count as found.
    pub fn recall_at_k(&self, rows: &[u32], k: usize) -> f64 {
        if rows.is_empty() {
            return 1.0;
        }
        let (mut found, mut wanted) = (0usize, 0usize);
        // Exact answers in batches: one read of every embedding per 64 queries.
        for batch in rows.chunks(64) {
            let embeddings: Vec<Cow<'_, [f32]>> =
                batch.iter().map(|&r| self.embedding(r)).collect();
            let queries: Vec<(&[f32], Option<u32>)> = embeddings
                .iter()
                .zip(batch)
                .map(|(e, &r)| (&**e, Some(r)))
                .collect();
            let (f, w) = self.found_of(batch, &self.exact_batch(&queries, k), k);
            found += f;
            wanted += w;
        }
        found as f64 / wanted.max(1) as f64
    }

    /// How many of `truths` (each of `rows`' exact `k` nearest other rows, nearest first)
    /// the indexes return, and how many there are: [`Shards::recall_at_k`]'s count, for
    /// exact answers found elsewhere (the training job's matrix products). A returned row
    /// as similar as the last exact one counts (ties may be broken either way).
    pub fn found_of(&self, rows: &[u32], truths: &[Vec<Neighbour>], k: usize) -> (usize, usize) {
        let (mut found, mut wanted) = (0usize, 0usize);
        for (&row, truth) in rows.iter().zip(truths) {
            let got = self.approximate(&self.embedding(row), k, Some(row));
            wanted += truth.len();
            let kth = truth.last().map_or(f32::INFINITY, |n| n.similarity);
            found += got
                .iter()
                .filter(|a| truth.iter().any(|t| t.row == a.row) || a.similarity >= kth - 1e-6)
                .count()
                .min(truth.len());
        }
        (found, wanted)
    }

    /// Cosine similarity of two rows.
    pub fn similarity(&self, a: u32, b: u32) -> f32 {
        dot(&self.embedding(a), &self.embedding(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::Embedding;

    fn points(n: usize, seed: u64) -> Vec<Embedding> {
        (0..n as u64)
            .map(|i| {
                let v = (0..8)
                    .map(|d| (mix64(seed ^ (i * 8 + d)) % 1000) as f32 / 1000.0 - 0.5)
                    .collect();
                Embedding::normalized(v)
            })
            .collect()
    }

    fn build(points: Vec<Embedding>) -> Index {
        Index::from_instant_distance(
            instant_distance::Builder::default()
                .seed(7)
                .build_hnsw(points)
                .0,
        )
        .unwrap()
    }

    #[test]
    fn the_hash_is_stable_and_spreads_handles_evenly() {
        // Pinned values: the shard of a handle is part of the model format.
        assert_eq!(mix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(shard_of(1, 1), 0);
        let mut counts = [0u32; 8];
        for h in 0..80_000u64 {
            counts[shard_of(h, 8) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn selections_parse_ranges_and_refuse_nonsense() {
        assert_eq!(parse_selection("3, 0-2,2").unwrap(), vec![0, 1, 2, 3]);
        assert!(parse_selection("").is_err());
        assert!(parse_selection("2-1").is_err());
        assert!(parse_selection("a").is_err());
    }

    #[test]
    fn groups_cover_every_shard_of_any_count_exactly_once_or_replicate() {
        // Given 4 groups, whatever shard count the batch derives,
        for count in 1..=13u32 {
            let groups: Vec<Vec<u32>> = (0..4)
                .map(|g| {
                    Selection::parse(&format!("{g}/4"))
                        .unwrap()
                        .resolve(count)
                        .unwrap()
                })
                .collect();
            // then every shard is served, every group serves something,
            let mut all: Vec<u32> = groups.iter().flatten().copied().collect();
            all.sort_unstable();
            assert!(groups.iter().all(|g| !g.is_empty()), "{count}: {groups:?}");
            all.dedup();
            assert_eq!(all, (0..count).collect::<Vec<_>>(), "{count}: {groups:?}");
            // and with at least as many shards as groups no shard is served twice.
            if count >= 4 {
                assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), count as usize);
            }
        }
        assert_eq!(
            Selection::parse("1/4").unwrap().resolve(10).unwrap(),
            [1, 5, 9]
        );
        assert_eq!(Selection::parse("3/4").unwrap().resolve(2).unwrap(), [1]);
        assert_eq!(Selection::parse("0-2").unwrap().resolve(2), Err(2));
        let bad = Selection::Group {
            group: 1,
            groups: 0,
        };
        assert_eq!(bad.resolve(4), Err(1));
        for bad in ["4/4", "1/0", "a/2", "1/b", "/"] {
            assert!(Selection::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Selection::parse("2/8").unwrap().to_string(), "2/8");
        assert_eq!(Selection::parse("5-6,1").unwrap().to_string(), "1,5,6");
    }

    #[test]
    fn sharded_exact_search_equals_one_scan_over_all_points() {
        // Given 600 points, once as one shard and once split into three,
        let pts = points(600, 11);
        let whole = Shards::new(vec![(0, build(pts.clone()))], 8, false).unwrap();
        let mut parts = vec![Vec::new(); 3];
        for p in &pts {
            parts[(mix64(p.0[0].to_bits() as u64) % 3) as usize].push(p.clone());
        }
        let split = Shards::new(
            parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| (i as u32, build(p)))
                .collect(),
            8,
            false,
        )
        .unwrap();
        assert_eq!(split.len(), 600);
        // when the same query runs against both,
        for q in points(20, 99) {
            let q = &q.0[..];
            let a: Vec<f32> = whole
                .exact(q, 10, None)
                .iter()
                .map(|n| n.similarity)
                .collect();
            let b: Vec<f32> = split
                .exact(q, 10, None)
                .iter()
                .map(|n| n.similarity)
                .collect();
            // then the exact answers are the same ranking of the same similarities,
            assert_eq!(a, b);
            // (in a batch too, with a row excluded),
            let batch = split.exact_batch(&[(q, None), (q, Some(17))], 10);
            assert_eq!(batch[0], split.exact(q, 10, None));
            assert_eq!(batch[1], split.exact(q, 10, Some(17)));
            // and each returned row's embedding has the similarity reported.
            for n in split.approximate(q, 10, None) {
                assert!((dot(&split.embedding(n.row), q) - n.similarity).abs() < 1e-6);
            }
        }
        // The approximate search over shards keeps a high recall,
        let rows: Vec<u32> = (0..600).step_by(7).collect();
        assert!(split.recall_at_k(&rows, 10) > 0.95);
        // and a row excluded is never returned, in whichever shard it lives.
        for row in [0u32, 250, 599] {
            let q = &*split.embedding(row);
            assert!(split.nearest(q, 10, Some(row)).iter().all(|n| n.row != row));
            assert_eq!(split.shard_of_row(row).id, split.shard_of_row(row).id);
        }
    }

    #[test]
    fn compacting_leaves_scanned_shards_and_fresh_users_exact_and_moves_indexed_points_little() {
        let pts = points(400, 5);
        let fresh = points(30, 6);
        let delta = Delta {
            retired: vec![3],
            users: Vec::new(),
            points: fresh.clone(),
        };
        for exact in [true, false] {
            let mut shards =
                Shards::with_deltas(vec![(0, build(pts.clone()), delta.clone())], 8, exact)
                    .unwrap();
            let stored: Vec<Vec<f32>> = (0..430).map(|r| shards.embedding(r).to_vec()).collect();
            shards.compact();
            let index = &shards.shards()[0].index;
            assert_eq!(
                (index.is_compact(), index.values().is_some()),
                (!exact, exact)
            );
            for (row, stored) in stored.iter().enumerate() {
                let now = shards.embedding(row as u32);
                if exact || row >= 400 {
                    assert_eq!(*now, stored[..], "row {row}");
                } else {
                    let moved = now.iter().zip(stored).map(|(a, b)| (a - b).abs());
                    assert!(moved.fold(0.0, f32::max) <= 1.0 / 65_000.0, "row {row}");
                }
            }
            for q in points(15, 77) {
                let q = &q.0[..];
                let mut truth: Vec<Neighbour> = (0..430u32)
                    .filter(|&row| row != 3)
                    .map(|row| Neighbour {
                        row,
                        similarity: dot(q, &stored[row as usize]),
                    })
                    .collect();
                merge_ranked(&mut truth, 10);
                let near = shards.nearest(q, 10, None);
                // Similarities are those of the points as held, close to the stored ones,
                for n in &near {
                    assert!((dot(q, &shards.embedding(n.row)) - n.similarity).abs() < 1e-6);
                    assert!((dot(q, &stored[n.row as usize]) - n.similarity).abs() < 1e-4);
                }
                // and the answers are the exact ones, or nearly.
                let found = near.iter().filter(|n| truth.iter().any(|t| t.row == n.row));
                assert!(found.count() >= 9, "exact={exact}");
            }
        }
    }

    #[test]
    fn a_delta_hides_retired_points_and_its_users_are_found_by_every_search() {
        // Given 400 indexed points, of which 10 are retired, and 30 fresh points,
        let pts = points(400, 5);
        let fresh = points(30, 6);
        let retired: Vec<u32> = (0..400).step_by(40).collect();
        let delta = Delta {
            retired: retired.clone(),
            users: Vec::new(),
            points: fresh.clone(),
        };
        for exact in [true, false] {
            let shards =
                Shards::with_deltas(vec![(0, build(pts.clone()), delta.clone())], 8, exact)
                    .unwrap();
            let s = &shards.shards()[0];
            assert_eq!((s.len(), s.base_len(), s.live()), (430, 400, 420));
            assert_eq!(s.retired(), retired);
            // the live rows are the unretired points, then the fresh ones,
            let live: Vec<u32> = shards.iter().map(|(r, _)| r).collect();
            assert_eq!(live.len(), 420);
            assert!(live.iter().all(|&r| !shards.is_retired(r)));
            assert_eq!(*shards.embedding(400), fresh[0].0[..]);
            for q in points(15, 77).iter().chain(&fresh[..5]) {
                let q = &q.0[..];
                // a brute-force ranking over the live rows is what every search returns,
                let mut truth: Vec<Neighbour> = live
                    .iter()
                    .map(|&row| Neighbour {
                        row,
                        similarity: dot(q, &shards.embedding(row)),
                    })
                    .collect();
                merge_ranked(&mut truth, 10);
                let rows = |v: Vec<Neighbour>| v.iter().map(|n| n.row).collect::<Vec<_>>();
                assert_eq!(rows(shards.exact(q, 10, None)), rows(truth.clone()));
                assert_eq!(
                    shards.exact_batch(&[(q, None)], 10)[0],
                    shards.exact(q, 10, None)
                );
                let near = shards.nearest(q, 10, None);
                assert!(near.iter().all(|n| !shards.is_retired(n.row)));
                if exact {
                    // (the coded scan ranks exactly as the plain one)
                    assert_eq!(near, truth);
                }
                let found = near.iter().filter(|n| truth.iter().any(|t| t.row == n.row));
                assert!(found.count() >= 9, "exact={exact}");
            }
            // and a fresh row excluded is never returned.
            let q = &*shards.embedding(401);
            let got = shards.nearest(q, 5, Some(401));
            assert!(got.iter().all(|n| n.row != 401));
            assert_eq!(shards.nearest(q, 1, None)[0].row, 401);
        }
    }
}
