//! Building the HNSW index over user embeddings and measuring its recall.

use instant_distance::{Builder, Heuristic};
use kindred_core::embedding::Embedding;
use kindred_core::manifest::HnswParams;
use kindred_core::model::EXACT_SCAN_MAX_USERS;
use kindred_core::search::{Index, Neighbour, merge_ranked};
use kindred_core::shard::{Shards, shard_of};

use crate::exact_graph;
use crate::fast_hash::FastMap;
use crate::neighbours::nearest_to;

/// Builds the index; returns it with `order`, where point `i` of the index is input
/// `order[i]`. Up to [`exact_graph::MAX_POINTS`] points the graph is built from exact
/// neighbours ([`exact_graph`]) on `threads` threads, above by instant-distance's
/// incremental insertion on the rayon pool.
pub fn build(points: Vec<Embedding>, params: &HnswParams, threads: usize) -> (Index, Vec<u32>) {
    build_near(points, None, params, threads)
}

/// [`build`], a graph from exact neighbours seeking its points' candidates among `near`
/// (each input's smoothing neighbours, input indices) when given.
pub fn build_near(
    points: Vec<Embedding>,
    near: Option<&[Vec<u32>]>,
    params: &HnswParams,
    threads: usize,
) -> (Index, Vec<u32>) {
    let n = points.len();
    if (2..=exact_graph::MAX_POINTS).contains(&n) {
        return exact_graph::build(points, near, params, threads).expect(
            "the graph of finite unit embeddings with ef_search in range passes the index check",
        );
    }
    incremental(points, params)
}

/// instant-distance's own build: points inserted one at a time, in parallel.
fn incremental(points: Vec<Embedding>, params: &HnswParams) -> (Index, Vec<u32>) {
    let n = points.len();
    let builder = Builder::default()
        .ef_construction(params.ef_construction)
        .ef_search(params.ef_search)
        .seed(params.seed)
        .select_heuristic(params.heuristic.then(Heuristic::default));
    let (index, ids) = builder.build_hnsw(points);
    let mut order = vec![0u32; n];
    for (input, pid) in ids.into_iter().enumerate() {
        order[pid.into_inner() as usize] = input as u32;
    }
    let index = Index::from_instant_distance(index)
        .expect("an index instant-distance built encodes and decodes");
    (index, order)
}

/// [`build`] on one thread (up to [`exact_graph::MAX_POINTS`] points, one for layer zero
/// and one for the upper layers): the same points and seed always give the same bytes
/// (the parallel build inserts points in a racy order). A split run's shard step uses it, so
/// a retried step rewrites identical artifacts; its parallelism is across shard tasks.
/// Fails only when the one-thread pool cannot be created (threads exhausted): a parallel
/// build would then write other bytes than the step's first attempt.
pub fn build_reproducible(
    points: Vec<Embedding>,
    params: &HnswParams,
) -> Result<(Index, Vec<u32>), rayon::ThreadPoolBuildError> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    Ok(pool.install(|| build(points, params, 1)))
}

/// A reproducible sample of `count` distinct rows out of `n` (all rows when `count >= n`).
pub fn sample_rows(n: usize, count: usize, seed: u64) -> Vec<u32> {
    if count >= n {
        return (0..n as u32).collect();
    }
    shuffled_prefix(n, count, seed)
}

/// A reproducible random order of `0..n`.
pub fn permutation(n: usize, seed: u64) -> Vec<u32> {
    shuffled_prefix(n, n, seed)
}

/// The first `count` (at most `n`) of `0..n` shuffled by a partial Fisher-Yates with
/// splitmix64 seeded by `seed`. A few of many (less than a sixteenth) are drawn without
/// the array of all `n`: only the positions a swap moved are remembered, so the hold-out
/// measure's 11 random users for each of its 1,000 no longer cost 1,000 arrays of every
/// user (7 ms of its 50 at 10k users, more with more).
fn shuffled_prefix(n: usize, count: usize, seed: u64) -> Vec<u32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let count = count.min(n);
    if count < n / 16 {
        // Position -> value, for the positions after `i` that a swap has changed.
        let mut moved: FastMap<usize, u32> = FastMap::default();
        let at = |moved: &FastMap<usize, u32>, p: usize| moved.get(&p).copied().unwrap_or(p as u32);
        return (0..count)
            .map(|i| {
                let j = i + (next() % (n - i) as u64) as usize;
                let (here, there) = (at(&moved, i), at(&moved, j));
                moved.insert(j, here);
                there
            })
            .collect();
    }
    let mut rows: Vec<u32> = (0..n as u32).collect();
    for i in 0..count {
        let j = i + (next() % (n - i) as u64) as usize;
        rows.swap(i, j);
    }
    rows.truncate(count);
    rows
}

/// Builds one index per shard, users assigned by [`shard_of`] of their handle
/// (`handles[i]` is input `i`'s), at most `threads` shards at a time (each build also
/// spreads over the rayon pool). Returns the shards in one row space, shard after shard,
/// with `order`: model row `r` is input `order[r]`. `near` (each input's smoothing
/// neighbours) guides a single shard's graph ([`build_near`]).
pub fn build_sharded(
    points: Vec<Embedding>,
    handles: &[u64],
    count: u32,
    params: &HnswParams,
    threads: usize,
    near: Option<&[Vec<u32>]>,
) -> (Shards, Vec<u32>) {
    let near = near.filter(|_| count <= 1);
    let dims = points.first().map_or(0, |p| p.0.len());
    let mut inputs: Vec<Vec<u32>> = vec![Vec::new(); count.max(1) as usize];
    for (i, &h) in handles.iter().enumerate() {
        inputs[shard_of(h, count) as usize].push(i as u32);
    }
    let mut slots: Vec<Option<Embedding>> = points.into_iter().map(Some).collect();
    let mut jobs: Vec<(u32, Vec<u32>, Vec<Embedding>)> = inputs
        .into_iter()
        .enumerate()
        .map(|(id, ins)| {
            let pts = ins
                .iter()
                .map(|&i| slots[i as usize].take().expect("each input in one shard"))
                .collect();
            (id as u32, ins, pts)
        })
        .collect();
    let mut built: Vec<(u32, Index, Vec<u32>)> = Vec::with_capacity(jobs.len());
    while !jobs.is_empty() {
        let batch: Vec<_> = jobs.drain(..threads.clamp(1, jobs.len())).collect();
        // The threads are shared out among the shards built together.
        let each = (threads / batch.len()).max(1);
        let done: Vec<(u32, Index, Vec<u32>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .into_iter()
                .map(|(id, ins, pts)| {
                    scope.spawn(move || {
                        let (index, order) = build_near(pts, near, params, each);
                        let order = order.iter().map(|&p| ins[p as usize]).collect();
                        (id, index, order)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("index build panicked"))
                .collect()
        });
        built.extend(done);
    }
    let mut order = Vec::with_capacity(handles.len());
    let mut parts = Vec::with_capacity(built.len());
    for (id, index, shard_order) in built {
        order.extend(shard_order);
        parts.push((id, index));
    }
    let shards = Shards::new(parts, dims, false).expect("embeddings of one fit share a dimension");
    (shards, order)
}

/// Each of `rows`' `k` nearest other rows as a served model finds them
/// ([`served_answers`]). The quality measures' searches: at 10k users, 1,000 rows' exact
/// neighbours by matrix products cost a third of their searches through the index.
pub fn served_neighbours(
    index: &Shards,
    rows: &[u32],
    k: usize,
    threads: usize,
) -> Vec<Vec<Neighbour>> {
    of_rows(index, rows, |queries| {
        served_answers(index, queries, k, threads)
    })
}

/// Each query's `k` nearest rows, never the row it names, as a served model finds them:
/// by exact search ([`exact_answers`]) up to [`EXACT_SCAN_MAX_USERS`] users, the models
/// served by a scan, else by [`Shards::nearest`] through the indexes (on `threads`
/// threads; over the training's `f32` points, where a served model above that size
/// ranks by 16-bit ones).
pub fn served_answers(
    index: &Shards,
    queries: &[(&[f32], Option<u32>)],
    k: usize,
    threads: usize,
) -> Vec<Vec<Neighbour>> {
    answers_scanned_up_to(index, queries, k, threads, EXACT_SCAN_MAX_USERS)
}

/// [`served_answers`] with models of up to `scanned` users searched exactly.
pub(crate) fn answers_scanned_up_to(
    index: &Shards,
    queries: &[(&[f32], Option<u32>)],
    k: usize,
    threads: usize,
    scanned: usize,
) -> Vec<Vec<Neighbour>> {
    if index.len() <= scanned {
        return exact_answers(index, queries, k, threads);
    }
    let chunk = queries.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = queries
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&(q, own)| index.nearest(q, k, own))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a search worker panicked"))
            .collect()
    })
}

/// Each of `rows`' `k` nearest other rows of the (sharded) index by exact search
/// ([`exact_answers`]).
pub fn exact_neighbours(
    index: &Shards,
    rows: &[u32],
    k: usize,
    threads: usize,
) -> Vec<Vec<Neighbour>> {
    of_rows(index, rows, |queries| {
        exact_answers(index, queries, k, threads)
    })
}

/// `search(queries)` with a query for each of `rows`: its embedding, naming the row.
fn of_rows<T>(
    index: &Shards,
    rows: &[u32],
    search: impl FnOnce(&[(&[f32], Option<u32>)]) -> T,
) -> T {
    let embeddings: Vec<_> = rows.iter().map(|&r| index.embedding(r)).collect();
    let queries: Vec<(&[f32], Option<u32>)> = embeddings
        .iter()
        .zip(rows)
        .map(|(e, &r)| (&**e, Some(r)))
        .collect();
    search(&queries)
}

/// Each query's `k` nearest rows of the (sharded) index by exact search, never the row
/// it names, nearest first: found by matrix products ([`nearest_to`]) rather than one
/// dot product at a time, spread over `threads`.
pub fn exact_answers(
    index: &Shards,
    queries: &[(&[f32], Option<u32>)],
    k: usize,
    threads: usize,
) -> Vec<Vec<Neighbour>> {
    let dims = index.dimensions();
    let mut truths: Vec<Vec<Neighbour>> = vec![Vec::new(); queries.len()];
    for s in index.shards() {
        // A shard's index points (a trained model has no folded-in users).
        let base = s.base_len() as u32;
        let local: Vec<(&[f32], Option<u32>)> = queries
            .iter()
            .map(|&(q, row)| {
                let own = row
                    .and_then(|r| r.checked_sub(s.offset))
                    .filter(|&local| local < base);
                (q, own)
            })
            .collect();
        let values = s
            .index
            .values()
            .expect("the training never halves its indexes");
        let found = nearest_to(values, dims, &local, k, threads);
        for (truth, found) in truths.iter_mut().zip(found) {
            truth.extend(found.into_iter().map(|(similarity, local)| Neighbour {
                row: s.offset + local,
                similarity,
            }));
        }
    }
    for truth in &mut truths {
        merge_ranked(truth, k);
    }
    truths
}

/// Recall@k of the (sharded) index against exact search over `rows`, spread over `threads`:
/// [`Shards::recall_at_k`], with the exact answers from [`exact_neighbours`].
pub fn recall(index: &Shards, rows: &[u32], k: usize, threads: usize) -> f64 {
    if rows.is_empty() {
        return 1.0;
    }
    let truths = exact_neighbours(index, rows, k, threads);
    recall_against(index, rows, &truths, k, threads)
}

/// [`recall`] against exact answers found elsewhere: `truths[i]`, the `k` nearest other
/// rows of `rows[i]`, nearest first.
pub fn recall_against(
    index: &Shards,
    rows: &[u32],
    truths: &[Vec<Neighbour>],
    k: usize,
    threads: usize,
) -> f64 {
    if rows.is_empty() {
        return 1.0;
    }
    let chunk = rows.len().div_ceil(threads.max(1));
    let counts: Vec<(usize, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .zip(truths.chunks(chunk))
            .map(|(part, truths)| scope.spawn(move || index.found_of(part, truths, k)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("recall worker panicked"))
            .collect()
    });
    let (found, wanted) = counts.iter().fold((0, 0), |(f, w), &(a, b)| (f + a, w + b));
    found as f64 / wanted.max(1) as f64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    type Builder = dyn Fn(Vec<Embedding>, &HnswParams, usize) -> (Index, Vec<u32>);

    /// A one-shard model of `n` [`clustered`] points, its index built with the defaults'
    /// parameters (seed 1).
    pub(crate) fn one_shard(n: usize, dims: usize, clusters: usize, seed: u64) -> Shards {
        let params = HnswParams {
            ef_construction: 64,
            ef_search: 64,
            heuristic: true,
            seed: 1,
        };
        let (idx, _) = build(clustered(n, dims, clusters, seed), &params, 2);
        Shards::new(vec![(0, idx)], dims, false).unwrap()
    }

    /// Seeded clustered points: `clusters` random centres, points scattered around them.
    pub(crate) fn clustered(n: usize, dims: usize, clusters: usize, seed: u64) -> Vec<Embedding> {
        let mut state = seed;
        let mut unif = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
        };
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| (0..dims).map(|_| unif()).collect())
            .collect();
        (0..n)
            .map(|i| {
                let c = &centres[i % clusters];
                Embedding::normalized(c.iter().map(|x| x + 0.35 * unif()).collect())
            })
            .collect()
    }

    #[test]
    fn recall_at_10_against_exact_search_is_high_on_clustered_data() {
        // Given 3,000 seeded clustered 32-d points,
        let points = clustered(3000, 32, 30, 7);
        let exact = |p, params: &HnswParams, t| exact_graph::build(p, None, params, t).unwrap();
        let incremental = |p, params: &HnswParams, _| incremental(p, params);
        let builders: [(&str, &Builder); 3] = [
            ("build", &build),
            ("incremental", &incremental),
            ("exact", &exact),
        ];
        for ((name, builder), heuristic) in
            builders.into_iter().flat_map(|b| [(b, false), (b, true)])
        {
            let params = HnswParams {
                ef_construction: 64,
                ef_search: 64,
                heuristic,
                seed: 1,
            };
            // when indexed by each builder, with and without the heuristic,
            let (index, order) = builder(points.clone(), &params, 2);
            // then every input is a point exactly once,
            let mut seen = order.clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..3000).collect::<Vec<u32>>(), "{name}");
            assert_eq!(index.point(5), &points[order[5] as usize].0[..]);
            // and recall@10 on a 1,000-user sample is at least 0.95.
            let sample = sample_rows(3000, 1000, 3);
            let one = Shards::new(vec![(0, index)], 32, false).unwrap();
            let r = recall(&one, &sample, 10, 2);
            assert!(r >= 0.95, "{name}, heuristic {heuristic}: recall@10 = {r}");
        }
    }

    #[test]
    fn sharded_builds_place_every_user_in_its_shard_and_keep_recall() {
        // Given the same points with handles 1000.., split into 4 shards,
        let points = clustered(3000, 32, 30, 7);
        let handles: Vec<u64> = (1000..4000).collect();
        let params = HnswParams {
            ef_construction: 64,
            ef_search: 64,
            heuristic: true,
            seed: 1,
        };
        // when built shard by shard on 2 threads,
        let (shards, order) = build_sharded(points.clone(), &handles, 4, &params, 2, None);
        // then every input is a row exactly once, with its own embedding,
        let mut seen = order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..3000).collect::<Vec<u32>>());
        assert_eq!(shards.shards().len(), 4);
        for (row, e) in shards.iter() {
            assert_eq!(e, &points[order[row as usize] as usize].0[..]);
            let handle = handles[order[row as usize] as usize];
            assert_eq!(shards.shard_of_row(row).id, shard_of(handle, 4));
        }
        // and the merged search over the shards keeps recall@10 at least 0.95, measured
        // by matrix products as by the core's dot products, on any number of threads.
        let rows = sample_rows(3000, 1000, 3);
        let r = recall(&shards, &rows, 10, 2);
        assert!(r >= 0.95, "recall@10 = {r}");
        assert!((r - shards.recall_at_k(&rows, 10)).abs() < 1e-9);
        assert_eq!(recall(&shards, &rows, 10, 3), r);
    }

    #[test]
    fn recall_by_matrix_products_counts_what_the_core_counts_on_a_weak_index() {
        // Given an index whose graph keeps few links, so that it misses neighbours,
        let points = clustered(2000, 16, 40, 11);
        let handles: Vec<u64> = (0..2000).collect();
        let params = HnswParams {
            ef_construction: 4,
            ef_search: 4,
            heuristic: false,
            seed: 2,
        };
        let (shards, _) = build_sharded(points, &handles, 1, &params, 2, None);
        // when its recall is measured both ways,
        let rows = sample_rows(2000, 500, 5);
        let (ours, core) = (recall(&shards, &rows, 10, 2), shards.recall_at_k(&rows, 10));
        // then both find the same share of the exact neighbours, well below 1.
        assert!(ours < 0.98, "recall@10 = {ours}");
        assert!((ours - core).abs() < 1e-9, "{ours} vs {core}");
    }

    #[test]
    fn the_same_points_and_seed_build_the_same_bytes_on_one_thread() {
        // A split run's shard step may be retried after a crash between its two writes;
        // the artifacts are immutable, so a retry must produce the same bytes.
        let points = clustered(2000, 16, 20, 5);
        let params = HnswParams {
            ef_construction: 64,
            ef_search: 64,
            heuristic: true,
            seed: 9,
        };
        let a = build_reproducible(points.clone(), &params).unwrap();
        let b = build_reproducible(points, &params).unwrap();
        assert_eq!(a.1, b.1);
        let bytes = |i: &Index| kindred_core::codec::encode("i", i).unwrap();
        assert!(bytes(&a.0) == bytes(&b.0), "the two builds differ");
    }

    #[test]
    fn a_few_drawn_of_many_are_those_the_whole_arrays_swaps_draw() {
        // Given draws of a few of many (kept sparse) and of many of few (on the array),
        for (n, count) in [
            (10_000, 11),
            (10_000, 624),
            (10_000, 625),
            (50, 49),
            (7, 7),
            (0, 3),
        ] {
            // when drawn,
            let drawn = shuffled_prefix(n, count, 4);
            // then they are the first of a Fisher-Yates shuffle of the whole array.
            let mut all: Vec<u32> = (0..n as u32).collect();
            let mut state = 4u64;
            for i in 0..count.min(n) {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                all.swap(i, i + (z % (n - i) as u64) as usize);
            }
            all.truncate(count.min(n));
            assert_eq!(drawn, all, "{n} {count}");
        }
    }

    #[test]
    fn samples_are_distinct_and_reproducible() {
        let a = sample_rows(10_000, 1000, 9);
        let mut d = a.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 1000);
        assert_eq!(a, sample_rows(10_000, 1000, 9));
        assert_ne!(a, sample_rows(10_000, 1000, 10));
    }

    #[test]
    fn the_measures_search_exactly_up_to_the_scanned_size_and_by_the_index_above() {
        // Given a 600-point index of clustered points and a sample of its rows,
        let shards = one_shard(600, 16, 12, 5);
        let rows: Vec<u32> = (0..600).step_by(7).collect();
        // when neighbours are found for a model scanned at its size and for one above it,
        let search = |scanned| {
            of_rows(&shards, &rows, |queries| {
                answers_scanned_up_to(&shards, queries, 10, 2, scanned)
            })
        };
        let (scanned, indexed) = (search(600), search(599));
        // then the first are a plain scan's and the second the index's, row by row.
        for ((&r, s), i) in rows.iter().zip(&scanned).zip(&indexed) {
            let q = &*shards.embedding(r);
            let plain: Vec<u32> = shards.exact(q, 10, Some(r)).iter().map(|n| n.row).collect();
            assert_eq!(s.iter().map(|n| n.row).collect::<Vec<_>>(), plain);
            let searched: Vec<u32> = shards
                .nearest(q, 10, Some(r))
                .iter()
                .map(|n| n.row)
                .collect();
            assert_eq!(i.iter().map(|n| n.row).collect::<Vec<_>>(), searched);
        }
    }
}
